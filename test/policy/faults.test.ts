/**
 * Fault injection as a resilience test: aborts and delays configured on a MetaRouter route, their shares checked
 * against binomial bounds, their codes and timings checked per call.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PolicyFixture, binomialBounds, report, routeAll } from './fixture.js';

const fx = new PolicyFixture();
let provider: Awaited<ReturnType<PolicyFixture['start']>>[number];

beforeAll(async () => {
  [provider] = await fx.start(['v1']);
});
afterAll(() => fx.stop());

describe('fault injection', () => {
  it('aborts 30% of calls with the configured Dubbo status and message; the rest reach the provider', async () => {
    await fx.apply({
      endpoints: [{ provider: provider! }],
      metaRouter: routeAll({ fault: { abort: { percentage: { value: 30 }, errorCode: 80, message: 'injected by the resilience test' } } }),
    });
    const conn = await fx.connect();
    const before = provider!.requests.length;
    const abortedBefore = await fx.metric(/^waypost_faults_injected_total\{route="all",type="abort"\}/);
    const n = 400;
    const results = await Promise.all(Array.from({ length: n }, (_, i) => fx.call(conn, 'sayHello', [`c${i}`])));
    const aborted = results.filter((r) => r.status === 80);
    const ok = results.filter((r) => r.status === 20);
    expect(aborted.length + ok.length).toBe(n);
    const [lo, hi] = binomialBounds(n, 0.3);
    report(`abort 30% (errorCode 80): ${aborted.length}/${n} aborted (${((aborted.length / n) * 100).toFixed(1)}%, bounds ${lo}-${hi}), ${ok.length} reached the provider`);
    expect(aborted.length).toBeGreaterThanOrEqual(lo);
    expect(aborted.length).toBeLessThanOrEqual(hi);
    for (const r of aborted) expect(r.error?.message).toBe('injected by the resilience test');
    // Aborted calls never reach the provider; the others all do.
    expect(provider!.requests.length - before).toBe(ok.length);
    expect((await fx.metric(/^waypost_faults_injected_total\{route="all",type="abort"\}/)) - abortedBefore).toBe(aborted.length);
  });

  it('delays 50% of calls by 200 ms without holding back the others on the same connection', async () => {
    await fx.apply({
      endpoints: [{ provider: provider! }],
      metaRouter: routeAll({ fault: { delay: { percentage: { value: 50 }, fixedDelay: '200ms' } } }),
    });
    const conn = await fx.connect();
    const delayedBefore = await fx.metric(/^waypost_faults_injected_total\{route="all",type="delay"\}/);
    const n = 80;
    const t0 = performance.now();
    const took = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const r = await fx.call(conn, 'sayHello', [`d${i}`]);
        expect(r.status).toBe(20);
        return performance.now() - t0;
      }),
    );
    const slow = took.filter((ms) => ms >= 200).length;
    const [lo, hi] = binomialBounds(n, 0.5);
    const fastest = took.filter((ms) => ms < 200);
    report(
      `delay 200ms on 50%: ${slow}/${n} delayed (bounds ${lo}-${hi}); undelayed calls done within ${Math.max(...fastest).toFixed(1)} ms, delayed ones after ${Math.min(...took.filter((ms) => ms >= 200)).toFixed(1)} ms`,
    );
    expect(slow).toBeGreaterThanOrEqual(lo);
    expect(slow).toBeLessThanOrEqual(hi);
    // Every delayed call is counted, and only those took 200 ms: the undelayed half finished long before.
    expect((await fx.metric(/^waypost_faults_injected_total\{route="all",type="delay"\}/)) - delayedBefore).toBe(slow);
    const fast = took.filter((ms) => ms < 200);
    expect(fast.length).toBe(n - slow);
    expect(Math.max(...fast)).toBeLessThan(Math.min(...took.filter((ms) => ms >= 200)));
  });

  it('a route timeout answers 31 SERVER_TIMEOUT naming the route, and the connection keeps working', async () => {
    await fx.apply({ endpoints: [{ provider: provider! }], metaRouter: routeAll({ timeout: '150ms' }) });
    const conn = await fx.connect();
    const slow = fx.call(conn, 'slow', [{ $class: 'int', $: 2000 }]);
    const quick = await fx.call(conn, 'sayHello', ['quick']);
    expect(quick.status).toBe(20);
    const r = await slow;
    expect(r.status).toBe(31);
    expect(r.error?.message).toMatch(/timeout after 150 ms on route all/);
    expect((await fx.call(conn, 'sayHello', ['after'])).status).toBe(20);
  });
});
