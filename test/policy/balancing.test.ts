/**
 * Load balancing, mirroring, local rate limits and circuit breakers from DestinationRule and MetaRouter, with real
 * providers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, sleep } from '../../examples/dubbo/harness.js';
import type { Provider } from '../../examples/dubbo/provider.js';
import { HOST, PolicyFixture, binomialBounds, routeAll } from './fixture.js';

const fx = new PolicyFixture();
let p: Provider[];

beforeAll(async () => {
  p = await fx.start(['v1', 'v2', 'v3' as 'v1', 'v4' as 'v1']);
});
afterAll(() => fx.stop());

const whoAnswered = (value: unknown): string => /@(127\.0\.0\.1:\d+)/.exec(String(value))![1]!;

describe('load balancing', () => {
  it('ROUND_ROBIN spreads evenly; endpoint weights skew it in proportion', async () => {
    await fx.apply({
      endpoints: [{ provider: p[0]! }, { provider: p[1]! }, { provider: p[2]! }],
      destinationRule: { trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } },
      metaRouter: routeAll(),
    });
    const conn = await fx.connect();
    const count = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const who = whoAnswered((await fx.call(conn, 'whoami')).value);
      count.set(who, (count.get(who) ?? 0) + 1);
    }
    expect([...count.values()]).toEqual([20, 20, 20]);

    await fx.apply({
      endpoints: [{ provider: p[0]!, weight: 1 }, { provider: p[1]!, weight: 3 }],
      metaRouter: routeAll(),
    });
    count.clear();
    for (let i = 0; i < 80; i++) {
      const who = whoAnswered((await fx.call(conn, 'whoami')).value);
      count.set(who, (count.get(who) ?? 0) + 1);
    }
    expect(count.get(p[0]!.address)).toBe(20);
    expect(count.get(p[1]!.address)).toBe(60);
  });

  it('RANDOM spreads within binomial bounds', async () => {
    await fx.apply({
      endpoints: [{ provider: p[0]! }, { provider: p[1]! }],
      destinationRule: { trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } },
      metaRouter: routeAll(),
    });
    const conn = await fx.connect();
    let first = 0;
    const n = 200;
    for (let i = 0; i < n; i++) if (whoAnswered((await fx.call(conn, 'whoami')).value) === p[0]!.address) first++;
    const [lo, hi] = binomialBounds(n, 0.5);
    expect(first).toBeGreaterThanOrEqual(lo);
    expect(first).toBeLessThanOrEqual(hi);
  });

  it('LEAST_REQUEST steers calls away from an endpoint that holds requests', async () => {
    // Endpoint 0 never answers, so every call it takes stays in flight there; round robin would give it a third.
    p[0]!.mode = 'hang';
    await fx.apply({
      endpoints: p.slice(0, 3).map((provider) => ({ provider })),
      destinationRule: { trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } } },
      metaRouter: routeAll({ timeout: '1s' }),
    });
    const conn = await fx.connect();
    const calls = [];
    for (let i = 0; i < 60; i++) {
      calls.push(fx.call(conn, 'whoami'));
      await sleep(4); // answers from the healthy endpoints come back between calls
    }
    const results = await Promise.all(calls);
    p[0]!.mode = 'ok';
    const timedOut = results.filter((r) => r.status === 31).length;
    expect(timedOut + results.filter((r) => r.status === 20).length).toBe(60);
    // Power of two choices sends a call to the loaded endpoint only when both candidates are it (1/9 here, about
    // 7 calls); round robin would send it 20.
    expect(timedOut).toBeGreaterThanOrEqual(1);
    expect(timedOut).toBeLessThan(17);
  });

  it('consistentHash keeps a key on its endpoint, and moves about 1/N of keys when an endpoint joins or leaves', async () => {
    const policy = { trafficPolicy: { loadBalancer: { consistentHash: { httpHeaderName: 'user' } } } };
    await fx.apply({ endpoints: p.slice(0, 3).map((provider) => ({ provider })), destinationRule: policy, metaRouter: routeAll() });
    const conn = await fx.connect();
    const keys = Array.from({ length: 120 }, (_, i) => `user-${i}`);
    const owner = async (k: string): Promise<string> => whoAnswered((await fx.call(conn, 'whoami', [], { user: k })).value);
    const before = new Map<string, string>();
    for (const k of keys) before.set(k, await owner(k));
    for (const k of keys.slice(0, 20)) expect(await owner(k)).toBe(before.get(k));
    expect(new Set(before.values()).size).toBe(3);

    await fx.apply({ endpoints: p.map((provider) => ({ provider })), destinationRule: policy, metaRouter: routeAll() });
    let moved = 0;
    for (const k of keys) {
      const now = await owner(k);
      if (now !== before.get(k)) {
        moved++;
        // A key that moves goes to the new endpoint, never between old ones.
        expect(now).toBe(p[3]!.address);
      }
    }
    // Ideal: 1/4 of the keys move.
    expect(moved).toBeGreaterThan(keys.length * 0.1);
    expect(moved).toBeLessThan(keys.length * 0.45);

    // An endpoint leaves: only its own keys move (to the others), every other key stays where it was.
    const withFour = new Map<string, string>();
    for (const k of keys) withFour.set(k, await owner(k));
    const leaving = p[1]!.address;
    await fx.apply({ endpoints: p.filter((_, i) => i !== 1).map((provider) => ({ provider })), destinationRule: policy, metaRouter: routeAll() });
    let left = 0;
    for (const k of keys) {
      const now = await owner(k);
      if (withFour.get(k) === leaving) {
        left++;
        expect(now).not.toBe(leaving);
      } else {
        expect(now, `${k} stays on its endpoint`).toBe(withFour.get(k));
      }
    }
    // About 1/4 of the keys were on the endpoint that left.
    expect(left).toBeGreaterThan(keys.length * 0.1);
    expect(left).toBeLessThan(keys.length * 0.45);
  });
});

describe('mirroring', () => {
  it('copies requests to the mirror, discards its answers, and a dead mirror never fails the primary', async () => {
    await fx.apply({
      endpoints: [{ provider: p[0]! }, { provider: p[1]! }],
      destinationRule: { subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
      metaRouter: { routes: [{ name: 'm', route: [{ destination: { host: HOST, subset: 'v1' } }], mirror: { host: HOST, subset: 'v2' } }] },
    });
    const conn = await fx.connect();
    const mirrorBefore = p[1]!.requests.length;
    for (let i = 0; i < 10; i++) {
      const r = await fx.call(conn, 'sayHello', [`m${i}`]);
      expect(String(r.value)).toContain('v1@');
    }
    await sleep(100);
    const mirrored = p[1]!.requests.slice(mirrorBefore).map((r) => r.args[0]);
    expect(mirrored).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
    expect(conn.unexpected).toHaveLength(0);

    // 50% mirrored.
    await fx.apply({
      endpoints: [{ provider: p[0]! }, { provider: p[1]! }],
      destinationRule: { subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
      metaRouter: { routes: [{ name: 'm', route: [{ destination: { host: HOST, subset: 'v1' } }], mirror: { host: HOST, subset: 'v2' }, mirrorPercentage: { value: 50 } }] },
    });
    const half = p[1]!.requests.length;
    const n = 200;
    await Promise.all(Array.from({ length: n }, (_, i) => fx.call(conn, 'sayHello', [`h${i}`])));
    await sleep(100);
    const [lo, hi] = binomialBounds(n, 0.5);
    expect(p[1]!.requests.length - half).toBeGreaterThanOrEqual(lo);
    expect(p[1]!.requests.length - half).toBeLessThanOrEqual(hi);

    // Mirror to a dead endpoint and to a hanging one: the primary answers as usual.
    const [deadPort] = await freePorts(1);
    p[2]!.mode = 'hang';
    await fx.apply({
      endpoints: [{ provider: p[0]! }, { provider: p[1]!, port: deadPort }, { provider: p[2]!, labels: { version: 'v3' } }],
      destinationRule: { subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }, { name: 'v3', labels: { version: 'v3' } }] },
      metaRouter: { routes: [
        { name: 'to-dead', match: { attributes: { mirror: { exact: 'dead' } } }, route: [{ destination: { host: HOST, subset: 'v1' } }], mirror: { host: HOST, subset: 'v2' } },
        { name: 'to-hang', route: [{ destination: { host: HOST, subset: 'v1' } }], mirror: { host: HOST, subset: 'v3' } },
      ] },
    });
    for (const mirror of ['dead', 'hang']) {
      const r = await fx.call(conn, 'sayHello', ['x'], { mirror });
      expect(r.status).toBe(20);
      expect(String(r.value)).toContain('v1@');
    }
    p[2]!.mode = 'ok';
  });
});

describe('rate limits and circuit breakers', () => {
  it('a local rate limit answers 100 over its bucket; a condition gives matching calls their own bucket', async () => {
    await fx.apply({
      endpoints: [{ provider: p[0]! }],
      metaRouter: {
        ...routeAll(),
        localRateLimit: {
          tokenBucket: { maxTokens: 5, tokensPerFill: 5, fillInterval: '60s' },
          conditions: [{ match: { attributes: { user: { exact: 'vip' } } }, tokenBucket: { maxTokens: 20, tokensPerFill: 20, fillInterval: '60s' } }],
        },
      },
    });
    const conn = await fx.connect();
    const limitedBefore = await fx.metric(/^waypost_rate_limited_total\{/);
    const plain = [];
    for (let i = 0; i < 8; i++) plain.push((await fx.call(conn, 'sayHello', ['p'])).status);
    expect(plain).toEqual([20, 20, 20, 20, 20, 100, 100, 100]);
    const vip = [];
    for (let i = 0; i < 22; i++) vip.push((await fx.call(conn, 'sayHello', ['v'], { user: 'vip' })).status);
    expect(vip.filter((s) => s === 20)).toHaveLength(20);
    expect(vip.slice(20)).toEqual([100, 100]);
    expect((await fx.metric(/^waypost_rate_limited_total\{/)) - limitedBefore).toBe(5);
    const limited = await fx.call(conn, 'sayHello', ['p']);
    expect(limited.error?.message).toMatch(/rate limited/);
  });

  it('a local rate limit refills its bucket: tokensPerFill more calls pass each fillInterval, never above maxTokens', async () => {
    await fx.apply({
      endpoints: [{ provider: p[0]! }],
      metaRouter: { ...routeAll(), localRateLimit: { tokenBucket: { maxTokens: 3, tokensPerFill: 2, fillInterval: '1s' } } },
    });
    const conn = await fx.connect();
    const burst = async (n: number): Promise<number> => {
      let ok = 0;
      for (let i = 0; i < n; i++) if ((await fx.call(conn, 'sayHello', ['r'])).status === 20) ok++;
      return ok;
    };
    expect(await burst(5)).toBe(3); // a full bucket
    await sleep(1_200); // one fill
    expect(await burst(5)).toBe(2);
    await sleep(3_300); // three fills would add 6: the bucket holds at most 3
    expect(await burst(6)).toBe(3);
  });

  it('a request cap (http2MaxRequests) answers over-limit locally instead of queueing', async () => {
    await fx.apply({
      endpoints: [{ provider: p[0]! }],
      destinationRule: { trafficPolicy: { connectionPool: { http: { http2MaxRequests: 2 } } } },
      metaRouter: routeAll(),
    });
    const conn = await fx.connect();
    const results = await Promise.all(Array.from({ length: 5 }, () => fx.call(conn, 'slow', [{ $class: 'int', $: 300 }])));
    expect(results.filter((r) => r.status === 20)).toHaveLength(2);
    const over = results.filter((r) => r.status === 100);
    expect(over).toHaveLength(3);
    expect(over[0]!.error?.message).toMatch(/limit of 2 requests in flight/);
    // Capacity comes back once they finish.
    expect((await fx.call(conn, 'sayHello', ['after'])).status).toBe(20);
  });

  it('a connection cap (tcp.maxConnections) answers over-limit locally once the cluster holds that many connections', async () => {
    await fx.apply({
      endpoints: [{ provider: p[0]! }, { provider: p[1]! }],
      destinationRule: { trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' }, connectionPool: { tcp: { maxConnections: 1 } } } },
      metaRouter: routeAll(),
    });
    const overflowBefore = await fx.metric(/^waypost_upstream_overflow_total\{.*limit="connections"/);
    const conn = await fx.connect();
    // Round robin: the first call opens the cluster's one connection (to one endpoint); the next call goes to the
    // other endpoint, which would need a second connection.
    const results = [];
    for (let i = 0; i < 4; i++) results.push(await fx.call(conn, 'sayHello', [`c${i}`]));
    expect(results.filter((r) => r.status === 20)).toHaveLength(2);
    const over = results.filter((r) => r.status === 100);
    expect(over).toHaveLength(2);
    expect(over[0]!.error?.message).toMatch(/limit of 1 connections/);
    expect((await fx.metric(/^waypost_upstream_overflow_total\{.*limit="connections"/)) - overflowBefore).toBe(2);
  });
});
