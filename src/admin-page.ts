import { createHash } from 'node:crypto';
import type { RequestCounts } from './metrics.js';
import type { ProxySummary } from './proxy.js';
import type { HeaderMatcher, MetaRoute } from './xds/resources.js';

/**
 * The admin page (`GET /` from a browser) and the JSON it polls (`GET /stats/summary`): listeners, route tables with
 * their match rules and destinations, clusters with each endpoint's health, and per-route request and error rates.
 * Everything is inline (no CDN, no fonts, no images), so it works where the proxy runs with no network; the page
 * computes rates from the cumulative counters of two successive polls.
 */

/** Request counts by outcome, cumulative since the proxy started. */
export interface Counts {
  total: number;
  success: number;
  error: number;
  business_exception: number;
  local_reply: number;
  /** Failed requests: `error` (an upstream error status, reset, connect failure) plus `local_reply` (answered by the proxy: no route, timeout, fault abort, rate limited, circuit breaker). */
  errors: number;
  duration_seconds_sum: number;
}

export interface MatchRule {
  /** The metadata key (lower case). */
  key: string;
  op: 'exact' | 'prefix' | 'suffix' | 'regex' | 'present' | 'absent';
  value?: string;
  ignore_case?: boolean;
  invert?: boolean;
}

export interface SummaryRoute {
  name: string;
  match: MatchRule[];
  /** The rules as one line (`user exact "jason" and method prefix "say"`; `*` when the route matches everything). */
  match_text: string;
  destinations: Array<{ cluster: string; weight: number }>;
  mirrors: Array<{ cluster: string; percent: number }>;
  /** Timeout, retries, faults, as short phrases. */
  policy: string[];
  requests: Counts;
}

export interface SummaryRouteTable {
  /** The RDS name (MetaProtocol) or `<listener>/prefix_routes` (Redis). */
  name: string;
  protocol: string;
  listeners: string[];
  routes: SummaryRoute[];
  /** Requests these listeners answered without a route (`route="none"` in the metrics). */
  unrouted: Counts;
}

export type EndpointHealth = 'healthy' | 'ejected' | 'circuit_broken';

export interface AdminSummary {
  version: string | null;
  applied_at: string | null;
  ready: boolean;
  /** When this summary was taken, ms since the epoch (the page divides counter deltas by its differences). */
  now: number;
  listeners: Array<{ name: string; address: string; protocol: string; network_filter: string; codec: string; route_config: string | null; connections: number; requests: Counts }>;
  route_tables: SummaryRouteTable[];
  clusters: Array<{
    name: string;
    lb_policy: string;
    active_requests: number;
    connections: number;
    circuit_breaker: { max_requests: number | null; max_connections: number | null; open: boolean };
    outlier: { consecutive_errors: number; interval_ms: number; base_ejection_ms: number; max_ejection_percent: number } | null;
    requests: Counts;
    endpoints: Array<{
      address: string;
      labels: Record<string, string>;
      weight: number;
      health: EndpointHealth;
      /** While ejected: until when (ISO time) and for how much longer. */
      ejected_until: string | null;
      ejected_for_ms: number | null;
      ejections: number;
      consecutive_errors: number;
      active_requests: number;
      connections: number;
    }>;
  }>;
  /** The raw counters, one row per listener × route × cluster. */
  requests: RequestCounts[];
}

function zero(): Counts {
  return { total: 0, success: 0, error: 0, business_exception: 0, local_reply: 0, errors: 0, duration_seconds_sum: 0 };
}

function add(into: Counts, r: RequestCounts): void {
  into.total += r.total;
  into.success += r.success;
  into.error += r.error;
  into.business_exception += r.business_exception;
  into.local_reply += r.local_reply;
  into.errors += r.error + r.local_reply;
  into.duration_seconds_sum += r.duration_seconds_sum;
}

function sum(rows: readonly RequestCounts[], keep: (r: RequestCounts) => boolean): Counts {
  const c = zero();
  for (const r of rows) if (keep(r)) add(c, r);
  return c;
}

