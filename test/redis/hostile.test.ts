/**
 * Hostile input through a running Redis proxy, with real redis-servers behind it (and, for what no redis-server
 * sends, a small fake node speaking RESP): administrative commands and scripts a client may not run, replies too
 * large or too deep for the proxy, ports and slots out of range from a Redis Cluster node, AUTH guessing. Each
 * attack gets a Redis error, other clients on the same upstream connection are still served, a metric counts it,
 * and the proxy (this process) goes on.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_SPLIT_ARGS } from '../../src/redis/connection.js';
import {
  ensurePeers,
  freePorts,
  ProxyFixture,
  redisDestination,
  redisService,
  serviceEntry,
  startRedis,
  type RawClient,
  type RedisServer,
} from './helpers.js';

const MAIN = 'main.redis.svc.cluster.local';
const SCRIPTS = 'scripts.redis.svc.cluster.local';
const CLIENT_PASS = 'client-pass';
const SERVER_PASS = 'server-secret-never-shown';

let main: RedisServer; // requirepass: the proxy logs in with SERVER_PASS
let scripts: RedisServer;
let fx: ProxyFixture;
let ports: number[];

function base(settings: Record<string, unknown> = {}): unknown[] {
  return [
    serviceEntry({ host: MAIN, port: ports[0]!, endpoints: [main.port] }),
    serviceEntry({ host: SCRIPTS, port: ports[1]!, endpoints: [scripts.port] }),
    redisDestination('main', { host: MAIN, trafficPolicy: { connectionPool: { redis: { auth: { plain: { password: SERVER_PASS } } } } } }),
    redisService('main', {
      host: [MAIN],
      settings,
      redis: [
        { match: { key: { prefix: 'script:' } }, route: { host: SCRIPTS }, allowScripts: true },
        { match: { key: { prefix: 'noscript:' } }, route: { host: SCRIPTS } },
        { route: { host: MAIN } },
      ],
      faults: [{ type: 'ERROR', percentage: { value: 100 }, commands: ['FLUSHALL', 'FLUSHDB'] }],
    }),
  ];
}

beforeAll(async () => {
  ensurePeers();
  [main, scripts] = await Promise.all([startRedis({ password: SERVER_PASS }), startRedis()]);
  ports = await freePorts(3);
  fx = new ProxyFixture();
  await fx.apply(base());
});

afterAll(async () => {
  await fx?.close();
  await Promise.all([main?.stop(), scripts?.stop()]);
});

/** The ids of the server's client connections but `direct`'s own (the proxy's, and the test's other clients). */
async function connectionIds(direct: ReturnType<RedisServer['direct']>): Promise<string[]> {
  const own = String(await direct.call('CLIENT', 'ID'));
  const list = String(await direct.call('CLIENT', 'LIST'));
  return list
    .split('\n')
    .map((line) => /\bid=(\d+)\b/.exec(line)?.[1])
    .filter((id): id is string => id !== undefined && id !== own)
    .sort();
}

