/**
 * The KV-RPC demo: a protocol Waypost does not ship, added with `--codec`, end to end.
 *
 * 1. starts two KV-RPC servers, v1 on 127.0.0.1:29091 and v2 on :29092 (in this process);
 * 2. spawns `node dist/src/cli.js proxy --codec <abs>/dist/examples/custom-codec/codec.js --config examples/custom-codec/config`
 *    and waits for the admin's `GET /ready`;
 * 3. through the proxy at 127.0.0.1:29090: calls with header `user: jason` (route `v2-for-jason`: all must reach
 *    v2), calls without (route `split`: 80/20 between v1 and v2), one `headers` call showing the request mutation the
 *    route added, and a heartbeat (answered by the proxy itself);
 * 4. exits 0 when every check passed, else says what went wrong and exits 1. Servers and proxy are always stopped.
 *
 *   npm run build && node dist/examples/custom-codec/demo.js [--auto-ports] [--verbose]
 *
 * `--auto-ports` (or WAYPOST_DEMO_PORTS=auto) runs on free ports with a generated copy of the config.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import {
  displayPath,
  freePorts,
  isListening,
  isMainModule,
  projectRoot,
  spawnProxy,
  waitReady,
  writeTempConfig,
  type ProxyProcess,
} from '../dubbo/harness.js';
import { KvClient } from './client.js';
import { startServer, type KvServer } from './server.js';
import { Status } from './wire.js';

export const KV_PORT_NAME = 'tcp-metaprotocol-kvrpc';

export interface KvPorts {
  listen: number;
  v1: number;
  v2: number;
}

/** The compiled codec module, as `--codec` takes it (an absolute path: the proxy may run from anywhere). */
export function kvCodecModule(): string {
  return path.join(projectRoot(), 'dist', 'examples', 'custom-codec', 'codec.js');
}

export function kvConfigDir(): string {
  return path.join(projectRoot(), 'examples', 'custom-codec', 'config');
}

/** config/kvrpc.yaml with its ports replaced (comments kept). */
export function renderKvConfig(ports: KvPorts, template = path.join(kvConfigDir(), 'kvrpc.yaml')): string {
  const docs = YAML.parseAllDocuments(readFileSync(template, 'utf8'));
  for (const doc of docs) {
    if (doc.get('kind') !== 'ServiceEntry') continue;
    doc.setIn(['spec', 'ports', 0, 'number'], ports.listen);
    const endpoints = doc.getIn(['spec', 'endpoints']) as YAML.YAMLSeq | undefined;
    endpoints?.items.forEach((_item, i) => {
      const v = doc.getIn(['spec', 'endpoints', i, 'labels', 'version']);
      if (v === 'v1' || v === 'v2') doc.setIn(['spec', 'endpoints', i, 'ports', KV_PORT_NAME], ports[v]);
    });
  }
  return docs.map((d) => d.toString().replace(/^---\n/, '')).join('---\n');
}

export interface KvDemoOptions {
  ports?: 'fixed' | 'auto';
  jasonCalls?: number;
  splitCalls?: number;
  verbose?: boolean;
  print?: (line: string) => void;
}

export interface KvDemoReport {
  ok: boolean;
  problems: string[];
  ports: KvPorts;
  /** Which version answered each call ('v1' | 'v2' | 'error'). */
  jason: string[];
  split: { v1: number; v2: number; errors: number; v1Range: [number, number] };
  /** The headers the server received on a `headers` call (the route's mutation included). */
  seenByServer?: Record<string, string>;
  heartbeatAnsweredByProxy: boolean;
}

