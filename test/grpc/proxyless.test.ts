/**
 * Proxyless gRPC end to end: `waypost control` (the built CLI, a child process) serves a gRPC ServiceEntry, its
 * DestinationRule subsets and a VirtualService; real @grpc/grpc-js-xds clients (child processes, each with its own
 * bootstrap) dial `xds:///greeter.waypost.test:7070` and are routed by it to two @grpc/grpc-js backends, v1 and v2.
 * Nothing here speaks xDS for the client: gRPC's own xDS client does, so this checks that our server speaks xDS to a
 * client nobody here wrote. Also: a Waypost data plane (`waypost proxy --xds`) on the same control plane skips the
 * API listener and applies the rest.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compile } from '../../control/index.js';
import { freePorts, httpGet } from '../../examples/dubbo/harness.js';
import { TYPE_CLUSTER, TYPE_HTTP_ROUTE, TYPE_LISTENER } from '../../src/xds/resources.js';
import { spawnCli, TempConfig, until, type CliProcess } from '../xds/helpers.js';
import { GRPC_HOST, serviceYaml, startBackend, to, virtualServiceYaml, XdsGrpcClient, type Backend } from './helpers.js';

const GRPC_PORT = 7070; // only a name here: the listener is an API listener, nothing binds it
const TARGET = `${GRPC_HOST}:${GRPC_PORT}`;

let v1: Backend;
let v2: Backend;
let cfg: TempConfig;
let control: CliProcess;
let ports: { xds: number; admin: number; proxyAdmin: number };
const clients: XdsGrpcClient[] = [];

interface TypeStatus {
  subscribed: string[] | '*';
  last_sent: { version: string; nonce: string } | null;
  last_acked: { version: string } | null;
  last_nack: { message: string } | null;
}

async function syncz(): Promise<{ types: Record<string, string>; nodes: Array<{ node_id: string; types: Record<string, TypeStatus> }> }> {
  return JSON.parse((await httpGet(`127.0.0.1:${ports.admin}`, '/debug/syncz')).body);
}

async function nodeTypes(nodeId: string): Promise<Record<string, TypeStatus>> {
  const node = (await syncz()).nodes.find((n) => n.node_id === nodeId);
  if (!node) throw new Error(`node ${nodeId} is not in /debug/syncz`);
  return node.types;
}

/** Writes the VirtualService and waits until the control plane serves it (the version `compile` gives the files). */
async function setRoutes(http: unknown[]): Promise<void> {
  cfg.write('vs.yaml', virtualServiceYaml(http));
  const { snapshot, errors } = await compile([cfg.dir]);
  expect(errors.map((e) => e.format())).toEqual([]);
  await until(
    async () => (JSON.parse((await httpGet(`127.0.0.1:${ports.admin}`, '/config_dump')).body) as { version: string }).version === snapshot!.version,
    `the control plane to serve version ${snapshot!.version}\n${control.output()}`,
  );
}

function client(nodeId: string): XdsGrpcClient {
  const c = new XdsGrpcClient(TARGET, ports.xds, nodeId);
  clients.push(c);
  return c;
}

const count = (xs: string[], x: string): number => xs.filter((y) => y === x).length;

beforeAll(async () => {
  [v1, v2] = await Promise.all([startBackend('v1'), startBackend('v2')]);
  const [xds, admin, proxyAdmin] = await freePorts(3);
  ports = { xds: xds!, admin: admin!, proxyAdmin: proxyAdmin! };
  cfg = new TempConfig();
  cfg.write('service.yaml', serviceYaml(GRPC_PORT, v1, v2));
  cfg.write('vs.yaml', virtualServiceYaml([{ name: 'all', route: [to('v1')] }]));
  control = await spawnCli(['control', '--config', cfg.dir, '--xds-listen', `127.0.0.1:${ports.xds}`, '--admin', `127.0.0.1:${ports.admin}`]);
  await until(async () => (await httpGet(`127.0.0.1:${ports.admin}`, '/ready')).status === 200, `the control plane to be ready\n${control.output()}`, 15_000, 50);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await control?.stop();
  await Promise.all([v1?.close(), v2?.close()]);
  cfg?.remove();
});

