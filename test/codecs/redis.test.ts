/**
 * The Redis codec against real peers: commands exactly as ioredis writes them, replies exactly as a real
 * redis-server sends them (RESP2 and, after HELLO 3, RESP3 — maps, sets, doubles, booleans, verbatim strings,
 * nulls, pushes), cross-checked against ioredis' own RESP decoder; then every byte boundary, many frames per chunk,
 * garbage and oversize input.
 */
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Command } from 'ioredis';
import { CodecError, type Frame } from '../../src/codec.js';
import redisCodecDefault, { localReplyText, RedisReply, RedisRequest, redisCodec, REDIS_CODEC_NAME, skipValue } from '../../codecs/redis/index.js';
import { commandSpec } from '../../codecs/redis/commands.js';
import { encodeCommand } from '../../codecs/redis/resp.js';
import { createRegistry } from '../../src/builtin-codecs.js';
import { encode, ensurePeers, RawClient, startRedis, type RedisServer } from '../redis/helpers.js';

const require = createRequire(import.meta.url);
const { Decoder } = require('ioredis/built/resp/decoder.js') as {
  Decoder: new (o: { onReply(r: unknown): void; onErrorReply(e: Error): void; onPush(p: unknown): void; getTypeMapping(): object }) => {
    write(b: Buffer): void;
  };
};

function ioredisBytes(name: string, args: Array<string | Buffer | number>): Buffer {
  const w = new Command(name, args).toWritable({} as never);
  return typeof w === 'string' ? Buffer.from(w) : w;
}

function downstream(max = 1 << 20) {
  return redisCodec.create({ maxFrameSize: max, side: 'downstream' });
}
function upstream(max = 1 << 20) {
  return redisCodec.create({ maxFrameSize: max, side: 'upstream' });
}

function decodeAll(session: ReturnType<typeof downstream>, chunks: Buffer[]): Frame[] {
  const out: Frame[] = [];
  for (const c of chunks) session.decode(c, (f) => out.push(f));
  return out;
}

function codecError(fn: () => void): CodecError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CodecError) return err;
    throw err;
  }
  throw new Error('expected a CodecError');
}

function args(f: Frame): string[] {
  const r = f as RedisRequest;
  return Array.from({ length: r.argc }, (_, i) => r.argString(i));
}

/** Every split of `bytes` into two chunks, then one byte at a time: the same frames each time. */
function expectSameFramesAtEveryBoundary(bytes: Buffer, make: () => ReturnType<typeof downstream>, view: (f: Frame) => unknown): void {
  const whole = decodeAll(make(), [bytes]).map(view);
  for (let cut = 1; cut < bytes.length; cut++) {
    const frames = decodeAll(make(), [Buffer.from(bytes.subarray(0, cut)), Buffer.from(bytes.subarray(cut))]).map(view);
    expect(frames, `cut at ${cut}`).toEqual(whole);
  }
  const bytewise = decodeAll(
    make(),
    Array.from(bytes, (b) => Buffer.from([b])),
  ).map(view);
  expect(bytewise).toEqual(whole);
}

describe('redis codec factory', () => {
  it('registers as waypost.codec.redis, protocol redis, FIFO multiplexing, in the built-in registry', () => {
    expect(redisCodecDefault).toBe(redisCodec);
    expect(redisCodec.name).toBe(REDIS_CODEC_NAME);
    expect(REDIS_CODEC_NAME).toBe('waypost.codec.redis');
    expect(redisCodec.protocol).toBe('redis');
    expect(redisCodec.multiplexing).toBe('fifo');
    expect(createRegistry().get('waypost.codec.redis')).toBe(redisCodec);
    expect(createRegistry().forProtocol('redis')).toBe(redisCodec);
  });
});

