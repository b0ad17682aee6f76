/**
 * The Redis proxy end to end: real redis-servers behind it, configured by ServiceEntry + RedisService CRDs, and
 * real clients in front (ioredis, redis-cli, redis-benchmark, raw RESP sockets). What each server holds is checked
 * with a direct connection to it, so routing and prefix removal are seen where they land.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encode,
  ensurePeers,
  freePorts,
  ProxyFixture,
  redisService,
  runTool,
  serviceEntry,
  sleep,
  startRedis,
  type RawClient,
  type RedisServer,
} from './helpers.js';

const CACHE = 'cache.redis.svc.cluster.local';
const USERS = 'users.redis.svc.cluster.local';
const VIP = 'vip.redis.svc.cluster.local';

let a: RedisServer; // cache: the catch-all
let b: RedisServer; // users: prefix "user:" (removed)
let c: RedisServer; // vip: prefix "user:vip:" (kept)
let fx: ProxyFixture;
let port: number; // the cache listener, where clients connect
let ports: number[];

function routes(extra: Record<string, unknown> = {}): unknown[] {
  return [
    serviceEntry({ host: CACHE, port: ports[0]!, endpoints: [a.port] }),
    serviceEntry({ host: USERS, port: ports[1]!, endpoints: [b.port] }),
    serviceEntry({ host: VIP, port: ports[2]!, endpoints: [c.port] }),
    redisService('cache', {
      host: [CACHE],
      redis: [
        { match: { key: { prefix: 'user:', removePrefix: true } }, route: { host: USERS }, allowScripts: true },
        { match: { key: { prefix: 'user:vip:' } }, route: { host: VIP } },
        { route: { host: CACHE } },
      ],
      ...extra,
    }),
  ];
}

beforeAll(async () => {
  ensurePeers();
  [a, b, c] = await Promise.all([startRedis(), startRedis(), startRedis()]);
  ports = await freePorts(3);
  port = ports[0]!;
  fx = new ProxyFixture();
  await fx.apply(routes());
});

afterAll(async () => {
  await fx?.close();
  await Promise.all([a?.stop(), b?.stop(), c?.stop()]);
});

describe('prefix routes', () => {
  it('sends each key to its longest matching prefix, removing the prefix where the route says so', async () => {
    const client = fx.client(port);
    await client.set('user:42', 'alice');
    await client.set('user:vip:7', 'bob');
    await client.set('plain', 'carol');
    expect(await b.direct().get('42')).toBe('alice');
    expect(await b.direct().exists('user:42')).toBe(0);
    expect(await c.direct().get('user:vip:7')).toBe('bob');
    expect(await a.direct().get('plain')).toBe('carol');
    expect(await a.direct().exists('user:42', 'user:vip:7')).toBe(0);
    expect(await client.get('user:42')).toBe('alice');
    expect(await client.get('user:vip:7')).toBe('bob');
    expect(await client.get('plain')).toBe('carol');
  });

  it('strips the prefix from every key of a multi-key command on one route, and refuses keys that span routes', async () => {
    const client = fx.client(port);
    await client.set('user:from', 'x');
    expect(await client.rename('user:from', 'user:to')).toBe('OK');
    expect(await b.direct().get('to')).toBe('x');
    await expect(client.rename('user:to', 'elsewhere')).rejects.toThrow(/CROSSSLOT.*'rename'.*'user:'.*'catch_all'/);
    expect(await b.direct().get('to')).toBe('x');
    // Keyed by the numkeys argument (the route allows scripts): EVAL's keys are stripped too.
    expect(await client.eval('return redis.call("GET", KEYS[1])', 1, 'user:to')).toBe('x');
    // Its keys must all be on that route, like any multi-key command.
    await expect(client.eval('return 1', 2, 'user:to', 'elsewhere')).rejects.toThrow(/CROSSSLOT.*'eval'/);
  });

  it('refuses keyless commands even with a catch-all route (as Envoy), and answers INFO itself', async () => {
    const client = fx.client(port);
    await a.direct().set('only-on-a', '1');
    await expect(client.dbsize()).rejects.toThrow("ERR unsupported command 'dbsize': it has no key to route by and would reach every route's keys");
    await expect(client.call('KEYS', 'only-on-*')).rejects.toThrow(/^ERR unsupported command 'keys'/);
    await expect(client.scan(0)).rejects.toThrow(/^ERR unsupported command 'scan'/);
    expect(await client.info('server')).toMatch(/proxy:waypost/);
  });

  it('applies config changes to connections already open (case-insensitive prefixes here)', async () => {
    const client = fx.client(port);
    await client.set('USER:99', 'upper');
    expect(await a.direct().get('USER:99')).toBe('upper');
    await fx.apply(routes({ settings: { caseInsensitive: true } }));
    await client.set('USER:98', 'folded');
    expect(await b.direct().get('98')).toBe('folded');
    await fx.apply(routes());
  });
});

describe('pipelines and multi-key commands', () => {
  it('answers a pipeline of 5,000 mixed commands across three routes in order (raw bytes)', async () => {
    const raw = await fx.raw(port);
    const cmds: string[][] = [];
    const expected: string[] = [];
    const keyOf = (i: number) => (i % 3 === 0 ? `user:p${i}` : i % 3 === 1 ? `user:vip:p${i}` : `p${i}`);
    for (let i = 0; i < 1250; i++) {
      const k = keyOf(i);
      cmds.push(['SET', k, `v${i}`], ['GET', k], ['INCR', `${k}:n`], ['ECHO', `e${i}`]);
      expected.push('+OK', `$${`v${i}`.length}\r\nv${i}`, ':1', `$${`e${i}`.length}\r\ne${i}`);
    }
    const replies = await raw.commands(cmds, 30_000);
    expect(replies).toHaveLength(5000);
    expect(replies).toEqual(expected);
    expect(await b.direct().get('p0')).toBe('v0');
    expect(await c.direct().get('user:vip:p1')).toBe('v1');
    expect(await a.direct().get('p2')).toBe('v2');
  });

  it('answers an ioredis pipeline across routes in order, errors in their places', async () => {
    const client = fx.client(port);
    const p = client.pipeline();
    for (let i = 0; i < 300; i++) {
      p.set(`user:q${i}`, String(i));
      p.lpush(`q${i}`, 'x');
      p.get(`q${i}`); // WRONGTYPE from the server, in its place
      p.get(`user:q${i}`);
    }
    const results = await p.exec();
    expect(results).toHaveLength(1200);
    for (let i = 0; i < 300; i++) {
      expect(results![i * 4]).toEqual([null, 'OK']);
      expect(results![i * 4 + 1]).toEqual([null, 1]);
      expect(String(results![i * 4 + 2]![0])).toMatch(/WRONGTYPE/);
      expect(results![i * 4 + 3]).toEqual([null, String(i)]);
    }
  });

  it('splits MSET and MGET across routes and reassembles the answers in key order', async () => {
    const client = fx.client(port);
    expect(await client.mset('user:m1', 'one', 'm2', 'two', 'user:vip:m3', 'three', 'user:m4', 'four')).toBe('OK');
    expect(await b.direct().mget('m1', 'm4')).toEqual(['one', 'four']);
    expect(await a.direct().get('m2')).toBe('two');
    expect(await c.direct().get('user:vip:m3')).toBe('three');
    expect(await client.mget('user:vip:m3', 'missing', 'user:m1', 'm2', 'user:m4', 'user:none')).toEqual(['three', null, 'one', 'two', 'four', null]);
    await a.direct().lpush('m-list', 'x');
    // An element that fails on its server stays in its place.
    expect(await client.mget('m2', 'm-list', 'user:m1')).toEqual(['two', null, 'one']);
  });

  it('splits DEL, EXISTS, UNLINK and TOUCH and sums the answers', async () => {
    const client = fx.client(port);
    await client.mset('user:d1', '1', 'd2', '2', 'user:vip:d3', '3', 'd4', '4');
    expect(await client.exists('user:d1', 'd2', 'user:vip:d3', 'nope', 'd2')).toBe(4);
    expect(await client.touch('user:d1', 'd2', 'user:vip:d3')).toBe(3);
    expect(await client.del('user:d1', 'd2', 'nope')).toBe(2);
    expect(await client.unlink('user:vip:d3', 'd4')).toBe(2);
    expect(await b.direct().exists('d1')).toBe(0);
    expect(await a.direct().exists('d2', 'd4')).toBe(0);
    expect(await c.direct().exists('user:vip:d3')).toBe(0);
  });

  it('checks arity before splitting', async () => {
    const raw = await fx.raw(port);
    expect(await raw.commands([['MSET', 'a', '1', 'b'], ['MGET'], ['GET'], ['PING']])).toEqual([
      "-ERR wrong number of arguments for 'mset' command",
      "-ERR wrong number of arguments for 'mget' command",
      "-ERR wrong number of arguments for 'get' command",
      '+PONG',
    ]);
  });
});

describe('commands the proxy answers itself', () => {
  it('answers PING, ECHO, TIME, SELECT 0, CLIENT SETNAME/GETNAME, and QUIT (+OK, then close)', async () => {
    const raw = await fx.raw(port);
    const replies = await raw.commands([['PING'], ['PING', 'hi'], ['ECHO', 'hello world'], ['SELECT', '0'], ['CLIENT', 'SETNAME', 'me'], ['CLIENT', 'GETNAME']]);
    expect(replies).toEqual(['+PONG', '$2\r\nhi', '$11\r\nhello world', '+OK', '+OK', '$2\r\nme']);
    const [time] = await raw.commands([['TIME']]);
    const secs = Number(time!.split('\r\n')[2]);
    expect(Math.abs(secs - Date.now() / 1000)).toBeLessThan(5);
    // Commands after QUIT in the same write get no answer; the connection closes after +OK.
    raw.write(Buffer.concat([encode(['SET', 'after-quit', '1']), encode(['QUIT']), encode(['SET', 'never', '1'])]));
    expect(await raw.read(2)).toEqual(['+OK', '+OK']);
    await raw.waitClosed();
    expect(await a.direct().exists('never')).toBe(0);
  });

  it('answers inline commands like telnet users type them', async () => {
    const raw = await fx.raw(port);
    raw.write('PING\r\nSET user:inline "two words"\r\nGET user:inline\r\n');
    expect(await raw.read(3)).toEqual(['+PONG', '+OK', '$9\r\ntwo words']);
    expect(await b.direct().get('inline')).toBe('two words');
  });

  it('refuses commands that cannot work through a proxy with an error naming them, and keeps serving', async () => {
    const raw = await fx.raw(port);
    const replies = await raw.commands([
      ['SUBSCRIBE', 'ch'],
      ['PSUBSCRIBE', 'c*'],
      ['MONITOR'],
      ['BLPOP', 'list', '0'],
      ['BRPOPLPUSH', 'a', 'b', '0'],
      ['MULTI'],
      ['EXEC'],
      ['WATCH', 'k'],
      ['SELECT', '1'],
      ['CLUSTER', 'INFO'],
      ['CLIENT', 'KILL', 'ID', '1'],
      ['XREAD', 'BLOCK', '0', 'STREAMS', 's', '$'],
      ['PING'],
    ]);
    const names = ['subscribe', 'psubscribe', 'monitor', 'blpop', 'brpoplpush', 'multi', 'exec', 'watch', 'select', 'cluster', 'client', 'xread'];
    names.forEach((n, i) => expect(replies[i]).toMatch(new RegExp(`^-ERR unsupported command '${n}'`)));
    expect(replies[12]).toBe('+PONG');
  });

  it('closes only the connection that sent a malformed command, after a protocol error reply', async () => {
    const good = await fx.raw(port);
    const bad = await fx.raw(port);
    const before = await fx.metric(/^waypost_decode_errors_total\{.*protocol="redis".*direction="downstream"/);
    bad.write(Buffer.concat([encode(['SET', 'before-garbage', '1']), Buffer.from('*1\r\n+GET\r\n'), encode(['SET', 'after-garbage', '1'])]));
    expect(await bad.read(2)).toEqual(['+OK', "-ERR Protocol error: expected '$', got '+'"]);
    await bad.waitClosed();
    expect(await fx.metric(/^waypost_decode_errors_total\{.*protocol="redis".*direction="downstream"/)).toBe(before + 1);
    expect(await a.direct().exists('after-garbage')).toBe(0);
    expect(await good.commands([['PING'], ['GET', 'before-garbage']])).toEqual(['+PONG', '$1\r\n1']);
  });
});

describe('RESP3', () => {
  it('switches a connection with HELLO 3: RESP3 replies (maps, nulls, doubles) from RESP3 upstream connections', async () => {
    const raw = await fx.raw(port);
    await raw.commands([['HSET', 'user:h', 'f', 'v'], ['ZADD', 'z3', '2.5', 'm'], ['SET', 'r3', 'x']]);
    expect(await raw.commands([['HGETALL', 'user:h'], ['GET', 'missing']])).toEqual(['*2\r\n$1\r\nf\r\n$1\r\nv', '$-1']);
    const [hello] = await raw.commands([['HELLO', '3']]);
    expect(hello).toMatch(/^%7\r\n\$6\r\nserver\r\n/);
    expect(hello).toContain('$5\r\nproto\r\n:3');
    expect(await raw.commands([['HGETALL', 'user:h'], ['GET', 'missing'], ['ZSCORE', 'z3', 'm'], ['MGET', 'r3', 'user:missing', 'missing'], ['PING']])).toEqual([
      '%1\r\n$1\r\nf\r\n$1\r\nv',
      '_',
      ',2.5',
      '*3\r\n$1\r\nx\r\n_\r\n_',
      '+PONG',
    ]);
    expect((await raw.commands([['HELLO', '2']]))[0]).toMatch(/^\*14\r\n/);
    expect(await raw.commands([['HGETALL', 'user:h']])).toEqual(['*2\r\n$1\r\nf\r\n$1\r\nv']);
  });

  it('serves ioredis with protocol 3 (HELLO 3 handshake, map replies as objects)', async () => {
    const client = fx.client(port, { protocol: 3, replyMapping: 'resp3' } as never);
    await client.hset('user:obj', 'a', '1', 'b', '2');
    expect(await client.hgetall('user:obj')).toEqual({ a: '1', b: '2' });
    expect(await b.direct().hgetall('obj')).toEqual({ a: '1', b: '2' });
  });
});

describe('real tools', () => {
  it('redis-cli reads and writes through the proxy', async () => {
    const set = await runTool('redis-cli', ['-p', String(port), 'SET', 'user:cli', 'from-cli']);
    expect(set.stdout.trim()).toBe('OK');
    expect(await b.direct().get('cli')).toBe('from-cli');
    const get = await runTool('redis-cli', ['-p', String(port), '-3', 'HELLO', '3']);
    expect(get.stdout).toContain('proto');
    const mget = await runTool('redis-cli', ['-p', String(port), 'MGET', 'user:cli', 'nothing']);
    expect(mget.stdout).toBe('from-cli\n\n');
  });

  it('redis-benchmark -t get,set -n 2000 -P 16 completes without errors', async () => {
    const r = await runTool('redis-benchmark', ['-p', String(port), '-t', 'get,set', '-n', '2000', '-P', '16', '-c', '4', '-q'], 120_000);
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/ERR|error|Error/);
    expect(r.stdout).toMatch(/SET: .*requests per second/);
    expect(r.stdout).toMatch(/GET: .*requests per second/);
  });
});

describe('metrics', () => {
  it('counts requests per route and cluster with protocol="redis"', async () => {
    const client = fx.client(port);
    await client.ping(); // past ioredis' ready check (INFO, to the catch-all route)
    const pattern = (route: string, outcome: string) =>
      new RegExp(`^waypost_requests_total\\{[^}]*protocol="redis",route="${route}",cluster="outbound\\|\\d+\\|\\|${route === 'user:' ? USERS : CACHE}",outcome="${outcome}"`);
    const users = await fx.metric(pattern('user:', 'success'));
    const all = await fx.metric(pattern('catch_all', 'success'));
    const wrong = await fx.metric(pattern('catch_all', 'business_exception'));
    await client.set('user:metric', '1');
    await client.get('user:metric');
    await client.set('metric', '1');
    await client.hget('metric', 'f').catch(() => undefined);
    expect(await fx.metric(pattern('user:', 'success'))).toBe(users + 2);
    expect(await fx.metric(pattern('catch_all', 'success'))).toBe(all + 1);
    expect(await fx.metric(pattern('catch_all', 'business_exception'))).toBe(wrong + 1);
  });
});

describe('hash tags over a cluster of two servers', () => {
  it('keeps keys with one hash tag on one server, and spreads untagged keys', async () => {
    const [listen] = await freePorts(1);
    const host = 'sharded.redis.svc.cluster.local';
    const docs = (hashtag: boolean) => [
      ...routes(),
      serviceEntry({ host, port: listen!, endpoints: [b.port, c.port] }),
      redisService('sharded', { host: [host], settings: { enableHashtagging: hashtag } }),
    ];
    await fx.apply(docs(true));
    const client = fx.client(listen!);
    await b.direct().flushall();
    await c.direct().flushall();
    for (let i = 0; i < 40; i++) await client.set(`{user1000}.f${i}`, String(i));
    const onB = (await b.direct().keys('{user1000}.*')).length;
    const onC = (await c.direct().keys('{user1000}.*')).length;
    expect([onB, onC].sort()).toEqual([0, 40]);
    for (let i = 0; i < 40; i++) await client.set(`spread${i}`, String(i));
    expect((await b.direct().keys('spread*')).length).toBeGreaterThan(0);
    expect((await c.direct().keys('spread*')).length).toBeGreaterThan(0);
    // MGET over both servers comes back in key order.
    const keys = Array.from({ length: 40 }, (_, i) => `spread${i}`);
    expect(await client.mget(...keys)).toEqual(keys.map((_, i) => String(i)));
    // Without hash tagging the tagged keys spread too.
    await fx.apply(docs(false));
    await b.direct().flushall();
    await c.direct().flushall();
    for (let i = 0; i < 40; i++) await client.set(`{user1000}.f${i}`, String(i));
    expect((await b.direct().keys('*')).length).toBeGreaterThan(0);
    expect((await c.direct().keys('*')).length).toBeGreaterThan(0);
    await fx.apply(routes());
  });
});

describe('without a RedisService', () => {
  it('sends everything to the service\'s own cluster', async () => {
    const [listen] = await freePorts(1);
    await fx.apply([...routes(), serviceEntry({ host: 'plain.redis.svc.cluster.local', port: listen!, endpoints: [c.port] })]);
    const client = fx.client(listen!);
    await client.set('user:plain', 'v');
    expect(await c.direct().get('user:plain')).toBe('v');
    expect(await client.info('server')).toMatch(/redis_version:7.*\r\nredis_mode:standalone\r\nproxy:waypost/s);
    await fx.apply(routes());
  });

  it('answers INFO itself and refuses other keyless commands when there is no catch-all route either', async () => {
    const [listen] = await freePorts(1);
    const host = 'prefixonly.redis.svc.cluster.local';
    await fx.apply([
      ...routes(),
      serviceEntry({ host, port: listen!, endpoints: [c.port] }),
      redisService('prefixonly', { host: [host], redis: [{ match: { key: { prefix: 'p:' } }, route: { host } }] }),
    ]);
    const raw: RawClient = await fx.raw(listen!);
    const [info, dbsize, get, set] = await raw.commands([['INFO'], ['DBSIZE'], ['GET', 'other'], ['SET', 'p:1', 'x']]);
    expect(info).toContain('loading:0');
    expect(dbsize).toMatch(/^-ERR unsupported command 'dbsize'/);
    expect(get).toBe("-ERR no route for key 'other'");
    expect(set).toBe('+OK');
    // ioredis' ready check (INFO) passes, so it connects.
    const client = fx.client(listen!);
    expect(await client.get('p:1')).toBe('x');
    await sleep(10);
    await fx.apply(routes());
  });
});