/** One HeaderMatcher as a rule (the same reading as src/router.ts). */
export function matchRule(m: HeaderMatcher): MatchRule {
  const key = (m.name ?? '').toLowerCase();
  const sm = m.string_match;
  const extra = { ...(sm?.ignore_case ? { ignore_case: true } : {}), ...(m.invert_match ? { invert: true } : {}) };
  const exact = sm?.exact ?? m.exact_match;
  if (exact !== undefined) return { key, op: 'exact', value: exact, ...extra };
  const prefix = sm?.prefix ?? m.prefix_match;
  if (prefix !== undefined) return { key, op: 'prefix', value: prefix, ...extra };
  if (sm?.suffix !== undefined) return { key, op: 'suffix', value: sm.suffix, ...extra };
  const regex = sm?.safe_regex?.regex ?? m.safe_regex_match?.regex;
  if (regex !== undefined) return { key, op: 'regex', value: regex, ...extra };
  if (m.present_match === false) return { key, op: 'absent', ...extra };
  return { key, op: 'present', ...extra };
}

export function matchText(rules: readonly MatchRule[]): string {
  if (rules.length === 0) return '*';
  return rules
    .map((r) => {
      const v = r.value !== undefined ? ` ${JSON.stringify(r.value)}` : '';
      return `${r.invert ? 'not ' : ''}${r.key} ${r.op}${v}${r.ignore_case ? ' (ignore case)' : ''}`;
    })
    .join(' and ');
}

function percentOf(v: { numerator?: number; denominator?: string } | undefined): number {
  if (!v) return 100;
  const d = v.denominator === 'MILLION' ? 1_000_000 : v.denominator === 'TEN_THOUSAND' ? 10_000 : 100;
  return Math.min(100, Math.max(0, ((v.numerator ?? 0) * 100) / d));
}

function metaRoute(name: string, c: MetaRoute, counts: Counts): SummaryRoute {
  const match = (c.match?.metadata ?? []).map(matchRule);
  const a = c.route ?? {};
  const destinations = a.weighted_clusters?.clusters?.length
    ? a.weighted_clusters.clusters.map((w) => ({ cluster: w.name, weight: w.weight }))
    : a.cluster
      ? [{ cluster: a.cluster, weight: 100 }]
      : [];
  const policy: string[] = [];
  if (c.timeout) policy.push(`timeout ${c.timeout}`);
  if (c.retry_policy && c.retry_policy.num_retries > 0) {
    policy.push(`retries ${c.retry_policy.num_retries} on ${c.retry_policy.retry_on ?? 'connect-failure,reset'}${c.retry_policy.per_try_timeout ? ` (per try ${c.retry_policy.per_try_timeout})` : ''}`);
  }
  if (c.fault?.delay) policy.push(`fault delay ${c.fault.delay.fixed_delay} × ${percentOf(c.fault.delay.percentage)}%`);
  if (c.fault?.abort) policy.push(`fault abort ${percentOf(c.fault.abort.percentage)}%${c.fault.abort.error_code !== undefined ? ` code ${c.fault.abort.error_code}` : ''}`);
  if (a.hash_policy?.length) policy.push(`hash on ${a.hash_policy.join(', ')}`);
  if (c.request_mutation?.length) policy.push(`request mutation ${c.request_mutation.map((m) => `${m.key}=${m.value}`).join(', ')}`);
  if (c.response_mutation?.length) policy.push(`response mutation ${c.response_mutation.map((m) => `${m.key}=${m.value}`).join(', ')}`);
  return {
    name,
    match,
    match_text: matchText(match),
    destinations,
    mirrors: (a.request_mirror_policies ?? []).map((m) => ({ cluster: m.cluster, percent: percentOf(m.runtime_fraction?.default_value) })),
    policy,
    requests: counts,
  };
}

interface RedisRouteJson {
  prefix?: string;
  cluster?: string;
  remove_prefix?: boolean;
  request_mirror_policy?: Array<{ cluster: string; runtime_fraction?: { default_value?: { numerator?: number; denominator?: string } } }>;
}

