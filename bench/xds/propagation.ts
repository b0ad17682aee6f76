/**
 * Config-propagation time over xDS: from a CRD file change to the moment every data-plane client has ACKed the new
 * version, for 1 and for 50 data-plane clients.
 *
 *   npx tsc -p . && node dist/bench/xds/propagation.js [--runs 9] [--clients 1,50] [--poll-ms 5] [--mode real|inprocess] [--json FILE]
 *
 * What runs:
 * - `waypost control` (the built CLI, a child process) on a temp config directory: the Dubbo demo service
 *   (1 listener, 3 clusters, 1 RouteConfiguration) and its MetaRouter. It serves ADS on a Unix socket
 *   (`--xds-listen unix:…`), which every client below reaches.
 * - One real `waypost proxy --xds` (child process): the "1 client" case.
 * - For the "50 clients" case, 50 more clients:
 *   - `--mode real` (the default where `unshare -n` works, i.e. as root): 50 more real `waypost proxy --xds`
 *     processes, each in a network namespace of its own with only loopback up, so that each binds the listener the
 *     control plane gives it (the same address for all, as pods would) — 51 real proxies;
 *   - `--mode inprocess` (the fallback): 50 of the data plane's own `XdsClient` (src/xds/client.ts: the same ADS
 *     stream, decoding, warming and ACK-after-apply code) in this process, each driving a proxy double whose `apply`
 *     compiles every RouteConfiguration and prepares every listener's network filter, but binds no socket.
 *
 * Each run rewrites the MetaRouter (all to v1 ↔ all to v2: an RDS-only change) by rename and polls the control
 * plane's `GET /debug/syncz` every `--poll-ms` until every node's RouteConfiguration `last_acked` is the newly served
 * version (a data plane ACKs after it applied the change). Reported per client count (min / median / max over the
 * runs):
 * - `write→ACKed`: the file write to the last node's ACK — the whole propagation;
 * - `write→served`: until the control plane serves the new version (its file poll: every 200 ms, and a change
 *   counts once it held still for one more poll — so 200–400 ms — then the compile);
 * - `served→ACKed`: from then until the last ACK (the push debounce, 100 ms, then send, decode, apply, ACK);
 * - `write→applied (in-process)`: with `--mode inprocess`, until the last in-process client's apply returned.
 *
 * Bounded: each run gives up after 10 s, the whole bench after 5 minutes; every child is killed at the end.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { cliPath, freePorts } from '../../examples/dubbo/harness.js';
import { createRegistry } from '../../src/builtin-codecs.js';
import { createFilterRegistry, filterDeps } from '../../src/filters/index.js';
import { setLogLevel } from '../../src/log.js';
import { Metrics } from '../../src/metrics.js';
import { networkFilters } from '../../src/network-filters.js';
import type { Proxy } from '../../src/proxy.js';
import { RouteTable } from '../../src/router.js';
import { XdsClient } from '../../src/xds/client.js';
import { TYPE_META_ROUTE, type ResourceSnapshot } from '../../src/xds/resources.js';

const HOST = 'org.apache.dubbo.samples.basic.api.demoservice';
const RUN_TIMEOUT_MS = 10_000;
const BENCH_DEADLINE_MS = 300_000;

interface Args {
  runs: number;
  clients: number[];
  pollMs: number;
  json: string | undefined;
  /** The n > 1 clients: real proxy processes (each in a network namespace of its own) or in-process doubles. */
  mode: 'real' | 'inprocess' | undefined;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { runs: 9, clients: [1, 50], pollMs: 5, json: undefined, mode: undefined };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = argv[i + 1];
    if (k === '--runs' && v) (a.runs = Number(v)), i++;
    else if (k === '--clients' && v) (a.clients = v.split(',').map(Number)), i++;
    else if (k === '--poll-ms' && v) (a.pollMs = Number(v)), i++;
    else if (k === '--json' && v) (a.json = v), i++;
    else if (k === '--mode' && (v === 'real' || v === 'inprocess')) (a.mode = v), i++;
    else if (k === '--help' || k === '-h') {
      process.stdout.write('node dist/bench/xds/propagation.js [--runs 9] [--clients 1,50] [--poll-ms 5] [--mode real|inprocess] [--json FILE]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${k}`);
  }
  if (!(a.runs >= 1) || a.clients.some((n) => !(Number.isInteger(n) && n >= 1)) || !(a.pollMs >= 1)) throw new Error('bad arguments');
  return a;
}