describe('proxyless gRPC: a @grpc/grpc-js-xds client routed by waypost control', () => {
  it('routes by metadata: x-user jason to v2, everyone else to v1', async () => {
    await setRoutes([
      { name: 'jason', match: [{ headers: { 'x-user': { exact: 'jason' } } }], route: [to('v2')] },
      { name: 'rest', route: [to('v1')] },
    ]);
    const c = client('grpc-header');
    expect(await c.versions(10, { 'x-user': 'jason' })).toEqual(Array(10).fill('v2'));
    expect(await c.versions(10)).toEqual(Array(10).fill('v1'));
    expect(await c.versions(5, { 'x-user': 'jasonx' })).toEqual(Array(5).fill('v1'));
    const [answer] = await c.call(1, { 'x-user': 'jason' });
    expect(answer).toEqual({ ok: true, version: 'v2', user: 'jason' });

    // What the client asked for and accepted: the listener named by its target, then its routes, clusters, endpoints.
    const types = await until(async () => {
      const t = await nodeTypes('grpc-header');
      return Object.values(t).every((x) => x.last_acked !== null && x.last_acked.version === x.last_sent?.version) && t;
    }, 'the client to ACK what it was sent');
    expect(types[TYPE_LISTENER]!.subscribed).toEqual([TARGET]);
    expect(types[TYPE_HTTP_ROUTE]!.subscribed).toEqual([TARGET]);
    expect([...(types[TYPE_CLUSTER]!.subscribed as string[])].sort()).toEqual([`outbound|${GRPC_PORT}|v1|${GRPC_HOST}`, `outbound|${GRPC_PORT}|v2|${GRPC_HOST}`]);
    expect(Object.keys(types).length).toBe(4);
    for (const t of Object.values(types)) expect(t.last_nack).toBeNull();
  });

  it('splits calls 20/80 by weight (200 calls, within 4.5 sigma of the binomial)', async () => {
    await setRoutes([{ name: 'split', route: [to('v1', 20), to('v2', 80)] }]);
    const answers = await client('grpc-split').versions(200);
    expect(count(answers, 'v1') + count(answers, 'v2')).toBe(200);
    const sigma = Math.sqrt(200 * 0.2 * 0.8);
    expect(Math.abs(count(answers, 'v1') - 40)).toBeLessThanOrEqual(4.5 * sigma);
  });

  it('follows a pushed VirtualService change on the same channel (RDS alone is resent)', async () => {
    await setRoutes([{ name: 'all', route: [to('v1')] }]);
    const c = client('grpc-push');
    expect(await c.versions(5)).toEqual(Array(5).fill('v1'));
    const before = await nodeTypes('grpc-push');

    await setRoutes([{ name: 'all', route: [to('v2')] }]);
    await until(async () => (await c.versions(1))[0] === 'v2', 'the open channel to follow the change to v2');
    expect(await c.versions(20)).toEqual(Array(20).fill('v2'));

    const after = await nodeTypes('grpc-push');
    const served = (await syncz()).types;
    expect(after[TYPE_HTTP_ROUTE]!.last_acked?.version).toBe(served[TYPE_HTTP_ROUTE]);
    expect(after[TYPE_HTTP_ROUTE]!.last_acked?.version).not.toBe(before[TYPE_HTTP_ROUTE]!.last_acked?.version);
    // The listener did not change: it was not sent again. The v2 cluster was subscribed anew, not changed.
    expect(after[TYPE_LISTENER]!.last_sent).toEqual(before[TYPE_LISTENER]!.last_sent);
    for (const t of Object.values(after)) expect(t.last_nack).toBeNull();
  });

  it('carries fault aborts, timeouts (max_stream_duration) and retries to the client', async () => {
    await setRoutes([
      {
        name: 'chaos',
        match: [{ headers: { 'x-user': { exact: 'chaos' } } }],
        fault: { abort: { grpcStatus: 'UNAVAILABLE', percentage: { value: 100 } } },
        route: [to('v1')],
      },
      { name: 'slow', match: [{ headers: { 'x-delay-ms': {} } }], timeout: '200ms', route: [to('v1')] },
      { name: 'retried', match: [{ headers: { 'x-fail-first': { prefix: 'r-' } } }], retries: { attempts: 2, retryOn: 'unavailable' }, route: [to('v2')] },
      { name: 'rest', route: [to('v1')] },
    ]);
    const c = client('grpc-policy');
    expect(await c.versions(3)).toEqual(['v1', 'v1', 'v1']);

    const answered = v1.answered + v2.answered;
    const aborted = await c.call(3, { 'x-user': 'chaos' });
    expect(aborted.map((r) => [r.code, r.details])).toEqual(Array(3).fill([14, 'Fault injected']));
    expect(v1.answered + v2.answered).toBe(answered); // aborted in the client, never sent

    // The backend would answer within the call's own 5 s deadline; the route's 200ms timeout ends it first.
    const [slow] = await c.call(1, { 'x-delay-ms': '3000' });
    expect(slow!.code).toBe(4); // DEADLINE_EXCEEDED

    const failedBefore = v2.failed;
    const [retried] = await c.call(1, { 'x-fail-first': 'r-1' });
    expect(retried).toMatchObject({ ok: true, version: 'v2' });
    expect(v2.failed).toBe(failedBefore + 1);
    const [notRetried] = await c.call(1, { 'x-fail-first': 'n-1' }); // the 'rest' route: no retry policy
    expect(notRetried).toMatchObject({ ok: false, code: 14 });
  });

  it('a Waypost data plane (proxy --xds) on the same control plane skips the API listener and applies the rest', async () => {
    const proxy = await spawnCli(['proxy', '--xds', `127.0.0.1:${ports.xds}`, '--node', 'waypost-dp', '--admin', `127.0.0.1:${ports.proxyAdmin}`]);
    try {
      await until(async () => (await httpGet(`127.0.0.1:${ports.proxyAdmin}`, '/ready')).status === 200, `the proxy to be ready\n${proxy.output()}`, 15_000, 50);
      // Its ACK of the listeners (the API listener among them) reaches the server just after it applied them.
      const served = (await syncz()).types;
      const types = await until(async () => {
        const t = await nodeTypes('waypost-dp');
        const lds = t[TYPE_LISTENER];
        return lds && (lds.last_acked !== null || lds.last_nack !== null) && t;
      }, 'the proxy to answer the listeners');
      expect(types[TYPE_LISTENER]!.subscribed).toBe('*');
      expect(types[TYPE_LISTENER]!.last_nack).toBeNull();
      expect(types[TYPE_LISTENER]!.last_acked?.version).toBe(served[TYPE_LISTENER]);
      expect(types[TYPE_HTTP_ROUTE]).toBeUndefined(); // it does not ask for proxyless gRPC's routes
      expect(JSON.parse((await httpGet(`127.0.0.1:${ports.proxyAdmin}`, '/listeners')).body)).toEqual([]);
      const clusters = JSON.parse((await httpGet(`127.0.0.1:${ports.proxyAdmin}`, '/clusters')).body) as Array<{ name: string }>;
      expect(clusters.map((x) => x.name).sort()).toEqual(['', 'v1', 'v2'].map((s) => `outbound|${GRPC_PORT}|${s}|${GRPC_HOST}`).sort());
    } finally {
      await proxy.stop();
    }
  });
});
