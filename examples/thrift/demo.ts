/**
 * The Waypost Thrift demo, end to end: `node dist/examples/thrift/demo.js [--auto-ports] [--verbose]`.
 *
 * 1. generates the python code for `hello.thrift` with Debian's `thrift` compiler (into a temp dir);
 * 2. starts two python3-thrift servers of Hello (`server.py`), v1 on 127.0.0.1:9091 and v2 on :9092;
 * 3. spawns `node dist/src/cli.js proxy --config examples/thrift/config --admin 127.0.0.1:<free port>` (listening on
 *    127.0.0.1:9090) and waits for the admin's `GET /ready`;
 * 4. through the proxy, with the python3-thrift THeader client (`client.py`): 10 calls with the header
 *    `x-user: jason` (route `v2-for-jason`: all must reach v2), then 200 calls without (route `split`, 20/80);
 * 5. prints what answered each call and exits 0, or says what went wrong and exits 1. Servers and proxy are always
 *    stopped.
 *
 * Needs Debian's thrift-compiler and python3-thrift (`sudo scripts/install-peers.sh thrift-compiler python3-thrift`).
 * `--auto-ports` (or WAYPOST_DEMO_PORTS=auto) uses free ports and a generated copy of the config.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
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

const run = promisify(execFile);
/** Debian's interpreter: it has python3-thrift (another `python3` on PATH may not). */
const PYTHON = '/usr/bin/python3';
const PORT_NAME = 'tcp-metaprotocol-thrift';
const INSTALL_HINT = 'install the peers with: sudo scripts/install-peers.sh thrift-compiler python3-thrift';

export interface ThriftDemoOptions {
  /** 'fixed' (default): 9090/9091/9092 and examples/thrift/config; 'auto': free ports, generated config. */
  ports?: 'fixed' | 'auto';
  jasonCalls?: number;
  splitCalls?: number;
  verbose?: boolean;
  print?: (line: string) => void;
}

export interface ThriftDemoReport {
  ok: boolean;
  problems: string[];
  ports: { listen: number; v1: number; v2: number };
  /** The version that answered each call ('v1' | 'v2' | 'error'). */
  jason: string[];
  split: { v1: number; v2: number; errors: number; v1Range: [number, number] };
}

function dir(): string {
  return path.join(projectRoot(), 'examples', 'thrift');
}

/** The demo config with its ports replaced (comments kept). */
export function renderThriftDemoConfig(ports: { listen: number; v1: number; v2: number }): string {
  const docs = YAML.parseAllDocuments(readFileSync(path.join(dir(), 'config', 'demo.yaml'), 'utf8'));
  for (const doc of docs) {
    if (doc.get('kind') !== 'ServiceEntry') continue;
    doc.setIn(['spec', 'ports', 0, 'number'], ports.listen);
    for (const i of [0, 1]) {
      const v = doc.getIn(['spec', 'endpoints', i, 'labels', 'version']) as 'v1' | 'v2';
      doc.setIn(['spec', 'endpoints', i, 'ports', PORT_NAME], ports[v]);
    }
  }
  return docs.map((d) => d.toString().replace(/^---\n/, '')).join('---\n');
}

/** Starts server.py and resolves once it prints READY. */
function startServer(gen: string, port: number, version: string): Promise<ChildProcess> {
  const child = spawn(PYTHON, [path.join(dir(), 'server.py'), gen, String(port), version], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`cannot run ${PYTHON}: ${e.message}; ${INSTALL_HINT}`)));
    child.once('exit', (code) => reject(new Error(`server ${version} exited (${code}) on port ${port}: ${err.trim().split('\n').slice(-3).join(' ')}`)));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('READY')) resolve(child);
    });
  });
}

/** Runs client.py: `calls` calls over one THeader connection; the answer of each (or "error: …"). */
async function callThroughProxy(gen: string, port: number, calls: number, headers: string[]): Promise<string[]> {
  const { stdout } = await run(PYTHON, [path.join(dir(), 'client.py'), gen, String(port), String(calls), ...headers], { timeout: 60_000 });
  return stdout.split('\n').filter((l) => l.length > 0);
}

const VERSION_RE = / from (v\d+)$/;
const versionOf = (answer: string): string => VERSION_RE.exec(answer)?.[1] ?? 'error';
const grid = (vs: string[]): string => vs.map((v) => (v === 'v1' ? '1' : v === 'v2' ? '2' : 'x')).join('');

