/**
 * The processes a scenario measures through: Waypost (`node dist/src/cli.js proxy --config DIR`), haproxy in TCP
 * mode, twemproxy (nutcracker), and redis-server backends. All bind 127.0.0.1 only; configs go to temp dirs that
 * `stop()` removes.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cliPath, freePorts, httpGet, projectRoot } from '../../examples/dubbo/harness.js';
import { haveCommand, nofileLimit, sleep, startChild, tempDir, waitPort, which, type Child } from './procs.js';

export interface Target {
  /** Row label: direct, haproxy, nutcracker, waypost … */
  name: string;
  /** Where clients connect. */
  address: string;
  /** The proxy process (absent for direct). */
  child?: Child;
  stop(): Promise<void>;
}

// ---- haproxy --------------------------------------------------------------------------------------------------

/** `haproxy -f cfg -db` in TCP mode, one thread, forwarding 127.0.0.1:<free> to `upstream` (host:port). */
export async function startHaproxy(upstream: string, opts: { maxconn?: number } = {}): Promise<Target & { child: Child }> {
  const bin = which('haproxy');
  const [port] = await freePorts(1);
  const tmp = tempDir('waypost-bench-haproxy-');
  const maxconn = opts.maxconn ?? 4096;
  const cfg = `global
  nbthread 1
  maxconn ${maxconn}
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
listen bench
  bind 127.0.0.1:${port}
  maxconn ${maxconn}
  server upstream ${upstream}
`;
  const file = path.join(tmp.dir, 'haproxy.cfg');
  writeFileSync(file, cfg);
  const child = startChild('haproxy', bin, ['-f', file, '-db']);
  try {
    await waitPort(port!, 10_000, child);
  } catch (e) {
    await child.stop(500);
    tmp.remove();
    throw e;
  }
  return {
    name: 'haproxy',
    address: `127.0.0.1:${port}`,
    child,
    stop: async () => {
      await child.stop(2000);
      tmp.remove();
    },
  };
}

// ---- nutcracker -------------------------------------------------------------------------------------------------

/**
 * nutcracker (twemproxy) with one pool per entry of `pools` (name → redis ports), each listening on a free port;
 * ketama over fnv1a_64, one server connection each, as a production twemproxy for Redis is usually set up.
 */
export async function startNutcracker(pools: Record<string, number[]>): Promise<{ child: Child; addresses: Record<string, string>; stop(): Promise<void> }> {
  const bin = which('nutcracker');
  const names = Object.keys(pools);
  const ports = await freePorts(names.length + 1);
  const tmp = tempDir('waypost-bench-nutcracker-');
  const addresses: Record<string, string> = {};
  const yaml = names
    .map((name, i) => {
      addresses[name] = `127.0.0.1:${ports[i]}`;
      return `${name}:
  listen: 127.0.0.1:${ports[i]}
  hash: fnv1a_64
  distribution: ketama
  redis: true
  auto_eject_hosts: false
  preconnect: true
  server_connections: 1
  servers:
${pools[name]!.map((p, j) => `    - 127.0.0.1:${p}:1 s${j}`).join('\n')}
`;
    })
    .join('');
  const file = path.join(tmp.dir, 'nutcracker.yml');
  writeFileSync(file, yaml);
  const statsPort = ports[names.length]!;
  const child = startChild('nutcracker', bin, ['-c', file, '-s', String(statsPort), '-a', '127.0.0.1', '-v', '4']);
  try {
    for (const name of names) await waitPort(Number(addresses[name]!.split(':')[1]), 10_000, child);
  } catch (e) {
    await child.stop(500);
    tmp.remove();
    throw e;
  }
  return {
    child,
    addresses,
    stop: async () => {
      await child.stop(2000);
      tmp.remove();
    },
  };
}

// ---- redis-server -------------------------------------------------------------------------------------------------

export async function startRedisServer(): Promise<{ port: number; child: Child; stop(): Promise<void> }> {
  const bin = which('redis-server');
  const [port] = await freePorts(1);
  const child = startChild('redis-server', bin, [
    '--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'yes',
  ]);
  await waitPort(port!, 10_000, child);
  return { port: port!, child, stop: () => child.stop(2000, 'SIGKILL') };
}

// ---- Waypost --------------------------------------------------------------------------------------------------------

/** Whether this build's `waypost proxy` takes `--workers N`. */
export function waypostHasWorkers(): boolean {
  const cli = cliPath();
  if (!existsSync(cli)) return false;
  for (const args of [['proxy', '--help'], ['--help']]) {
    try {
      const out = execFileSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
      if (/--workers\b/.test(out)) return true;
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string };
      if (/--workers\b/.test(`${err.stdout ?? ''}${err.stderr ?? ''}`)) return true;
    }
  }
  return false;
}