describe('requests', () => {
  it('decodes commands as ioredis writes them, as views of the chunk, with command and key metadata', () => {
    const bytes = Buffer.concat([
      ioredisBytes('set', ['user:1', 'alice']),
      ioredisBytes('hset', ['h', 'f', Buffer.from([0, 1, 13, 10, 255])]),
      ioredisBytes('GET', ['k']),
    ]);
    const frames = decodeAll(downstream(), [bytes]) as RedisRequest[];
    expect(frames.map(args)).toEqual([['set', 'user:1', 'alice'], ['hset', 'h', 'f', '\u0000\u0001\r\n\ufffd'], ['GET', 'k']]);
    expect(frames[1]!.arg(3)).toEqual(Buffer.from([0, 1, 13, 10, 255]));
    for (const f of frames) {
      expect(f.type).toBe('request');
      expect(f.requestId).toBe(0);
      expect(f.raw.buffer).toBe(bytes.buffer); // zero copy
    }
    expect(Buffer.concat(frames.map((f) => f.raw))).toEqual(bytes);
    expect(frames[0]!.metadata.get('command')).toBe('set');
    expect(frames[0]!.metadata.get('key')).toBe('user:1');
    expect(frames[2]!.metadata.get('command')).toBe('get');
    expect([...frames[2]!.metadata.entries()]).toEqual([
      ['command', 'get'],
      ['key', 'k'],
    ]);
  });

  it('finds the first key of each command shape', () => {
    const key = (...a: string[]) => (decodeAll(downstream(), [encode(a)])[0] as RedisRequest).metadata.get('key');
    expect(key('GET', 'a')).toBe('a');
    expect(key('EVAL', 'return 1', '2', 'k1', 'k2', 'arg')).toBe('k1');
    expect(key('EVAL', 'return 1', '0')).toBeUndefined();
    expect(key('ZUNIONSTORE', 'dest', '2', 'a', 'b')).toBe('dest');
    expect(key('ZUNION', '2', 'a', 'b')).toBe('a');
    expect(key('XREAD', 'COUNT', '2', 'STREAMS', 's1', 's2', '0', '0')).toBe('s1');
    expect(key('OBJECT', 'ENCODING', 'obj')).toBe('obj');
    expect(key('BITOP', 'AND', 'dest', 'a', 'b')).toBe('dest');
    expect(key('MSET', 'a', '1', 'b', '2')).toBe('a');
    expect(key('INFO')).toBeUndefined();
    expect(key('FLUSHALL')).toBeUndefined();
    expect(key('BF.ADD', 'filter', 'x')).toBe('filter'); // unknown (module) commands route by their first argument
    const keys = (...a: string[]) => (decodeAll(downstream(), [encode(a)])[0] as RedisRequest).keyIndices();
    expect(keys('MSET', 'a', '1', 'b', '2')).toEqual([1, 3]);
    expect(keys('SORT', 'list', 'BY', 'w', 'STORE', 'out')).toEqual([1, 5]);
    expect(keys('ZINTERSTORE', 'd', '2', 'x', 'y', 'WEIGHTS', '1', '2')).toEqual([1, 3, 4]);
    expect(keys('XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 'a', 'b', '>', '>')).toEqual([5, 6]);
  });

  it('classifies commands: writes, splits, locals and the unsupported', () => {
    expect(commandSpec('set')).toMatchObject({ kind: 'keys', write: true });
    expect(commandSpec('get')).toMatchObject({ kind: 'keys', write: false });
    expect(commandSpec('mget')?.kind).toBe('mget');
    expect(commandSpec('mset')?.kind).toBe('mset');
    for (const c of ['del', 'exists', 'unlink', 'touch']) expect(commandSpec(c)?.kind).toBe('sum');
    for (const c of ['ping', 'echo', 'quit', 'auth', 'hello', 'select']) expect(commandSpec(c)?.kind).toBe('local');
    for (const c of ['subscribe', 'psubscribe', 'monitor', 'blpop', 'brpop', 'bzpopmin', 'multi', 'exec', 'watch', 'cluster']) {
      expect(commandSpec(c)?.kind, c).toBe('unsupported');
    }
    const xreadBlock = decodeAll(downstream(), [encode(['XREAD', 'BLOCK', '0', 'STREAMS', 's', '$'])])[0] as RedisRequest;
    expect(xreadBlock.hasBlockOption()).toBe(true);
    const client = (...a: string[]) => (decodeAll(downstream(), [encode(a)])[0] as RedisRequest).spec.kind;
    expect(client('CLIENT', 'SETNAME', 'x')).toBe('local');
    expect(client('CLIENT', 'KILL', 'ID', '1')).toBe('unsupported');
  });

  it('is an allow-list: administrative, keyless and unknown commands are refused, scripts are marked', () => {
    const kind = (...a: string[]) => (decodeAll(downstream(), [encode(a)])[0] as RedisRequest).spec;
    const admin = ['CONFIG', 'ACL', 'DEBUG', 'SHUTDOWN', 'SCRIPT', 'FUNCTION', 'MODULE', 'MONITOR', 'SLAVEOF', 'REPLICAOF', 'FLUSHALL', 'FLUSHDB', 'SAVE', 'BGSAVE', 'SWAPDB', 'COMMAND', 'LATENCY', 'SLOWLOG', 'FAILOVER'];
    for (const c of admin) expect(kind(c, 'x').kind, c).toBe('unsupported');
    for (const c of ['KEYS', 'SCAN', 'DBSIZE', 'RANDOMKEY', 'PUBSUB', 'MOVE']) expect(kind(c, 'x').kind, c).toBe('unsupported');
    // Commands the table does not know are not routed by a guessed key any more.
    expect(kind('NOSUCH.COMMAND', 'key').kind).toBe('unsupported');
    expect(kind('OBJECT', 'HELP').kind).toBe('unsupported');
    expect(kind('OBJECT', 'ENCODING', 'k').kind).toBe('keys');
    expect(kind('INFO').kind).toBe('local');
    // RedisBloom commands are in Envoy's list.
    expect(kind('BF.ADD', 'k', 'v')).toMatchObject({ kind: 'keys', write: true });
    for (const c of ['EVAL', 'EVALSHA', 'EVAL_RO', 'EVALSHA_RO', 'FCALL', 'FCALL_RO']) expect(kind(c, 's', '0')).toMatchObject({ kind: 'numkeys', script: true });
    expect(commandSpec('get')?.script).toBeUndefined();
  });

  it('reads inline commands (quotes, escapes, CRLF or LF) as arrays, and skips empty ones', () => {
    const frames = decodeAll(downstream(), [
      Buffer.from('PING\r\n\r\nSET k "hello world\\x41\\n"\nGET \'it\\\'s\'\r\n   \r\n*0\r\n*-1\r\nECHO "a b"  \r\n'),
    ]) as RedisRequest[];
    expect(frames.map(args)).toEqual([['PING'], ['SET', 'k', 'hello worldA\n'], ['GET', "it's"], ['ECHO', 'a b']]);
    // Upstreams only ever see arrays: the inline command is re-encoded.
    expect(frames[1]!.raw).toEqual(encode(['SET', 'k', 'hello worldA\n']));
    expect(frames[1]!.metadata.get('key')).toBe('k');
  });

  it('gives identical frames when the stream is cut at every byte boundary', () => {
    const bytes = Buffer.concat([
      ioredisBytes('set', ['key:with:colons', 'v'.repeat(40)]),
      Buffer.from('INLINE "quoted arg" x\r\n'),
      ioredisBytes('mset', ['a', '1', 'b', '2']),
      encode(['EVAL', 'return 1', '1', 'k']),
      Buffer.from('*0\r\n'),
      encode(['ECHO', '']),
    ]);
    expectSameFramesAtEveryBoundary(bytes, () => downstream(), (f) => ({ args: args(f), raw: f.raw.toString('latin1') }));
  });

  it('emits thousands of commands from one chunk, in order', () => {
    const cmds = Array.from({ length: 3000 }, (_, i) => ioredisBytes(i % 2 ? 'get' : 'set', i % 2 ? [`k${i}`] : [`k${i}`, `v${i}`]));
    const bytes = Buffer.concat(cmds);
    const frames = decodeAll(downstream(), [bytes]) as RedisRequest[];
    expect(frames).toHaveLength(3000);
    frames.forEach((f, i) => expect(f.argString(1)).toBe(`k${i}`));
  });

  it('keeps a large command arriving in many chunks in one buffer and emits it whole', () => {
    const big = Buffer.alloc(300_000, 0x61);
    const bytes = encode(['SET', 'big', big]);
    const session = downstream();
    const frames: Frame[] = [];
    for (let at = 0; at < bytes.length; at += 1000) session.decode(bytes.subarray(at, at + 1000), (f) => frames.push(f));
    expect(frames).toHaveLength(1);
    expect((frames[0] as RedisRequest).arg(2).equals(big)).toBe(true);
    expect(session.buffered).toBe(0);
  });

  it('rejects garbage with Redis\' protocol error texts', () => {
    const err = (text: string | Buffer) => codecError(() => downstream().decode(Buffer.from(text), () => {}));
    expect(err('*x\r\n').message).toBe('invalid multibulk length');
    expect(err('*1\r\n+GET\r\n').message).toBe("expected '$', got '+'");
    expect(err('*1\r\n$-3\r\n').message).toBe('invalid bulk length');
    expect(err('*1\r\n$abc\r\n').message).toBe('invalid bulk length');
    expect(err('*1\r\n$3\r\nGETXX').message).toBe('bulk string not followed by CRLF');
    expect(err('SET "unbalanced\r\n').message).toBe('unbalanced quotes in request');
    expect(err('*1\r\n$3\rX').reason).toBe('bad_line');
    expect(err(Buffer.concat([Buffer.from('SET '), Buffer.alloc(70_000, 0x61)])).message).toBe('too big inline request');
    expect(err(`*${2 ** 21}\r\n`).message).toBe('invalid multibulk length');
  });

  it('rejects an oversize bulk from its header alone, before buffering it', () => {
    const session = downstream(1000);
    const e = codecError(() => session.decode(Buffer.from('*2\r\n$3\r\nSET\r\n$5000\r\n'), () => {}));
    expect(e.reason).toBe('frame_too_large');
    const many = codecError(() => downstream(1000).decode(Buffer.from('*500\r\n'), () => {}));
    expect(many.reason).toBe('frame_too_large');
  });
});

describe('replies from a real redis-server', () => {
  let server: RedisServer;
  let resp2: Buffer;
  let resp3: Buffer;
  let counts: { resp2: number; resp3: number };

  const COMMANDS: string[][] = [
    ['SET', 'k', 'v'],
    ['GET', 'k'],
    ['GET', 'missing'],
    ['INCR', 'n'],
    ['LPUSH', 'l', 'a', 'b', 'c'],
    ['LRANGE', 'l', '0', '-1'],
    ['HSET', 'h', 'f1', 'v1', 'f2', ''],
    ['HGETALL', 'h'],
    ['SADD', 's', 'x', 'y'],
    ['SMEMBERS', 's'],
    ['ZADD', 'z', '1.5', 'm'],
    ['ZSCORE', 'z', 'm'],
    ['ZRANGE', 'z', '0', '-1', 'WITHSCORES'],
    ['EVAL', "return {1, 'two', {3, {4, false}}, redis.status_reply('ST'), redis.error_reply('INNER boom')}", '0'],
    ['EVAL', 'redis.setresp(3); return true', '0'],
    ['EVAL', "redis.setresp(3); return {double=3.25}", '0'],
    ['EVAL', "redis.setresp(3); return {big_number='123456789012345678901234567890'}", '0'],
    ['EVAL', "redis.setresp(3); return {map={a=1}}", '0'],
    ['BLPOP', 'nolist', '0.01'],
    ['XREAD', 'STREAMS', 'nostream', '0'],
    ['INFO', 'server'],
    ['WRONGCOMMAND'],
    ['GET', 'h'],
    ['HELLO', '3'],
  ];

  beforeAll(async () => {
    ensurePeers();
    server = await startRedis();
    const c = await RawClient.connect(server.port);
    const bytes = (raw: RawClient) =>
      new Promise<Buffer>((resolve) => {
        const parts: Buffer[] = [];
        const onData = (d: Buffer) => parts.push(d);
        raw.socket.on('data', onData);
        setTimeout(() => {
          raw.socket.off('data', onData);
          resolve(Buffer.concat(parts));
        }, 1000);
      });
    let got = bytes(c);
    c.write(Buffer.concat(COMMANDS.map((a) => encode(a))));
    resp2 = await got;
    got = bytes(c);
    c.write(Buffer.concat(COMMANDS.map((a) => encode(a))));
    // Pub/sub in RESP3: confirmations and messages are pushes.
    c.write(encode(['SUBSCRIBE', 'ch']));
    const pub = await RawClient.connect(server.port);
    // BLPOP's timeout resolution is the server's cron (100 ms): wait until the subscription is in place.
    while ((await pub.commands([['PUBSUB', 'NUMSUB', 'ch']]))[0] !== '*2\r\n$2\r\nch\r\n:1') await new Promise((r) => setTimeout(r, 20));
    expect(await pub.commands([['PUBLISH', 'ch', 'hello']])).toEqual([':1']);
    pub.destroy();
    resp3 = await got;
    c.destroy();
    const count = (b: Buffer) => {
      let n = 0;
      new Decoder({ onReply: () => n++, onErrorReply: () => n++, onPush: () => n++, getTypeMapping: () => ({}) }).write(b);
      return n;
    };
    counts = { resp2: count(resp2), resp3: count(resp3) };
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('cuts replies where ioredis\' decoder does, in RESP2 and RESP3', () => {
    const f2 = decodeAll(upstream(), [resp2]);
    expect(f2).toHaveLength(COMMANDS.length);
    expect(f2).toHaveLength(counts.resp2);
    expect(Buffer.concat(f2.map((f) => f.raw))).toEqual(resp2);
    const f3 = decodeAll(upstream(), [resp3]);
    expect(f3).toHaveLength(counts.resp3);
    expect(Buffer.concat(f3.map((f) => f.raw))).toEqual(resp3);
    // RESP3 types really occurred: map, set, double, boolean, big number, verbatim, null, push.
    const types = new Set(f3.map((f) => String.fromCharCode((f as RedisReply).valueType)));
    for (const t of ['%', '~', ',', '#', '(', '=', '_', '>']) expect(types, t).toContain(t);
  });

  it('classifies statuses and surfaces pushes as heartbeats that expect no reply', () => {
    const f2 = decodeAll(upstream(), [resp2]) as RedisReply[];
    const byCommand = new Map(COMMANDS.map((c, i) => [c.join(' '), f2[i]!]));
    expect(byCommand.get('SET k v')!.status).toBe('ok');
    expect(byCommand.get('WRONGCOMMAND')!.status).toBe('business_exception');
    expect(byCommand.get('WRONGCOMMAND')!.errorText).toMatch(/^ERR unknown command/);
    expect(byCommand.get('GET h')!.errorText).toMatch(/^WRONGTYPE/);
    const f3 = decodeAll(upstream(), [resp3]) as RedisReply[];
    const pushes = f3.filter((f) => f.type === 'heartbeat');
    expect(pushes.map((p) => p.raw.toString())).toEqual([
      '>3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n',
      '>3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n',
    ]);
    expect(pushes.every((p) => p.expectsReply === false)).toBe(true);
    const server = decodeAll(upstream(), [Buffer.from('-LOADING Redis is loading\r\n-MOVED 3999 127.0.0.1:6381\r\n!9\r\nERR blob!\r\n')]) as RedisReply[];
    expect(server.map((f) => f.status)).toEqual(['error', 'error', 'business_exception']);
    expect(server[2]!.errorText).toBe('ERR blob!');
  });

  it('gives identical replies when the stream is cut at every byte boundary', () => {
    const bytes = resp3.subarray(0, Math.min(resp3.length, 1500));
    const whole = decodeAll(upstream(), [resp3]);
    // Only complete values of the prefix (the cut may end inside one).
    const n = whole.filter((f) => f.raw.byteOffset + f.raw.length - resp3.byteOffset <= bytes.length).length;
    const view = (f: Frame) => f.raw.toString('latin1');
    const expected = whole.slice(0, n).map(view);
    for (let cut = 1; cut < bytes.length; cut++) {
      const frames = decodeAll(upstream(), [Buffer.from(bytes.subarray(0, cut)), Buffer.from(bytes.subarray(cut))]).map(view);
      expect(frames, `cut at ${cut}`).toEqual(expected);
    }
    expect(decodeAll(upstream(), Array.from(resp2, (b) => Buffer.from([b]))).map(view)).toEqual(decodeAll(upstream(), [resp2]).map(view));
  });
});

describe('replies: hand-made shapes and garbage', () => {
  it('keeps a RESP3 attribute with the value it annotates', () => {
    const bytes = Buffer.from('|1\r\n+ttl\r\n:3600\r\n$5\r\nhello\r\n+OK\r\n');
    const frames = decodeAll(upstream(), [bytes]) as RedisReply[];
    expect(frames.map((f) => f.raw.toString())).toEqual(['|1\r\n+ttl\r\n:3600\r\n$5\r\nhello\r\n', '+OK\r\n']);
    expect(String.fromCharCode(frames[0]!.valueType)).toBe('$');
    expect(skipValue(bytes, 0)).toBe(frames[0]!.raw.length);
  });

  it('decodes deep and wide aggregates without recursion; a reply nested deeper than 128 is replaced by an error and skipped', () => {
    const deep = Buffer.from('*1\r\n'.repeat(100) + ':1\r\n');
    expect(decodeAll(upstream(), [deep])).toHaveLength(1);
    const wide = Buffer.concat([Buffer.from('*20000\r\n'), Buffer.from(':7\r\n'.repeat(20000))]);
    expect(decodeAll(upstream(), [wide])[0]!.raw.length).toBe(wide.length);
    // Nested *2 levels (each with a sibling) deeper than the limit, then the next reply: the stream keeps its place.
    const tooDeep = Buffer.from('*2\r\n'.repeat(300) + ':1\r\n'.repeat(301) + '+NEXT\r\n');
    for (const cut of [tooDeep.length, 7, 1]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < tooDeep.length; i += cut) chunks.push(tooDeep.subarray(i, i + cut));
      const frames = decodeAll(upstream(), chunks) as RedisReply[];
      expect(frames.map((f) => f.raw.toString()), `chunks of ${cut}`).toEqual([
        "-ERR upstream reply too deep: nested deeper than the proxy's limit of 128\r\n",
        '+NEXT\r\n',
      ]);
      expect(frames[0]!.refused).toBe('too_deep');
      expect(frames[0]!.type).toBe('response');
    }
  });

  it('replaces an oversize reply by an error and skips its bytes without holding them, in any chunking', () => {
    const max = 1000;
    const big = Buffer.alloc(50_000, 0x61);
    const replies = [
      Buffer.from('+BEFORE\r\n'),
      Buffer.concat([Buffer.from(`$${big.length}\r\n`), big, Buffer.from('\r\n')]),
      Buffer.from(':1\r\n'),
      // An array whose elements are each small but whose whole is over the limit.
      Buffer.concat([Buffer.from('*300\r\n'), Buffer.from('$5\r\nhello\r\n'.repeat(300))]),
      // A long simple string and a map with a verbatim string and an attribute, also over the limit.
      Buffer.from(`+${'x'.repeat(5000)}\r\n`),
      Buffer.concat([Buffer.from('|1\r\n+a\r\n:1\r\n%1\r\n+k\r\n'), Buffer.from(`=${2004}\r\ntxt:${'y'.repeat(2000)}\r\n`)]),
      Buffer.from('$-1\r\n'),
    ];
    const stream = Buffer.concat(replies);
    const tooLarge = "-ERR upstream reply too large: over the proxy's limit of 1000 bytes\r\n";
    for (const cut of [stream.length, 4096, 333, 1]) {
      const session = upstream(max);
      const out: Frame[] = [];
      let most = 0;
      for (let i = 0; i < stream.length; i += cut) {
        session.decode(stream.subarray(i, i + cut), (f) => out.push(f));
        most = Math.max(most, session.buffered);
      }
      expect(out.map((f) => f.raw.toString()), `chunks of ${cut}`).toEqual(['+BEFORE\r\n', tooLarge, ':1\r\n', tooLarge, tooLarge, tooLarge, '$-1\r\n']);
      expect(out.map((f) => (f as RedisReply).refused)).toEqual([undefined, 'too_large', undefined, 'too_large', 'too_large', 'too_large', undefined]);
      // Nothing of a refused reply is held beyond the limit (plus the chunk that crossed it).
      expect(most).toBeLessThanOrEqual(max + cut);
    }
    // A refused push answers no command: it is skipped without a frame.
    const push = Buffer.concat([Buffer.from('>2\r\n+message\r\n'), Buffer.from(`$5000\r\n${'z'.repeat(5000)}\r\n`), Buffer.from('+OK\r\n')]);
    expect(decodeAll(upstream(max), [push]).map((f) => f.raw.toString())).toEqual(['+OK\r\n']);
  });

  it('rejects garbage and oversize replies', () => {
    const err = (s: string, max?: number) => codecError(() => decodeAll(upstream(max), [Buffer.from(s)])).reason;
    expect(err('?what\r\n')).toBe('bad_type');
    expect(err('$abc\r\n')).toBe('bad_length');
    expect(err('%-1\r\n')).toBe('bad_length');
    expect(err(':12x\r\n')).toBe('bad_integer');
    expect(err('#x\r\n')).toBe('bad_boolean');
    expect(err('$?\r\n')).toBe('unsupported_type');
    expect(err('$3\r\nabcd\r\n')).toBe('bad_bulk');
    // Lengths no Redis reply can have are garbage too, even over the limit (skipping them would never end).
    expect(err(`$${2 ** 40}\r\n`, 1000)).toBe('bad_length');
    expect(err('*-5\r\n', 1000)).toBe('bad_length');
  });
});

describe('encode and local replies', () => {
  it('forwards the bytes themselves, or a copy when asked', () => {
    const frame = decodeAll(downstream(), [encode(['GET', 'k'])])[0]!;
    const s = downstream();
    expect(s.encode(frame)).toBe(frame.raw);
    const copy = s.encode(frame, { copy: true });
    expect(copy).not.toBe(frame.raw);
    expect(copy).toEqual(frame.raw);
  });

  it('answers local replies as RESP errors (docs/configuration.md, Local replies)', () => {
    const frame = decodeAll(downstream(), [encode(['GET', 'user:1'])])[0]!;
    const info = decodeAll(downstream(), [encode(['INFO'])])[0]!;
    const s = downstream();
    expect(s.localReply(frame, { kind: 'no_route', message: 'x' })!.toString()).toBe("-ERR no route for key 'user:1'\r\n");
    expect(s.localReply(info, { kind: 'no_route', message: 'x' })!.toString()).toBe("-ERR no route for command 'info'\r\n");
    expect(s.localReply(frame, { kind: 'timeout', message: 'after 1s' })!.toString()).toBe('-ERR timeout\r\n');
    expect(localReplyText(frame, { kind: 'over_limit', message: 'rate limited by the local rate limit' })).toBe('ERR rate limited');
    expect(localReplyText(frame, { kind: 'fault_abort', message: 'injected\r\nfault' })).toBe('ERR injected fault');
    expect(localReplyText(frame, { kind: 'upstream_reset', message: 'reset by peer' })).toBe('ERR upstream failure: reset by peer');
    expect(localReplyText(frame, { kind: 'no_healthy_upstream', message: 'none' })).toBe('ERR upstream failure: none');
    expect(s.heartbeatReply(frame)).toBeUndefined();
  });

  it('writes commands from pieces in one buffer', () => {
    const src = Buffer.from('xxprefix:keyyy');
    expect(encodeCommand([Buffer.from('GET'), [src, 9, 12]]).toString()).toBe('*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n');
  });
});
