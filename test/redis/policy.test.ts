/**
 * Redis proxy policies against real redis-servers: downstream AUTH (RedisService settings.auth), upstream AUTH to a
 * `redis-server --requirepass` and as an ACL user (RedisDestination), mirrors with excludeReadCommands, ERROR and
 * DELAY faults, fault and mirror percentages within binomial bounds, opTimeout against a paused server, and upstream
 * write batching.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  encode,
  ensurePeers,
  freePorts,
  ProxyFixture,
  redisDestination,
  redisService,
  serviceEntry,
  sleep,
  startRedis,
  type RedisServer,
} from './helpers.js';
import { binomialBounds } from '../policy/fixture.js';

const MAIN = 'main.redis.svc.cluster.local';
const MIRROR = 'mirror.redis.svc.cluster.local';
const SECURE = 'secure.redis.svc.cluster.local';
const DEAD = 'dead.redis.svc.cluster.local';

let main: RedisServer;
let mirror: RedisServer;
let secure: RedisServer; // --requirepass
let fx: ProxyFixture;
let ports: number[];
let deadPort: number;

function base(): unknown[] {
  return [
    serviceEntry({ host: MAIN, port: ports[0]!, endpoints: [main.port] }),
    serviceEntry({ host: MIRROR, port: ports[1]!, endpoints: [mirror.port] }),
    serviceEntry({ host: SECURE, port: ports[2]!, endpoints: [secure.port] }),
    serviceEntry({ host: DEAD, port: ports[3]!, endpoints: [deadPort] }),
  ];
}

beforeAll(async () => {
  ensurePeers();
  [main, mirror, secure] = await Promise.all([startRedis(), startRedis(), startRedis({ password: 's3cret!' })]);
  ports = await freePorts(4);
  [deadPort] = await freePorts(1); // nothing listens there
  fx = new ProxyFixture();
  await fx.apply(base());
});

afterAll(async () => {
  await fx?.close();
  await Promise.all([main?.stop(), mirror?.stop(), secure?.stop()]);
});

describe('downstream AUTH', () => {
  beforeAll(async () => {
    await fx.apply([...base(), redisService('main', { host: [MAIN], settings: { auth: { plain: { password: 'client-pass' } } } })]);
  });
  afterAll(async () => {
    await fx.apply(base());
  });

  it('answers NOAUTH before AUTH, WRONGPASS for a wrong password, and serves after the right one', async () => {
    const raw = await fx.raw(ports[0]!);
    expect(await raw.commands([['GET', 'k'], ['PING'], ['AUTH', 'wrong'], ['AUTH', 'default', 'wrong'], ['GET', 'k']])).toEqual([
      '-NOAUTH Authentication required.',
      '-NOAUTH Authentication required.',
      '-WRONGPASS invalid username-password pair or user is disabled.',
      '-WRONGPASS invalid username-password pair or user is disabled.',
      '-NOAUTH Authentication required.',
    ]);
    expect(await raw.commands([['AUTH', 'client-pass'], ['SET', 'authed', 'yes'], ['GET', 'authed']])).toEqual(['+OK', '+OK', '$3\r\nyes']);
    expect(await main.direct().get('authed')).toBe('yes');
  });

  it('authenticates ioredis (AUTH handshake) and HELLO 3 AUTH, and refuses HELLO without it', async () => {
    const client = fx.client(ports[0]!, { password: 'client-pass' });
    expect(await client.get('authed')).toBe('yes');
    const raw = await fx.raw(ports[0]!);
    const [refused] = await raw.commands([['HELLO', '3']]);
    expect(refused).toMatch(/^-NOAUTH HELLO must be called with the client already authenticated/);
    const [hello, value] = await raw.commands([['HELLO', '3', 'AUTH', 'default', 'client-pass'], ['GET', 'authed']]);
    expect(hello).toMatch(/^%7\r\n/);
    expect(value).toBe('$3\r\nyes');
  });

  it('checks the username when the RedisService names one', async () => {
    await fx.apply([...base(), redisService('main', { host: [MAIN], settings: { auth: { plain: { username: 'app', password: 'p2' } } } })]);
    const raw = await fx.raw(ports[0]!);
    expect(await raw.commands([['AUTH', 'p2'], ['AUTH', 'other', 'p2'], ['AUTH', 'app', 'p2'], ['PING']])).toEqual([
      '-WRONGPASS invalid username-password pair or user is disabled.',
      '-WRONGPASS invalid username-password pair or user is disabled.',
      '+OK',
      '+PONG',
    ]);
  });
});

describe('upstream AUTH (RedisDestination)', () => {
  it('logs in to a redis-server --requirepass on every upstream connection, in RESP2 and RESP3', async () => {
    // Without credentials the server refuses the commands: the proxy passes its NOAUTH on.
    const bare = await fx.raw(ports[2]!);
    expect((await bare.commands([['GET', 'k']]))[0]).toMatch(/^-NOAUTH/);
    await fx.apply([
      ...base(),
      redisDestination('secure', { host: SECURE, trafficPolicy: { connectionPool: { redis: { auth: { plain: { password: 's3cret!' } } } } } }),
    ]);
    const client = fx.client(ports[2]!);
    expect(await client.set('through-auth', 'ok')).toBe('OK');
    expect(await secure.direct().get('through-auth')).toBe('ok');
    const raw = await fx.raw(ports[2]!);
    await raw.commands([['HELLO', '3']]);
    await secure.direct().hset('h', 'f', 'v');
    expect(await raw.commands([['HGETALL', 'h']])).toEqual(['%1\r\n$1\r\nf\r\n$1\r\nv']);
  });

  it('answers an upstream failure naming the refused handshake when the password is wrong', async () => {
    await fx.apply([
      ...base(),
      redisDestination('secure', { host: SECURE, trafficPolicy: { connectionPool: { redis: { auth: { plain: { password: 'wrong' } } } } } }),
    ]);
    const raw = await fx.raw(ports[2]!);
    const [reply] = await raw.commands([['GET', 'through-auth']]);
    expect(reply).toMatch(/^-ERR upstream failure: handshake refused by cluster outbound\|\d+\|\|secure\.redis\.svc\.cluster\.local .*WRONGPASS/);
    await fx.apply(base());
  });

  it('logs in as the configured ACL user (username and password), and a wrong username is refused', async () => {
    // A Redis 6+ ACL user who may only touch keys under acl:, so that what it can do shows who the proxy logged in as.
    await secure.direct().call('ACL', 'SETUSER', 'alice', 'on', '>alice-pw', '~acl:*', '+@all');
    await fx.apply([
      ...base(),
      redisDestination('secure', { host: SECURE, trafficPolicy: { connectionPool: { redis: { auth: { plain: { username: 'alice', password: 'alice-pw' } } } } } }),
    ]);
    const raw = await fx.raw(ports[2]!);
    expect(await raw.commands([['SET', 'acl:k', 'v'], ['GET', 'acl:k']])).toEqual(['+OK', '$1\r\nv']);
    // alice may not write outside acl:, so the proxy's connection is hers, not the default user's.
    expect((await raw.commands([['SET', 'other', 'v']]))[0]).toMatch(/^-NOPERM/);
    expect(await secure.direct().get('acl:k')).toBe('v');
    // A RESP3 client's commands go to connections that logged in with HELLO 3 AUTH alice, not AUTH.
    const raw3 = await fx.raw(ports[2]!);
    expect((await raw3.commands([['HELLO', '3']]))[0]).toMatch(/^%7\r\n/);
    await secure.direct().hset('acl:h', 'f', 'v');
    expect(await raw3.commands([['HGETALL', 'acl:h']])).toEqual(['%1\r\n$1\r\nf\r\n$1\r\nv']);
    expect((await raw3.commands([['GET', 'other']]))[0]).toMatch(/^-NOPERM/);
    // ACL is never forwarded by the proxy; CLIENT LIST on the server shows who every upstream connection of the proxy is.
    const alices = String(await secure.direct().call('CLIENT', 'LIST'))
      .split('\n')
      .filter((line) => / user=alice /.test(line));
    expect(alices.some((line) => / resp=2\b/.test(line))).toBe(true);
    expect(alices.some((line) => / resp=3\b/.test(line))).toBe(true);

    await fx.apply([
      ...base(),
      redisDestination('secure', { host: SECURE, trafficPolicy: { connectionPool: { redis: { auth: { plain: { username: 'mallory', password: 'alice-pw' } } } } } }),
    ]);
    const refused = /^-ERR upstream failure: handshake refused by cluster outbound\|\d+\|\|secure\.redis\.svc\.cluster\.local .*WRONGPASS/;
    const again = await fx.raw(ports[2]!);
    expect((await again.commands([['GET', 'acl:k']]))[0]).toMatch(refused);
    const again3 = await fx.raw(ports[2]!);
    const [hello, reply3] = await again3.commands([['HELLO', '3'], ['GET', 'acl:k']]);
    expect(hello).toMatch(/^%7\r\n/);
    expect(reply3).toMatch(refused);
    await fx.apply(base());
  });
});

describe('mirrors', () => {
  it('mirrors writes but not reads with excludeReadCommands, and discards mirror replies', async () => {
    await fx.apply([
      ...base(),
      redisService('main', {
        host: [MAIN],
        redis: [{ route: { host: MAIN }, mirror: [{ route: { host: MIRROR }, percentage: { value: 100 }, excludeReadCommands: true }] }],
      }),
    ]);
    await mirror.direct().config('RESETSTAT');
    await mirror.direct().set('mirror-only', 'm'); // reads would find this on the mirror
    const client = fx.client(ports[0]!);
    await client.ping();
    for (let i = 0; i < 20; i++) await client.set(`mk${i}`, String(i));
    await client.incr('counter');
    expect(await client.get('mk3')).toBe('3');
    expect(await client.get('mirror-only')).toBeNull(); // the primary answers, never the mirror
    await client.mset('mx1', 'a', 'mx2', 'b');
    await sleep(100);
    const stats = await mirror.direct().info('commandstats');
    expect(stats).toMatch(/cmdstat_set:calls=21,/); // 20 SETs + the direct one
    expect(stats).toMatch(/cmdstat_incr:calls=1,/);
    expect(stats).toMatch(/cmdstat_mset:calls=1,/);
    expect(stats).not.toMatch(/cmdstat_get:/);
    expect(await mirror.direct().mget('mk19', 'counter', 'mx1', 'mx2')).toEqual(['19', '1', 'a', 'b']);
  });

  it('mirrors reads too without excludeReadCommands', async () => {
    await fx.apply([
      ...base(),
      redisService('main', { host: [MAIN], redis: [{ route: { host: MAIN }, mirror: [{ route: { host: MIRROR } }] }] }),
    ]);
    await mirror.direct().config('RESETSTAT');
    const client = fx.client(ports[0]!);
    await client.get('mk1');
    await sleep(100);
    expect(await mirror.direct().info('commandstats')).toMatch(/cmdstat_get:calls=1,/);
  });

  it('never delays the primary: a sleeping mirror and a dead mirror', async () => {
    await fx.apply([
      ...base(),
      redisService('main', {
        host: [MAIN],
        redis: [{ route: { host: MAIN }, mirror: [{ route: { host: MIRROR } }, { route: { host: DEAD } }] }],
      }),
    ]);
    const client = fx.client(ports[0]!);
    await client.ping();
    const sleeper = mirror.direct();
    await sleeper.ping();
    const sleeping = sleeper.call('DEBUG', 'SLEEP', '2');
    await sleep(50);
    let mirrorAwake = false;
    void sleeping.then(() => (mirrorAwake = true));
    for (let i = 0; i < 50; i++) expect(await client.set(`fast${i}`, 'v')).toBe('OK');
    expect(mirrorAwake).toBe(false); // all 50 answered while the mirror was still asleep
    await sleeping;
    await sleep(100);
    expect(await mirror.direct().get('fast49')).toBe('v'); // the mirror got them once awake
    await fx.apply(base());
  });
});

describe('faults', () => {
  it('answers every GET with an error at 100% ERROR on [GET], and leaves other commands alone', async () => {
    await fx.apply([...base(), redisService('main', { host: [MAIN], faults: [{ type: 'ERROR', percentage: { value: 100 }, commands: ['GET'] }] })]);
    const raw = await fx.raw(ports[0]!);
    expect(await raw.commands([['SET', 'f1', 'x'], ['GET', 'f1'], ['GET', 'f1'], ['STRLEN', 'f1'], ['PING']])).toEqual([
      '+OK',
      '-ERR Fault Injected: Error',
      '-ERR Fault Injected: Error',
      ':1',
      '+PONG',
    ]);
    expect(await fx.metric(/^waypost_faults_injected_total\{.*type="abort"/)).toBeGreaterThanOrEqual(2);
  });

  it('delays GET answers only: other commands and other connections are not held, later ones are sent at once', async () => {
    await fx.apply([...base(), redisService('main', { host: [MAIN], faults: [{ type: 'DELAY', percentage: { value: 100 }, delay: '800ms', commands: ['get'] }] })]);
    await main.direct().set('slow', 'v');
    const delayed = await fx.raw(ports[0]!);
    const other = await fx.raw(ports[0]!);
    const t0 = Date.now();
    // One connection: GET (delayed) then SET. The SET is sent upstream at once; its answer waits its turn.
    delayed.write(Buffer.concat([encode(['GET', 'slow']), encode(['SET', 'set-behind-get', '1'])]));
    let answered = false;
    const answers = delayed.read(2).then((r) => ((answered = true), r));
    await sleep(150);
    expect(await main.direct().get('set-behind-get')).toBe('1');
    // Another connection is not held by it.
    expect(await other.commands([['SET', 'x', '1'], ['INCR', 'n']])).toEqual(['+OK', expect.stringMatching(/^:\d+$/)]);
    expect(answered).toBe(false);
    expect(await answers).toEqual(['$1\r\nv', '+OK']);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(790);
    await fx.apply(base());
  });
});

describe('fault and mirror percentages (binomial bounds)', () => {
  it('errors about 30% of GETs with ERROR 30% on [GET]; a fault without commands applies to every command', async () => {
    const FAULT = '-ERR Fault Injected: Error';
    await main.direct().set('pct', 'v');
    await fx.apply([...base(), redisService('main', { host: [MAIN], faults: [{ type: 'ERROR', percentage: { value: 30 }, commands: ['GET'] }] })]);
    const first = await fx.raw(ports[0]!);
    const m = 400;
    const only = await first.commands(Array.from({ length: m }, () => ['GET', 'pct']));
    expect(only.filter((r) => r !== FAULT).every((r) => r === '$1\r\nv')).toBe(true);
    const [oLo, oHi] = binomialBounds(m, 0.3);
    expect(only.filter((r) => r === FAULT).length).toBeGreaterThanOrEqual(oLo);
    expect(only.filter((r) => r === FAULT).length).toBeLessThanOrEqual(oHi);
    // The command list keeps SET out of it.
    expect(await first.commands(Array.from({ length: m }, (_, i) => ['SET', `only-get-${i}`, 'v']))).toEqual(Array.from({ length: m }, () => '+OK'));

    await fx.apply([
      ...base(),
      redisService('main', {
        host: [MAIN],
        faults: [
          { type: 'ERROR', percentage: { value: 30 }, commands: ['GET'] },
          { type: 'ERROR', percentage: { value: 10 } }, // no command list: every command, GET included
        ],
      }),
    ]);
    const raw = await fx.raw(ports[0]!);
    const n = 600;
    const gets = await raw.commands(Array.from({ length: n }, () => ['GET', 'pct']));
    const sets = await raw.commands(Array.from({ length: n }, (_, i) => ['SET', `pct-${i}`, 'v']));
    const failedGets = gets.filter((r) => r === FAULT).length;
    const failedSets = sets.filter((r) => r === FAULT).length;
    expect(gets.filter((r) => r !== FAULT).every((r) => r === '$1\r\nv')).toBe(true);
    expect(sets.filter((r) => r !== FAULT).every((r) => r === '+OK')).toBe(true);
    // One draw per command against the cumulative percentages of the faults that apply to it (Envoy's reading):
    // GET 30% + 10% = 40%; SET only the command-less 10%.
    const [gLo, gHi] = binomialBounds(n, 0.4);
    const [sLo, sHi] = binomialBounds(n, 0.1);
    expect(failedGets).toBeGreaterThanOrEqual(gLo);
    expect(failedGets).toBeLessThanOrEqual(gHi);
    expect(failedSets).toBeGreaterThanOrEqual(sLo);
    expect(failedSets).toBeLessThanOrEqual(sHi);
    // The SETs that were not aborted reached the server; the aborted ones did not.
    const written = await main.direct().mget(...Array.from({ length: n }, (_, i) => `pct-${i}`));
    sets.forEach((r, i) => expect(written[i], `pct-${i}`).toBe(r === '+OK' ? 'v' : null));
    await fx.apply(base());
  });

  it('delays about 50% of GETs with DELAY 50%, by at least the delay, and sends the rest at once', async () => {
    // A delay long enough that an answer which was not held cannot take as long on a busy machine.
    await fx.apply([...base(), redisService('main', { host: [MAIN], faults: [{ type: 'DELAY', percentage: { value: 50 }, delay: '1s', commands: ['GET'] }] })]);
    await main.direct().set('half', 'v');
    // One connection per GET, all at once, so that a delayed one cannot hold back the next answer on its connection.
    const n = 60;
    const conns = await Promise.all(Array.from({ length: n }, () => fx.raw(ports[0]!)));
    const injectedBefore = await fx.metric(/^waypost_faults_injected_total\{.*type="delay"/);
    const t0 = Date.now();
    const took = await Promise.all(
      conns.map(async (c) => {
        expect(await c.commands([['GET', 'half']])).toEqual(['$1\r\nv']);
        return Date.now() - t0;
      }),
    );
    const injected = (await fx.metric(/^waypost_faults_injected_total\{.*type="delay"/)) - injectedBefore;
    const [lo, hi] = binomialBounds(n, 0.5);
    expect(injected).toBeGreaterThanOrEqual(lo);
    expect(injected).toBeLessThanOrEqual(hi);
    // Exactly the delayed GETs took the delay; the others were not held behind them.
    expect(took.filter((ms) => ms >= 995).length).toBe(injected);
    await fx.apply(base());
  });

  it('mirrors about 50% of writes with percentage 50', async () => {
    await fx.apply([
      ...base(),
      redisService('main', { host: [MAIN], redis: [{ route: { host: MAIN }, mirror: [{ route: { host: MIRROR }, percentage: { value: 50 } }] }] }),
    ]);
    const n = 400;
    const raw = await fx.raw(ports[0]!);
    expect(await raw.commands(Array.from({ length: n }, (_, i) => ['SET', `half-mirror-${i}`, 'v']))).toEqual(Array.from({ length: n }, () => '+OK'));
    const keys = Array.from({ length: n }, (_, i) => `half-mirror-${i}`);
    // Every write reached the primary; the mirror got its share, each key at most once.
    expect((await main.direct().mget(...keys)).every((v) => v === 'v')).toBe(true);
    const atMirrorClient = mirror.direct();
    const atMirror = async (): Promise<number> => (await atMirrorClient.mget(...keys)).filter((v) => v === 'v').length;
    // Mirror copies are sent without waiting for their replies: count once the mirror has stopped receiving them.
    let mirrored = await atMirror();
    for (let settled = false, tries = 0; !settled && tries < 50; tries++) {
      await sleep(100);
      const now = await atMirror();
      settled = now === mirrored;
      mirrored = now;
    }
    const [lo, hi] = binomialBounds(n, 0.5);
    expect(mirrored).toBeGreaterThanOrEqual(lo);
    expect(mirrored).toBeLessThanOrEqual(hi);
    await fx.apply(base());
  });
});

describe('op timeout', () => {
  it('answers -ERR timeout when the server does not answer in time, and pairs later answers correctly', async () => {
    await fx.apply([...base(), redisService('main', { host: [MAIN], settings: { opTimeout: '300ms' } })]);
    await main.direct().set('t1', 'one');
    await main.direct().set('t2', 'two');
    const raw = await fx.raw(ports[0]!);
    expect(await raw.commands([['GET', 't1']])).toEqual(['$3\r\none']);
    const pauser = main.direct();
    await pauser.call('CLIENT', 'PAUSE', '1200', 'ALL');
    expect(await raw.commands([['GET', 't1']])).toEqual(['-ERR timeout']);
    // A pipeline sent while the server sleeps: every command times out, in order (one sweep per connection).
    expect(await raw.commands([['GET', 't1'], ['GET', 't2'], ['SET', 't3', 'x']])).toEqual(['-ERR timeout', '-ERR timeout', '-ERR timeout']);
    await sleep(1200); // the server wakes and answers the timed-out GET: that answer is dropped
    expect(await raw.commands([['GET', 't2'], ['GET', 't1']])).toEqual(['$3\r\ntwo', '$3\r\none']);
    await fx.apply(base());
  });
});

describe('upstream write batching', () => {
  it('flushes at max_buffer_size_before_flush or after buffer_flush_timeout, answers unchanged', async () => {
    // A long timer, so that what is answered before it fired was flushed by size.
    await fx.apply([...base(), redisService('main', { host: [MAIN], settings: { maxBufferSizeBeforeFlush: 1024, bufferFlushTimeout: '2s' } })]);
    const raw = await fx.raw(ports[0]!);
    // One small command waits for the timer.
    let t0 = Date.now();
    expect(await raw.commands([['SET', 'b1', 'x']])).toEqual(['+OK']);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1600);
    // 13 commands of 80 bytes each: the 13th takes the buffer to 1,040 bytes, past the limit, so all of it leaves at
    // once instead of waiting 2 s.
    const cmds = Array.from({ length: 13 }, (_, i) => ['SET', `s${String(i).padStart(3, '0')}`, 'v'.repeat(50)]);
    t0 = Date.now();
    expect(await raw.commands(cmds)).toEqual(cmds.map(() => '+OK'));
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(await main.direct().get('s012')).toBe('v'.repeat(50));
    await fx.apply(base());
  });
});
