/**
 * Hostile numbers from an xDS server: a raw ADS server (test/xds/raw-ads-server.ts) serves a real
 * `waypost proxy --xds` (child process) a good config — a Dubbo listener whose route retries and delays, to two real
 * providers — then updates carrying one bad number each: an endpoint port of 70000, zero and overflowing weights,
 * negative, huge and NaN-like values, percentages over 100%, an undefined denominator, a listener port over 65535,
 * an address that is neither an IP nor a host name. Each is NACKed with an error_detail naming the resource and the
 * field, the NACK carries the last good version, the process stays up and calls keep being served by the last good
 * config; a good update afterwards is ACKed and followed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, httpGet } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { encodeResource, type JsonObject } from '../../src/xds/convert.js';
import {
  FILTER_META_PROTOCOL_PROXY,
  TYPE_CLUSTER,
  TYPE_ENDPOINTS,
  TYPE_LISTENER,
  TYPE_LOCAL_RATELIMIT,
  TYPE_META_PROTOCOL_PROXY,
  TYPE_META_ROUTE,
} from '../../src/xds/resources.js';
import { spawnCli, until, type AnyJson, type CliProcess, type RawRequest } from './helpers.js';
import { RawAdsServer } from './raw-ads-server.js';

const DUBBO_CODEC = 'aeraki.meta_protocol.codec.dubbo';
const CLUSTER = 'outbound|20880||hostile';
const ROUTE = 'hostile_20880';
const LISTENER = 'hostile-listener';

let v1: Provider;
let v2: Provider;
let server: RawAdsServer;
let proxy: CliProcess;
let ports: { listen: number; admin: number };
let conn: RawDubboConnection;
let callId = 1;
/** The versions last ACKed, by type. */
const acked: Record<string, string> = {};
let version = 0;

const any = (typeUrl: string, json: JsonObject): AnyJson => {
  const a = encodeResource(typeUrl, json);
  return { type_url: a.type_url, value: Buffer.from(a.value) };
};

const cluster = (extra: JsonObject = {}): AnyJson =>
  any(TYPE_CLUSTER, { name: CLUSTER, type: 'EDS', eds_cluster_config: { eds_config: { ads: {} }, service_name: CLUSTER }, connect_timeout: '1s', ...extra });

const lbEndpoint = (port: number, extra: JsonObject = {}, address = '127.0.0.1'): JsonObject => ({
  endpoint: { address: { socket_address: { address, port_value: port } } },
  ...extra,
});
const cla = (lbEndpoints: JsonObject[]): AnyJson => any(TYPE_ENDPOINTS, { cluster_name: CLUSTER, endpoints: [{ lb_endpoints: lbEndpoints }] });

/** The good route: it retries and delays, the paths a bad endpoint port used to crash on. */
const goodRoute = (extra: JsonObject = {}): JsonObject => ({
  name: 'all',
  route: { cluster: CLUSTER },
  retry_policy: { num_retries: 2, per_try_timeout: '1s', retry_on: 'connect-failure,reset' },
  fault: { delay: { fixed_delay: '0.005s', percentage: { numerator: 100, denominator: 'HUNDRED' } } },
  ...extra,
});
const routes = (...rs: JsonObject[]): AnyJson => any(TYPE_META_ROUTE, { name: ROUTE, routes: rs });

const listener = (opts: { port?: number; proxy?: JsonObject } = {}): AnyJson =>
  any(TYPE_LISTENER, {
    name: LISTENER,
    address: { socket_address: { address: '127.0.0.1', port_value: opts.port ?? ports.listen } },
    filter_chains: [
      {
        filters: [
          {
            name: FILTER_META_PROTOCOL_PROXY,
            typed_config: {
              '@type': TYPE_META_PROTOCOL_PROXY,
              stat_prefix: 'hostile',
              rds: { config_source: { ads: {} }, route_config_name: ROUTE },
              protocol: { name: 'dubbo', codec: { name: DUBBO_CODEC } },
              ...opts.proxy,
            },
          },
        ],
      },
    ],
  });