export async function runKvDemo(opts: KvDemoOptions = {}): Promise<KvDemoReport> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const jasonCalls = opts.jasonCalls ?? 10;
  const splitCalls = opts.splitCalls ?? 100;
  const mode = opts.ports ?? 'fixed';
  const [listen, p1, p2] = mode === 'auto' ? await freePorts(3) : [29090, 29091, 29092];
  const ports: KvPorts = { listen: listen!, v1: p1!, v2: p2! };
  const problems: string[] = [];
  const report: KvDemoReport = {
    ok: false,
    problems,
    ports,
    jason: [],
    split: { v1: 0, v2: 0, errors: 0, v1Range: [0, 0] },
    heartbeatAnsweredByProxy: false,
  };
  const servers: KvServer[] = [];
  let proxy: ProxyProcess | undefined;
  let client: KvClient | undefined;
  let temp: { remove(): void } | undefined;
  const hint = mode === 'fixed' ? ' (or run on free ports: --auto-ports)' : '';
  try {
    print('1. Starting two KV-RPC servers');
    for (const version of ['v1', 'v2'] as const) {
      try {
        servers.push(await startServer({ port: ports[version], version }));
      } catch (e) {
        throw new Error(`could not start server ${version} on 127.0.0.1:${ports[version]}: ${(e as Error).message}${hint}`);
      }
      print(`   server ${version} on ${servers[servers.length - 1]!.address}`);
    }

    let configDir = kvConfigDir();
    if (mode === 'auto') {
      const t = writeTempConfig({ 'kvrpc.yaml': renderKvConfig(ports) }, 'waypost-kvrpc-');
      temp = t;
      configDir = t.dir;
    } else if (await isListening('127.0.0.1', ports.listen)) {
      throw new Error(`something already listens on 127.0.0.1:${ports.listen}, the demo's proxy port${hint}`);
    }
    print('');
    print('2. Starting the proxy with the KV-RPC codec');
    proxy = await spawnProxy({ configDir, echo: opts.verbose ?? false, extraArgs: ['--codec', kvCodecModule()] });
    print(`   ${proxy.command}`);
    print(`   config: ${displayPath(configDir)}`);
    await waitReady(proxy);
    print(`   ready (admin: http://${proxy.adminAddress}/ready)`);
    client = await KvClient.connect(`127.0.0.1:${ports.listen}`);

    print('');
    print(`3. Route "v2-for-jason": ${jasonCalls} calls with header user=jason`);
    for (let i = 0; i < jasonCalls; i++) {
      const r = await client.call({ service: 'kv.Demo', method: 'whoami', headers: { user: 'jason' } });
      report.jason.push(r.status === Status.OK ? r.text() : 'error');
    }
    const jasonV2 = report.jason.filter((v) => v === 'v2').length;
    print(`   ${report.jason.map((v) => (v === 'v1' ? '1' : v === 'v2' ? '2' : 'x')).join('')}  v2 answered ${jasonV2}/${jasonCalls}`);
    if (jasonV2 !== jasonCalls) problems.push(`route v2-for-jason: ${jasonCalls - jasonV2} of ${jasonCalls} calls did not reach v2`);

    const seen = await client.call({ service: 'kv.Demo', method: 'headers', headers: { user: 'jason' } });
    report.seenByServer = seen.status === Status.OK ? (JSON.parse(seen.text()) as Record<string, string>) : undefined;
    print(`   the server received headers ${seen.text()}`);
    if (report.seenByServer?.['x-routed-by'] !== 'v2-for-jason') {
      problems.push(`route v2-for-jason: the request mutation x-routed-by did not reach the server (${seen.text()})`);
    }

    const p = 0.8;
    const mean = splitCalls * p;
    const sd = Math.sqrt(splitCalls * p * (1 - p));
    const range: [number, number] = [Math.max(0, Math.ceil(mean - 4 * sd)), Math.min(splitCalls, Math.floor(mean + 4 * sd))];
    print('');
    print(`4. Route "split": ${splitCalls} calls without a user — configured v1 80% / v2 20%`);
    const versions: string[] = [];
    for (let i = 0; i < splitCalls; i++) {
      const r = await client.call({ service: 'kv.Demo', method: 'echo', body: `call ${i}` });
      const ok = r.status === Status.OK && r.text() === `call ${i}`;
      versions.push(ok ? (r.headers['served-by'] ?? 'error') : 'error');
    }
    const v1 = versions.filter((v) => v === 'v1').length;
    const v2 = versions.filter((v) => v === 'v2').length;
    report.split = { v1, v2, errors: splitCalls - v1 - v2, v1Range: range };
    print(`   ${versions.map((v) => (v === 'v1' ? '1' : v === 'v2' ? '2' : 'x')).join('')}`);
    print(`   v1 ${v1}  v2 ${v2}  (a fair 80/20 split puts v1 within ${range[0]}..${range[1]}, ±4σ)`);
    if (report.split.errors > 0) problems.push(`route split: ${report.split.errors} of ${splitCalls} calls failed`);
    if (v1 < range[0] || v1 > range[1]) problems.push(`route split: v1 answered ${v1} of ${splitCalls}, outside ${range[0]}..${range[1]}`);

    print('');
    print('5. A heartbeat, answered by the proxy itself');
    const before = servers.reduce((n, s) => n + s.heartbeats, 0);
    const hb = await client.heartbeat(4242);
    report.heartbeatAnsweredByProxy = hb.id === 4242 && hb.status === Status.OK && servers.reduce((n, s) => n + s.heartbeats, 0) === before;
    print(`   answer id ${hb.id}, status ${hb.statusName}; servers saw ${servers.reduce((n, s) => n + s.heartbeats, 0) - before} heartbeats`);
    if (!report.heartbeatAnsweredByProxy) problems.push('the heartbeat was not answered by the proxy');
  } catch (e) {
    problems.push((e as Error).message);
  } finally {
    client?.close();
    if (proxy) {
      const exitedEarly = proxy.child.exitCode !== null;
      await proxy.stop();
      if (exitedEarly) problems.push(`the proxy exited during the demo; its last output:\n${proxy.output().split('\n').slice(-20).join('\n')}`);
    }
    await Promise.all(servers.map((s) => s.close()));
    temp?.remove();
  }
  report.ok = problems.length === 0;
  print('');
  if (report.ok) print('Demo passed: KV-RPC calls were routed by header, split by weight and mutated by a codec loaded with --codec.');
  else {
    print('Demo failed:');
    for (const p of problems) print(`  - ${p.replace(/\n/g, '\n    ')}`);
  }
  return report;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log('usage: node dist/examples/custom-codec/demo.js [--auto-ports] [--verbose]');
    return;
  }
  const watchdog = setTimeout(() => {
    console.error('Demo failed: it did not finish within 60s.');
    process.exit(1);
  }, 60_000);
  watchdog.unref();
  const auto = args.includes('--auto-ports') || process.env.WAYPOST_DEMO_PORTS === 'auto';
  const report = await runKvDemo({ ports: auto ? 'auto' : 'fixed', verbose: args.includes('--verbose') });
  clearTimeout(watchdog);
  process.exit(report.ok ? 0 : 1);
}

if (isMainModule(import.meta.url)) void main();
