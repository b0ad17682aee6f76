/**
 * Syscalls per request of each proxy (`strace -c -f -p PID` attached while a load runs): a figure that, unlike
 * req/s, does not move with what else the machine runs, and that says whether writes are batched.
 *
 *   node dist/bench/syscalls.js [--n 50000] [--duration 2] [--only redis,dubbo,thrift]
 *
 * Redis: `redis-benchmark -t get -c 50 -P 1|16 -n N` through nutcracker, haproxy and Waypost (one route).
 * Dubbo and Thrift: the closed-loop generator (4 connections x 16 in flight) through haproxy and Waypost.
 * Throughput under strace is meaningless (strace slows every syscall); only the counts are reported. Needs strace
 * and permission to ptrace the proxies (root, or ptrace_scope 0).
 */
import YAML from 'yaml';
import { freePorts, isMainModule, renderSingleEndpointConfig } from '../examples/dubbo/harness.js';
import { runLoad } from './dubbo/load.js';
import { runEngine } from './lib/load.js';
import { killAll, runTool, sleep, startChild, which } from './lib/procs.js';
import { table } from './lib/report.js';
import { startHaproxy, startNodeScript, startNutcracker, startRedisServer, startWaypost } from './lib/targets.js';
import { startDubboProvider } from './scenarios/dubbo.js';
import { thriftHelloProtocol } from './thrift/wire.js';

const TRACED = ['read', 'readv', 'recvfrom', 'recvmsg', 'write', 'writev', 'sendto', 'sendmsg', 'epoll_wait', 'epoll_pwait'];

interface Count {
  scenario: string;
  test: string;
  target: string;
  requests: number;
  calls: Record<string, number>;
}

/** Attaches strace to `pid` (all threads), runs `work`, detaches; resolves with the calls per syscall. */
async function traced(pid: number, work: () => Promise<number>): Promise<{ requests: number; calls: Record<string, number> }> {
  const st = startChild('strace', which('strace'), ['-c', '-f', '-e', `trace=${TRACED.join(',')}`, '-p', String(pid)]);
  await st.waitFor(/attached/, 10_000);
  await sleep(200);
  let requests: number;
  try {
    requests = await work();
  } finally {
    await st.stop(5000, 'SIGINT');
  }
  const calls: Record<string, number> = {};
  for (const line of st.output().split('\n')) {
    const cells = line.trim().split(/\s+/);
    const name = cells[cells.length - 1]!;
    if (!TRACED.includes(name)) continue;
    // % time, seconds, usecs/call, calls, [errors], syscall
    calls[name] = Number(cells[3]);
  }
  return { requests, calls };
}

function redisConfig(listen: number, server: number): string {
  return YAML.stringify({
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'ServiceEntry',
    metadata: { name: 'cache', namespace: 'bench' },
    spec: {
      hosts: ['cache.bench.local'],
      ports: [{ number: listen, name: 'tcp-redis', protocol: 'TCP' }],
      resolution: 'STATIC',
      endpoints: [{ address: '127.0.0.1', ports: { 'tcp-redis': server } }],
    },
  });
}

function thriftConfig(listen: number, server: number): string {
  const host = 'bench.thrift.local';
  const port = 'tcp-metaprotocol-thrift';
  return [
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'thrift', namespace: 'bench' },
      spec: { hosts: [host], ports: [{ number: listen, name: port, protocol: 'TCP' }], resolution: 'STATIC', endpoints: [{ address: '127.0.0.1', ports: { [port]: server } }] },
    },
    { apiVersion: 'metaprotocol.aeraki.io/v1alpha1', kind: 'MetaRouter', metadata: { name: 'thrift', namespace: 'bench' }, spec: { hosts: [host], routes: [{ name: 'all', route: [{ destination: { host } }] }] } },
  ]
    .map((d) => YAML.stringify(d))
    .join('---\n');
}

