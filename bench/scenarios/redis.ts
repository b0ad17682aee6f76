/**
 * Redis: `redis-benchmark` (SET/GET at -P 1 and -P 16, 50 clients, fixed -n, random keys) against one
 * redis-server directly, through haproxy (TCP), through nutcracker (one pool of that server) and through Waypost;
 * then an MGET of two keys with different prefixes (`MGET a:<n> b:<n>`, -P 16): Waypost routes `a:` and `b:` to
 * two redis-servers with a RedisService (each MGET split in two and reassembled), nutcracker hashes the keys over
 * the same two servers, haproxy and direct send it whole to the first server.
 */
import net from 'node:net';
import path from 'node:path';
import YAML from 'yaml';
import { freePorts } from '../../examples/dubbo/harness.js';
import { ProcWatch, rssKiB, runTool, which } from '../lib/procs.js';
import { MiB, compare, errorRow, type BenchContext, type Row, type ScenarioResult } from '../lib/report.js';
import { startHaproxy, startNutcracker, startRedisServer, startWaypost, type Target } from '../lib/targets.js';
import { profileSummaries } from './common.js';

const CACHE = 'cache.bench.local';
const OTHER = 'other.bench.local';
/** Keys the MGET test reads (redis-benchmark writes __rand_int__ as 12 zero-padded digits). */
const KEYSPACE = 10_000;
const key = (prefix: string, n: number): string => `${prefix}${String(n).padStart(12, '0')}`;

function waypostRedisConfig(listen: number, other: number, a: number, b: number): string {
  const se = (name: string, host: string, port: number, endpoint: number): object => ({
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'ServiceEntry',
    metadata: { name, namespace: 'bench' },
    spec: {
      hosts: [host],
      ports: [{ number: port, name: 'tcp-redis', protocol: 'TCP' }],
      resolution: 'STATIC',
      endpoints: [{ address: '127.0.0.1', ports: { 'tcp-redis': endpoint } }],
    },
  });
  const docs = [
    se('cache', CACHE, listen, a),
    se('other', OTHER, other, b),
    {
      apiVersion: 'redis.aeraki.io/v1alpha1',
      kind: 'RedisService',
      metadata: { name: 'cache', namespace: 'bench' },
      spec: {
        host: [CACHE],
        redis: [
          { match: { key: { prefix: 'a:' } }, route: { host: CACHE } },
          { match: { key: { prefix: 'b:' } }, route: { host: OTHER } },
          { route: { host: CACHE } },
        ],
      },
    },
  ];
  return docs.map((d) => YAML.stringify(d)).join('---\n');
}

function resp(args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}

/** Sends `commands` on one connection and resolves with the raw reply bytes once `expectBytes` arrived. */
function rawExchange(address: string, payload: string, done: (received: Buffer) => boolean, timeoutMs = 10_000): Promise<Buffer> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: host!, port: Number(port) });
    const chunks: Buffer[] = [];
    let size = 0;
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`${address}: no complete answer within ${timeoutMs} ms (got ${JSON.stringify(Buffer.concat(chunks).toString().slice(0, 200))})`));
    }, timeoutMs);
    s.on('connect', () => s.write(payload));
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      size += d.length;
      const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      if (done(all)) {
        clearTimeout(t);
        s.destroy();
        resolve(all);
      }
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(new Error(`${address}: ${e.message}`));
    });
  });
}

/** Writes a:<n> and b:<n> for every n of the keyspace (pipelined SETs). */
async function populate(port: number): Promise<void> {
  let payload = '';
  for (let n = 0; n < KEYSPACE; n++) payload += resp(['SET', key('a:', n), `va${n}`]) + resp(['SET', key('b:', n), `vb${n}`]);
  const want = 2 * KEYSPACE * '+OK\r\n'.length;
  await rawExchange(`127.0.0.1:${port}`, payload, (b) => b.length >= want, 30_000);
}

