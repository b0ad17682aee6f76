/**
 * The data plane's xDS client (src/xds/client.ts) with a real Proxy in-process, against a raw ADS server written
 * here with @grpc/proto-loader (not Waypost's server): warming, ACK after apply, NACK on a rejected or undecodable
 * update (the last good config keeps serving), the MetaProtocolProxy config as a udpa / xds TypedStruct, reconnect
 * with the last ACKed versions, and the warming timeout.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { createRegistry } from '../../src/builtin-codecs.js';
import { setLogSink } from '../../src/log.js';
import { Proxy } from '../../src/proxy.js';
import { XdsClient } from '../../src/xds/client.js';
import { encodeResource, type JsonObject } from '../../src/xds/convert.js';
import { messageType } from '../../src/xds/protos.js';
import {
  FILTER_META_PROTOCOL_PROXY,
  TYPE_CLUSTER,
  TYPE_ENDPOINTS,
  TYPE_LISTENER,
  TYPE_META_PROTOCOL_PROXY,
  TYPE_META_ROUTE,
} from '../../src/xds/resources.js';
import { sleep, until, type AnyJson, type RawRequest } from './helpers.js';
import { RawAdsServer } from './raw-ads-server.js';

const DUBBO_CODEC = 'aeraki.meta_protocol.codec.dubbo';
const CLUSTER = 'outbound|20880|v1|demo';
const ROUTE = 'demo_20880';
const LISTENER = 'demo-listener';

const any = (typeUrl: string, json: JsonObject): AnyJson => {
  const a = encodeResource(typeUrl, json);
  return { type_url: a.type_url, value: Buffer.from(a.value) };
};
const cluster = (name: string): AnyJson =>
  any(TYPE_CLUSTER, { name, type: 'EDS', eds_cluster_config: { eds_config: { ads: {} }, service_name: name }, connect_timeout: '1s' });
const cla = (name: string, port: number): AnyJson =>
  any(TYPE_ENDPOINTS, {
    cluster_name: name,
    endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }],
  });
const route = (name: string, to: string): AnyJson => any(TYPE_META_ROUTE, { name, routes: [{ name: 'all', route: { cluster: to } }] });
const binaryListener = (port: number, codec: string): AnyJson =>
  any(TYPE_LISTENER, {
    name: LISTENER,
    address: { socket_address: { address: '127.0.0.1', port_value: port } },
    filter_chains: [
      {
        filters: [
          {
            name: FILTER_META_PROTOCOL_PROXY,
            typed_config: {
              '@type': TYPE_META_PROTOCOL_PROXY,
              stat_prefix: 'demo',
              rds: { config_source: { ads: {} }, route_config_name: ROUTE },
              protocol: { name: 'dubbo', codec: { name: codec } },
            },
          },
        ],
      },
    ],
  });

/** A google.protobuf.Struct as protobufjs wants it (well-known types use camelCase members). */
function struct(obj: Record<string, unknown>): { fields: Record<string, unknown> } {
  const value = (v: unknown): Record<string, unknown> => {
    if (typeof v === 'string') return { stringValue: v };
    if (typeof v === 'number') return { numberValue: v };
    if (typeof v === 'boolean') return { boolValue: v };
    if (Array.isArray(v)) return { listValue: { values: v.map(value) } };
    return { structValue: struct(v as Record<string, unknown>) };
  };
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, value(v)])) };
}

/** A Listener whose MetaProtocolProxy config is a TypedStruct, built by hand (not by the code under test). */
function typedStructListener(port: number, typedStructUrl: string, fields: Record<string, unknown>): AnyJson {
  const tsName = typedStructUrl.slice(typedStructUrl.lastIndexOf('/') + 1);
  const ts = messageType(tsName).encode({ type_url: TYPE_META_PROTOCOL_PROXY, value: struct(fields) }).finish();
  const listener = messageType('envoy.config.listener.v3.Listener')
    .encode({
      name: LISTENER,
      address: { socket_address: { address: '127.0.0.1', port_value: port } },
      filter_chains: [{ filters: [{ name: FILTER_META_PROTOCOL_PROXY, typed_config: { type_url: typedStructUrl, value: ts } }] }],
    })
    .finish();
  return { type_url: TYPE_LISTENER, value: Buffer.from(listener) };
}

const isAckOf = (typeUrl: string, nonce: string) => (r: RawRequest) =>
  r.type_url === typeUrl && r.response_nonce === nonce && !r.error_detail;
const isNackOf = (typeUrl: string, nonce: string) => (r: RawRequest) => r.type_url === typeUrl && r.response_nonce === nonce && !!r.error_detail;

let v1: Provider;
let v2: Provider;
let listenPort: number;
let server: RawAdsServer;
let proxy: Proxy;
let client: XdsClient;
let conn: RawDubboConnection | undefined;
let callId = 1;

async function whoAnswers(c: RawDubboConnection): Promise<string> {
  const r = await c.call({ id: callId++, method: 'whoami', timeoutMs: 3000 });
  expect(r.status).toBe(20);
  return String(r.value).split('@')[0]!;
}