function redisRoutes(prefixRoutes: unknown, counts: (route: string) => Counts): SummaryRoute[] {
  const pr = (prefixRoutes ?? {}) as { routes?: RedisRouteJson[]; catch_all_route?: RedisRouteJson; case_insensitive?: boolean };
  const one = (r: RedisRouteJson, catchAll: boolean): SummaryRoute => {
    const name = catchAll ? 'catch_all' : (r.prefix ?? '');
    const match: MatchRule[] = catchAll ? [] : [{ key: 'key', op: 'prefix', value: r.prefix ?? '', ...(pr.case_insensitive ? { ignore_case: true } : {}) }];
    return {
      name,
      match,
      match_text: matchText(match),
      destinations: r.cluster ? [{ cluster: r.cluster, weight: 100 }] : [],
      mirrors: (r.request_mirror_policy ?? []).map((m) => ({ cluster: m.cluster, percent: percentOf(m.runtime_fraction?.default_value) })),
      policy: r.remove_prefix ? ['remove prefix'] : [],
      requests: counts(name),
    };
  };
  return [...(pr.routes ?? []).map((r) => one(r, false)), ...(pr.catch_all_route ? [one(pr.catch_all_route, true)] : [])];
}

/** The `/stats/summary` answer, from the proxy's own dump. */
/**
 * One summary for `--workers N`: the workers share one config, so the first worker's listeners, routes and
 * clusters are the picture; connection and request counts are summed over the workers, and an endpoint counts as
 * ejected while any worker has it ejected (each worker runs its own outlier detection).
 */
export function mergeSummaries(dumps: readonly ProxySummary[]): ProxySummary | undefined {
  const [first, ...rest] = dumps;
  if (!first) return undefined;
  const listenerConns = new Map<string, number>();
  const clusterSums = new Map<string, { active_requests: number; active_retries: number; connections: number }>();
  const endpointSums = new Map<string, { ejected_until: number | null; ejections: number; consecutive_errors: number; active_requests: number; connections: number }>();
  const rows = new Map<string, RequestCounts>();
  for (const d of dumps) {
    for (const l of d.listeners) listenerConns.set(l.name, (listenerConns.get(l.name) ?? 0) + l.connections);
    for (const c of d.clusters) {
      const cs = clusterSums.get(c.name) ?? { active_requests: 0, active_retries: 0, connections: 0 };
      cs.active_requests += c.active_requests;
      cs.active_retries += c.active_retries;
      cs.connections += c.connections;
      clusterSums.set(c.name, cs);
      for (const e of c.endpoints) {
        const key = `${c.name}|${e.address}`;
        const es = endpointSums.get(key) ?? { ejected_until: null, ejections: 0, consecutive_errors: 0, active_requests: 0, connections: 0 };
        if (e.ejected_until !== null) es.ejected_until = Math.max(es.ejected_until ?? 0, e.ejected_until);
        es.ejections += e.ejections;
        es.consecutive_errors = Math.max(es.consecutive_errors, e.consecutive_errors);
        es.active_requests += e.active_requests;
        es.connections += e.connections;
        endpointSums.set(key, es);
      }
    }
    for (const r of d.requests) {
      const key = `${r.listener}|${r.protocol}|${r.route}|${r.cluster}`;
      const had = rows.get(key);
      rows.set(
        key,
        had
          ? {
              ...had,
              total: had.total + r.total,
              success: had.success + r.success,
              error: had.error + r.error,
              business_exception: had.business_exception + r.business_exception,
              local_reply: had.local_reply + r.local_reply,
              duration_seconds_sum: had.duration_seconds_sum + r.duration_seconds_sum,
            }
          : r,
      );
    }
  }
  return {
    ...first,
    ready: dumps.every((d) => d.ready),
    now: Math.max(first.now, ...rest.map((d) => d.now)),
    listeners: first.listeners.map((l) => ({ ...l, connections: listenerConns.get(l.name) ?? l.connections })),
    clusters: first.clusters.map((c) => ({
      ...c,
      ...clusterSums.get(c.name),
      endpoints: c.endpoints.map((e) => ({ ...e, ...endpointSums.get(`${c.name}|${e.address}`) })),
    })),
    requests: [...rows.values()],
  };
}

