/**
 * The xDS server's incremental protocol (DeltaAggregatedResources): wildcard and named subscriptions, subscribe /
 * unsubscribe, per-resource versions, initial_resource_versions, removed_resources when a resource goes away,
 * ACK / NACK records.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startControlPlane, type ControlPlane } from '../../control/xds/control-plane.js';
import { setLogSink } from '../../src/log.js';
import { decodeResource } from '../../src/xds/convert.js';
import { TYPE_CLUSTER, TYPE_ENDPOINTS } from '../../src/xds/resources.js';
import {
  clusterOf,
  rawAdsClient,
  routerYaml,
  serviceYaml,
  TempConfig,
  type RawAdsClient,
  type RawDeltaRequest,
  type RawDeltaResponse,
  type RawStream,
} from './helpers.js';

const PORTS = { listen: 20890, v1: 20891, v2: 20892 };
const ALL = clusterOf(PORTS.listen);
const V1 = clusterOf(PORTS.listen, 'v1');
const V2 = clusterOf(PORTS.listen, 'v2');

let cfg: TempConfig;
let cp: ControlPlane;
let ads: RawAdsClient;

beforeAll(async () => {
  setLogSink(() => undefined);
  cfg = new TempConfig();
  cfg.write('service.yaml', serviceYaml(PORTS));
  cfg.write('router.yaml', routerYaml('v1'));
  cp = await startControlPlane({ paths: [cfg.dir], xds: { host: '127.0.0.1', port: 0 }, debounceMs: 30, watchIntervalMs: 40 });
  ads = rawAdsClient(cp.xdsPort);
});

afterAll(async () => {
  ads?.close();
  await cp?.close();
  cfg?.remove();
  setLogSink((line) => process.stderr.write(line + '\n'));
});

const names = (r: RawDeltaResponse): string[] => (r.resources ?? []).map((x) => x.name).sort();
const ackDelta = (s: RawStream<RawDeltaRequest, RawDeltaResponse>, r: RawDeltaResponse): void => s.send({ type_url: r.type_url, response_nonce: r.nonce });

describe('waypost control: delta ADS', () => {
  let s: RawStream<RawDeltaRequest, RawDeltaResponse>;
  let clusterVersions: Record<string, string>;

  it('serves a wildcard CDS subscription with per-resource versions', async () => {
    s = ads.delta();
    s.send({ node: { id: 'delta-node' }, type_url: TYPE_CLUSTER });
    const r = await s.next();
    expect(r.type_url).toBe(TYPE_CLUSTER);
    expect(names(r)).toEqual([ALL, V1, V2].sort());
    expect(r.removed_resources ?? []).toEqual([]);
    clusterVersions = Object.fromEntries((r.resources ?? []).map((x) => [x.name, x.version]));
    for (const x of r.resources ?? []) {
      expect(x.version).toMatch(/^[0-9a-f]{12}$/);
      expect(decodeResource(TYPE_CLUSTER, x.resource!, 0).name).toBe(x.name);
    }
    ackDelta(s, r);
    expect(await s.none(200)).toEqual([]);
    expect(cp.server.status.node('delta-node')!.types[TYPE_CLUSTER]!.last_acked?.nonce).toBe(r.nonce);
  });

  it('subscribes and unsubscribes EDS names one by one', async () => {
    s.send({ type_url: TYPE_ENDPOINTS, resource_names_subscribe: [V1] });
    const a = await s.next();
    expect(a.type_url).toBe(TYPE_ENDPOINTS);
    expect(names(a)).toEqual([V1]);
    ackDelta(s, a);
    s.send({ type_url: TYPE_ENDPOINTS, resource_names_subscribe: [V2] });
    const b = await s.next();
    expect(names(b)).toEqual([V2]); // only the new one
    ackDelta(s, b);
    s.send({ type_url: TYPE_ENDPOINTS, resource_names_unsubscribe: [V1] });
    expect(await s.none(200)).toEqual([]);

    // v1's endpoint moves: nothing for this stream (no longer subscribed to V1), and no CDS change either.
    cfg.write('service.yaml', serviceYaml({ ...PORTS, v1: 20893 }));
    expect(await s.none(700)).toEqual([]);

    // v2's moves: only V2 comes.
    cfg.write('service.yaml', serviceYaml({ ...PORTS, v1: 20893, v2: 20894 }));
    const c = await s.next(5000);
    expect(c.type_url).toBe(TYPE_ENDPOINTS);
    expect(names(c)).toEqual([V2]);
    ackDelta(s, c);
  });

  it('reports a deleted resource in removed_resources', async () => {
    // Drop the v2 subset: cluster V2 and its ClusterLoadAssignment go away.
    cfg.write('service.yaml', serviceYaml({ ...PORTS, v1: 20893, v2: 20894 }).replace(/\n\s+- name: v2\n\s+labels:\n\s+version: v2/, ''));
    const cds = await s.next(5000);
    expect(cds.type_url).toBe(TYPE_CLUSTER);
    expect(cds.resources ?? []).toEqual([]);
    expect(cds.removed_resources).toEqual([V2]);
    const eds = await s.next(5000);
    expect(eds.type_url).toBe(TYPE_ENDPOINTS);
    expect(eds.removed_resources).toEqual([V2]);
    ackDelta(s, cds);
    ackDelta(s, eds);
    expect(await s.none(200)).toEqual([]);
  });

  it('records a NACK and does not resend', async () => {
    s.send({ type_url: TYPE_ENDPOINTS, resource_names_subscribe: [ALL] });
    const r = await s.next();
    expect(names(r)).toEqual([ALL]);
    s.send({ type_url: TYPE_ENDPOINTS, response_nonce: r.nonce, error_detail: { code: 3, message: 'delta says no' } });
    expect(await s.none(200)).toEqual([]);
    expect(cp.server.status.node('delta-node')!.types[TYPE_ENDPOINTS]!.last_nack).toMatchObject({ nonce: r.nonce, message: 'delta says no' });
  });

  it('does not resend what initial_resource_versions says the client has', async () => {
    cfg.write('service.yaml', serviceYaml(PORTS));
    await new Promise((r) => setTimeout(r, 300));
    const s2 = ads.delta();
    s2.send({ node: { id: 'delta-node-2' }, type_url: TYPE_CLUSTER, initial_resource_versions: { [V1]: clusterVersions[V1]!, gone: 'abc' } });
    const r = await s2.next();
    expect(names(r)).toEqual([ALL, V2].sort());
    expect(r.removed_resources).toEqual(['gone']);
    s2.close();
  });
});