describe('command policy', () => {
  it('never forwards administrative commands: the upstream password stays secret, the server keeps its config and data', async () => {
    await main.direct().set('keep', 'me');
    const raw = await fx.raw(ports[0]!);
    const attacks: string[][] = [
      ['CONFIG', 'GET', 'requirepass'],
      ['CONFIG', 'SET', 'requirepass', 'stolen'],
      ['ACL', 'SETUSER', 'mallory', 'on', '>x', '~*', '+@all'],
      ['ACL', 'LIST'],
      ['SCRIPT', 'FLUSH'],
      ['DEBUG', 'SLEEP', '0'],
      ['SHUTDOWN', 'NOSAVE'],
      ['MONITOR'],
      ['REPLICAOF', '127.0.0.1', '1'],
      ['MODULE', 'LIST'],
      ['CLIENT', 'KILL', 'TYPE', 'normal'],
      ['FUNCTION', 'FLUSH'],
      ['FLUSHALL'],
      ['KEYS', '*'],
      ['NOSUCHCOMMAND', 'keep'],
    ];
    const before = await fx.metric(/^waypost_redis_commands_refused_total\{.*reason="unsupported_command"/);
    const replies = await raw.commands([...attacks, ['GET', 'keep']]);
    for (let i = 0; i < attacks.length; i++) {
      expect(replies[i], attacks[i]!.join(' ')).toMatch(new RegExp(`^-ERR unsupported command '${attacks[i]![0]!.toLowerCase()}'`));
      expect(replies[i]).not.toContain(SERVER_PASS);
    }
    expect(replies[attacks.length]).toBe('$2\r\nme');
    expect(await fx.metric(/^waypost_redis_commands_refused_total\{.*reason="unsupported_command"/)).toBe(before + attacks.length);
    // Nothing reached the server: its password, users and data are as they were.
    const direct = main.direct();
    expect(await direct.call('CONFIG', 'GET', 'requirepass')).toEqual(['requirepass', SERVER_PASS]);
    expect(String(await direct.call('ACL', 'LIST'))).not.toContain('mallory');
    expect(await direct.get('keep')).toBe('me');
  });

  it('refuses scripts unless their route allows them, and only with every key on that route', async () => {
    await main.direct().set('victim', 'v');
    await scripts.direct().set('script:k', '1');
    const raw = await fx.raw(ports[0]!);
    const flushall = "return redis.call('FLUSHALL')";
    const count = (reason: string) => fx.metric(new RegExp(`^waypost_redis_commands_refused_total\\{.*reason="${reason}"`));
    const [noKeys, notAllowed] = [await count('script_without_keys'), await count('script_not_allowed')];
    const replies = await raw.commands([
      // What bypassed the FLUSHALL fault before: a script without keys.
      ['EVAL', flushall, '0'],
      ['EVAL_RO', "return redis.call('GET', 'victim')", '0'],
      ['FCALL', 'f', '0'],
      // Keys on a route without allowScripts, including the catch-all.
      ['EVAL', flushall, '1', 'victim'],
      ['EVALSHA', 'a'.repeat(40), '1', 'noscript:x'],
      // Keys spanning routes, one of which allows scripts.
      ['EVAL', 'return 1', '2', 'script:k', 'victim'],
      // Allowed: every key on the scripts route.
      ['EVAL', "return redis.call('INCR', KEYS[1])", '1', 'script:k'],
      ['GET', 'victim'],
    ]);
    expect(replies.slice(0, 3)).toEqual([
      "-ERR unsupported command 'eval' without keys: a script must declare the keys it uses (numkeys > 0)",
      "-ERR unsupported command 'eval_ro' without keys: a script must declare the keys it uses (numkeys > 0)",
      "-ERR unsupported command 'fcall' without keys: a script must declare the keys it uses (numkeys > 0)",
    ]);
    expect(replies[3]).toBe("-ERR unsupported command 'eval': scripts are not allowed on route 'catch_all'");
    expect(replies[4]).toBe("-ERR unsupported command 'evalsha': scripts are not allowed on route 'noscript:'");
    expect(replies[5]).toMatch(/^-CROSSSLOT .*'eval' has keys for routes 'script:' and 'catch_all'/);
    expect(replies[6]).toBe(':2');
    expect(replies[7]).toBe('$1\r\nv');
    expect(await count('script_without_keys')).toBe(noKeys + 3);
    expect(await count('script_not_allowed')).toBe(notAllowed + 2);
    expect(await main.direct().get('victim')).toBe('v');
    expect(await scripts.direct().get('script:k')).toBe('2');
  });

  it('refuses SORT with BY or GET patterns, which read keys of any route', async () => {
    await main.direct().rpush('list', '2', '1');
    const raw = await fx.raw(ports[0]!);
    const replies = await raw.commands([
      ['SORT', 'list', 'BY', 'weight_*'],
      ['SORT', 'list', 'GET', '#', 'GET', 'script:*'],
      ['SORT', 'list', 'BY', 'nosort'],
      ['SORT', 'list'],
    ]);
    expect(replies[0]).toBe("-ERR unsupported command 'sort' with BY or GET patterns: they read keys the proxy cannot route");
    expect(replies[1]).toBe("-ERR unsupported command 'sort' with BY or GET patterns: they read keys the proxy cannot route");
    expect(replies[2]).toBe('*2\r\n$1\r\n2\r\n$1\r\n1');
    expect(replies[3]).toBe('*2\r\n$1\r\n1\r\n$1\r\n2');
  });

  it('refuses COPY into another database (as SELECT n and MOVE), and copies within database 0', async () => {
    const raw = await fx.raw(ports[0]!);
    const before = await fx.metric(/^waypost_redis_commands_refused_total\{.*reason="other_database"/);
    const replies = await raw.commands([
      ['SET', 'copy:src', 'v'],
      ['COPY', 'copy:src', 'copy:dst', 'DB', '7'],
      ['COPY', 'copy:src', 'copy:dst', 'REPLACE', 'db', '7'],
      ['COPY', 'copy:src', 'copy:dst'],
      ['GET', 'copy:dst'],
    ]);
    expect(replies[1]).toBe("-ERR unsupported command 'copy' with DB: the proxy serves database 0 only");
    expect(replies[2]).toBe("-ERR unsupported command 'copy' with DB: the proxy serves database 0 only");
    expect(replies.slice(3)).toEqual([':1', '$1\r\nv']);
    expect(await fx.metric(/^waypost_redis_commands_refused_total\{.*reason="other_database"/)).toBe(before + 2);
    const db7 = main.direct();
    await db7.select(7);
    expect(await db7.get('copy:dst')).toBeNull();
  });
});

describe('split commands', () => {
  it(`refuses an MGET, MSET or DEL of more than ${MAX_SPLIT_ARGS} arguments (splitting runs on the event loop), counted; at the limit it is served`, async () => {
    const raw = await fx.raw(ports[0]!);
    const before = await fx.metric(/^waypost_redis_commands_refused_total\{.*reason="too_many_keys"/);
    const keys = (n: number): string[] => Array.from({ length: n }, (_, i) => `split:${i}`);
    const [mset, mget, del] = await raw.commands([
      ['MSET', ...keys((MAX_SPLIT_ARGS + 2) / 2).flatMap((k) => [k, 'v'])],
      ['MGET', ...keys(MAX_SPLIT_ARGS + 1)],
      ['DEL', ...keys(MAX_SPLIT_ARGS + 1)],
    ]);
    for (const r of [mset, mget, del]) expect(r).toMatch(new RegExp(`^-ERR '\\w+' with \\d+ arguments: the proxy splits at most ${MAX_SPLIT_ARGS}`));
    expect(await fx.metric(/^waypost_redis_commands_refused_total\{.*reason="too_many_keys"/)).toBe(before + 3);
    const [ok, got] = await raw.commands([['MSET', ...keys(MAX_SPLIT_ARGS / 2).flatMap((k) => [k, 'v'])], ['MGET', ...keys(MAX_SPLIT_ARGS)]], 30_000);
    expect(ok).toBe('+OK');
    expect(got.startsWith(`*${MAX_SPLIT_ARGS}\r\n$1\r\nv`)).toBe(true);
  }, 60_000);
});

describe('replies over the limits', () => {
  it('answers a 64 MiB reply with an error to its own client while another client pipelines on the same upstream connection', async () => {
    const big = Buffer.alloc(64 * 1024 * 1024, 0x78);
    await main.direct().set('big', big);
    const warm = await fx.raw(ports[0]!);
    await warm.commands([['SET', 'small', 's']]);
    const probe = main.direct();
    const idsBefore = await connectionIds(probe);
    const refusedBefore = await fx.metric(/^waypost_redis_upstream_replies_refused_total\{.*reason="too_large"/);
    const resetsBefore = await fx.metric(/^waypost_decode_errors_total\{.*direction="upstream"/);
    const attacker = await fx.raw(ports[0]!);
    const other = await fx.raw(ports[0]!);
    const n = 100;
    const cmds = Array.from({ length: n }, (_, i) => (i % 2 === 0 ? ['SET', `other:${i}`, String(i)] : ['GET', 'small']));
    const [attack, served] = await Promise.all([attacker.commands([['GET', 'big'], ['GET', 'small']], 60_000), other.commands(cmds, 60_000)]);
    expect(attack).toEqual(["-ERR upstream reply too large: over the proxy's limit of 8388608 bytes", '$1\r\ns']);
    expect(served).toEqual(cmds.map((c) => (c[0] === 'SET' ? '+OK' : '$1\r\ns')));
    expect(await fx.metric(/^waypost_redis_upstream_replies_refused_total\{.*reason="too_large"/)).toBe(refusedBefore + 1);
    // The shared upstream connection was not reset: the server sees the same connections of the proxy.
    expect(await fx.metric(/^waypost_decode_errors_total\{.*direction="upstream"/)).toBe(resetsBefore);
    expect(await connectionIds(probe)).toEqual(idsBefore);
    expect(await other.commands([['GET', 'other:0']])).toEqual(['$1\r\n0']);
    await main.direct().del('big');
  }, 120_000);

  it('answers a reply nested deeper than 128 with an error, the other clients served', async () => {
    const raw = await fx.raw(ports[0]!);
    const other = await fx.raw(ports[0]!);
    const deep = 'local t = {} local c = t for i = 1, 300 do local n = {} c[1] = n c = n end c[1] = KEYS[1] return t';
    const before = await fx.metric(/^waypost_redis_upstream_replies_refused_total\{.*reason="too_deep"/);
    const [attack, served] = await Promise.all([
      raw.commands([['EVAL', deep, '1', 'script:deep'], ['EVAL', 'return {{KEYS[1]}}', '1', 'script:ok']]),
      other.commands(Array.from({ length: 50 }, () => ['GET', 'script:k'])),
    ]);
    expect(attack).toEqual(["-ERR upstream reply too deep: nested deeper than the proxy's limit of 128", '*1\r\n*1\r\n$9\r\nscript:ok']);
    expect(served.every((r) => /^\$\d+\r\n\d+$/.test(r))).toBe(true);
    expect(await fx.metric(/^waypost_redis_upstream_replies_refused_total\{.*reason="too_deep"/)).toBe(before + 1);
  });
});

describe('AUTH guessing', () => {
  it('answers WRONGPASS and closes the connection after 5 failures, counted; other clients log in', async () => {
    await fx.apply(base({ auth: { plain: { password: CLIENT_PASS } } }));
    try {
      const rejected = () => fx.metric(/^waypost_redis_auth_failures_total\{.*action="rejected"/);
      const closed = () => fx.metric(/^waypost_redis_auth_failures_total\{.*action="closed"/);
      const [r0, c0] = [await rejected(), await closed()];
      const guesser: RawClient = await fx.raw(ports[0]!);
      const guesses = Array.from({ length: 1000 }, (_, i) => ['AUTH', `guess-${i}`]);
      guesser.write(Buffer.concat(guesses.map((g) => Buffer.from(`*2\r\n$4\r\nAUTH\r\n$${g[1]!.length}\r\n${g[1]}\r\n`))));
      const written = await guesser.waitClosed();
      expect(written).toBe('-WRONGPASS invalid username-password pair or user is disabled.\r\n'.repeat(5));
      expect(await rejected()).toBe(r0 + 5);
      expect(await closed()).toBe(c0 + 1);
      // HELLO AUTH failures count the same.
      const hello = await fx.raw(ports[0]!);
      hello.write(Buffer.concat(Array.from({ length: 5 }, () => Buffer.from('*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$5\r\nwrong\r\n'))));
      expect(await hello.waitClosed()).toBe('-WRONGPASS invalid username-password pair or user is disabled.\r\n'.repeat(5));
      expect(await closed()).toBe(c0 + 2);
      // Fewer failures than the limit leave the connection usable.
      const honest = await fx.raw(ports[0]!);
      expect(await honest.commands([['AUTH', 'typo'], ['AUTH', CLIENT_PASS], ['PING']])).toEqual([
        '-WRONGPASS invalid username-password pair or user is disabled.',
        '+OK',
        '+PONG',
      ]);
    } finally {
      await fx.apply(base());
    }
  });
});

/**
 * A Redis Cluster node that lies: CLUSTER SLOTS names `slotsPort` for every slot, and every GET of a key starting
 * with `moved` is answered `-MOVED <slot> <movedTo>`; other GETs answer `$1 v`. Enough RESP for the proxy's commands.
 */
function fakeNode(slotsReply: () => string, movedTo: string): Promise<{ port: number; close(): void; slotsAsked(): number }> {
  let asked = 0;
  const server = net.createServer((socket) => {
    let buf = Buffer.alloc(0);
    socket.on('error', () => undefined);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const parsed = parseCommand(buf);
        if (parsed === undefined) return;
        buf = buf.subarray(parsed.end);
        const [name, arg] = [parsed.args[0]?.toUpperCase(), parsed.args[1]];
        if (name === 'CLUSTER') {
          asked++;
          socket.write(slotsReply());
        } else if (name === 'GET' && arg?.startsWith('moved')) socket.write(`-MOVED 1234 ${movedTo}\r\n`);
        else if (name === 'GET') socket.write('$1\r\nv\r\n');
        else socket.write('+OK\r\n');
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({ port, close: () => server.close(), slotsAsked: () => asked });
    });
  });
}

function parseCommand(buf: Buffer): { args: string[]; end: number } | undefined {
  let cr = buf.indexOf('\r\n');
  if (cr < 0) return undefined;
  const n = Number(buf.toString('latin1', 1, cr));
  let at = cr + 2;
  const args: string[] = [];
  for (let i = 0; i < n; i++) {
    cr = buf.indexOf('\r\n', at);
    if (cr < 0) return undefined;
    const len = Number(buf.toString('latin1', at + 1, cr));
    if (buf.length < cr + 2 + len + 2) return undefined;
    args.push(buf.toString('latin1', cr + 2, cr + 2 + len));
    at = cr + 2 + len + 2;
  }
  return { args, end: at };
}

describe('numbers from a Redis Cluster node', () => {
  const FAKE = 'fake-cluster.redis.svc.cluster.local';

  async function throughFake(slotsReply: () => string, movedTo: string, body: (port: number, fake: { slotsAsked(): number }) => Promise<void>): Promise<void> {
    const fake = await fakeNode(slotsReply, movedTo);
    try {
      await fx.apply([
        ...base(),
        serviceEntry({ host: FAKE, port: ports[2]!, endpoints: [fake.port] }),
        redisDestination('fake', { host: FAKE, trafficPolicy: { connectionPool: { redis: { mode: 'CLUSTER' } } } }),
        redisService('fake', { host: [FAKE], settings: { opTimeout: '30s' }, redis: [{ route: { host: FAKE } }] }),
      ]);
      await body(ports[2]!, fake);
    } finally {
      await fx.apply(base());
      fake.close();
    }
  }

  it('fails a CLUSTER SLOTS refresh naming port 70000 (counted), keeps serving from the seed', async () => {
    const slots = () => '*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:70000\r\n$2\r\nid\r\n';
    await throughFake(slots, '127.0.0.1:1', async (port, fake) => {
      const before = await fx.metric(/^waypost_redis_invalid_upstream_values_total\{.*what="cluster_slots"/);
      const raw = await fx.raw(port);
      // The first GET makes the proxy read the slot map; the next ones arrive after that answer.
      expect(await raw.commands([['GET', 'a']])).toEqual(['$1\r\nv']);
      for (let i = 0; i < 100 && fake.slotsAsked() === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(await raw.commands(Array.from({ length: 20 }, (_, i) => ['GET', `k${i}`]))).toEqual(Array.from({ length: 20 }, () => '$1\r\nv'));
      expect(fake.slotsAsked()).toBeGreaterThanOrEqual(1);
      expect(await fx.metric(/^waypost_redis_invalid_upstream_values_total\{.*what="cluster_slots"/)).toBeGreaterThan(before);
    });
  });

  it('fails a slot range beyond 16383 the same way', async () => {
    const slots = () => '*1\r\n*3\r\n:0\r\n:99999\r\n*2\r\n$9\r\n127.0.0.1\r\n:6379\r\n';
    await throughFake(slots, '127.0.0.1:1', async (port) => {
      const before = await fx.metric(/^waypost_redis_invalid_upstream_values_total\{.*what="cluster_slots"/);
      const raw = await fx.raw(port);
      expect(await raw.commands([['GET', 'a']])).toEqual(['$1\r\nv']);
      let after = before;
      for (let i = 0; i < 100 && after === before; i++) {
        await new Promise((r) => setTimeout(r, 10));
        after = await fx.metric(/^waypost_redis_invalid_upstream_values_total\{.*what="cluster_slots"/);
      }
      expect(after).toBe(before + 1);
      expect(await raw.commands([['GET', 'b']])).toEqual(['$1\r\nv']);
    });
  });

  for (const target of ['127.0.0.1:99999', '127.0.0.1:0', 'bad host:6379', '127.0.0.1:123456789012345678']) {
    it(`answers a MOVED to ${target} at once with an error for that command only (counted), others on the connection served`, async () => {
      const goodSlots = () => '*0\r\n';
      await throughFake(goodSlots, target, async (port) => {
        const before = await fx.metric(/^waypost_redis_invalid_upstream_values_total\{.*what="redirection"/);
        const raw = await fx.raw(port);
        const other = await fx.raw(port);
        const [attack, served] = await Promise.all([
          raw.commands([['GET', 'moved-key'], ['GET', 'after']], 5_000),
          other.commands(Array.from({ length: 30 }, (_, i) => ['GET', `o${i}`]), 5_000),
        ]);
        expect(attack[0]).toMatch(/^-ERR upstream sent an unusable redirection: MOVED names (port|invalid host)/);
        expect(attack[1]).toBe('$1\r\nv');
        expect(served).toEqual(Array.from({ length: 30 }, () => '$1\r\nv'));
        expect(await fx.metric(/^waypost_redis_invalid_upstream_values_total\{.*what="redirection"/)).toBe(before + 1);
      });
    });
  }
});