export function buildSummary(dump: ProxySummary): AdminSummary {
  const rows = dump.requests;
  const tables = new Map<string, SummaryRouteTable>();
  for (const l of dump.listeners) {
    const rt = l.route_table;
    const key = rt ? `rds:${rt.name}` : l.prefix_routes !== undefined ? `redis:${l.name}` : undefined;
    if (!key) continue;
    let t = tables.get(key);
    if (!t) {
      t = { name: rt ? rt.name : `${l.name}/prefix_routes`, protocol: l.protocol, listeners: [], routes: [], unrouted: zero() };
      tables.set(key, t);
    }
    t.listeners.push(l.name);
  }
  for (const [key, t] of tables) {
    const on = new Set(t.listeners);
    const counts = (route: string): Counts => sum(rows, (r) => on.has(r.listener) && r.route === route);
    const first = dump.listeners.find((l) => l.name === t.listeners[0])!;
    t.routes = key.startsWith('rds:') ? first.route_table!.routes.map((r) => metaRoute(r.name, r.config, counts(r.name))) : redisRoutes(first.prefix_routes, counts);
    t.unrouted = counts('none');
  }
  const now = dump.now;
  return {
    version: dump.version,
    applied_at: dump.applied_at,
    ready: dump.ready,
    now,
    listeners: dump.listeners.map((l) => ({
      name: l.name,
      address: l.address,
      protocol: l.protocol,
      network_filter: l.network_filter,
      codec: l.codec,
      route_config: l.route_config,
      connections: l.connections,
      requests: sum(rows, (r) => r.listener === l.name),
    })),
    route_tables: [...tables.values()],
    clusters: dump.clusters.map((c) => {
      const open = c.max_requests !== null && c.active_requests >= c.max_requests;
      return {
        name: c.name,
        lb_policy: c.lb_policy,
        active_requests: c.active_requests,
        connections: c.connections,
        circuit_breaker: { max_requests: c.max_requests, max_connections: c.max_connections, open },
        outlier: c.outlier
          ? { consecutive_errors: c.outlier.consecutiveErrors, interval_ms: c.outlier.intervalMs, base_ejection_ms: c.outlier.baseEjectionMs, max_ejection_percent: c.outlier.maxEjectionPercent }
          : null,
        requests: sum(rows, (r) => r.cluster === c.name),
        endpoints: c.endpoints.map((e) => ({
          address: e.address,
          labels: e.labels,
          weight: e.weight,
          health: e.ejected_until !== null ? 'ejected' : open ? 'circuit_broken' : 'healthy',
          ejected_until: e.ejected_until !== null ? new Date(e.ejected_until).toISOString() : null,
          ejected_for_ms: e.ejected_until !== null ? Math.max(0, e.ejected_until - now) : null,
          ejections: e.ejections,
          consecutive_errors: e.consecutive_errors,
          active_requests: e.active_requests,
          connections: e.connections,
        })),
      };
    }),
    requests: rows,
  };
}

// ---- the page -----------------------------------------------------------------------------------------------------

