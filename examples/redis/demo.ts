/**
 * The Waypost Redis demo, end to end: `node dist/examples/redis/demo.js [--auto-ports] [--verbose]`.
 *
 * 1. starts two redis-servers on loopback, without persistence: store A on 127.0.0.1:6391, store B on :6392;
 * 2. spawns `node dist/src/cli.js proxy --config examples/redis/config --admin 127.0.0.1:<free port>` (clients
 *    connect to 127.0.0.1:6380) and waits for the admin's `GET /ready`;
 * 3. through the proxy, with `redis-cli`: SET user:1 and order:1, GETs them, MSET user:2 and order:2 (split across
 *    the stores), MGET all four back (reassembled in key order), and FLUSHALL (never forwarded: an administrative command);
 * 4. reads each store directly with `redis-cli` to show where each key landed: user:* on A, order:* on B, and
 *    B's mirror copies of the user:* writes (but no mirrored reads);
 * 5. prints the results and exits 0 when every check holds, or says what went wrong and exits 1. Servers and proxy
 *    are always stopped.
 *
 * Needs redis-server and redis-cli (`sudo scripts/install-peers.sh redis-server redis-tools`).
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
  sleep,
  spawnProxy,
  waitReady,
  writeTempConfig,
  type ProxyProcess,
} from '../dubbo/harness.js';

const run = promisify(execFile);
const INSTALL_HINT = 'install the peers with: sudo scripts/install-peers.sh redis-server redis-tools';
const STORE_A = 'store-a.redis.demo';
const STORE_B = 'store-b.redis.demo';
const FIXED_PORTS: RedisDemoPorts = { listen: 6380, listenB: 6381, a: 6391, b: 6392 };

export interface RedisDemoPorts {
  /** The proxy's listener for store A's service: where the demo's client connects (prefix routes apply here). */
  listen: number;
  /** The proxy's listener for store B's service (every Redis ServiceEntry gets one; the demo does not use it). */
  listenB: number;
  /** redis-server store A. */
  a: number;
  /** redis-server store B. */
  b: number;
}

export interface RedisDemoOptions {
  /** 'fixed' (default): 6380/6381/6391/6392 and examples/redis/config; 'auto': free ports, generated config. */
  ports?: 'fixed' | 'auto';
  verbose?: boolean;
  print?: (line: string) => void;
}

export interface RedisDemoReport {
  ok: boolean;
  problems: string[];
  ports: RedisDemoPorts;
  /** Each command sent through the proxy, what it should answer and what redis-cli printed. */
  commands: Array<{ command: string[]; expected: string; got: string }>;
  /** The value each demo key has on each store, read directly (null: the store does not have the key). */
  placement: Record<string, { a: string | null; b: string | null }>;
  /** GET calls store B served (its INFO commandstats, counted from before the first command through the proxy). */
  storeBGets: number;
}

/** Where each key belongs after the demo: user:* on A (and mirrored to B), order:* on B only. */
const EXPECTED_PLACEMENT: Record<string, { a: string | null; b: string | null }> = {
  'user:1': { a: 'alice', b: 'alice' },
  'user:2': { a: 'bob', b: 'bob' },
  'order:1': { a: null, b: 'book' },
  'order:2': { a: null, b: 'pen' },
};

function dir(): string {
  return path.join(projectRoot(), 'examples', 'redis');
}

/** The demo config with its ports replaced (comments kept). */
export function renderRedisDemoConfig(ports: RedisDemoPorts): string {
  const docs = YAML.parseAllDocuments(readFileSync(path.join(dir(), 'config', 'demo.yaml'), 'utf8'));
  for (const doc of docs) {
    if (doc.get('kind') !== 'ServiceEntry') continue;
    const host = doc.getIn(['spec', 'hosts', 0]);
    const [listen, server] = host === STORE_A ? [ports.listen, ports.a] : host === STORE_B ? [ports.listenB, ports.b] : [];
    if (listen === undefined) throw new Error(`examples/redis/config/demo.yaml: unexpected ServiceEntry host ${String(host)}`);
    doc.setIn(['spec', 'ports', 0, 'number'], listen);
    doc.setIn(['spec', 'endpoints', 0, 'ports', 'tcp-redis'], server);
  }
  return docs.map((d) => d.toString().replace(/^---\n/, '')).join('---\n');
}

