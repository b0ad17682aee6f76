/**
 * Soak: `waypost proxy --config` (a child process) under steady mixed load for a bounded time — 8 Dubbo connections
 * calling back to back over five routes (a 50/50 split, business exceptions, provider errors, a 50% abort fault, a
 * route timeout that drops late answers) plus a Redis client pipelining SET/GET/INCR — while the proxy's resident
 * set size is read from /proc/<pid>/status every second.
 *
 * Memory must be flat after warm-up (the first third of the run): the median RSS of the last third may exceed the
 * median of the middle third by at most GROWTH_LIMIT_MIB, and the Theil–Sen slope over the last two thirds (robust
 * to garbage-collection saw teeth) must stay under SLOPE_LIMIT_MIB_PER_S. Loose enough for a busy 2-core machine;
 * a leak of a few hundred bytes per request at thousands of requests a second climbs ≥ 0.5 MiB/s and fails both.
 *
 * `WAYPOST_SOAK_SECONDS` runs it longer (default 120: at ~7k calls/s V8's first major collection comes 40–50 s in,
 * so a 60 s run often ended inside the heap's first growth and read it as a leak). The proxy does not export prom-client's default process/heap
 * metrics (src/metrics.ts registers only Waypost's own), so RSS is the one memory signal here.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { ensurePeers, RawClient, redisService, serviceEntry, startRedis, type RedisServer } from '../redis/helpers.js';
import { ChaosProxy, DubboLoad, freePorts, hostOf, median, rssMiB, sleep, theilSen, yamlDocs } from './helpers.js';

const SECONDS = Math.max(15, Number(process.env.WAYPOST_SOAK_SECONDS ?? 120) || 120);
const GROWTH_LIMIT_MIB = 15;
const SLOPE_LIMIT_MIB_PER_S = 0.1;

const px = new ChaosProxy();
let v1: Provider;
let v2: Provider;
let redis: RedisServer;
let dubboPort: number;
let redisListen: number;

beforeAll(async () => {
  ensurePeers();
  v1 = await startProvider({ version: 'v1', record: false });
  v2 = await startProvider({ version: 'v2', record: false });
  redis = await startRedis();
  [dubboPort, redisListen] = (await freePorts(2)) as [number, number];
  const host = hostOf('soak');
  const dest = (subset: string): unknown => ({ destination: { host, subset } });
  const byMethod = (m: string): unknown => ({ attributes: { method: { exact: m } } });
  const docs = [
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'soak', namespace: 'default' },
      spec: {
        hosts: [host],
        ports: [{ number: dubboPort, name: 'tcp-metaprotocol-dubbo', protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: [
          { address: '127.0.0.1', ports: { 'tcp-metaprotocol-dubbo': v1.port }, labels: { version: 'v1' } },
          { address: '127.0.0.1', ports: { 'tcp-metaprotocol-dubbo': v2.port }, labels: { version: 'v2' } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: 'soak', namespace: 'default' },
      spec: { host, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    },
    {
      apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
      kind: 'MetaRouter',
      metadata: { name: 'soak', namespace: 'default' },
      spec: {
        hosts: [host],
        routes: [
          { name: 'abort', match: byMethod('whoami'), route: [dest('v1')], fault: { abort: { percentage: { value: 50 }, errorCode: 70 } } },
          { name: 'timeout', match: byMethod('slow'), route: [dest('v2')], timeout: '10ms' },
          { name: 'split', route: [{ ...(dest('v1') as object), weight: 50 }, { ...(dest('v2') as object), weight: 50 }] },
        ],
      },
    },
    serviceEntry({ host: 'cache.soak.waypost.test', port: redisListen, endpoints: [redis.port] }),
    redisService('cache', { host: ['cache.soak.waypost.test'], redis: [{ route: { host: 'cache.soak.waypost.test' } }] }),
  ];
  await px.start({ 'soak.yaml': yamlDocs(docs) });
});

afterAll(async () => {
  await px.stop();
  await v1?.close();
  await v2?.close();
  await redis?.stop();
});

/** One call in twenty of each kind; the rest are sayHello on the split route. */
function pick(i: number): { method: string; args: unknown[] } {
  switch (i % 20) {
    case 0:
      return { method: 'fail', args: ['soak'] }; // business exception (status 20, exception body)
    case 1:
      return { method: 'nosuch', args: [] }; // the provider answers 70
    case 2:
    case 3:
      return { method: 'whoami', args: [] }; // half aborted (70) by the fault
    case 4:
      return { method: 'slow', args: [{ $class: 'int', $: 30 }] }; // 31 after 10 ms; the late answer is dropped
    default:
      return { method: 'sayHello', args: [`soak-${i}`] };
  }
}