const STYLE = `
:root { color-scheme: light dark; --fg:#1d2430; --muted:#5f6b7a; --bg:#f6f7f9; --card:#fff; --line:#dde1e7; --ok:#1a7f37; --bad:#c62828; --warn:#b26a00; --accent:#2f5fd0; }
@media (prefers-color-scheme: dark) { :root { --fg:#e3e7ee; --muted:#9aa5b4; --bg:#14171c; --card:#1c2027; --line:#2d333d; --ok:#4cc36b; --bad:#ff6b6b; --warn:#e0a030; --accent:#7aa2ff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 16px; align-items: baseline; flex-wrap: wrap; padding: 10px 18px; background: var(--card); border-bottom: 1px solid var(--line); position: sticky; top: 0; }
header h1 { font-size: 16px; margin: 0; }
header .meta { color: var(--muted); }
main { padding: 12px 18px 30px; display: grid; gap: 14px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow-x: auto; }
h2 { font-size: 14px; margin: 0 0 8px; }
h3 { font-size: 13px; margin: 10px 0 4px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.muted { color: var(--muted); }
.pill { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 11px; font-weight: 600; border: 1px solid currentColor; white-space: nowrap; }
.healthy { color: var(--ok); } .ejected, .bad { color: var(--bad); } .circuit_broken, .warn { color: var(--warn); }
.err-nonzero { color: var(--bad); font-weight: 600; }
.label { display: inline-block; margin: 0 4px 2px 0; padding: 0 5px; border-radius: 3px; background: var(--bg); border: 1px solid var(--line); font-size: 11px; }
svg.spark { vertical-align: middle; }
#status.stale { color: var(--bad); font-weight: 600; }
`;

