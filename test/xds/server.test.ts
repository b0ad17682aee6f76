/**
 * The xDS server (control/xds/) in-process, driven by a raw ADS client made with @grpc/proto-loader from the same
 * proto/ files: push order, versions and nonces, ACK / NACK handling, /debug/syncz, pushes on file changes (only to
 * the affected types and streams), invalid changes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compile } from '../../control/index.js';
import { startControlPlane, type ControlPlane } from '../../control/xds/control-plane.js';
import { httpGet } from '../../examples/dubbo/harness.js';
import { setLogSink } from '../../src/log.js';
import { decodeResource } from '../../src/xds/convert.js';
import { TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER, TYPE_META_ROUTE } from '../../src/xds/resources.js';
import {
  clusterOf,
  rawAdsClient,
  routeNameOf,
  routerYaml,
  serviceYaml,
  TempConfig,
  until,
  type RawAdsClient,
  type RawRequest,
  type RawResponse,
  type RawStream,
} from './helpers.js';

const PORTS = { listen: 20880, v1: 20881, v2: 20882 };
const NODE = { id: 'test-node-1', cluster: 'waypost' };

let cfg: TempConfig;
let cp: ControlPlane;
let ads: RawAdsClient;
const logLines: string[] = [];

interface Syncz {
  version: string;
  types: Record<string, string>;
  nodes: Array<{
    node_id: string;
    connected: boolean;
    types: Record<
      string,
      {
        last_sent: { version: string; nonce: string } | null;
        last_acked: { version: string; nonce: string } | null;
        last_nack: { version: string; nonce: string; message: string } | null;
        synced: boolean;
      }
    >;
  }>;
}

async function syncz(): Promise<Syncz> {
  const r = await httpGet(cp.adminAddress!, '/debug/syncz');
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as Syncz;
}

async function nodeStatus(id: string) {
  const n = (await syncz()).nodes.find((x) => x.node_id === id);
  if (!n) throw new Error(`node ${id} not in /debug/syncz`);
  return n;
}

function ack(s: RawStream<RawRequest, RawResponse>, r: RawResponse, names: string[] = []): void {
  s.send({ type_url: r.type_url, version_info: r.version_info, response_nonce: r.nonce, resource_names: names });
}

const ALL_CLA = [clusterOf(PORTS.listen), clusterOf(PORTS.listen, 'v1'), clusterOf(PORTS.listen, 'v2')];
const ROUTE = routeNameOf(PORTS.listen);

beforeAll(async () => {
  setLogSink((line) => logLines.push(line));
  cfg = new TempConfig();
  cfg.write('service.yaml', serviceYaml(PORTS));
  cfg.write('router.yaml', routerYaml('v1'));
  cp = await startControlPlane({
    paths: [cfg.dir],
    xds: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    debounceMs: 30,
    watchIntervalMs: 40,
  });
  ads = rawAdsClient(cp.xdsPort);
});

afterAll(async () => {
  ads?.close();
  await cp?.close();
  cfg?.remove();
  setLogSink((line) => process.stderr.write(line + '\n'));
});

describe('waypost control: state-of-the-world ADS', () => {
  let s: RawStream<RawRequest, RawResponse>;
  const sent: Record<string, RawResponse> = {};

  it('is ready, and answers requests sent together in the order CDS → EDS → LDS → RDS', async () => {
    expect((await httpGet(cp.adminAddress!, '/ready')).status).toBe(200);
    s = ads.sotw();
    // Deliberately out of order.
    s.send({ node: NODE, type_url: TYPE_META_ROUTE, resource_names: [ROUTE] });
    s.send({ node: NODE, type_url: TYPE_LISTENER, resource_names: [] });
    s.send({ node: NODE, type_url: TYPE_ENDPOINTS, resource_names: ALL_CLA });
    s.send({ node: NODE, type_url: TYPE_CLUSTER, resource_names: [] });
    const got = [await s.next(), await s.next(), await s.next(), await s.next()];
    expect(got.map((r) => r.type_url)).toEqual([TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER, TYPE_META_ROUTE]);
    expect(new Set(got.map((r) => r.nonce)).size).toBe(4);
    const status = await syncz();
    for (const r of got) {
      sent[r.type_url] = r;
      expect(r.version_info).toBe(status.types[r.type_url]);
      expect(r.nonce).toMatch(/\S/);
    }
    expect(got.map((r) => r.resources?.length)).toEqual([3, 3, 1, 1]);

    // The resources are exactly what the translator produced (ROUND_ROBIN, the proto3 default, is not on the wire).
    const { snapshot } = await compile([cfg.dir]);
    const decoded = (r: RawResponse) => (r.resources ?? []).map((a, i) => decodeResource(r.type_url, a, i).json);
    const strip = (xs: unknown[]) => JSON.parse(JSON.stringify(xs).replaceAll(',"lb_policy":"ROUND_ROBIN"', ''));
    expect(decoded(got[0]!)).toEqual(strip(snapshot!.clusters));
    expect(decoded(got[1]!)).toEqual(snapshot!.endpoints);
    expect(decoded(got[2]!)).toEqual(snapshot!.listeners);
    expect(decoded(got[3]!)).toEqual(snapshot!.routes);
  });

  it('records ACKs and sends nothing more', async () => {
    ack(s, sent[TYPE_CLUSTER]!);
    ack(s, sent[TYPE_ENDPOINTS]!, ALL_CLA);
    ack(s, sent[TYPE_LISTENER]!);
    ack(s, sent[TYPE_META_ROUTE]!, [ROUTE]);
    expect(await s.none(300)).toEqual([]);
    const n = await nodeStatus(NODE.id);
    expect(n.connected).toBe(true);
    for (const t of [TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER, TYPE_META_ROUTE]) {
      expect(n.types[t]!.last_acked?.version).toBe(sent[t]!.version_info);
      expect(n.types[t]!.last_sent).toMatchObject({ version: sent[t]!.version_info, nonce: sent[t]!.nonce });
      expect(n.types[t]!.synced).toBe(true);
      expect(n.types[t]!.last_nack).toBeNull();
    }
  });

  it('records a NACK with its message in /debug/syncz and does not resend that version', async () => {
    const r = sent[TYPE_META_ROUTE]!;
    s.send({
      type_url: TYPE_META_ROUTE,
      version_info: r.version_info, // the last good one (here: the same, as a client with nothing better would)
      response_nonce: r.nonce,
      resource_names: [ROUTE],
      error_detail: { code: 3, message: 'RouteConfiguration "x": routes[0].route: test rejection' },
    });
    expect(await s.none(300)).toEqual([]);
    const t = (await nodeStatus(NODE.id)).types[TYPE_META_ROUTE]!;
    expect(t.last_nack).toMatchObject({ version: r.version_info, nonce: r.nonce, message: 'RouteConfiguration "x": routes[0].route: test rejection' });
    expect(t.synced).toBe(false);
  });

  it('pushes a changed MetaRouter as a new RDS version only (and resends RDS after the NACK, since it is newer)', async () => {
    const before = await syncz();
    cfg.write('router.yaml', routerYaml('v2'));
    const r = await s.next(5000);
    expect(r.type_url).toBe(TYPE_META_ROUTE);
    expect(r.version_info).not.toBe(sent[TYPE_META_ROUTE]!.version_info);
    const route = decodeResource(TYPE_META_ROUTE, r.resources![0]!, 0).json as { routes: Array<{ route: { cluster: string } }> };
    expect(route.routes[0]!.route.cluster).toBe(clusterOf(PORTS.listen, 'v2'));
    ack(s, r, [ROUTE]);
    sent[TYPE_META_ROUTE] = r;
    expect(await s.none(300)).toEqual([]);
    const after = await syncz();
    expect(after.version).not.toBe(before.version);
    for (const t of [TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER]) expect(after.types[t]).toBe(before.types[t]);
    expect(after.types[TYPE_META_ROUTE]).toBe(r.version_info);
  });

  it('pushes an endpoint change only to the streams whose subscribed endpoints changed', async () => {
    // A second node subscribed to the v1 endpoints only.
    const s2 = ads.sotw();
    s2.send({ node: { id: 'test-node-2' }, type_url: TYPE_ENDPOINTS, resource_names: [clusterOf(PORTS.listen, 'v1')] });
    const first = await s2.next();
    expect(first.resources).toHaveLength(1);
    ack(s2, first, [clusterOf(PORTS.listen, 'v1')]);

    // v2's endpoint moves: the clusters "all" and "v2" change, "v1" does not.
    cfg.write('service.yaml', serviceYaml({ ...PORTS, v2: 20883 }));
    const r = await s.next(5000);
    expect(r.type_url).toBe(TYPE_ENDPOINTS);
    expect(r.resources).toHaveLength(3);
    ack(s, r, ALL_CLA);
    expect(await s.none(300)).toEqual([]);
    expect(await s2.none(100)).toEqual([]);
    s2.close();
  });

  it('logs an invalid change with its errors, pushes nothing and keeps serving the last good config', async () => {
    const before = await syncz();
    const mark = logLines.length;
    cfg.write('router.yaml', routerYaml('v1', { subsetOverride: 'v9' }));
    await until(() => logLines.slice(mark).some((l) => l.includes('config change rejected')), 'the rejection to be logged', 5000);
    const errors = logLines.slice(mark).filter((l) => l.includes('invalid config:'));
    expect(errors.join('\n')).toMatch(/router\.yaml.*MetaRouter\/demo.*v9/);
    expect(await s.none(300)).toEqual([]);
    const after = await syncz();
    expect(after.version).toBe(before.version);
    expect(after.types).toEqual(before.types);

    // A new subscriber still gets the last good routes.
    const s3 = ads.sotw();
    s3.send({ node: { id: 'test-node-3' }, type_url: TYPE_META_ROUTE, resource_names: [ROUTE] });
    const r = await s3.next();
    expect(r.version_info).toBe(sent[TYPE_META_ROUTE]!.version_info);
    s3.close();

    // Fixing the file serves again.
    cfg.write('router.yaml', routerYaml('v1'));
    const fixed = await s.next(5000);
    expect(fixed.type_url).toBe(TYPE_META_ROUTE);
    ack(s, fixed, [ROUTE]);
  });

  it('does not resend a wildcard type to a client that re-subscribes with the current version', async () => {
    const versions = (await syncz()).types;
    const s4 = ads.sotw();
    s4.send({ node: { id: 'test-node-4' }, type_url: TYPE_CLUSTER, version_info: versions[TYPE_CLUSTER], resource_names: [] });
    s4.send({ node: { id: 'test-node-4' }, type_url: TYPE_LISTENER, version_info: 'stale-version', resource_names: [] });
    const r = await s4.next();
    expect(r.type_url).toBe(TYPE_LISTENER);
    expect(await s4.none(200)).toEqual([]);
    s4.close();
  });

  it('ignores a request with a stale nonce', async () => {
    const s5 = ads.sotw();
    s5.send({ node: { id: 'test-node-5' }, type_url: TYPE_ENDPOINTS, resource_names: [clusterOf(PORTS.listen, 'v1')] });
    const r = await s5.next();
    // Stale nonce plus a NACK: not recorded, no answer.
    s5.send({ type_url: TYPE_ENDPOINTS, response_nonce: 'not-a-nonce', resource_names: ALL_CLA, error_detail: { message: 'stale' } });
    expect(await s5.none(200)).toEqual([]);
    expect((await nodeStatus('test-node-5')).types[TYPE_ENDPOINTS]!.last_nack).toBeNull();
    // With the right nonce, the new names are served.
    s5.send({ type_url: TYPE_ENDPOINTS, version_info: r.version_info, response_nonce: r.nonce, resource_names: ALL_CLA });
    expect((await s5.next()).resources).toHaveLength(3);
    s5.close();
  });
});

describe('waypost control: starting without a valid config', () => {
  it('is not ready and answers nothing until a valid config appears, then pushes it', async () => {
    const bad = new TempConfig();
    bad.write('service.yaml', serviceYaml(PORTS));
    bad.write('router.yaml', routerYaml('v1', { subsetOverride: 'v9' }));
    const cp2 = await startControlPlane({
      paths: [bad.dir],
      xds: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      debounceMs: 30,
      watchIntervalMs: 40,
    });
    const ads2 = rawAdsClient(cp2.xdsPort);
    try {
      expect((await httpGet(cp2.adminAddress!, '/ready')).status).toBe(503);
      const st = ads2.sotw();
      st.send({ node: { id: 'early' }, type_url: TYPE_CLUSTER, resource_names: [] });
      expect(await st.none(300)).toEqual([]);
      bad.write('router.yaml', routerYaml('v1'));
      const r = await st.next(5000);
      expect(r.type_url).toBe(TYPE_CLUSTER);
      expect(r.resources).toHaveLength(3);
      expect((await httpGet(cp2.adminAddress!, '/ready')).status).toBe(200);
    } finally {
      ads2.close();
      await cp2.close();
      bad.remove();
    }
  });
});
