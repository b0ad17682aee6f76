/**
 * Retries, the retry budget and outlier detection against real providers that fail, hang or die mid-load.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, sleep } from '../../examples/dubbo/harness.js';
import type { Provider } from '../../examples/dubbo/provider.js';
import { PolicyFixture, answeredBy, report, routeAll } from './fixture.js';

const fx = new PolicyFixture();
let a: Provider;
let b: Provider;

beforeAll(async () => {
  [a, b] = await fx.start(['v1', 'v2']);
});
afterAll(() => fx.stop());

function reset(): void {
  a.mode = 'ok';
  b.mode = 'ok';
}

describe('retries', () => {
  it('a provider killed mid-load: with retries on, no idempotent call fails', async () => {
    reset();
    const [deadPort] = await freePorts(1);
    // A third endpoint that refuses connections from the start, and provider `a` that dies halfway.
    const victim = await (await import('../../examples/dubbo/provider.js')).startProvider({ version: 'v1' });
    await fx.apply({
      endpoints: [{ provider: victim }, { provider: b }, { provider: a, port: deadPort }],
      metaRouter: routeAll({ retries: { attempts: 3, retryOn: 'connect-failure,reset' } }),
    });
    // Three clients in flight at once: the retry budget always allows three concurrent retries (Envoy's minimum), so
    // every call reset by the kill can be retried at once.
    const conns = await Promise.all(Array.from({ length: 3 }, () => fx.connect()));
    const retriesBefore = await fx.metric(/^waypost_upstream_retries_total\{route="all"/);
    const results: Array<{ status: number; by: string | undefined }> = [];
    let killed = false;
    await Promise.all(
      conns.map(async (conn, c) => {
        for (let i = 0; i < 80; i++) {
          if (c === 0 && i === 20 && !killed) {
            killed = true;
            await victim.close(); // stops listening and resets its open connections, calls in flight included
          }
          const r = await fx.call(conn, 'slow', [{ $class: 'int', $: 2 }]);
          results.push({ status: r.status, by: answeredBy(r) });
        }
      }),
    );
    expect(results).toHaveLength(240);
    const retried = (await fx.metric(/^waypost_upstream_retries_total\{route="all"/)) - retriesBefore;
    report(`provider killed mid-load (3 clients × 80 calls, retries 3): ${results.filter((r) => r.status !== 20).length} failed of 240, ${retried} retries`);
    expect(results.filter((r) => r.status !== 20)).toEqual([]);
    expect(await fx.metric(/^waypost_upstream_retries_total\{route="all"/)).toBeGreaterThan(retriesBefore);
  });

  it('retries an error status on another endpoint, and never retries a oneway call', async () => {
    reset();
    a.mode = 'error';
    await fx.apply({
      endpoints: [{ provider: a }, { provider: b }],
      metaRouter: routeAll({ retries: { attempts: 1, retryOn: 'error' } }),
    });
    const conn = await fx.connect();
    for (let i = 0; i < 10; i++) {
      const r = await fx.call(conn, 'sayHello', [`r${i}`]);
      expect(r.status).toBe(20);
      expect(answeredBy(r)).toBe('v2');
    }
    const aBefore = a.requests.length;
    const bBefore = b.requests.length;
    for (let i = 0; i < 6; i++) conn.oneway({ id: 9000 + i, method: 'sayHello', args: ['oneway'] });
    await sleep(200);
    expect(a.requests.length - aBefore + (b.requests.length - bBefore)).toBe(6);
  });

  it('a per-try timeout moves a call from a hanging endpoint to a healthy one', async () => {
    reset();
    a.mode = 'hang';
    await fx.apply({
      endpoints: [{ provider: a }, { provider: b }],
      metaRouter: routeAll({ timeout: '3s', retries: { attempts: 2, perTryTimeout: '100ms', retryOn: 'timeout' } }),
    });
    const conn = await fx.connect();
    for (let i = 0; i < 10; i++) {
      const r = await fx.call(conn, 'sayHello', [`t${i}`]);
      expect(r.status).toBe(20);
      expect(answeredBy(r)).toBe('v2');
    }
    expect(a.requests.length).toBeGreaterThan(0);
  });

  it('the retry budget keeps a retry storm bounded', async () => {
    reset();
    a.mode = 'hang';
    await fx.apply({
      endpoints: [{ provider: a }],
      metaRouter: routeAll({ retries: { attempts: 5, perTryTimeout: '100ms', retryOn: 'timeout' } }),
    });
    const conn = await fx.connect();
    const before = a.requests.length;
    const n = 40;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => fx.call(conn, 'sayHello', [`s${i}`])));
    // Every call is answered (a timeout), none is left hanging.
    expect(results.map((r) => r.status)).toEqual(Array(n).fill(31));
    const upstream = a.requests.length - before;
    report(`retry storm (40 calls, 5 retries each allowed, hanging upstream): ${upstream} upstream requests (240 without a budget)`);
    // Without a budget, 40 calls × 6 attempts = 240 upstream requests. The budget (20% of requests in flight,
    // at least 3 concurrent retries) lets only a few retries start before the calls in flight drain.
    expect(upstream).toBeGreaterThanOrEqual(n);
    expect(upstream).toBeLessThanOrEqual(2 * n);
  });
});

describe('outlier detection', () => {
  it('ejects an endpoint after consecutive errors and takes it back after the ejection time', async () => {
    reset();
    a.mode = 'error';
    const ejectionsBefore = await fx.metric(/^waypost_outlier_ejections_total\{/);
    await fx.apply({
      endpoints: [{ provider: a }, { provider: b }],
      destinationRule: {
        trafficPolicy: {
          loadBalancer: { simple: 'ROUND_ROBIN' },
          outlierDetection: { consecutive5xxErrors: 3, interval: '1s', baseEjectionTime: '1s', maxEjectionPercent: 50 },
        },
      },
      metaRouter: routeAll(),
    });
    const conn = await fx.connect();
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await fx.call(conn, 'sayHello', [`o${i}`])).status);
    // Round robin sends every other call to `a` until its third error ejects it; after that only `b` answers.
    report(`outlier ejection (consecutive5xxErrors 3): ${statuses.filter((s) => s !== 20).length} failed calls before the endpoint left, then ${statuses.slice(6).filter((s) => s === 20).length}/24 succeeded`);
    expect(statuses.filter((s) => s !== 20)).toHaveLength(3);
    expect(statuses.slice(6).every((s) => s === 20)).toBe(true);
    expect((await fx.metric(/^waypost_outlier_ejections_total\{/)) - ejectionsBefore).toBe(1);
    const ejected = (await fx.clusters()).flatMap((c) => c.endpoints).filter((e) => e.health === 'EJECTED');
    expect(ejected.map((e) => e.address)).toEqual([`127.0.0.1:${a.port}`]);
    // Healed and past its ejection time, `a` gets traffic again.
    a.mode = 'ok';
    await sleep(1100);
    const aBefore = a.requests.length;
    for (let i = 0; i < 10; i++) expect((await fx.call(conn, 'sayHello', [`back${i}`])).status).toBe(20);
    report(`after the 1s ejection: the healed endpoint took ${a.requests.length - aBefore}/10 calls again`);
    expect(a.requests.length - aBefore).toBeGreaterThanOrEqual(4);
  });

  it('never ejects with consecutive5xxErrors: 0 (Istio: that turns it off)', async () => {
    reset();
    a.mode = 'error';
    const ejectionsBefore = await fx.metric(/^waypost_outlier_ejections_total\{/);
    await fx.apply({
      endpoints: [{ provider: a }, { provider: b }],
      destinationRule: {
        trafficPolicy: {
          loadBalancer: { simple: 'ROUND_ROBIN' },
          outlierDetection: { consecutive5xxErrors: 0, interval: '1s', baseEjectionTime: '30s', maxEjectionPercent: 100 },
        },
      },
      metaRouter: routeAll(),
    });
    const conn = await fx.connect();
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await fx.call(conn, 'sayHello', [`z${i}`])).status);
    // Round robin keeps sending every other call to the failing endpoint: it is never taken out.
    expect(statuses.filter((s) => s !== 20)).toHaveLength(10);
    expect((await fx.metric(/^waypost_outlier_ejections_total\{/)) - ejectionsBefore).toBe(0);
    a.mode = 'ok';
  });
});