const SCRIPT = `
'use strict';
(function () {
  var POLL_MS = 1000, HISTORY = 60;
  var prev = null;            // the previous summary
  var history = {};           // route key -> [req/s, ...]
  var polls = 0;
  function el(tag, attrs) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (attrs[k] === undefined || attrs[k] === null) continue;
      if (k === 'class') e.className = attrs[k]; else e.setAttribute(k, String(attrs[k]));
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === undefined || c === null || c === false) continue;
      if (Array.isArray(c)) c.forEach(function (x) { if (x !== undefined && x !== null) e.appendChild(typeof x === 'object' ? x : document.createTextNode(String(x))); });
      else e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  function fmtRate(x) { return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2); }
  function fmtPct(x) { return (x * 100).toFixed(x >= 0.1 || x === 0 ? 0 : 1) + '%'; }
  function table(headers, rows) {
    return el('table', null,
      el('thead', null, el('tr', null, headers.map(function (h) { return el('th', { class: /^(#|conn|req|err|active|weight|ejections|total|avg)/i.test(h) ? 'num' : '' }, h); }))),
      el('tbody', null, rows));
  }
  function labels(obj) {
    var ks = Object.keys(obj || {});
    if (!ks.length) return el('span', { class: 'muted' }, '—');
    return ks.map(function (k) { return el('span', { class: 'label mono' }, k + '=' + obj[k]); });
  }
  function spark(values) {
    var w = 90, h = 18, max = Math.max.apply(null, values.concat([1e-9]));
    var pts = values.map(function (v, i) { return (values.length < 2 ? 0 : (i * w / (HISTORY - 1))).toFixed(1) + ',' + (h - 1 - (v / max) * (h - 2)).toFixed(1); }).join(' ');
    var svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', 'spark'); svg.setAttribute('width', w); svg.setAttribute('height', h);
    var pl = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    pl.setAttribute('points', pts); pl.setAttribute('fill', 'none'); pl.setAttribute('stroke', 'currentColor'); pl.setAttribute('stroke-width', '1.3');
    svg.appendChild(pl);
    return svg;
  }
  function rates(key, counts, prevCounts, dt) {
    var rps = 0, eps = 0;
    if (prevCounts && dt > 0) {
      rps = Math.max(0, counts.total - prevCounts.total) / dt;
      eps = Math.max(0, counts.errors - prevCounts.errors) / dt;
    }
    var h = history[key] || (history[key] = []);
    if (prevCounts) { h.push(rps); if (h.length > HISTORY) h.shift(); }
    return { rps: rps, eps: eps, ratio: rps > 0 ? eps / rps : 0, history: h };
  }
  function findPrevRoute(tableName, routeName, unrouted) {
    if (!prev) return null;
    for (var i = 0; i < prev.route_tables.length; i++) {
      var t = prev.route_tables[i];
      if (t.name !== tableName) continue;
      if (unrouted) return t.unrouted;
      for (var j = 0; j < t.routes.length; j++) if (t.routes[j].name === routeName) return t.routes[j].requests;
    }
    return null;
  }
  function rateCells(key, counts, prevCounts, dt) {
    var r = rates(key, counts, prevCounts, dt);
    return {
      attrs: { 'data-rps': r.rps.toFixed(3), 'data-eps': r.eps.toFixed(3), 'data-total': counts.total, 'data-errors': counts.errors },
      cells: [
        el('td', { class: 'num rps' }, fmtRate(r.rps)),
        el('td', { class: 'num eps' + (r.eps > 0 ? ' err-nonzero' : '') }, fmtRate(r.eps)),
        el('td', { class: 'num' + (r.ratio > 0 ? ' err-nonzero' : '') }, fmtPct(r.ratio)),
        el('td', { class: 'num' }, counts.total + ' / ' + counts.errors),
        el('td', null, spark(r.history)),
      ],
    };
  }
  function renderListeners(s) {
    return el('section', { id: 'listeners' }, el('h2', null, 'Listeners (' + s.listeners.length + ')'),
      table(['name', 'address', 'protocol', 'route config', 'connections', 'requests', 'codec · network filter'],
        s.listeners.map(function (l) {
          return el('tr', { 'data-listener': l.name },
            el('td', { class: 'mono' }, l.name), el('td', { class: 'mono' }, l.address), el('td', null, l.protocol),
            el('td', { class: 'mono' }, l.route_config || '—'),
            el('td', { class: 'num conns' }, l.connections), el('td', { class: 'num' }, l.requests.total),
            el('td', { class: 'mono muted' }, l.codec + ' · ' + l.network_filter));
        })));
  }
  function renderRoutes(s, dt) {
    var sec = el('section', { id: 'routes' }, el('h2', null, 'Routes'));
    if (!s.route_tables.length) sec.appendChild(el('p', { class: 'muted' }, 'no route tables'));
    s.route_tables.forEach(function (t) {
      sec.appendChild(el('h3', null, el('span', { class: 'mono' }, t.name), el('span', { class: 'muted' }, '  ' + t.protocol + ' · listeners: ' + t.listeners.join(', '))));
      var rows = t.routes.map(function (r, i) {
        var rc = rateCells(t.name + '/' + r.name, r.requests, findPrevRoute(t.name, r.name, false), dt);
        var attrs = Object.assign({ 'data-route': t.name + '/' + r.name }, rc.attrs);
        return el('tr', attrs,
          el('td', { class: 'num muted' }, i + 1),
          el('td', { class: 'mono route-name' }, r.name),
          el('td', { class: 'mono match' }, r.match_text),
          el('td', { class: 'mono dest' }, r.destinations.map(function (d) { return el('div', null, d.cluster + (r.destinations.length > 1 ? '  ' + d.weight + '%' : '')); }),
            r.mirrors.map(function (m) { return el('div', { class: 'muted' }, 'mirror → ' + m.cluster + ' ' + m.percent + '%'); })),
          el('td', { class: 'muted' }, r.policy.join('; ') || '—'),
          rc.cells);
      });
      var u = rateCells(t.name + '/(no route)', t.unrouted, findPrevRoute(t.name, null, true), dt);
      rows.push(el('tr', Object.assign({ 'data-route': t.name + '/(no route)', class: 'muted' }, u.attrs),
        el('td', null, ''), el('td', { class: 'route-name' }, '(no route)'), el('td', { class: 'match' }, 'nothing above matched'), el('td', { class: 'dest' }, 'local reply'), el('td', null, ''), u.cells));
      sec.appendChild(table(['#', 'route', 'match', 'destinations', 'policy', 'req/s', 'err/s', 'err %', 'total / errors', 'req/s, last minute'], rows));
    });
    return sec;
  }
  function renderClusters(s) {
    var sec = el('section', { id: 'clusters' }, el('h2', null, 'Clusters (' + s.clusters.length + ')'));
    s.clusters.forEach(function (c) {
      var cb = c.circuit_breaker;
      var limits = [];
      if (cb.max_requests !== null) limits.push('max requests ' + cb.max_requests);
      if (cb.max_connections !== null) limits.push('max connections ' + cb.max_connections);
      var od = c.outlier ? 'outlier detection: ' + c.outlier.consecutive_errors + ' consecutive errors, ejection ' + c.outlier.base_ejection_ms + ' ms, max ' + c.outlier.max_ejection_percent + '%' : 'no outlier detection';
      sec.appendChild(el('h3', { 'data-cluster': c.name }, el('span', { class: 'mono' }, c.name),
        el('span', { class: 'muted' }, '  ' + c.lb_policy + ' · active ' + c.active_requests + ' · connections ' + c.connections + ' · ' + (limits.join(', ') || 'no circuit breaker') + ' · ' + od + '  '),
        cb.open ? el('span', { class: 'pill circuit_broken' }, 'circuit breaker open') : null));
      sec.appendChild(table(['endpoint', 'labels', 'weight', 'health', 'ejections', 'active', 'connections'],
        c.endpoints.map(function (e) {
          var health = e.health === 'ejected'
            ? [el('span', { class: 'pill ejected' }, 'ejected'), el('span', { class: 'muted' }, ' until ' + new Date(e.ejected_until).toLocaleTimeString() + ' (' + Math.ceil(e.ejected_for_ms / 1000) + ' s)')]
            : el('span', { class: 'pill ' + e.health }, e.health === 'circuit_broken' ? 'circuit broken' : 'healthy');
          return el('tr', { 'data-endpoint': c.name + ' ' + e.address, 'data-health': e.health },
            el('td', { class: 'mono' }, e.address), el('td', null, labels(e.labels)), el('td', { class: 'num' }, e.weight),
            el('td', { class: 'health' }, health), el('td', { class: 'num' }, e.ejections), el('td', { class: 'num' }, e.active_requests), el('td', { class: 'num' }, e.connections));
        })));
    });
    return sec;
  }
  function render(s) {
    var dt = prev ? (s.now - prev.now) / 1000 : 0;
    var main = document.getElementById('main');
    var next = el('main', { id: 'main' }, renderListeners(s), renderRoutes(s, dt), renderClusters(s));
    main.replaceWith(next);
    document.getElementById('version').textContent = s.version === null ? 'no config yet' : 'config ' + s.version;
    var ready = document.getElementById('ready');
    ready.textContent = s.ready ? 'ready' : 'not ready'; ready.className = 'pill ' + (s.ready ? 'healthy' : 'ejected');
    prev = s;
  }
  function poll() {
    fetch('/stats/summary', { cache: 'no-store', headers: { accept: 'application/json' } })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (s) {
        render(s);
        polls++;
        var st = document.getElementById('status');
        st.textContent = 'updated ' + new Date(s.now).toLocaleTimeString() + ' · poll ' + polls;
        st.className = ''; st.setAttribute('data-polls', String(polls));
      })
      .catch(function (err) {
        var st = document.getElementById('status');
        st.textContent = 'cannot reach the admin API: ' + err.message; st.className = 'stale';
      })
      .then(function () { setTimeout(poll, POLL_MS); });
  }
  poll();
})();
`;

const sha256 = (text: string): string => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/** Allows only the inline script and style above and requests to the admin API itself: the page loads nothing else. */
export const ADMIN_PAGE_CSP = `default-src 'none'; script-src ${sha256(SCRIPT)}; style-src ${sha256(STYLE)}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

export const ADMIN_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Waypost admin</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>Waypost</h1>
  <span id="ready" class="pill">…</span>
  <span id="version" class="meta mono"></span>
  <span id="status" class="meta">loading…</span>
  <span class="meta">read-only · JSON: <a href="/stats/summary">/stats/summary</a> <a href="/config_dump">/config_dump</a> <a href="/clusters">/clusters</a> <a href="/listeners">/listeners</a> <a href="/stats/prometheus">/stats/prometheus</a></span>
</header>
<main id="main"><p class="muted">loading…</p></main>
<script>${SCRIPT}</script>
</body>
</html>
`;