export async function runThriftDemo(opts: ThriftDemoOptions = {}): Promise<ThriftDemoReport> {
  const print = opts.print ?? ((l: string) => console.log(l));
  const jasonCalls = opts.jasonCalls ?? 10;
  const splitCalls = opts.splitCalls ?? 200;
  const [listen, v1, v2] = opts.ports === 'auto' ? await freePorts(3) : [9090, 9091, 9092];
  const ports = { listen: listen!, v1: v1!, v2: v2! };
  const problems: string[] = [];
  const report: ThriftDemoReport = { ok: false, problems, ports, jason: [], split: { v1: 0, v2: 0, errors: 0, v1Range: [0, 0] } };
  const gen = mkdtempSync(path.join(os.tmpdir(), 'waypost-thrift-demo-'));
  const servers: ChildProcess[] = [];
  let proxy: ProxyProcess | undefined;
  let temp: { dir: string; remove(): void } | undefined;
  try {
    print('1. Generating python code for examples/thrift/hello.thrift, starting servers v1 and v2');
    try {
      await run('thrift', ['--gen', 'py', '-out', gen, path.join(dir(), 'hello.thrift')]);
    } catch (e) {
      throw new Error(`the thrift compiler failed (${(e as Error).message.trim()}); ${INSTALL_HINT}`);
    }
    for (const version of ['v1', 'v2'] as const) {
      servers.push(await startServer(gen, ports[version], version));
      print(`   server ${version} listening on 127.0.0.1:${ports[version]}`);
    }

    let configDir = path.join(dir(), 'config');
    if (opts.ports === 'auto') {
      temp = writeTempConfig({ 'demo.yaml': renderThriftDemoConfig(ports) }, 'waypost-thrift-demo-');
      configDir = temp.dir;
    } else if (await isListening('127.0.0.1', ports.listen)) {
      throw new Error(`something already listens on 127.0.0.1:${ports.listen} (run with --auto-ports to use free ports)`);
    }
    print('2. Starting the Waypost proxy');
    proxy = await spawnProxy({ configDir, echo: opts.verbose ?? false });
    print(`   ${proxy.command}  (config ${displayPath(configDir)})`);
    await waitReady(proxy);
    print(`   ready; Thrift clients connect to 127.0.0.1:${ports.listen}`);

    print(`3. Route "v2-for-jason": ${jasonCalls} calls with THeader header x-user: jason — all should reach v2`);
    const jason = await callThroughProxy(gen, ports.listen, jasonCalls, ['x-user=jason']);
    report.jason = jason.map(versionOf);
    print(`   ${grid(report.jason)}   e.g. "${jason[0] ?? ''}"`);
    const jasonV2 = report.jason.filter((v) => v === 'v2').length;
    if (jasonV2 !== jasonCalls) problems.push(`route v2-for-jason: ${jasonCalls - jasonV2} of ${jasonCalls} calls did not reach v2 (${jason.find((a) => versionOf(a) !== 'v2') ?? 'no answer'})`);

    print(`4. Route "split": ${splitCalls} calls without headers — v1 20% / v2 80%`);
    const split = (await callThroughProxy(gen, ports.listen, splitCalls, [])).map(versionOf);
    for (let i = 0; i < split.length; i += 50) print(`   ${grid(split.slice(i, i + 50))}`);
    const n1 = split.filter((v) => v === 'v1').length;
    const n2 = split.filter((v) => v === 'v2').length;
    // n calls with p = 0.2: v1's count lies within 4.5 standard deviations of the mean but about once in 10^5 runs.
    const sd = Math.sqrt(splitCalls * 0.2 * 0.8);
    const range: [number, number] = [Math.ceil(splitCalls * 0.2 - 4.5 * sd), Math.floor(splitCalls * 0.2 + 4.5 * sd)];
    report.split = { v1: n1, v2: n2, errors: splitCalls - n1 - n2, v1Range: range };
    print(`   v1 ${n1}, v2 ${n2}${report.split.errors ? `, errors ${report.split.errors}` : ''} (v1 expected within ${range[0]}..${range[1]})`);
    if (report.split.errors > 0) problems.push(`route split: ${report.split.errors} of ${splitCalls} calls failed`);
    if (n1 < range[0] || n1 > range[1]) problems.push(`route split: v1 answered ${n1} of ${splitCalls} calls, outside ${range[0]}..${range[1]}`);
  } catch (e) {
    problems.push((e as Error).message);
  } finally {
    await proxy?.stop();
    for (const s of servers) s.kill();
    temp?.remove();
    rmSync(gen, { recursive: true, force: true });
  }
  report.ok = problems.length === 0;
  if (report.ok) print('Demo passed: Thrift calls were routed by THeader header and split by weight.');
  else for (const p of ['Demo failed:', ...problems.map((p) => `  - ${p}`)]) print(p);
  return report;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log('usage: node dist/examples/thrift/demo.js [--auto-ports] [--verbose]');
    return;
  }
  const auto = args.includes('--auto-ports') || process.env.WAYPOST_DEMO_PORTS === 'auto';
  const watchdog = setTimeout(() => {
    console.error('Demo failed: it did not finish within 120s.');
    process.exit(1);
  }, 120_000);
  watchdog.unref();
  const report = await runThriftDemo({ ports: auto ? 'auto' : 'fixed', verbose: args.includes('--verbose') });
  clearTimeout(watchdog);
  process.exit(report.ok ? 0 : 1);
}

if (isMainModule(import.meta.url)) void main();
