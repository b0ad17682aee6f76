/**
 * Thrift and Redis over xDS, end to end: `waypost control` (child process) serving one config directory with
 *
 * - a Thrift service (port `tcp-metaprotocol-thrift`): python3-thrift THeader servers v1 and v2 behind it, and a
 *   MetaRouter routing by `method`;
 * - a Redis service (port `tcp-redis`): two redis-servers (A and B), and a RedisService routing two key prefixes
 *   (`user:` to A, `order:` to B with the prefix removed), nothing else matching;
 *
 * and `waypost proxy --xds` (child process) fed by it over gRPC ADS. Real clients through the proxy: npm thrift
 * (framed/binary) and a python3-thrift THeader session, ioredis. Each side's routing is then edited on disk; the
 * edit travels over xDS (RDS for the MetaRouter, LDS for the RedisService, whose routes live in the listener's
 * redis_proxy filter) and re-routes the connections already open.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import type { Redis } from 'ioredis';
import { freePorts } from '../../examples/dubbo/harness.js';
import { TYPE_LISTENER, TYPE_META_ROUTE } from '../../src/xds/resources.js';
import {
  ensureThriftPeers,
  generate,
  npmClient,
  PythonSession,
  startPythonServer,
  type Generated,
  type NpmClient,
  type PythonServer,
} from '../fixtures/thrift/peers.js';
import { ensurePeers as ensureRedisPeers, startRedis, type RedisServer } from '../redis/helpers.js';
import { TempConfig, until, type CliProcess } from './helpers.js';
import { expectedProxyVersion, nodeSync, proxyApplied, startControl, startXdsProxy, waitSynced, writeAtomically } from './planes.js';

const NODE = 'protocols-node';
const THRIFT_HOST = 'greeter.xds.test';
const CACHE = 'cache.xds.test';
const STORE_A = 'store-a.xds.test';
const STORE_B = 'store-b.xds.test';

let gen: Generated;
let thriftV1: PythonServer;
let thriftV2: PythonServer;
let redisA: RedisServer;
let redisB: RedisServer;
let directA: Redis;
let directB: Redis;
let cfg: TempConfig;
let control: CliProcess | undefined;
let proxy: CliProcess | undefined;
let ports: { thrift: number; cache: number; storeA: number; storeB: number; xds: number; controlAdmin: number; proxyAdmin: number };
const npmClients: NpmClient[] = [];
const sessions: PythonSession[] = [];
const redisClients: Redis[] = [];

const controlAdmin = (): string => `127.0.0.1:${ports.controlAdmin}`;
const proxyAdmin = (): string => `127.0.0.1:${ports.proxyAdmin}`;

const se = (name: string, host: string, port: number, portName: string, endpoints: Array<{ port: number; labels?: Record<string, string> }>): object => ({
  apiVersion: 'networking.istio.io/v1beta1',
  kind: 'ServiceEntry',
  metadata: { name, namespace: 'default' },
  spec: {
    hosts: [host],
    ports: [{ number: port, name: portName, protocol: 'TCP' }],
    resolution: 'STATIC',
    endpoints: endpoints.map((e) => ({ address: '127.0.0.1', ports: { [portName]: e.port }, ...(e.labels ? { labels: e.labels } : {}) })),
  },
});

const yamlDocs = (docs: object[]): string => docs.map((d) => YAML.stringify(d)).join('---\n');

function servicesYaml(): string {
  return yamlDocs([
    se('greeter', THRIFT_HOST, ports.thrift, 'tcp-metaprotocol-thrift', [
      { port: thriftV1.port, labels: { version: 'v1' } },
      { port: thriftV2.port, labels: { version: 'v2' } },
    ]),
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: 'greeter', namespace: 'default' },
      spec: { host: THRIFT_HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    },
    se('cache', CACHE, ports.cache, 'tcp-redis', [{ port: redisA.port }]),
    se('store-a', STORE_A, ports.storeA, 'tcp-redis', [{ port: redisA.port }]),
    se('store-b', STORE_B, ports.storeB, 'tcp-redis', [{ port: redisB.port }]),
  ]);
}

/** A MetaRouter: `hello` to `hello`, every other method to `rest`. */
function metaRouterYaml(hello: 'v1' | 'v2', rest: 'v1' | 'v2'): string {
  return yamlDocs([
    {
      apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
      kind: 'MetaRouter',
      metadata: { name: 'greeter', namespace: 'default' },
      spec: {
        hosts: [THRIFT_HOST],
        routes: [
          { name: 'hello', match: { attributes: { method: { exact: 'hello' } } }, route: [{ destination: { host: THRIFT_HOST, subset: hello } }] },
          { name: 'rest', route: [{ destination: { host: THRIFT_HOST, subset: rest } }] },
        ],
      },
    },
  ]);
}