/** SET, GET and a cross-route MGET through `address`; throws with what came back when it is not right. */
async function probe(address: string, withMget: boolean): Promise<void> {
  const cmds = resp(['SET', 'key:probe', 'pv']) + resp(['GET', 'key:probe']) + (withMget ? resp(['MGET', key('a:', 7), key('b:', 7)]) : '');
  const expect = '+OK\r\n$2\r\npv\r\n' + (withMget ? '*2\r\n$3\r\nva7\r\n$3\r\nvb7\r\n' : '');
  const got = (await rawExchange(address, cmds, (b) => b.length >= expect.length)).toString();
  if (got !== expect) throw new Error(`probe through ${address}: expected ${JSON.stringify(expect)}, got ${JSON.stringify(got)}`);
}

interface CsvLine {
  test: string;
  rps: number;
  p50: number;
  p99: number;
}

function parseCsv(out: string): CsvLine[] {
  const lines = out.split('\n').filter((l) => l.startsWith('"'));
  const header = lines.shift()?.split(',').map((h) => h.replace(/"/g, '')) ?? [];
  const col = (name: string): number => header.indexOf(name);
  return lines.map((l) => {
    const cells = l.split('","').map((c) => c.replace(/"/g, ''));
    return {
      test: cells[col('test')] ?? '?',
      rps: Number(cells[col('rps')]),
      p50: col('p50_latency_ms') >= 0 ? Number(cells[col('p50_latency_ms')]) : NaN,
      p99: col('p99_latency_ms') >= 0 ? Number(cells[col('p99_latency_ms')]) : NaN,
    };
  });
}

export async function runRedis(ctx: BenchContext): Promise<ScenarioResult> {
  const bench = which('redis-benchmark');
  const rows: Row[] = [];
  const notes: string[] = [];
  const figures: Record<string, unknown> = {};
  const stops: Array<() => Promise<void>> = [];
  let waypost: Awaited<ReturnType<typeof startWaypost>> | undefined;
  const toolTimeout = ctx.quick ? 30_000 : 180_000;
  try {
    const [a, b] = await Promise.all([startRedisServer(), startRedisServer()]);
    stops.push(a!.stop, b!.stop);
    await Promise.all([populate(a!.port), populate(b!.port)]);
    ctx.log(`redis-server A on 127.0.0.1:${a!.port}, B on 127.0.0.1:${b!.port} (${KEYSPACE} a: and b: keys each)`);

    const haproxy = await startHaproxy(`127.0.0.1:${a!.port}`);
    stops.push(haproxy.stop);
    const nut = await startNutcracker({ single: [a!.port], two: [a!.port, b!.port] });
    stops.push(nut.stop);
    const [listen, other] = await freePorts(2);
    waypost = await startWaypost({
      config: { 'redis.yaml': waypostRedisConfig(listen!, other!, a!.port, b!.port) },
      listenPorts: [listen!, other!],
      ...(ctx.profileDir ? { profileDir: path.join(ctx.profileDir, 'redis') } : {}),
    });
    const wp = waypost;
    stops.push(() => wp.stop());
    figures.waypostIdleRssMiB = rssKiB(wp.child.pid) / MiB;
    ctx.log(`haproxy ${haproxy.address}; nutcracker ${nut.addresses.single} (A), ${nut.addresses.two} (A+B); waypost ${wp.address}`);

    const direct: Target = { name: 'direct', address: `127.0.0.1:${a!.port}`, stop: async () => undefined };
    const nutSingle: Target = { name: 'nutcracker', address: nut.addresses.single!, child: nut.child, stop: async () => undefined };
    const nutTwo: Target = { name: 'nutcracker', address: nut.addresses.two!, child: nut.child, stop: async () => undefined };
    const getset = [direct, haproxy, nutSingle, wp];
    const mget = [direct, haproxy, nutTwo, wp];
    for (const t of getset) await probe(t.address, false);
    for (const t of [direct, nutTwo, wp]) await probe(t.address, true);

    // Each target runs `rounds` times, the order reversed every other round, and the median run is reported: the
    // targets share the machine with redis-server and redis-benchmark, and a single pass favours whichever ran in a
    // quieter moment.
    const rounds = ctx.quick ? 1 : 3;
    const run = async (targets: Target[], label: (test: string) => string, n: number, pipeline: number, command: string[]): Promise<void> => {
      const runs = new Map<string, Row[]>();
      const keys: Array<{ test: string; target: string }> = [];
      for (let round = 0; round < rounds; round++) {
        for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
          const args = ['-h', '127.0.0.1', '-p', t.address.split(':')[1]!, '-c', '50', '-n', String(n), '-P', String(pipeline), '-q', '--csv'];
          if (command.length) args.push('-r', String(KEYSPACE), ...command);
          else args.push('-r', '100000', '-t', 'set,get');
          const watch = t.child ? new ProcWatch(t.child.pid).start() : undefined;
          watch?.mark('start');
          const r = await runTool('redis-benchmark', bench, args, toolTimeout);
          watch?.mark('end');
          watch?.stop();
          const lines = parseCsv(r.stdout);
          if (r.code !== 0 || lines.length === 0 || r.timedOut) {
            const why = r.timedOut ? `timed out after ${toolTimeout / 1000}s` : `exit ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' ')}`;
            rows.push(errorRow(label(command.length ? 'MGET' : 'SET/GET'), t.name, `redis-benchmark ${why}`));
            throw new Error(`redis-benchmark through ${t.name} (${t.address}) failed: ${why}`);
          }
          const cpu = watch?.cpuBetween('start', 'end');
          for (const l of lines) {
            const test = label(l.test.split(' ')[0]!);
            const row: Row = { test, target: t.name, rps: l.rps, p50: l.p50, p99: l.p99, p999: NaN, errors: 0, ratio: null, addedP50: null, addedP99: null };
            if (cpu !== undefined && Number.isFinite(cpu)) row.cpuPer100k = (cpu / (n * lines.length)) * 100_000;
            if (watch && Number.isFinite(watch.maxRssKiB)) row.rssMiB = watch.maxRssKiB / MiB;
            if (/error/i.test(r.stderr) && !/CONFIG/.test(r.stderr)) row.note = r.stderr.trim().split('\n')[0]!.slice(0, 160);
            const key = `${test}|${t.name}`;
            if (!runs.has(key)) {
              runs.set(key, []);
              keys.push({ test, target: t.name });
            }
            runs.get(key)!.push(row);
          }
          ctx.log(`  ${label('')}${t.name}${rounds > 1 ? ` (round ${round + 1})` : ''}: ${lines.map((l) => `${l.test.split(' ')[0]} ${Math.round(l.rps)}/s`).join(', ')}`);
        }
      }
      const directRows = new Map<string, Row>();
      for (const { test, target } of keys) {
        const all = runs.get(`${test}|${target}`)!.slice().sort((x, y) => x.rps - y.rps);
        const median = all[Math.floor(all.length / 2)]!;
        if (target === 'direct') directRows.set(test, median);
        rows.push(compare(median, directRows.get(test)));
      }
    };
    const { p1, p16, mget: mgetN } = ctx.redisRequests;
    ctx.log(`[redis] SET/GET -P 1 -c 50 -n ${p1}`);
    await run(getset, (c) => `${c} -P 1`, p1, 1, []);
    ctx.log(`[redis] SET/GET -P 16 -c 50 -n ${p16}`);
    await run(getset, (c) => `${c} -P 16`, p16, 16, []);
    ctx.log(`[redis] MGET a:<n> b:<n> -P 16 -c 50 -n ${mgetN}`);
    await run(mget, () => 'MGET 2 routes -P 16', mgetN, 16, ['MGET', 'a:__rand_int__', 'b:__rand_int__']);
    figures.waypostRssAfterMiB = rssKiB(wp.child.pid) / MiB;
    notes.push(
      ...(rounds > 1 ? [`Each target ran ${rounds} times, the order reversed every other round; each row is the median run (by req/s).`] : []),
      'redis-benchmark reports p50/p99 (no p999). CPU s/100k is per redis-benchmark run (SET and GET together).',
      'MGET: direct and haproxy send both keys to server A; nutcracker hashes them over A and B; Waypost routes a: to A and b: to B (each MGET split in two).',
      'redis-benchmark cannot read CONFIG through nutcracker (it warns and goes on).',
    );
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  }
  const result: ScenarioResult = {
    scenario: 'redis',
    description: 'redis-benchmark SET/GET at -P 1 and -P 16 (-c 50), and a two-prefix MGET at -P 16',
    options: { clients: 50, requests: ctx.redisRequests },
    rows,
    notes,
    figures,
  };
  if (waypost) result.profiles = profileSummaries('waypost', waypost.profiles());
  return result;
}