// ---- children -------------------------------------------------------------------------------------------------------

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

interface Cli {
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

/**
 * Runs the built CLI; with `netns`, in a new network namespace with only its loopback up (`unshare -n`), so that
 * every proxy binds the same listener address as it would in a pod of its own. It reaches the control plane through
 * the Unix socket, which a filesystem path makes visible across network namespaces.
 */
function spawnCli(args: string[], netns = false): Cli {
  const cli = cliPath();
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build first (npx tsc -p .)`);
  const proc = netns
    ? spawn('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  const lines: string[] = [];
  const keep = (d: Buffer): void => {
    lines.push(...d.toString().split('\n').filter(Boolean));
    if (lines.length > 200) lines.splice(0, lines.length - 200);
  };
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  return {
    proc,
    output: () => lines.join('\n'),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(t);
      }
      children.delete(proc);
    },
  };
}

/** Whether `unshare -n` works here (root, or a user namespace allowed): then 50 real proxies can bind one address. */
function netnsAvailable(): boolean {
  const r = spawnSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up'], { stdio: 'ignore', timeout: 5000 });
  return r.status === 0;
}

// ---- admin polling --------------------------------------------------------------------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function get(address: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`http://${address}${urlPath}`, { agent, timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

interface Syncz {
  types: Record<string, string>;
  nodes: Array<{ node_id: string; connected: boolean; types: Record<string, { last_acked: { version: string } | null }> }>;
}

async function syncz(admin: string): Promise<Syncz> {
  return JSON.parse((await get(admin, '/debug/syncz')).body) as Syncz;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, timeoutMs: number, fn: () => Promise<boolean>): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      // not up yet
    }
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Whether every node in `nodes` is connected and has ACKed `version` of the RouteConfigurations. */
function allAcked(s: Syncz, nodes: ReadonlySet<string>, version: string): boolean {
  let n = 0;
  for (const node of s.nodes) {
    if (!nodes.has(node.node_id)) continue;
    if (!node.connected || node.types[TYPE_META_ROUTE]?.last_acked?.version !== version) return false;
    n++;
  }
  return n === nodes.size;
}

// ---- config ---------------------------------------------------------------------------------------------------------

function serviceYaml(listen: number, v1: number, v2: number): string {
  return [
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'demo', namespace: 'default' },
      spec: {
        hosts: [HOST],
        ports: [{ number: listen, name: 'tcp-metaprotocol-dubbo', protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: [
          { address: '127.0.0.1', ports: { 'tcp-metaprotocol-dubbo': v1 }, labels: { version: 'v1' } },
          { address: '127.0.0.1', ports: { 'tcp-metaprotocol-dubbo': v2 }, labels: { version: 'v2' } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: 'demo', namespace: 'default' },
      spec: { host: HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    },
  ]
    .map((d) => YAML.stringify(d))
    .join('---\n');
}

function routerYaml(to: 'v1' | 'v2'): string {
  return YAML.stringify({
    apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
    kind: 'MetaRouter',
    metadata: { name: 'demo', namespace: 'default' },
    spec: { hosts: [HOST], routes: [{ name: 'all', route: [{ destination: { host: HOST, subset: to } }] }] },
  });
}

function writeAtomically(dir: string, name: string, text: string): void {
  const tmp = path.join(dir, `.${name}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path.join(dir, name));
}

// ---- lightweight clients --------------------------------------------------------------------------------------------

/**
 * What `Proxy.apply` checks before it touches a socket — every RouteConfiguration compiled, every listener's network
 * filter prepared (codec lookup, MetaProtocol filter chain, routes) — and nothing bound.
 */
class ProxyDouble {
  readonly metrics = new Metrics();
  private snapshot: ResourceSnapshot | undefined;
  private readonly codecs = createRegistry();
  private readonly filters = createFilterRegistry();
  private readonly filterDeps = filterDeps(new Metrics().registry);
  /** When each snapshot version was applied (ms since the epoch). */
  readonly appliedAt = new Map<string, number>();
  lastRouteVersion = '';

  get version(): string | undefined {
    return this.snapshot?.version;
  }

  async apply(snapshot: ResourceSnapshot): Promise<void> {
    for (const r of snapshot.routes) RouteTable.compile(r);
    for (const l of snapshot.listeners) {
      const filters = l.filter_chains?.[0]?.filters ?? [];
      const f = filters.find((x) => networkFilters.has(x.name));
      if (!f) throw new Error(`listener ${l.name}: no supported network filter`);
      networkFilters.get(f.name)!.prepare(l.name, f.typed_config, { codecs: this.codecs, filters: this.filters, filterDeps: this.filterDeps });
    }
    this.snapshot = snapshot;
    const rds = /RDS:([^,]*)/.exec(snapshot.version)?.[1] ?? '';
    this.lastRouteVersion = rds;
    this.appliedAt.set(rds, Date.now());
  }
}

interface Lite {
  client: XdsClient;
  proxy: ProxyDouble;
}

// ---- statistics -----------------------------------------------------------------------------------------------------

function stats(xs: number[]): { min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
  return { min: s[0]!, median, max: s[s.length - 1]! };
}

const fmt = (x: { min: number; median: number; max: number } | undefined): string =>
  x ? `${x.min.toFixed(0)} / ${x.median.toFixed(0)} / ${x.max.toFixed(0)}` : '—';

// ---- main -----------------------------------------------------------------------------------------------------------

interface RunResult {
  writeToAcked: number;
  writeToServed: number;
  servedToAcked: number;
  /** Last in-process client's apply, from the write (undefined without in-process clients). */
  writeToApplied?: number;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  setLogLevel('warn'); // the in-process clients: one 'config applied' line each per run otherwise
  const deadline = setTimeout(() => {
    process.stderr.write(`propagation bench: gave up after ${BENCH_DEADLINE_MS / 1000} s\n`);
    process.exit(1); // the exit hook kills the children
  }, BENCH_DEADLINE_MS);
  deadline.unref();

  const dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-xds-bench-'));
  const [listen, v1, v2, controlAdminPort, proxyAdminPort] = await freePorts(5);
  const xds = `unix:${path.join(dir, 'xds.sock')}`;
  const mode = args.mode ?? (netnsAvailable() ? 'real' : 'inprocess');
  if (mode === 'real' && !netnsAvailable()) throw new Error('--mode real needs `unshare -n` (run as root)');
  const controlAdmin = `127.0.0.1:${controlAdminPort}`;
  writeFileSync(path.join(dir, 'service.yaml'), serviceYaml(listen!, v1!, v2!));
  let to: 'v1' | 'v2' = 'v1';
  writeFileSync(path.join(dir, 'router.yaml'), routerYaml(to));

  const lites: Lite[] = [];
  const reals: Cli[] = [];
  let control: Cli | undefined;
  let proxy: Cli | undefined;
  const results = new Map<number, RunResult[]>();
  try {
    control = spawnCli(['control', '--config', dir, '--xds-listen', xds, '--admin', controlAdmin, '--log-level', 'warn']);
    await until('the control plane to be ready', 15_000, async () => (await get(controlAdmin, '/ready')).status === 200);
    proxy = spawnCli(['proxy', '--xds', xds, '--node', 'bench-proxy', '--admin', `127.0.0.1:${proxyAdminPort}`, '--log-level', 'warn']);
    const nodes = new Set(['bench-proxy']);

    for (const n of [...args.clients].sort((a, b) => a - b)) {
      // 1 client: the real proxy alone; n > 1: n more, real proxies or in-process clients.
      const wantLite = n === 1 || mode === 'real' ? 0 : n;
      const wantReal = n === 1 || mode === 'inprocess' ? 0 : n;
      while (reals.length < wantReal) {
        const id = `bench-proxy-${reals.length + 1}`;
        reals.push(spawnCli(['proxy', '--xds', xds, '--node', id, '--admin', 'off', '--log-level', 'warn'], true));
        nodes.add(id);
      }
      while (lites.length < wantLite) {
        const proxyDouble = new ProxyDouble();
        const id = `bench-lite-${lites.length + 1}`;
        const client = new XdsClient({ server: xds, proxy: proxyDouble as unknown as Proxy, nodeId: id });
        client.start();
        lites.push({ client, proxy: proxyDouble });
        nodes.add(id);
      }
      const served0 = (await syncz(controlAdmin)).types[TYPE_META_ROUTE]!;
      await until(`${nodes.size} nodes to ACK the first config`, 90_000, async () => allAcked(await syncz(controlAdmin), nodes, served0));
      const label = n === 1 ? '1 (the real proxy)' : mode === 'real' ? `${n} + 1 real proxies (${n} in network namespaces)` : `${n} in-process + 1 real proxy`;
      process.stdout.write(`${label}: ${nodes.size} node(s) in sync; ${args.runs} runs\n`);
      const runs: RunResult[] = [];
      for (let r = 0; r < args.runs; r++) {
        // A random pause: the control plane polls the files every 200 ms, so evenly spaced runs would all hit the
        // same phase of that poll.
        await sleep(300 + Math.random() * 400);
        const before = (await syncz(controlAdmin)).types[TYPE_META_ROUTE];
        to = to === 'v1' ? 'v2' : 'v1';
        const t0 = Date.now();
        writeAtomically(dir, 'router.yaml', routerYaml(to));
        let servedAt: number | undefined;
        let version: string | undefined;
        for (;;) {
          const s = await syncz(controlAdmin);
          const now = Date.now();
          const v = s.types[TYPE_META_ROUTE];
          if (servedAt === undefined && v !== before) {
            servedAt = now;
            version = v;
          }
          if (version !== undefined && allAcked(s, nodes, version)) {
            const res: RunResult = { writeToAcked: now - t0, writeToServed: servedAt! - t0, servedToAcked: now - servedAt! };
            if (wantLite > 0) {
              const applied = lites.map((l) => l.proxy.appliedAt.get(version!));
              if (applied.every((x) => x !== undefined)) res.writeToApplied = Math.max(...(applied as number[])) - t0;
            }
            runs.push(res);
            process.stdout.write(
              `  run ${r + 1}: write→ACKed ${res.writeToAcked} ms (served after ${res.writeToServed} ms, then ${res.servedToAcked} ms)` +
                (res.writeToApplied !== undefined ? `, last in-process apply ${res.writeToApplied} ms\n` : '\n'),
            );
            break;
          }
          if (now - t0 > RUN_TIMEOUT_MS) throw new Error(`run ${r + 1} with ${nodes.size} nodes: not every node ACKed within ${RUN_TIMEOUT_MS} ms`);
          await sleep(args.pollMs);
        }
      }
      results.set(n, runs);
    }
  } catch (err) {
    process.stderr.write(`propagation bench failed: ${(err as Error).message}\n`);
    if (control) process.stderr.write(`--- control:\n${control.output()}\n`);
    if (proxy) process.stderr.write(`--- proxy:\n${proxy.output()}\n`);
    const quiet = reals.find((p) => p.output() !== '');
    if (quiet) process.stderr.write(`--- one of the namespaced proxies:\n${quiet.output()}\n`);
    process.exitCode = 1;
  } finally {
    await Promise.all(lites.map((l) => l.client.close()));
    await Promise.all(reals.map((p) => p.stop()));
    await proxy?.stop();
    await control?.stop();
    agent.destroy();
    rmSync(dir, { recursive: true, force: true });
  }

  const table: Array<Record<string, string>> = [];
  const out: Record<string, unknown> = { date: new Date().toISOString(), mode, node: process.version, cpus: os.cpus().length, runs: args.runs, poll_ms: args.pollMs, results: {} };
  for (const [n, runs] of results) {
    const row: Record<string, string> = {
      clients: n === 1 ? '1 (real proxy)' : mode === 'real' ? `${n} + 1 real proxies` : `${n} in-process + 1 real proxy`,
      'write→ACKed ms (min/med/max)': fmt(stats(runs.map((r) => r.writeToAcked))),
      'write→served ms': fmt(stats(runs.map((r) => r.writeToServed))),
      'served→ACKed ms': fmt(stats(runs.map((r) => r.servedToAcked))),
    };
    if (mode === 'inprocess') {
      row['write→applied (in-process) ms'] = runs.every((r) => r.writeToApplied !== undefined) && n > 1 ? fmt(stats(runs.map((r) => r.writeToApplied!))) : '—';
    }
    table.push(row);
    (out.results as Record<string, unknown>)[String(n)] = runs;
  }
  if (table.length > 0) {
    const cols = Object.keys(table[0]!);
    process.stdout.write(`\n| ${cols.join(' | ')} |\n|${cols.map(() => '---').join('|')}|\n`);
    for (const row of table) process.stdout.write(`| ${cols.map((c) => row[c]).join(' | ')} |\n`);
  }
  if (args.json) writeFileSync(args.json, JSON.stringify(out, null, 2) + '\n');
  clearTimeout(deadline);
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