async function redis(n: number, out: Count[]): Promise<void> {
  const stops: Array<() => Promise<void>> = [];
  try {
    const server = await startRedisServer();
    stops.push(server.stop);
    const [listen] = await freePorts(1);
    const wp = await startWaypost({ config: { 'r.yaml': redisConfig(listen!, server.port) }, listenPorts: [listen!] });
    stops.push(() => wp.stop());
    const nut = await startNutcracker({ single: [server.port] });
    stops.push(nut.stop);
    const ha = await startHaproxy(`127.0.0.1:${server.port}`);
    stops.push(ha.stop);
    const bench = which('redis-benchmark');
    for (const p of [1, 16]) {
      for (const [target, pid, address] of [
        ['nutcracker', nut.child.pid, nut.addresses.single!],
        ['haproxy', ha.child.pid, ha.address],
        ['waypost', wp.child.pid, wp.address],
      ] as const) {
        const r = await traced(pid, async () => {
          const res = await runTool('redis-benchmark', bench, ['-h', '127.0.0.1', '-p', address.split(':')[1]!, '-c', '50', '-n', String(n), '-P', String(p), '-t', 'get', '-q', '--csv'], 300_000);
          if (res.code !== 0) throw new Error(`redis-benchmark through ${target}: ${res.stderr}`);
          return n;
        });
        out.push({ scenario: 'redis', test: `GET -P ${p} -c 50`, target, ...r });
      }
    }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  }
}

async function rpc(kind: 'dubbo' | 'thrift', durationSec: number, out: Count[]): Promise<void> {
  const stops: Array<() => Promise<void>> = [];
  try {
    let backend: { address: string; stop(): Promise<void> };
    if (kind === 'dubbo') backend = await startDubboProvider();
    else {
      const [port] = await freePorts(1);
      const child = startNodeScript('thrift-server', 'bench/thrift/server.js', ['--impl', 'raw', '--port', String(port)]);
      const m = await child.waitFor(/listening on (\S+)/, 10_000);
      backend = { address: m[1]!, stop: () => child.stop(2000) };
    }
    stops.push(backend.stop);
    const backendPort = Number(backend.address.split(':')[1]);
    const [listen] = await freePorts(1);
    const config = kind === 'dubbo' ? renderSingleEndpointConfig({ listen: listen!, provider: backendPort }) : thriftConfig(listen!, backendPort);
    const wp = await startWaypost({ config: { 'c.yaml': config }, listenPorts: [listen!] });
    stops.push(() => wp.stop());
    const ha = await startHaproxy(backend.address);
    stops.push(ha.stop);
    for (const [target, pid, address] of [
      ['haproxy', ha.child.pid, ha.address],
      ['waypost', wp.child.pid, wp.address],
    ] as const) {
      const load = { address, connections: 4, inflight: 16, durationSec, warmupSec: 0 };
      const r = await traced(pid, async () => (kind === 'dubbo' ? await runLoad(load) : await runEngine({ ...load, protocol: thriftHelloProtocol() })).answeredTotal);
      out.push({ scenario: kind, test: 'closed 4x16', target, ...r });
    }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  }
}

export function formatCounts(counts: Count[], markdown = false): string {
  const per = (c: Count, names: string[]): string => {
    const sum = names.reduce((s, n) => s + (c.calls[n] ?? 0), 0);
    return c.requests > 0 ? (sum / c.requests).toFixed(2) : '-';
  };
  return table(
    ['scenario', 'test', 'target', 'requests', 'reads/req', 'writes/req', 'epoll/req'],
    counts.map((c) => [
      c.scenario,
      c.test,
      c.target,
      String(c.requests),
      per(c, ['read', 'readv', 'recvfrom', 'recvmsg']),
      per(c, ['write', 'writev', 'sendto', 'sendmsg']),
      per(c, ['epoll_wait', 'epoll_pwait']),
    ]),
    { markdown, left: 3 },
  );
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const get = (f: string): string | undefined => {
    const i = argv.indexOf(f);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const n = Number(get('--n') ?? 50_000);
  const duration = Number(get('--duration') ?? 2);
  const only = (get('--only') ?? 'redis,dubbo,thrift').split(',');
  const counts: Count[] = [];
  try {
    if (only.includes('redis')) await redis(n, counts);
    if (only.includes('dubbo')) await rpc('dubbo', duration, counts);
    if (only.includes('thrift')) await rpc('thrift', duration, counts);
  } catch (e) {
    console.error(`syscalls: ${(e as Error).message}`);
    if (counts.length) console.log(formatCounts(counts));
    killAll();
    process.exit(1);
  }
  killAll();
  console.log(formatCounts(counts, argv.includes('--markdown')));
  process.exit(0);
}

if (isMainModule(import.meta.url)) void main();