/** A RedisService on the cache listener with two key prefixes and no catch-all route. */
function redisServiceYaml(routes: Array<{ prefix: string; to: string; removePrefix?: boolean }>): string {
  return yamlDocs([
    {
      apiVersion: 'redis.aeraki.io/v1alpha1',
      kind: 'RedisService',
      metadata: { name: 'cache', namespace: 'default' },
      spec: {
        host: [CACHE],
        redis: routes.map((r) => ({ match: { key: { prefix: r.prefix, ...(r.removePrefix ? { removePrefix: true } : {}) } }, route: { host: r.to } })),
      },
    },
  ]);
}

/** Writes `file`, then waits until the proxy applied what the control plane now serves and the node ACKed it. */
async function edit(file: string, text: string, changedType: string): Promise<void> {
  const before = await nodeSync(controlAdmin(), NODE);
  const beforeVersion = before.served[changedType];
  writeAtomically(cfg.dir, file, text);
  await until(async () => (await nodeSync(controlAdmin(), NODE)).served[changedType] !== beforeVersion, `the control plane to serve a new ${changedType}`);
  const { node, served } = await waitSynced(controlAdmin(), NODE, 'the node to ACK the edit');
  // Applied, not only ACKed: the proxy's config is exactly the served versions.
  expect((await proxyApplied(proxyAdmin())).version).toBe(expectedProxyVersion(served, node));
}

beforeAll(async () => {
  ensureThriftPeers();
  ensureRedisPeers();
  gen = await generate();
  [thriftV1, thriftV2, redisA, redisB] = await Promise.all([
    startPythonServer(gen, 'header', 'binary', 'v1'),
    startPythonServer(gen, 'header', 'binary', 'v2'),
    startRedis(),
    startRedis(),
  ]);
  directA = redisA.direct();
  directB = redisB.direct();
  const [thrift, cache, storeA, storeB, xds, ca, pa] = await freePorts(7);
  ports = { thrift: thrift!, cache: cache!, storeA: storeA!, storeB: storeB!, xds: xds!, controlAdmin: ca!, proxyAdmin: pa! };
  cfg = new TempConfig();
  cfg.write('services.yaml', servicesYaml());
  cfg.write('thrift-router.yaml', metaRouterYaml('v1', 'v2'));
  cfg.write('redis-service.yaml', redisServiceYaml([{ prefix: 'user:', to: STORE_A }, { prefix: 'order:', to: STORE_B, removePrefix: true }]));
  control = await startControl({ configDir: cfg.dir, xdsPort: ports.xds, adminPort: ports.controlAdmin });
  proxy = await startXdsProxy({ xdsPort: ports.xds, adminPort: ports.proxyAdmin, node: NODE });
  await waitSynced(controlAdmin(), NODE, 'the proxy to ACK the first config');
});

afterAll(async () => {
  for (const c of npmClients) c.close();
  await Promise.all(sessions.map((s) => s.close()));
  for (const c of redisClients) c.disconnect();
  await proxy?.stop();
  await control?.stop();
  thriftV1?.stop();
  thriftV2?.stop();
  await redisA?.stop();
  await redisB?.stop();
  gen?.cleanup();
  cfg?.remove();
});