async function metric(result: string, typeUrl: string): Promise<number> {
  const text = await proxy.metrics.registry.metrics();
  const line = text.split('\n').find((l) => l.startsWith(`waypost_xds_updates_total{type_url="${typeUrl}",result="${result}"}`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

beforeAll(async () => {
  setLogSink(() => undefined);
  v1 = await startProvider({ version: 'v1' });
  v2 = await startProvider({ version: 'v2' });
  [listenPort] = await freePorts(1);
  server = new RawAdsServer();
  await server.start();
  proxy = new Proxy({ codecs: createRegistry() });
  client = new XdsClient({ server: `127.0.0.1:${server.port}`, proxy, nodeId: 'client-test', backoff: { initialMs: 50, maxMs: 400 } });
  client.start();
});

afterAll(async () => {
  await conn?.close();
  await client?.close();
  await proxy?.close();
  server?.stop();
  await v1?.close();
  await v2?.close();
  setLogSink((line) => process.stderr.write(line + '\n'));
});

describe('xDS client (waypost proxy --xds) against a raw ADS server', () => {
  const acked: Record<string, string> = {};

  it('subscribes, warms until every cluster has endpoints, applies a udpa TypedStruct listener, then ACKs', async () => {
    const cds = await server.next((r) => r.type_url === TYPE_CLUSTER);
    expect(cds.node).toMatchObject({ id: 'client-test', cluster: 'waypost' });
    expect(cds.resource_names ?? []).toEqual([]);
    await server.next((r) => r.type_url === TYPE_LISTENER);

    const nCds = server.send(TYPE_CLUSTER, 'c1', [cluster(CLUSTER)]);
    const nLds = server.send(TYPE_LISTENER, 'l1', [
      typedStructListener(listenPort!, 'type.googleapis.com/udpa.type.v1.TypedStruct', {
        stat_prefix: 'demo',
        rds: { config_source: { ads: {} }, route_config_name: ROUTE },
        protocol: { name: 'dubbo', codec: { name: DUBBO_CODEC } },
        meta_protocol_filters: [{ name: 'aeraki.meta_protocol.filters.router' }],
      }),
    ]);
    const eds = await server.next((r) => r.type_url === TYPE_ENDPOINTS);
    expect(eds.resource_names).toEqual([CLUSTER]);
    const rds = await server.next((r) => r.type_url === TYPE_META_ROUTE);
    expect(rds.resource_names).toEqual([ROUTE]);

    // Routes but no endpoints yet: still warming, nothing applied, nothing ACKed.
    const nRds = server.send(TYPE_META_ROUTE, 'r1', [route(ROUTE, CLUSTER)]);
    await sleep(300);
    expect(proxy.ready).toBe(false);
    expect(server.requests.filter((r) => r.response_nonce)).toEqual([]);

    const nEds = server.send(TYPE_ENDPOINTS, 'e1', [cla(CLUSTER, v1.port)]);
    for (const [t, n, v] of [
      [TYPE_CLUSTER, nCds, 'c1'],
      [TYPE_ENDPOINTS, nEds, 'e1'],
      [TYPE_LISTENER, nLds, 'l1'],
      [TYPE_META_ROUTE, nRds, 'r1'],
    ] as const) {
      const a = await server.next(isAckOf(t, n));
      expect(a.version_info).toBe(v);
      acked[t] = v;
    }
    expect(proxy.ready).toBe(true);
    const dump = proxy.configDump() as { resources: { listeners: Array<{ filter_chains: Array<{ filters: Array<{ typed_config: unknown }> }> }> } };
    expect(dump.resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config).toEqual({
      '@type': TYPE_META_PROTOCOL_PROXY,
      stat_prefix: 'demo',
      rds: { config_source: { ads: {} }, route_config_name: ROUTE },
      protocol: { name: 'dubbo', codec: { name: DUBBO_CODEC } },
      meta_protocol_filters: [{ name: 'aeraki.meta_protocol.filters.router' }],
    });
    conn = await RawDubboConnection.connect(`127.0.0.1:${listenPort}`);
    expect(await whoAnswers(conn)).toBe('v1');
    expect(await metric('ack', TYPE_LISTENER)).toBe(1);
  });

  it('NACKs an update the proxy rejects, naming the listener and the codec, and keeps serving', async () => {
    const n = server.send(TYPE_LISTENER, 'l2', [binaryListener(listenPort!, 'aeraki.meta_protocol.codec.nope')]);
    const nack = await server.next(isNackOf(TYPE_LISTENER, n));
    expect(nack.version_info).toBe('l1');
    expect(nack.error_detail!.message).toContain(LISTENER);
    expect(nack.error_detail!.message).toContain('aeraki.meta_protocol.codec.nope');
    expect(await metric('nack', TYPE_LISTENER)).toBe(1);
    expect(await whoAnswers(conn!)).toBe('v1');
  });

  it('NACKs an undecodable resource, naming it', async () => {
    const n = server.send(TYPE_CLUSTER, 'c2', [{ type_url: TYPE_CLUSTER, value: Buffer.from([0x0a, 0x7f, 0x01]) }]);
    const nack = await server.next(isNackOf(TYPE_CLUSTER, n));
    expect(nack.version_info).toBe('c1');
    expect(nack.error_detail!.message).toMatch(/^Cluster #0: cannot decode/);
    const n2 = server.send(TYPE_CLUSTER, 'c3', [route('x', 'y')]);
    const nack2 = await server.next(isNackOf(TYPE_CLUSTER, n2));
    expect(nack2.error_detail!.message).toContain(`has type ${TYPE_META_ROUTE}`);
    expect(await whoAnswers(conn!)).toBe('v1');
  });

  it('applies an xds.type.v3.TypedStruct with JSON (camelCase) names and the deprecated codec fields; the open connection follows a route change', async () => {
    const nLds = server.send(TYPE_LISTENER, 'l3', [
      typedStructListener(listenPort!, 'type.googleapis.com/xds.type.v3.TypedStruct', {
        statPrefix: 'demo',
        rds: { configSource: { ads: {} }, routeConfigName: ROUTE },
        applicationProtocol: 'dubbo',
        codec: { name: DUBBO_CODEC },
        unknownFutureField: 'ignored',
      }),
    ]);
    await server.next(isAckOf(TYPE_LISTENER, nLds));
    const dump = proxy.configDump() as { resources: { listeners: Array<{ filter_chains: Array<{ filters: Array<{ typed_config: JsonObject }> }> }> } };
    expect(dump.resources.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config.protocol).toEqual({ name: 'dubbo', codec: { name: DUBBO_CODEC } });
    expect(await whoAnswers(conn!)).toBe('v1');

    // A new cluster for v2 and a route to it: EDS is requested for it and the switch waits for its endpoints.
    const V2 = 'outbound|20880|v2|demo';
    const nCds = server.send(TYPE_CLUSTER, 'c4', [cluster(CLUSTER), cluster(V2)]);
    const eds = await server.next((r) => r.type_url === TYPE_ENDPOINTS && (r.resource_names ?? []).includes(V2));
    expect(eds.resource_names).toEqual([CLUSTER, V2].sort());
    const nRds = server.send(TYPE_META_ROUTE, 'r2', [route(ROUTE, V2)]);
    const nEds = server.send(TYPE_ENDPOINTS, 'e2', [cla(V2, v2.port)]); // V1's CLA is kept (EDS responses may be partial)
    await server.next(isAckOf(TYPE_CLUSTER, nCds));
    await server.next(isAckOf(TYPE_META_ROUTE, nRds));
    await server.next(isAckOf(TYPE_ENDPOINTS, nEds));
    acked[TYPE_CLUSTER] = 'c4';
    acked[TYPE_ENDPOINTS] = 'e2';
    acked[TYPE_LISTENER] = 'l3';
    acked[TYPE_META_ROUTE] = 'r2';
    expect(await whoAnswers(conn!)).toBe('v2');
  });

  it('keeps serving while the server is gone, reconnects with backoff and re-subscribes with the last ACKed versions', async () => {
    const port = server.port;
    server.stop();
    await until(() => !client.connected, 'the client to notice');
    expect(await whoAnswers(conn!)).toBe('v2');
    await sleep(500); // a few failed attempts
    server = new RawAdsServer();
    await server.start(port);
    for (const t of [TYPE_CLUSTER, TYPE_LISTENER, TYPE_ENDPOINTS, TYPE_META_ROUTE]) {
      const r = await server.next((x) => x.type_url === t, 5000);
      expect(r.version_info).toBe(acked[t]);
      expect(r.node?.id).toBe('client-test');
    }
    expect(await whoAnswers(conn!)).toBe('v2');
    // Same content again (e.g. a restarted server): ACKed, the proxy keeps its config.
    const nCds = server.send(TYPE_CLUSTER, 'c4', [cluster(CLUSTER), cluster('outbound|20880|v2|demo')]);
    await server.next(isAckOf(TYPE_CLUSTER, nCds));
    expect(await whoAnswers(conn!)).toBe('v2');
  });

  it('applies what it has when warming times out', async () => {
    const s2 = new RawAdsServer();
    await s2.start();
    const p2 = new Proxy({ codecs: createRegistry() });
    const [port2] = await freePorts(1);
    const c2 = new XdsClient({ server: `127.0.0.1:${s2.port}`, proxy: p2, nodeId: 'warming-test', warmingTimeoutMs: 300 });
    c2.start();
    try {
      await s2.next((r) => r.type_url === TYPE_LISTENER);
      const nCds = s2.send(TYPE_CLUSTER, 'c1', [cluster(CLUSTER)]);
      const nLds = s2.send(TYPE_LISTENER, 'l1', [binaryListener(port2!, DUBBO_CODEC)]);
      const t0 = Date.now();
      await s2.next(isAckOf(TYPE_CLUSTER, nCds), 3000);
      await s2.next(isAckOf(TYPE_LISTENER, nLds), 3000);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
      expect(p2.ready).toBe(true);
      expect(p2.listenerPort(LISTENER)).toBe(port2);
    } finally {
      await c2.close();
      await p2.close();
      s2.stop();
    }
  });
});
