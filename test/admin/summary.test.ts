/**
 * `GET /stats/summary` (what the admin page polls) and the admin API's `/` content negotiation, against a real
 * `waypost proxy` with real Dubbo providers; and `buildSummary` on hand-written dumps for the cases a live proxy is
 * slow to reach (every matcher kind, Redis prefix routes, an open circuit breaker).
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGet, sleep } from '../../examples/dubbo/harness.js';
import type { Provider } from '../../examples/dubbo/provider.js';
import { buildSummary, matchRule, matchText, type AdminSummary } from '../../src/admin-page.js';
import type { ProxySummary } from '../../src/proxy.js';
import { PolicyFixture } from '../policy/fixture.js';
import { adminConfig, clusterNames, CONSECUTIVE_ERRORS } from './config.js';

function request(address: string, method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const [host, port] = address.split(':');
    const req = http.request({ host, port: Number(port), method, path, headers, agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

describe('GET /stats/summary on a running proxy', () => {
  const fx = new PolicyFixture();
  let a: Provider;
  let b: Provider;
  let names: ReturnType<typeof clusterNames>;

  const summary = async (): Promise<AdminSummary> => {
    const r = await httpGet(fx.proxy.adminAddress, '/stats/summary', 5000);
    expect(r.status).toBe(200);
    return JSON.parse(r.body) as AdminSummary;
  };

  beforeAll(async () => {
    [a, b] = await fx.start(['v1', 'v2']);
    await fx.apply(adminConfig(a!, b!, { v2MaxRequests: 1 }));
    names = clusterNames(fx.listenPort);
  });
  afterAll(() => fx.stop());

  it('lists the listener, the route table with match rules and destinations, and every cluster with its endpoints', async () => {
    const s = await summary();
    const listeners = JSON.parse((await httpGet(fx.proxy.adminAddress, '/listeners')).body) as Array<{ name: string; address: string }>;
    expect(s.ready).toBe(true);
    expect(s.listeners.map((l) => l.name)).toEqual(listeners.map((l) => l.name));
    expect(s.listeners[0]).toMatchObject({ address: fx.address, protocol: 'dubbo', codec: 'aeraki.meta_protocol.codec.dubbo', network_filter: 'envoy.filters.network.meta_protocol_proxy', connections: 0 });

    expect(s.route_tables).toHaveLength(1);
    const table = s.route_tables[0]!;
    expect(table.listeners).toEqual([s.listeners[0]!.name]);
    expect(table.name).toBe(s.listeners[0]!.route_config);
    expect(table.routes.map((r) => [r.name, r.match_text])).toEqual([
      ['jason', 'user exact "jason"'],
      ['hello', 'method prefix "say"'],
      ['split', 'method regex "who.*|fail"'],
    ]);
    expect(table.routes[0]!.destinations).toEqual([{ cluster: names.v2, weight: 100 }]);
    expect(table.routes[1]!.destinations).toEqual([{ cluster: names.all, weight: 100 }]);
    expect(table.routes[1]!.policy).toEqual(['timeout 5s']);
    expect(table.routes[2]!.destinations).toEqual([
      { cluster: names.v1, weight: 50 },
      { cluster: names.v2, weight: 50 },
    ]);

    expect(s.clusters.map((c) => c.name).sort()).toEqual([names.all, names.v1, names.v2].sort());
    const all = s.clusters.find((c) => c.name === names.all)!;
    expect(all.lb_policy).toBe('ROUND_ROBIN');
    expect(all.outlier).toEqual({ consecutive_errors: CONSECUTIVE_ERRORS, interval_ms: 1000, base_ejection_ms: 60_000, max_ejection_percent: 50 });
    expect(all.endpoints.map((e) => [e.address, e.labels, e.health])).toEqual([
      [`127.0.0.1:${a.port}`, { version: 'v1' }, 'healthy'],
      [`127.0.0.1:${b.port}`, { version: 'v2' }, 'healthy'],
    ]);
    expect(s.clusters.find((c) => c.name === names.v2)!.circuit_breaker).toEqual({ max_requests: 1, max_connections: null, open: false });
  });

  it('counts each route’s requests by outcome, unrouted requests per table, and agrees with /stats/prometheus', async () => {
    const conn = await fx.connect();
    const before = await summary();
    const route = (s: AdminSummary, name: string) => s.route_tables[0]!.routes.find((r) => r.name === name)!.requests;
    for (let i = 0; i < 4; i++) expect((await fx.call(conn, 'sayHello', [`j${i}`], { user: 'jason' })).status).toBe(20);
    // `fail` answers a Java exception: a business exception, not a failure of the call.
    expect((await fx.call(conn, 'fail', ['boom'], { user: 'jason' })).status).toBe(20);
    for (let i = 0; i < 6; i++) expect((await fx.call(conn, 'sayHello', [`h${i}`])).status).toBe(20);
    for (let i = 0; i < 3; i++) expect((await fx.call(conn, 'nosuch', [])).status).toBe(60);
    const after = await summary();
    const delta = (name: string) => {
      const x = route(after, name);
      const y = route(before, name);
      return { total: x.total - y.total, errors: x.errors - y.errors, business_exception: x.business_exception - y.business_exception, success: x.success - y.success };
    };
    expect(delta('jason')).toEqual({ total: 5, errors: 0, business_exception: 1, success: 4 });
    expect(delta('hello')).toEqual({ total: 6, errors: 0, business_exception: 0, success: 6 });
    expect(delta('split')).toEqual({ total: 0, errors: 0, business_exception: 0, success: 0 });
    const unrouted = after.route_tables[0]!.unrouted;
    expect(unrouted.total - before.route_tables[0]!.unrouted.total).toBe(3);
    expect(unrouted.local_reply - before.route_tables[0]!.unrouted.local_reply).toBe(3);
    expect(unrouted.errors - before.route_tables[0]!.unrouted.errors).toBe(3);
    expect(after.now).toBeGreaterThan(before.now);
    expect(after.listeners[0]!.connections).toBeGreaterThanOrEqual(1);
    // Round robin over both endpoints of the whole-host cluster: 3 each.
    expect(after.clusters.find((c) => c.name === names.all)!.requests.total - before.clusters.find((c) => c.name === names.all)!.requests.total).toBe(6);

    // The raw rows are the same counters Prometheus scrapes.
    const prom = (await httpGet(fx.proxy.adminAddress, '/stats/prometheus', 5000)).body;
    for (const row of after.requests) {
      const labels = `listener="${row.listener}",protocol="${row.protocol}",route="${row.route}",cluster="${row.cluster}"`;
      const sample = (outcome: string): number => {
        const line = prom.split('\n').find((l) => l.startsWith(`waypost_requests_total{${labels},outcome="${outcome}"}`));
        return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
      };
      expect(sample('success')).toBe(row.success);
      expect(sample('local_reply')).toBe(row.local_reply);
      expect(sample('business_exception')).toBe(row.business_exception);
    }
  });

  it('shows an endpoint ejected by outlier detection, with until when', async () => {
    const conn = await fx.connect();
    a.mode = 'error';
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 4 * CONSECUTIVE_ERRORS; i++) statuses.push((await fx.call(conn, 'sayHello', [`o${i}`])).status);
      expect(statuses.filter((s) => s !== 20)).toHaveLength(CONSECUTIVE_ERRORS);
      const s = await summary();
      const all = s.clusters.find((c) => c.name === names.all)!;
      const ejected = all.endpoints.find((e) => e.address === `127.0.0.1:${a.port}`)!;
      expect(ejected.health).toBe('ejected');
      expect(ejected.ejections).toBe(1);
      expect(ejected.ejected_for_ms).toBeGreaterThan(30_000);
      expect(ejected.ejected_for_ms).toBeLessThanOrEqual(60_000);
      expect(Date.parse(ejected.ejected_until!)).toBe(s.now + ejected.ejected_for_ms!);
      expect(all.endpoints.find((e) => e.address === `127.0.0.1:${b.port}`)!.health).toBe('healthy');
      // Ejection is per cluster: the v1 subset's cluster (no traffic) still has the endpoint healthy.
      expect(s.clusters.find((c) => c.name === names.v1)!.endpoints[0]!.health).toBe('healthy');
      expect(s.route_tables[0]!.routes.find((r) => r.name === 'hello')!.requests.error).toBeGreaterThanOrEqual(CONSECUTIVE_ERRORS);
    } finally {
      a.mode = 'ok';
    }
  });

  it('shows a cluster at its request limit as circuit-broken', async () => {
    const conn = await fx.connect();
    b.mode = 'hang';
    try {
      // One call in flight to the v2 subset (max 1 request) holds the breaker open; the next is refused locally.
      const hanging = fx.call(conn, 'sayHello', ['held'], { user: 'jason' }, 60_000).catch(() => undefined);
      let s = await summary();
      for (let i = 0; i < 100 && s.clusters.find((c) => c.name === names.v2)!.active_requests < 1; i++) {
        await sleep(50);
        s = await summary();
      }
      const v2 = s.clusters.find((c) => c.name === names.v2)!;
      expect(v2.active_requests).toBe(1);
      expect(v2.circuit_breaker.open).toBe(true);
      expect(v2.endpoints.map((e) => e.health)).toEqual(['circuit_broken']);
      expect((await fx.call(conn, 'sayHello', ['refused'], { user: 'jason' })).status).toBe(100);
      void hanging;
    } finally {
      b.mode = 'ok';
    }
  });

  it('serves the page to browsers and the JSON index to other clients; refuses every method but GET', async () => {
    const addr = fx.proxy.adminAddress;
    const asJson = await request(addr, 'GET', '/', { accept: 'application/json' });
    expect(asJson.headers['content-type']).toBe('application/json');
    expect((JSON.parse(asJson.body) as { endpoints: string[] }).endpoints).toEqual(
      expect.arrayContaining(['/ready', '/config_dump', '/clusters', '/listeners', '/stats/prometheus', '/metrics', '/stats/summary']),
    );
    const noAccept = await request(addr, 'GET', '/');
    expect(noAccept.headers['content-type']).toBe('application/json');

    const page = await request(addr, 'GET', '/', { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' });
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.body).toContain('/stats/summary');
    // Nothing loaded from elsewhere: no absolute URL but the SVG namespace, and a CSP that forbids it anyway.
    expect(page.body.match(/https?:\/\/[^'"\s]+/g) ?? []).toEqual(['http://www.w3.org/2000/svg', 'http://www.w3.org/2000/svg']);
    expect(page.headers['content-security-policy']).toMatch(/^default-src 'none'; script-src 'sha256-[A-Za-z0-9+/=]+'; style-src 'sha256-/);
    expect(page.headers['content-security-policy']).toContain("connect-src 'self'");
    expect((await request(addr, 'GET', '/?format=html')).headers['content-type']).toBe('text/html; charset=utf-8');

    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      for (const path of ['/', '/stats/summary', '/clusters', '/config_dump']) {
        const r = await request(addr, method, path);
        expect(r.status, `${method} ${path}`).toBe(405);
        expect(r.headers.allow).toBe('GET');
      }
    }
  });
});

describe('buildSummary', () => {
  const base: ProxySummary = { version: 'v1', applied_at: '2024-01-01T00:00:00.000Z', ready: true, now: 1_000_000, listeners: [], clusters: [], requests: [] };

  it('reads every matcher kind the router reads', () => {
    const rules = [
      matchRule({ name: 'Interface', string_match: { exact: 'a.B' } }),
      matchRule({ name: 'method', prefix_match: 'get' }),
      matchRule({ name: 'x', string_match: { suffix: 'z', ignore_case: true } }),
      matchRule({ name: 'v', safe_regex_match: { regex: '1\\..*' } }),
      matchRule({ name: 'p' }),
      matchRule({ name: 'q', present_match: false }),
      matchRule({ name: 'user', exact_match: 'bob', invert_match: true }),
    ];
    expect(rules.map((r) => r.op)).toEqual(['exact', 'prefix', 'suffix', 'regex', 'present', 'absent', 'exact']);
    expect(matchText(rules)).toBe('interface exact "a.B" and method prefix "get" and x suffix "z" (ignore case) and v regex "1\\\\..*" and p present and q absent and not user exact "bob"');
    expect(matchText([])).toBe('*');
  });

  it('lists Redis prefix routes, sums counters per route and per listener, and marks circuit-broken and ejected endpoints', () => {
    const row = (route: string, cluster: string, success: number, local_reply: number) => ({
      listener: 'redis_6379', protocol: 'redis', route, cluster, total: success + local_reply, success, error: 0, business_exception: 0, local_reply, duration_seconds_sum: 0,
    });
    const s = buildSummary({
      ...base,
      listeners: [
        {
          name: 'redis_6379', address: '127.0.0.1:6379', protocol: 'redis', network_filter: 'envoy.filters.network.redis_proxy', codec: 'redis', connections: 2,
          route_config: null, route_table: null,
          prefix_routes: { routes: [{ prefix: 'user:', cluster: 'users', request_mirror_policy: [{ cluster: 'shadow', runtime_fraction: { default_value: { numerator: 25 } } }] }], catch_all_route: { cluster: 'rest' } },
        },
      ],
      clusters: [
        {
          name: 'users', lb_policy: 'RANDOM', active_requests: 5, active_retries: 0, connections: 1, max_requests: 5, max_connections: null, outlier: null,
          endpoints: [{ address: '10.0.0.1:6379', labels: {}, weight: 1, ejected_until: null, ejections: 0, consecutive_errors: 0, active_requests: 5, connections: 1 }],
        },
        {
          name: 'rest', lb_policy: 'ROUND_ROBIN', active_requests: 0, active_retries: 0, connections: 0, max_requests: null, max_connections: 10, outlier: null,
          endpoints: [{ address: '10.0.0.2:6379', labels: { zone: 'a' }, weight: 1, ejected_until: 1_004_000, ejections: 2, consecutive_errors: 0, active_requests: 0, connections: 0 }],
        },
      ],
      requests: [row('user:', 'users', 7, 1), row('catch_all', 'rest', 2, 0), row('none', 'none', 0, 4)],
    });
    const t = s.route_tables[0]!;
    expect(t.name).toBe('redis_6379/prefix_routes');
    expect(t.routes.map((r) => [r.name, r.match_text, r.destinations, r.mirrors])).toEqual([
      ['user:', 'key prefix "user:"', [{ cluster: 'users', weight: 100 }], [{ cluster: 'shadow', percent: 25 }]],
      ['catch_all', '*', [{ cluster: 'rest', weight: 100 }], []],
    ]);
    expect(t.routes[0]!.requests).toMatchObject({ total: 8, success: 7, errors: 1 });
    expect(t.unrouted).toMatchObject({ total: 4, errors: 4 });
    expect(s.listeners[0]!.requests.total).toBe(14);
    expect(s.clusters[0]!.circuit_breaker.open).toBe(true);
    expect(s.clusters[0]!.endpoints[0]!.health).toBe('circuit_broken');
    expect(s.clusters[1]!.endpoints[0]).toMatchObject({ health: 'ejected', ejected_for_ms: 4000, ejected_until: new Date(1_004_000).toISOString() });
  });
});