export interface WaypostOptions {
  /** File name → YAML. */
  config: Record<string, string>;
  /** The ports the config listens on (waited for after /ready). */
  listenPorts: number[];
  workers?: number;
  /**
   * Write a V8 CPU profile of the proxy here (`node --cpu-prof --cpu-prof-dir DIR`). Node flags for the proxy
   * process come from `$WAYPOST_BENCH_NODE_ARGS` (the bench's `--proxy-node-args`).
   */
  profileDir?: string;
  /** Open files the proxy needs (raised with prlimit when the inherited limit is lower). */
  nofile?: number;
  label?: string;
}

export interface WaypostTarget extends Target {
  child: Child;
  adminAddress: string;
  /** What happened to the open-file limit: inherited, raised with prlimit, or capped. */
  nofileNote: string;
  /** The .cpuprofile files written once stopped (with profileDir). */
  profiles(): string[];
}

export async function startWaypost(opts: WaypostOptions): Promise<WaypostTarget> {
  const cli = cliPath();
  if (!existsSync(cli)) throw new Error(`the proxy CLI is not built: ${cli} is missing (run npx tsc -p .)`);
  const tmp = tempDir('waypost-bench-config-');
  for (const [name, text] of Object.entries(opts.config)) writeFileSync(path.join(tmp.dir, name), text);
  const [adminPort] = await freePorts(1);
  const adminAddress = `127.0.0.1:${adminPort}`;
  const nodeArgs: string[] = (process.env.WAYPOST_BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  if (opts.profileDir) nodeArgs.push('--cpu-prof', '--cpu-prof-dir', opts.profileDir);
  const args = [...nodeArgs, cli, 'proxy', '--config', tmp.dir, '--admin', adminAddress, '--log-level', 'warn'];
  if (opts.workers !== undefined) args.push('--workers', String(opts.workers));
  let cmd = process.execPath;
  let nofileNote = '';
  if (opts.nofile !== undefined) {
    const own = nofileLimit();
    if (own.soft >= opts.nofile) nofileNote = `open-file limit ${own.soft} (inherited)`;
    else if (haveCommand('prlimit')) {
      const want = opts.nofile;
      args.unshift('--nofile=' + `${want}:${want}`, '--', process.execPath);
      cmd = which('prlimit');
      nofileNote = `open-file limit raised to ${want} with prlimit`;
    } else nofileNote = `open-file limit ${own.soft} (prlimit missing; could not raise)`;
  }
  const child = startChild(opts.label ?? 'waypost', cmd, args);
  const stopAll = async (): Promise<void> => {
    await child.stop(5000);
    tmp.remove();
  };
  try {
    const start = Date.now();
    let last = '';
    for (;;) {
      if (!child.isAlive()) throw new Error(`waypost exited before it was ready: ${child.command}\n${child.output().split('\n').slice(-15).join('\n')}`);
      try {
        const r = await httpGet(adminAddress, '/ready', 1000);
        if (r.status === 200) break;
        last = `GET /ready ${r.status} ${r.body.slice(0, 200)}`;
      } catch (e) {
        last = (e as Error).message;
      }
      if (Date.now() - start > 20_000) throw new Error(`waypost not ready after 20s (${last}): ${child.command}\n${child.output().split('\n').slice(-15).join('\n')}`);
      await sleep(50);
    }
    for (const p of opts.listenPorts) await waitPort(p, 10_000, child);
    if (nofileNote.includes('prlimit')) nofileNote = `open-file limit ${nofileLimit(child.pid).soft} (raised with prlimit)`;
  } catch (e) {
    await stopAll();
    throw e;
  }
  return {
    name: opts.label ?? 'waypost',
    address: `127.0.0.1:${opts.listenPorts[0]}`,
    child,
    adminAddress,
    nofileNote,
    stop: stopAll,
    profiles: () => (opts.profileDir && existsSync(opts.profileDir) ? readdirSync(opts.profileDir).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(opts.profileDir!, f)) : []),
  };
}

/** Sum of the admin's `/stats/prometheus` samples whose line starts with `metric`. */
export async function adminMetric(adminAddress: string, metric: string): Promise<number> {
  const r = await httpGet(adminAddress, '/stats/prometheus', 2000);
  let sum = 0;
  for (const line of r.body.split('\n')) {
    if (line.startsWith(metric) && (line[metric.length] === ' ' || line[metric.length] === '{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Spawns `node dist/<script>` as a child (a backend of the bench). */
export function startNodeScript(name: string, script: string, args: string[]): Child {
  const file = path.join(projectRoot(), 'dist', script);
  if (!existsSync(file)) throw new Error(`${file} is not built (run npx tsc -p .)`);
  return startChild(name, process.execPath, [file, ...args]);
}