describe('soak', () => {
  it(
    `${SECONDS} s of steady mixed load: the proxy's memory is flat after warm-up`,
    async () => {
      const pid = px.pid;
      const samples: Array<{ t: number; rss: number }> = [];
      const t0 = Date.now();
      const sample = (): void => {
        samples.push({ t: (Date.now() - t0) / 1000, rss: rssMiB(pid) });
      };
      const idleRss = rssMiB(pid);
      const load = await DubboLoad.start({
        address: `127.0.0.1:${dubboPort}`,
        connections: 8,
        callTimeoutMs: 10_000,
        maxMs: SECONDS * 1000 + 5000,
        pick,
        record: false,
      });
      const redisClient = await RawClient.connect(redisListen);
      let redisCommands = 0;
      let redisErrors = 0;
      let stop = false;
      const redisLoop = (async () => {
        for (let i = 0; !stop; i++) {
          const k = `soak:${i % 1000}`;
          const replies = await redisClient.commands([['SET', k, `v${i}`], ['GET', k], ['INCR', `soak:n${i % 10}`], ['DEL', `soak:${(i + 500) % 1000}`]], 10_000);
          redisCommands += replies.length;
          redisErrors += replies.filter((r) => r.startsWith('-')).length;
          await sleep(1);
        }
      })();
      const timer = setInterval(sample, 1000);
      try {
        await sleep(SECONDS * 1000);
      } finally {
        clearInterval(timer);
        stop = true;
      }
      await Promise.all([load.stop(), redisLoop]);
      load.close();
      redisClient.destroy();

      const n = samples.length;
      const third = Math.floor(n / 3);
      const middle = samples.slice(third, 2 * third).map((s) => s.rss);
      const last = samples.slice(2 * third).map((s) => s.rss);
      const steady = samples.slice(third);
      const slope = theilSen(
        steady.map((s) => s.t),
        steady.map((s) => s.rss),
      );
      const growth = median(last) - median(middle);
      const rssSteady = steady.map((s) => s.rss);
      const failures = Object.fromEntries([...load.failures].sort());
      const f = (x: number): string => x.toFixed(1);
      process.stdout.write(
        `[soak] ${SECONDS} s, ${(load.count / 1000).toFixed(0)}k Dubbo calls (${Math.round(load.count / SECONDS)}/s; failed by status ${JSON.stringify(failures)})` +
          ` + ${(redisCommands / 1000).toFixed(0)}k Redis commands (${redisErrors} errors)\n` +
          `[soak] RSS idle ${f(idleRss)} MiB, warm-up ${f(samples[0]!.rss)} → ${f(samples[third - 1]!.rss)} MiB; after warm-up min/median/max ` +
          `${f(Math.min(...rssSteady))}/${f(median(rssSteady))}/${f(Math.max(...rssSteady))} MiB; middle-third median ${f(median(middle))}, ` +
          `last-third median ${f(median(last))} (${growth >= 0 ? '+' : ''}${f(growth)} MiB); slope ${slope.toFixed(3)} MiB/s (Theil–Sen, ${steady.length} samples)\n` +
          `[soak] curve (MiB, every ${Math.max(1, Math.round(n / 20))} s): ${samples
            .filter((_, i) => i % Math.max(1, Math.round(n / 20)) === 0)
            .map((s) => Math.round(s.rss))
            .join(' ')}\n`,
      );

      // The load really ran, every call was answered, and only with the statuses the routes produce.
      expect(px.alive, px.proxy.output()).toBe(true);
      expect(load.count).toBeGreaterThan(SECONDS * 200);
      expect(load.failures.get('none') ?? 0, 'calls left without an answer').toBe(0);
      expect(Object.keys(failures).every((s) => ['31', '70'].includes(s))).toBe(true);
      expect(failures['31']).toBeGreaterThan(0);
      expect(failures['70']).toBeGreaterThan(0);
      expect(redisCommands).toBeGreaterThan(SECONDS * 100);
      expect(redisErrors).toBe(0);
      // Memory flat after warm-up.
      expect(n).toBeGreaterThanOrEqual(SECONDS - 3);
      expect(growth, `RSS grew ${f(growth)} MiB from the middle to the last third`).toBeLessThanOrEqual(GROWTH_LIMIT_MIB);
      expect(slope, `RSS climbs ${slope.toFixed(3)} MiB/s after warm-up`).toBeLessThan(SLOPE_LIMIT_MIB_PER_S);
    },
    SECONDS * 1000 + 60_000,
  );
});
