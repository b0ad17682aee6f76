/**
 * RedisDestination `mode: CLUSTER` against a real Redis Cluster of three redis-servers: a client that knows nothing
 * of Redis Cluster talks to the proxy, which reads the slot map from one seed node, sends each key to the node of
 * its slot, splits MGET/MSET/DEL across nodes, and follows ASK and MOVED while a slot migrates.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensurePeers, freePorts, ProxyFixture, redisDestination, redisService, serviceEntry, type RedisClusterNodes, startRedisCluster } from './helpers.js';
import { keySlot } from '../../src/redis/cluster-mode.js';

const HOST = 'redis-cluster.redis.svc.cluster.local';

let cluster: RedisClusterNodes;
let fx: ProxyFixture;
let port: number;

async function ownerOf(slot: number): Promise<number> {
  const slots = (await cluster.nodes[0]!.direct().call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>;
  const range = slots.find(([from, to]) => slot >= from && slot <= to)!;
  return range[2][1];
}

beforeAll(async () => {
  ensurePeers();
  cluster = await startRedisCluster(3);
  [port] = await freePorts(1);
  fx = new ProxyFixture();
  await fx.apply([
    // One seed is enough: the proxy learns the other nodes from it.
    serviceEntry({ host: HOST, port: port!, endpoints: [cluster.nodes[0]!.port] }),
    redisDestination('redis-cluster', { host: HOST, trafficPolicy: { connectionPool: { redis: { mode: 'CLUSTER' } } } }),
    redisService('redis-cluster', { host: [HOST], redis: [{ route: { host: HOST } }] }),
  ]);
}, 60_000);

afterAll(async () => {
  await fx?.close();
  await cluster?.stop();
});

describe('Redis Cluster', () => {
  it('computes Redis Cluster key slots (CRC16, hash tags)', async () => {
    const direct = cluster.nodes[0]!.direct();
    for (const key of ['foo', 'user:1000', '{user1000}.following', '{}x', 'a{b}c{d}', '']) {
      expect(keySlot(key), key).toBe(await direct.call('CLUSTER', 'KEYSLOT', key));
    }
  });

  it('sends each key to the node of its slot, for a client that knows nothing of Redis Cluster', async () => {
    const client = fx.client(port);
    for (let i = 0; i < 150; i++) expect(await client.set(`key:${i}`, String(i))).toBe('OK');
    const sizes = await Promise.all(cluster.nodes.map((n) => n.direct().dbsize()));
    expect(sizes.reduce((a: number, b: number) => a + b, 0)).toBe(150);
    for (const s of sizes) expect(s).toBeGreaterThan(0);
    for (let i = 0; i < 150; i += 7) {
      const owner = await ownerOf(keySlot(`key:${i}`));
      const node = cluster.nodes.find((n) => n.port === owner)!;
      expect(await node.direct().get(`key:${i}`)).toBe(String(i));
      expect(await client.get(`key:${i}`)).toBe(String(i));
    }
  });

  it('splits MGET, MSET and DEL across nodes', async () => {
    const client = fx.client(port);
    const keys = Array.from({ length: 30 }, (_, i) => `m:${i}`);
    expect(await client.mset(...keys.flatMap((k, i) => [k, `v${i}`]))).toBe('OK');
    expect(await client.mget(...keys, 'absent')).toEqual([...keys.map((_, i) => `v${i}`), null]);
    expect(await client.del(...keys.slice(0, 10))).toBe(10);
    // Keys of one hash tag share a slot and a node: multi-key commands work on them.
    await client.set('{acct}.a', '1');
    expect(await client.rename('{acct}.a', '{acct}.b')).toBe('OK');
    await expect(client.rename('key:1', 'key:2')).rejects.toThrow(/CROSSSLOT/);
  });

  it('follows ASK while a slot migrates, and MOVED once it has moved', async () => {
    const client = fx.client(port);
    const key = 'migrating-key';
    const slot = keySlot(key);
    await client.set(key, 'value');
    const fromPort = await ownerOf(slot);
    const from = cluster.nodes.find((n) => n.port === fromPort)!;
    const to = cluster.nodes.find((n) => n.port !== fromPort)!;
    const fromId = cluster.ids.get(from.port)!;
    const toId = cluster.ids.get(to.port)!;
    await to.direct().call('CLUSTER', 'SETSLOT', slot, 'IMPORTING', fromId);
    await from.direct().call('CLUSTER', 'SETSLOT', slot, 'MIGRATING', toId);
    await from.direct().call('MIGRATE', '127.0.0.1', to.port, key, 0, 5000);
    // The key now lives on `to`; `from` answers ASK for it.
    await expect(from.direct().get(key)).rejects.toThrow(/^ASK/);
    expect(await client.get(key)).toBe('value');
    for (const n of cluster.nodes) await n.direct().call('CLUSTER', 'SETSLOT', slot, 'NODE', toId);
    // `from` now answers MOVED; the proxy follows it (and learns the new owner).
    await expect(from.direct().get(key)).rejects.toThrow(/^MOVED/);
    expect(await client.get(key)).toBe('value');
    expect(await client.set(key, 'changed')).toBe('OK');
    expect(await to.direct().get(key)).toBe('changed');
  });

  it('answers INFO itself and refuses keyless commands, which have no slot', async () => {
    const client = fx.client(port);
    expect(await client.info('cluster')).toMatch(/redis_mode:standalone/);
    await expect(client.dbsize()).rejects.toThrow(/^ERR unsupported command 'dbsize'/);
  });
});
