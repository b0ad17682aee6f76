import { describe, expect, it } from 'vitest';
import { MapMetadata } from '../../src/codec.js';
import { Route, RouteTable } from '../../src/router.js';
import type { MetaRoute } from '../../src/xds/resources.js';

function md(entries: Record<string, string>): MapMetadata {
  const m = new MapMetadata();
  for (const [k, v] of Object.entries(entries)) m.set(k, v);
  return m;
}

const table = RouteTable.compile({
  name: 'rt',
  routes: [
    { name: 'exact', match: { metadata: [{ name: 'User', string_match: { exact: 'jason' } }] }, route: { cluster: 'c-exact' } },
    { name: 'prefix', match: { metadata: [{ name: 'method', string_match: { prefix: 'say' } }] }, route: { cluster: 'c-prefix' } },
    { name: 'regex', match: { metadata: [{ name: 'version', string_match: { safe_regex: { regex: '1\\.[0-9]+' } } }] }, route: { cluster: 'c-regex' } },
    { name: 'present', match: { metadata: [{ name: 'canary', present_match: true }] }, route: { cluster: 'c-present' } },
    { name: 'legacy', match: { metadata: [{ name: 'zone', exact_match: 'a' }, { name: 'tier', prefix_match: 'gold' }] }, route: { cluster: 'c-legacy' } },
    { name: 'inverted', match: { metadata: [{ name: 'env', string_match: { exact: 'prod' }, invert_match: true }] }, route: { cluster: 'c-inverted' } },
    { name: 'rest', route: { cluster: 'c-rest' } },
  ],
});

describe('route table', () => {
  it('matches case-insensitive keys and case-sensitive values; first match wins', () => {
    expect(table.match(md({ user: 'jason', method: 'sayHello' }))?.name).toBe('exact');
    expect(table.match(md({ USER: 'Jason', method: 'sayHello', env: 'prod' }))?.name).toBe('prefix');
  });
  it('anchors regex to the whole value, as Envoy safe_regex does', () => {
    expect(table.match(md({ version: '1.25', env: 'prod' }))?.name).toBe('regex');
    expect(table.match(md({ version: 'x1.25', env: 'prod' }))?.name).toBe('rest');
    expect(table.match(md({ version: '1.2.3', env: 'prod' }))?.name).toBe('rest');
  });
  it('supports presence, the older exact_match/prefix_match spellings, and inversion', () => {
    expect(table.match(md({ canary: '', env: 'prod' }))?.name).toBe('present');
    expect(table.match(md({ zone: 'a', tier: 'golden', env: 'prod' }))?.name).toBe('legacy');
    expect(table.match(md({ zone: 'a', tier: 'silver', env: 'prod' }))?.name).toBe('rest');
    expect(table.match(md({ env: 'dev' }))?.name).toBe('inverted');
    expect(table.match(md({}))?.name).toBe('inverted');
  });
  it('returns undefined when no rule matches', () => {
    const t = RouteTable.compile({ name: 'x', routes: [{ name: 'only', match: { metadata: [{ name: 'a', string_match: { exact: '1' } }] }, route: { cluster: 'c' } }] });
    expect(t.match(md({ a: '2' }))).toBeUndefined();
  });
  it('splits by weight', () => {
    const r = new Route({ name: 'w', route: { weighted_clusters: { clusters: [{ name: 'v1', weight: 20 }, { name: 'v2', weight: 80 }] } } }, 0);
    expect(r.pickCluster(0)).toBe('v1');
    expect(r.pickCluster(0.1999)).toBe('v1');
    expect(r.pickCluster(0.2)).toBe('v2');
    expect(r.pickCluster(0.9999)).toBe('v2');
    let v1 = 0;
    for (let i = 0; i < 10_000; i++) if (r.pickCluster() === 'v1') v1++;
    // 10k draws of p = 0.2: sd = 40; 5 sd either side.
    expect(v1).toBeGreaterThan(2000 - 200);
    expect(v1).toBeLessThan(2000 + 200);
  });
  it('rejects a route without destination and a bad regex, naming the route', () => {
    expect(() => new Route({ name: 'bad', route: {} } as MetaRoute, 0)).toThrow(/route bad/);
    expect(() =>
      RouteTable.compile({ name: 'x', routes: [{ name: 'r', match: { metadata: [{ name: 'a', string_match: { safe_regex: { regex: '(' } } }] }, route: { cluster: 'c' } }] }),
    ).toThrow(/r\.match\.metadata\[0\]\.string_match\.safe_regex\.regex: invalid regular expression "\(": missing closing \)/);
  });
  it('reads mirror fractions and mutations', () => {
    const r = new Route(
      {
        name: 'm',
        route: { cluster: 'a', request_mirror_policies: [{ cluster: 'b', runtime_fraction: { default_value: { numerator: 250000, denominator: 'MILLION' } } }] },
        request_mutation: [{ key: 'x', value: '1' }],
      },
      0,
    );
    expect(r.mirrors).toEqual([{ cluster: 'b', fraction: 0.25 }]);
    expect(r.requestMutation).toEqual([{ key: 'x', value: '1' }]);
    expect(r.responseMutation).toBeUndefined();
    expect(r.clusters()).toEqual(['a', 'b']);
  });
});

describe('route timeout', () => {
  const timeoutOf = (timeout: string | undefined): number | undefined =>
    RouteTable.compile({ name: 't', routes: [{ name: 'r', route: { cluster: 'c' }, ...(timeout !== undefined ? { timeout } : {}) }] }).match(md({}))!.timeoutMs;
  it('is 15 s when the route sets none (as an Envoy route), the configured value otherwise, and off at 0s', () => {
    expect(timeoutOf(undefined)).toBe(15_000);
    expect(timeoutOf('2s')).toBe(2000);
    expect(timeoutOf('0.25s')).toBe(250);
    expect(timeoutOf('0s')).toBeUndefined();
  });
});