/** Runs `redis-cli -p PORT ARGS…` and returns its output lines (a nil prints as an empty line). */
async function redisCli(port: number, args: string[]): Promise<string[]> {
  try {
    const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 15_000 });
    return stdout.replace(/\n$/, '').split('\n');
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new Error(`cannot run redis-cli; ${INSTALL_HINT}`);
    throw new Error(`redis-cli -p ${port} ${args.join(' ')} failed: ${(err.stderr || err.message).trim()}`);
  }
}

/** redis-servers still running, killed if this process exits early (the watchdog) so none is left behind. */
const liveServers = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of liveServers) c.kill('SIGKILL');
});

interface RedisProcess {
  child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts redis-server on 127.0.0.1:port without persistence; resolves once it answers PING. */
async function startRedisServer(port: number, dataDir: string): Promise<RedisProcess> {
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dataDir];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  liveServers.add(child);
  child.once('exit', () => liveServers.delete(child));
  let output = '';
  const collect = (d: Buffer): void => {
    output = (output + d.toString()).slice(-4000);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  let failure: string | undefined;
  child.once('error', (e) => (failure = `cannot run redis-server: ${e.message}; ${INSTALL_HINT}`));
  child.once('exit', (code, signal) => (failure ??= `redis-server on port ${port} exited (${code ?? signal}): ${output.trim().split('\n').slice(-3).join(' ')}`));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null || failure?.startsWith('cannot run')) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  };
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (failure) throw new Error(failure);
    try {
      if ((await redisCli(port, ['PING']))[0] === 'PONG') return { child, stop };
    } catch (e) {
      if ((e as Error).message.startsWith('cannot run')) {
        await stop();
        throw e;
      }
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server did not answer PING on 127.0.0.1:${port} within 10s`);
    }
    await sleep(100);
  }
}

/** `calls` of one command in a server's INFO commandstats (0 when it has not run). */
async function commandCalls(port: number, command: string): Promise<number> {
  const lines = await redisCli(port, ['INFO', 'commandstats']);
  const line = lines.find((l) => l.startsWith(`cmdstat_${command}:`));
  return line ? Number(/calls=(\d+)/.exec(line)?.[1] ?? 0) : 0;
}

const show = (v: string | null): string => v ?? '-';

export async function runRedisDemo(opts: RedisDemoOptions = {}): Promise<RedisDemoReport> {
  const print = opts.print ?? ((l: string) => console.log(l));
  let ports = FIXED_PORTS;
  if (opts.ports === 'auto') {
    const [listen, listenB, a, b] = await freePorts(4);
    ports = { listen: listen!, listenB: listenB!, a: a!, b: b! };
  }
  const problems: string[] = [];
  const report: RedisDemoReport = { ok: false, problems, ports, commands: [], placement: {}, storeBGets: -1 };
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'waypost-redis-demo-'));
  const servers: RedisProcess[] = [];
  let proxy: ProxyProcess | undefined;
  let temp: { dir: string; remove(): void } | undefined;
  try {
    if (opts.ports !== 'auto') {
      for (const p of [ports.listen, ports.listenB, ports.a, ports.b]) {
        if (await isListening('127.0.0.1', p)) throw new Error(`something already listens on 127.0.0.1:${p} (run with --auto-ports to use free ports)`);
      }
    }
    print(`1. Starting redis-server store A on 127.0.0.1:${ports.a} and store B on 127.0.0.1:${ports.b}`);
    servers.push(await startRedisServer(ports.a, dataDir));
    servers.push(await startRedisServer(ports.b, dataDir));

    let configDir = path.join(dir(), 'config');
    if (opts.ports === 'auto') {
      temp = writeTempConfig({ 'demo.yaml': renderRedisDemoConfig(ports) }, 'waypost-redis-demo-');
      configDir = temp.dir;
    }
    print('2. Starting the Waypost proxy');
    proxy = await spawnProxy({ configDir, echo: opts.verbose ?? false });
    print(`   ${proxy.command}  (config ${displayPath(configDir)})`);
    await waitReady(proxy);
    print(`   ready; Redis clients connect to 127.0.0.1:${ports.listen}`);

    // Counted from here, so store B's GETs are the proxy's alone: one for order:1, none mirrored for user:1.
    await redisCli(ports.b, ['CONFIG', 'RESETSTAT']);

    print(`3. Through the proxy: redis-cli -p ${ports.listen} …`);
    const steps: Array<[string[], string, string]> = [
      [['SET', 'user:1', 'alice'], 'OK', 'user: → store A, mirrored to B'],
      [['SET', 'order:1', 'book'], 'OK', 'order: → store B'],
      [['GET', 'user:1'], 'alice', 'a read: not mirrored'],
      [['GET', 'order:1'], 'book', ''],
      [['MSET', 'user:2', 'bob', 'order:2', 'pen'], 'OK', 'split: one part per store'],
      [['MGET', 'user:1', 'order:1', 'user:2', 'order:2'], 'alice book bob pen', 'reassembled in key order'],
      [['FLUSHALL'], "ERR unsupported command 'flushall': it is an administrative command the proxy does not forward", 'administrative commands never reach the stores'],
    ];
    const width = Math.max(...steps.map(([c]) => c.join(' ').length));
    for (const [command, expected, why] of steps) {
      // redis-cli ends an error reply with an empty line; no expected answer ends with a nil.
      const got = (await redisCli(ports.listen, command)).join(' ').trimEnd();
      report.commands.push({ command, expected, got });
      const mark = got === expected ? '' : `   ✗ expected "${expected}"`;
      print(`   ${command.join(' ').padEnd(width)}  → ${got}${mark}${why && !mark ? `   (${why})` : ''}`);
      if (got !== expected) problems.push(`${command.join(' ')} through the proxy answered "${got}", expected "${expected}"`);
    }

    // Mirror copies are sent alongside the primary command, not before its reply, so they may land a moment later.
    const keys = Object.keys(EXPECTED_PLACEMENT);
    const deadline = Date.now() + 5000;
    while ((await redisCli(ports.b, ['EXISTS', 'user:1', 'user:2']))[0] !== '2' && Date.now() < deadline) await sleep(50);
    report.storeBGets = await commandCalls(ports.b, 'get');
    const onA = await redisCli(ports.a, ['MGET', ...keys]);
    const onB = await redisCli(ports.b, ['MGET', ...keys]);

    print(`4. What each store holds: redis-cli -p ${ports.a} / -p ${ports.b} MGET ${keys.join(' ')}`);
    print(`   ${'key'.padEnd(9)}${`store A (${ports.a})`.padEnd(18)}store B (${ports.b})`);
    keys.forEach((key, i) => {
      // redis-cli prints a nil as an empty line; no demo value is empty.
      const a = onA[i] ? onA[i]! : null;
      const b = onB[i] ? onB[i]! : null;
      report.placement[key] = { a, b };
      const want = EXPECTED_PLACEMENT[key]!;
      const note = key.startsWith('user:') && b !== null ? ' (mirror copy)' : '';
      print(`   ${key.padEnd(9)}${show(a).padEnd(18)}${show(b)}${note}`);
      if (a !== want.a || b !== want.b) {
        problems.push(`${key}: store A has ${show(a)}, store B has ${show(b)}; expected A ${show(want.a)}, B ${show(want.b)}`);
      }
    });
    print(
      report.storeBGets === 1
        ? '   GETs store B served: 1 (order:1; the GET of user:1 was not mirrored, as excludeReadCommands says)'
        : `   GETs store B served: ${report.storeBGets}   ✗ expected 1 (order:1 only)`,
    );
    if (report.storeBGets !== 1) problems.push(`store B served ${report.storeBGets} GETs, expected 1 (order:1; reads of user: keys must not be mirrored)`);
  } catch (e) {
    problems.push((e as Error).message);
  } finally {
    await proxy?.stop();
    await Promise.all(servers.map((s) => s.stop()));
    temp?.remove();
    rmSync(dataDir, { recursive: true, force: true });
  }
  report.ok = problems.length === 0;
  if (report.ok) print('Demo passed: keys were routed by prefix, MSET/MGET split across the stores, user: writes mirrored.');
  else for (const p of ['Demo failed:', ...problems.map((p) => `  - ${p}`)]) print(p);
  return report;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    console.log('usage: node dist/examples/redis/demo.js [--auto-ports] [--verbose]');
    return;
  }
  const unknown = args.filter((a) => a !== '--auto-ports' && a !== '--verbose');
  if (unknown.length > 0) {
    console.error(`unknown argument ${unknown[0]}; usage: node dist/examples/redis/demo.js [--auto-ports] [--verbose]`);
    process.exit(2);
  }
  const auto = args.includes('--auto-ports') || process.env.WAYPOST_DEMO_PORTS === 'auto';
  const watchdog = setTimeout(() => {
    console.error('Demo failed: it did not finish within 120s.');
    process.exit(1);
  }, 120_000);
  watchdog.unref();
  const report = await runRedisDemo({ ports: auto ? 'auto' : 'fixed', verbose: args.includes('--verbose') });
  clearTimeout(watchdog);
  process.exit(report.ok ? 0 : 1);
}

if (isMainModule(import.meta.url)) void main();