describe('waypost proxy --xds: Thrift (MetaRouter by method) from waypost control', () => {
  let npm: NpmClient;
  let py: PythonSession;

  it('routes real Thrift calls by method as the control plane says', async () => {
    npm = npmClient(gen, ports.thrift, 'framed', 'binary');
    npmClients.push(npm);
    py = new PythonSession(gen, 'header', 'binary', ports.thrift);
    sessions.push(py);
    for (let i = 0; i < 3; i++) {
      expect(await npm.greeter.hello(`n${i}`)).toBe(`hello n${i} from v1`);
      expect(await npm.greeter.server()).toBe('python header/binary v2');
      expect(await py.call({ method: 'hello', args: [`p${i}`] })).toEqual({ ok: `hello p${i} from v1` });
      expect(await py.call({ method: 'server' })).toEqual({ ok: 'python header/binary v2' });
    }
    expect(npm.errors).toEqual([]);
  });

  it('re-routes the open connections when a MetaRouter edit is pushed over xDS (RDS)', async () => {
    const ldsBefore = (await nodeSync(controlAdmin(), NODE)).served[TYPE_LISTENER];
    await edit('thrift-router.yaml', metaRouterYaml('v2', 'v1'), TYPE_META_ROUTE);
    // A MetaRouter lives in RDS: the listeners did not change.
    expect((await nodeSync(controlAdmin(), NODE)).served[TYPE_LISTENER]).toBe(ldsBefore);
    for (let i = 0; i < 3; i++) {
      expect(await npm.greeter.hello(`n${i}`)).toBe(`hello n${i} from v2`);
      expect(await npm.greeter.server()).toBe('python header/binary v1');
      expect(await py.call({ method: 'hello', args: [`p${i}`] })).toEqual({ ok: `hello p${i} from v2` });
      expect(await py.call({ method: 'server' })).toEqual({ ok: 'python header/binary v1' });
    }
    expect(npm.errors).toEqual([]);
  });
});

describe('waypost proxy --xds: Redis (RedisService with two key prefixes) from waypost control', () => {
  let c: Redis;
  /** Connections ioredis made (it reconnects silently): the edit must not cost the open one. */
  let connects = 0;

  it('routes real ioredis commands by key prefix as the control plane says', async () => {
    const { Redis: RedisCtor } = await import('ioredis');
    c = new RedisCtor({ port: ports.cache, host: '127.0.0.1', maxRetriesPerRequest: 1 });
    c.on('connect', () => connects++);
    redisClients.push(c);
    expect(await c.set('user:1', 'u1')).toBe('OK');
    expect(await c.set('order:1', 'o1')).toBe('OK');
    // user: → A as is; order: → B without its prefix.
    expect(await directA.get('user:1')).toBe('u1');
    expect(await directB.get('user:1')).toBeNull();
    expect(await directB.get('1')).toBe('o1');
    expect(await directA.get('order:1')).toBeNull();
    expect(await directA.get('1')).toBeNull();
    // Read back through the proxy (the prefix is removed on the way to B).
    expect(await c.get('user:1')).toBe('u1');
    expect(await c.get('order:1')).toBe('o1');
    // No catch-all route: a key matching neither prefix is refused by the proxy, not sent anywhere.
    await expect(c.set('other:1', 'x')).rejects.toThrow(/no route/);
    expect(await directA.get('other:1')).toBeNull();
    expect(await directB.get('other:1')).toBeNull();
  });

  it('re-routes the open connection when a RedisService edit is pushed over xDS (LDS)', async () => {
    const rdsBefore = (await nodeSync(controlAdmin(), NODE)).served[TYPE_META_ROUTE];
    // Swapped, and no prefix removal any more.
    await edit('redis-service.yaml', redisServiceYaml([{ prefix: 'user:', to: STORE_B }, { prefix: 'order:', to: STORE_A }]), TYPE_LISTENER);
    expect((await nodeSync(controlAdmin(), NODE)).served[TYPE_META_ROUTE]).toBe(rdsBefore);
    expect(await c.set('user:2', 'u2')).toBe('OK');
    expect(await c.set('order:2', 'o2')).toBe('OK');
    expect(await directB.get('user:2')).toBe('u2');
    expect(await directA.get('user:2')).toBeNull();
    expect(await directA.get('order:2')).toBe('o2');
    expect(await directB.get('2')).toBeNull();
    // The keys written before now route to the other server: user:1 is on A, order:1 (as "1") on B.
    expect(await c.get('user:1')).toBeNull();
    expect(await c.get('order:1')).toBeNull();
    expect(await c.get('user:2')).toBe('u2');
    expect(await c.get('order:2')).toBe('o2');
    expect(connects).toBe(1);
  });
});