const isAckOf = (typeUrl: string, nonce: string) => (r: RawRequest) => r.type_url === typeUrl && r.response_nonce === nonce && !r.error_detail;
const isNackOf = (typeUrl: string, nonce: string) => (r: RawRequest) => r.type_url === typeUrl && r.response_nonce === nonce && !!r.error_detail;

async function whoAnswers(c: RawDubboConnection): Promise<string> {
  const r = await c.call({ id: callId++, method: 'whoami', timeoutMs: 3000 });
  expect(r.status).toBe(20);
  return String(r.value).split('@')[0]!;
}

async function nackCount(): Promise<number> {
  const text = (await httpGet(`127.0.0.1:${ports.admin}`, '/stats/prometheus')).body;
  let sum = 0;
  for (const line of text.split('\n')) if (/^waypost_xds_updates_total\{.*result="nack"/.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

/** Sends one response and returns the NACK that answers it. */
async function expectNack(typeUrl: string, resources: AnyJson[]): Promise<RawRequest> {
  const v = `bad-${++version}`;
  const nonce = server.send(typeUrl, v, resources);
  const nack = await server.next(isNackOf(typeUrl, nonce)).catch((err: Error) => {
    throw new Error(`${err.message}\n--- proxy:\n${proxy.output()}`);
  });
  expect(nack.version_info).toBe(acked[typeUrl]);
  return nack;
}

async function expectStillServing(): Promise<void> {
  expect(proxy.child.exitCode).toBeNull();
  expect(await whoAnswers(conn)).toBe('v1');
  const fresh = await RawDubboConnection.connect(`127.0.0.1:${ports.listen}`);
  try {
    expect(await whoAnswers(fresh)).toBe('v1');
  } finally {
    await fresh.close();
  }
}

beforeAll(async () => {
  v1 = await startProvider({ version: 'v1' });
  v2 = await startProvider({ version: 'v2' });
  const [listen, admin] = await freePorts(2);
  ports = { listen: listen!, admin: admin! };
  server = new RawAdsServer();
  await server.start();
  proxy = await spawnCli(['proxy', '--xds', `127.0.0.1:${server.port}`, '--node', 'hostile-numbers', '--admin', `127.0.0.1:${ports.admin}`]);
  await server.next((r) => r.type_url === TYPE_LISTENER, 15_000);
  const sent: Array<[string, string, string]> = [];
  const send = (t: string, v: string, res: AnyJson[]): void => void sent.push([t, v, server.send(t, v, res)]);
  send(TYPE_CLUSTER, 'c0', [cluster()]);
  send(TYPE_LISTENER, 'l0', [listener()]);
  await server.next((r) => r.type_url === TYPE_ENDPOINTS);
  await server.next((r) => r.type_url === TYPE_META_ROUTE);
  send(TYPE_ENDPOINTS, 'e0', [cla([lbEndpoint(v1.port)])]);
  send(TYPE_META_ROUTE, 'r0', [routes(goodRoute())]);
  for (const [t, v, n] of sent) {
    await server.next(isAckOf(t, n));
    acked[t] = v;
  }
  await until(async () => (await httpGet(`127.0.0.1:${ports.admin}`, '/ready')).status === 200, 'the proxy to be ready');
  conn = await RawDubboConnection.connect(`127.0.0.1:${ports.listen}`);
}, 60_000);

afterAll(async () => {
  await conn?.close();
  await proxy?.stop();
  server?.stop();
  await v1?.close();
  await v2?.close();
});

describe('waypost proxy --xds against an xDS server sending hostile numbers', () => {
  it('serves the good config (a route that retries and delays)', async () => {
    expect(await whoAnswers(conn)).toBe('v1');
  });

  it('NACKs an endpoint port of 70000, naming the resource and the field, and keeps serving the last good config', async () => {
    const before = await nackCount();
    const nack = await expectNack(TYPE_ENDPOINTS, [cla([lbEndpoint(v1.port), lbEndpoint(70000)])]);
    expect(nack.error_detail!.message).toBe(
      `ClusterLoadAssignment "${CLUSTER}".endpoints[0].lb_endpoints[1].endpoint.address.socket_address.port_value: 70000 is not a port (1..65535)`,
    );
    expect(await nackCount()).toBe(before + 1);
    // Enough calls that a retry or a delay would have met the bad endpoint.
    for (let i = 0; i < 10; i++) await expectStillServing();
  });

  const cases: Array<{ what: string; type: string; resources: () => AnyJson[]; detail: RegExp }> = [
    {
      what: 'an endpoint port of 0',
      type: TYPE_ENDPOINTS,
      resources: () => [cla([lbEndpoint(0)])],
      detail: /^ClusterLoadAssignment "[^"]+"\.endpoints\[0\]\.lb_endpoints\[0\]\.endpoint\.address\.socket_address\.port_value: 0 is not a port \(1\.\.65535\)$/,
    },
    {
      what: 'an endpoint address that is neither an IP nor a host name',
      type: TYPE_ENDPOINTS,
      resources: () => [cla([lbEndpoint(v2.port, {}, '10.0.0.1:80/evil')])],
      detail: /\.lb_endpoints\[0\]\.endpoint\.address\.socket_address\.address: "10\.0\.0\.1:80\/evil" is not an IP address or a host name$/,
    },
    {
      what: 'an endpoint weight of 0',
      type: TYPE_ENDPOINTS,
      resources: () => [cla([lbEndpoint(v2.port, { load_balancing_weight: 0 })])],
      detail: /\.lb_endpoints\[0\]\.load_balancing_weight: 0 must be at least 1$/,
    },
    {
      what: 'endpoint weights summing over 2^32-1',
      type: TYPE_ENDPOINTS,
      resources: () => [cla([lbEndpoint(v1.port, { load_balancing_weight: 4_000_000_000 }), lbEndpoint(v2.port, { load_balancing_weight: 4_000_000_000 })])],
      detail: /\.endpoints\[0\]\.lb_endpoints: the endpoint weights sum to 8000000000, more than 4294967295$/,
    },
    {
      what: 'a negative connect timeout',
      type: TYPE_CLUSTER,
      resources: () => [cluster({ connect_timeout: '-1s' })],
      detail: new RegExp(`^Cluster "${CLUSTER.replace(/\|/g, '\\|')}"\\.connect_timeout: -1s is negative$`),
    },
    {
      what: 'a connect timeout longer than a timer can keep',
      type: TYPE_CLUSTER,
      resources: () => [cluster({ connect_timeout: '315576000000s' })],
      detail: /\.connect_timeout: 315576000000s is longer than 2147483647 ms/,
    },
    {
      what: 'an outlier max_ejection_percent of 150',
      type: TYPE_CLUSTER,
      resources: () => [cluster({ outlier_detection: { consecutive_5xx: 5, interval: '1s', max_ejection_percent: 150 } })],
      detail: /\.outlier_detection\.max_ejection_percent: 150 must be at most 100$/,
    },
    {
      what: 'a listener port of 70000',
      type: TYPE_LISTENER,
      resources: () => [listener({ port: 70000 })],
      detail: new RegExp(`^Listener "${LISTENER}"\\.address\\.socket_address\\.port_value: 70000 is not a port \\(0\\.\\.65535\\)$`),
    },
    {
      what: 'a NaN sampling percentage',
      type: TYPE_LISTENER,
      resources: () => [listener({ proxy: { tracing: { client_sampling: { value: 'NaN' } } } })],
      detail: /\.filter_chains\[0\]\.filters\[0\]\.typed_config\.tracing\.client_sampling\.value: NaN is not a finite number$/,
    },
    {
      what: 'a sampling percentage of 250',
      type: TYPE_LISTENER,
      resources: () => [listener({ proxy: { tracing: { random_sampling: { value: 250 } } } })],
      detail: /\.tracing\.random_sampling\.value: 250 must be at most 100$/,
    },
    {
      what: 'a local rate limit with a zero fill interval',
      type: TYPE_LISTENER,
      resources: () => [
        listener({
          proxy: {
            meta_protocol_filters: [
              { name: 'aeraki.meta_protocol.filters.local_ratelimit', config: { '@type': TYPE_LOCAL_RATELIMIT, token_bucket: { max_tokens: 10, fill_interval: '0s' } } },
              { name: 'aeraki.meta_protocol.filters.router' },
            ],
          },
        }),
      ],
      detail: /\.meta_protocol_filters\[0\]\.config\.token_bucket\.fill_interval: 0s must be longer than 0s$/,
    },
    {
      what: 'a negative route timeout',
      type: TYPE_META_ROUTE,
      resources: () => [routes(goodRoute({ timeout: '-5s' }))],
      detail: new RegExp(`^RouteConfiguration "${ROUTE}"\\.routes\\[0\\]\\.timeout: -5s is negative$`),
    },
    {
      what: 'a fault percentage of 150%',
      type: TYPE_META_ROUTE,
      resources: () => [routes(goodRoute({ fault: { abort: { percentage: { numerator: 150, denominator: 'HUNDRED' } } } }))],
      detail: /\.routes\[0\]\.fault\.abort\.percentage\.numerator: 150 is more than the denominator \(HUNDRED = 100\)$/,
    },
    {
      what: 'a fraction whose denominator is not one of the three',
      type: TYPE_META_ROUTE,
      resources: () => [routes(goodRoute({ fault: { delay: { fixed_delay: '1s', percentage: { numerator: 1, denominator: 7 } } } }))],
      detail: /\.routes\[0\]\.fault\.delay\.percentage\.denominator: 7 is not a value of DenominatorType/,
    },
    {
      what: 'weighted clusters whose weights sum to 0',
      type: TYPE_META_ROUTE,
      resources: () => [routes({ name: 'all', route: { weighted_clusters: { clusters: [{ name: CLUSTER, weight: 0 }, { name: CLUSTER, weight: 0 }] } } })],
      detail: /\.routes\[0\]\.route\.weighted_clusters\.clusters: the weights sum to 0$/,
    },
    {
      what: 'a per-try timeout longer than a timer can keep',
      type: TYPE_META_ROUTE,
      resources: () => [routes(goodRoute({ retry_policy: { num_retries: 1, per_try_timeout: '9999999999s' } }))],
      detail: /\.routes\[0\]\.retry_policy\.per_try_timeout: 9999999999s is longer than/,
    },
  ];

  for (const c of cases) {
    it(`NACKs ${c.what}, naming the field, and keeps serving`, async () => {
      const nack = await expectNack(c.type, c.resources());
      expect(nack.error_detail!.code).toBe(3);
      expect(nack.error_detail!.message).toMatch(c.detail);
      await expectStillServing();
    });
  }

  it('ACKs endpoint weights as large as 2^32-1 allows (4294967294 and 1), and keeps answering: the balancers bound their schedules', async () => {
    for (const lbPolicy of ['ROUND_ROBIN', 'RING_HASH']) {
      const nc = server.send(TYPE_CLUSTER, `c-${lbPolicy}`, [cluster({ lb_policy: lbPolicy })]);
      await server.next(isAckOf(TYPE_CLUSTER, nc));
      acked[TYPE_CLUSTER] = `c-${lbPolicy}`;
      const ne = server.send(TYPE_ENDPOINTS, `e-heavy-${lbPolicy}`, [cla([lbEndpoint(v1.port, { load_balancing_weight: 4_294_967_294 }), lbEndpoint(v2.port, { load_balancing_weight: 1 })])]);
      await server.next(isAckOf(TYPE_ENDPOINTS, ne));
      const seen = new Set<string>();
      for (let i = 0; i < 5; i++) seen.add(await whoAnswers(conn));
      expect(proxy.child.exitCode).toBeNull();
      expect(seen.size).toBeGreaterThan(0);
    }
    const nBack = server.send(TYPE_ENDPOINTS, 'e0-again', [cla([lbEndpoint(v1.port)])]);
    await server.next(isAckOf(TYPE_ENDPOINTS, nBack));
    acked[TYPE_ENDPOINTS] = 'e0-again';
    await expectStillServing();
  });

  it('ACKs and follows a good update after all that', async () => {
    const n = server.send(TYPE_ENDPOINTS, 'e1', [cla([lbEndpoint(v2.port)])]);
    await server.next(isAckOf(TYPE_ENDPOINTS, n));
    await until(async () => (await whoAnswers(conn)) === 'v2', 'calls to follow the new endpoints', 5000);
    expect(proxy.child.exitCode).toBeNull();
  });
});
