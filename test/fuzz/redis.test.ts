/**
 * Property-based fuzzing of the Redis codec (codecs/redis): commands (RESP arrays of bulk strings, as ioredis writes
 * them, and inline commands) downstream, RESP2/RESP3 replies of every type, nested, upstream. A small frame limit
 * (1,500 bytes) so that random input reaches the limit checks too.
 */
import fc from 'fast-check';
import { Command } from 'ioredis';
import { expect, it } from 'vitest';
import { CodecError } from '../../src/codec.js';
import { redisCodec } from '../../codecs/redis/index.js';
import { encodeCommand } from '../../codecs/redis/resp.js';
import type { Slot } from './harness.js';
import { fuzzCodec, type Sample } from './properties.js';

const MAX = 1500;

/** Commands whose first argument is their key (single-key, or the first of several). */
const KEYED = ['get', 'set', 'incr', 'lpush', 'hset', 'expire', 'del', 'mget', 'exists', 'append', 'sadd'];
/** Commands with no key. */
const KEYLESS = ['ping', 'dbsize', 'info', 'time'];

function ioredis(name: string, args: Buffer[]): Buffer {
  const w = new Command(name, args).toWritable({} as never);
  return typeof w === 'string' ? Buffer.from(w) : w;
}

const arg = fc.oneof(
  fc.stringMatching(/^[a-zA-Z0-9:_{}-]{0,16}$/).map((s) => Buffer.from(s)),
  fc.string({ unit: 'grapheme', maxLength: 12 }).map((s) => Buffer.from(s)),
  fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b)),
);
const upperOrLower = (name: string): fc.Arbitrary<string> => fc.boolean().map((u) => (u ? name.toUpperCase() : name));

const arrayCommand: fc.Arbitrary<Sample> = fc
  .oneof(
    fc.tuple(fc.constantFrom(...KEYED).chain(upperOrLower), fc.array(arg, { minLength: 1, maxLength: 5 })),
    fc.tuple(fc.constantFrom(...KEYLESS).chain(upperOrLower), fc.constant([] as Buffer[])),
    fc.tuple(fc.stringMatching(/^my\.[a-z]{1,8}$/), fc.array(arg, { maxLength: 4 })), // unknown: refused, so no key
  )
  .chain(([name, args]) =>
    fc.boolean().map((viaIoredis) => {
      const bytes = viaIoredis ? ioredis(name, args) : encodeCommand([Buffer.from(name), ...args]);
      const metadata: Record<string, string> = { command: name.toLowerCase() };
      if (args.length > 0 && KEYED.includes(name.toLowerCase())) metadata.key = args[0]!.toString('utf8');
      return { bytes, type: 'request', requestId: 0, metadata, mutable: false } satisfies Sample;
    }),
  );

/** Inline (telnet-style) commands: re-encoded as arrays by the codec, so `raw` is not the bytes received. */
const word = fc.stringMatching(/^[a-zA-Z0-9:_.-]{1,10}$/);
const inlineCommand: fc.Arbitrary<Sample> = fc
  .tuple(fc.constantFrom('get', 'SET', 'del', 'ping', 'Incr'), fc.array(word, { maxLength: 3 }), fc.constantFrom('\r\n', '\n'), fc.constantFrom(' ', '  ', '\t'))
  .map(([name, words, eol, sep]) => {
    const metadata: Record<string, string> = { command: name.toLowerCase() };
    if (words.length > 0 && name.toLowerCase() !== 'ping') metadata.key = words[0]!;
    return { bytes: Buffer.from([name, ...words].join(sep) + eol), type: 'request', requestId: 0, metadata, mutable: false, rawIsInput: false } satisfies Sample;
  });

// ---- replies --------------------------------------------------------------------------------------------------

const line = fc.stringMatching(/^[ -~]{0,24}$/);
const crlf = (s: string): string => `${s}\r\n`;
const blob = (type: string, b: Buffer): Buffer => Buffer.concat([Buffer.from(`${type}${b.length}\r\n`), b, Buffer.from('\r\n')]);
const SERVER_ERRORS = ['LOADING', 'BUSY', 'MASTERDOWN', 'TRYAGAIN', 'CLUSTERDOWN', 'MOVED', 'ASK', 'NOREPLICAS', 'READONLY', 'OOM'];
const errorCode = fc.constantFrom('ERR', 'WRONGTYPE', 'NOSCRIPT', ...SERVER_ERRORS);

/** A RESP value; `error` says whether it is an error and of which code. */
interface Value {
  bytes: Buffer;
  errorCode?: string;
}

const value: fc.Arbitrary<Value> = fc.letrec<{ v: Value }>((tie) => {
  const aggregate = (type: string, pairs: boolean) =>
    fc.array(tie('v'), { maxLength: 4 }).map((items): Value => {
      const n = pairs ? items.length >> 1 : items.length;
      const used = pairs ? items.slice(0, n * 2) : items;
      return { bytes: Buffer.concat([Buffer.from(crlf(`${type}${n}`)), ...used.map((i) => i.bytes)]) };
    });
  return {
    v: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      line.map((s) => ({ bytes: Buffer.from(crlf(`+${s}`)) })),
      fc.tuple(errorCode, line).map(([c, s]) => ({ bytes: Buffer.from(crlf(`-${c} ${s}`)), errorCode: c })),
      fc.oneof(fc.integer(), fc.constantFrom(-(2 ** 53) + 1, 2 ** 53 - 1)).map((n) => ({ bytes: Buffer.from(crlf(`:${n}`)) })),
      fc.uint8Array({ maxLength: 80 }).map((b) => ({ bytes: blob('$', Buffer.from(b)) })),
      fc.constantFrom('$-1\r\n', '*-1\r\n', '_\r\n', '#t\r\n', '#f\r\n', ',inf\r\n', ',-inf\r\n', ',nan\r\n').map((s) => ({ bytes: Buffer.from(s) })),
      fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => ({ bytes: Buffer.from(crlf(`,${d}`)) })),
      fc.bigInt({ min: -(10n ** 40n), max: 10n ** 40n }).map((n) => ({ bytes: Buffer.from(crlf(`(${n}`)) })),
      fc.tuple(errorCode, line).map(([c, s]) => ({ bytes: blob('!', Buffer.from(`${c} ${s}`)), errorCode: c })),
      line.map((s) => ({ bytes: blob('=', Buffer.from(`txt:${s}`)) })),
      aggregate('*', false),
      aggregate('~', false),
      aggregate('%', true),
      fc.tuple(aggregate('|', true), tie('v')).map(([attr, v]) => ({ bytes: Buffer.concat([attr.bytes, v.bytes]), errorCode: v.errorCode })),
    ),
  };
}).v;

const reply: fc.Arbitrary<Sample> = fc.oneof(
  { weight: 5, arbitrary: value.map((v): Sample => ({
    bytes: v.bytes,
    type: 'response',
    requestId: 0,
    status: v.errorCode === undefined ? 'ok' : SERVER_ERRORS.includes(v.errorCode) ? 'error' : 'business_exception',
    mutable: false,
  })) },
  // RESP3 pushes: out-of-band, surfaced as heartbeats that expect no answer.
  { weight: 1, arbitrary: fc.array(value, { maxLength: 3 }).map((items): Sample => ({
    bytes: Buffer.concat([Buffer.from(crlf(`>${items.length}`)), ...items.map((i) => i.bytes)]),
    type: 'heartbeat',
    requestId: 0,
    status: 'ok',
    expectsReply: false,
    mutable: false,
  })) },
);

/** The decimal number after each type byte at the start of a line: counts and lengths. */
function slots(frame: Buffer): Slot[] {
  const out: Slot[] = [];
  let at = 0;
  while (at < frame.length) {
    const cr = frame.indexOf('\r\n', at);
    if (cr < 0) break;
    if ('*$%~>|!=:'.includes(String.fromCharCode(frame[at]!))) out.push({ at: at + 1, end: cr, text: true });
    at = cr + 2;
  }
  return out;
}

/** Random bytes behind a valid-looking start: an array header, a bulk header, aggregates of many small items. */
const structuredDown: fc.Arbitrary<Buffer> = fc.oneof(
  fc.tuple(fc.nat({ max: 40 }), fc.uint8Array({ maxLength: 400 })).map(([n, tail]) => Buffer.concat([Buffer.from(`*${n}\r\n`), Buffer.from(tail)])),
  fc.tuple(fc.nat({ max: 600 }), fc.nat({ max: 9 })).map(([n, len]) => Buffer.from(`*${n}\r\n` + `$${len}\r\n${'a'.repeat(len)}\r\n`.repeat(n))),
  fc.array(fc.constantFrom('GET k\r\n', 'PING\n', '"a b" c\r\n', "'x\\'y'\n", '\r\n', 'a"b\r\n', '"\\x4"\n'), { maxLength: 8 }).map((l) => Buffer.from(l.join(''))),
);
const structuredUp: fc.Arbitrary<Buffer> = fc.oneof(
  fc.tuple(fc.constantFrom('*', '~', '%', '>', '|'), fc.nat({ max: 40 }), fc.uint8Array({ maxLength: 400 })).map(([t, n, tail]) =>
    Buffer.concat([Buffer.from(`${t}${n}\r\n`), Buffer.from(tail)]),
  ),
  fc.tuple(fc.constantFrom('*', '~', '>'), fc.nat({ max: 1000 }), fc.constantFrom(':1\r\n', '+OK\r\n', '$3\r\nabc\r\n', '_\r\n')).map(([t, n, item]) =>
    Buffer.from(`${t}${n}\r\n` + item.repeat(n)),
  ),
  fc.tuple(fc.nat({ max: 200 }), fc.constantFrom('*1\r\n', '%1\r\n+k\r\n', '|1\r\n+a\r\n+b\r\n')).map(([depth, open]) => Buffer.from(open.repeat(depth) + ':1\r\n')),
);

fuzzCodec({
  suite: 'redis',
  codec: redisCodec,
  maxFrameSize: MAX,
  slack: 0,
  keys: ['command', 'key'],
  inputs: { downstream: structuredDown, upstream: structuredUp },
  streams: [
    { name: 'commands', side: 'downstream', sample: fc.oneof({ weight: 4, arbitrary: arrayCommand }, inlineCommand), slots },
    { name: 'replies', side: 'upstream', sample: reply, slots },
  ],
  runs: { bytes: 2000, mutated: 1500, split: 400, roundTrip: 300 },
  extra: () => {
    // Minimal inputs the properties found: frames over the limit were emitted when they arrived in one chunk (each
    // part was checked, the whole was not), and a reply aggregate of small items was buffered past the limit.
    const refuse = (side: 'downstream' | 'upstream', bytes: Buffer, chunk: number): void => {
      const s = redisCodec.create({ maxFrameSize: MAX, side });
      let err: unknown;
      try {
        for (let at = 0; at < bytes.length; at += chunk) {
          s.decode(Buffer.from(bytes.subarray(at, at + chunk)), (f) => expect.fail(`no frame over the limit (${f.raw.length} bytes)`));
          expect(s.buffered, `buffered after ${at + chunk} bytes`).toBeLessThanOrEqual(MAX);
        }
      } catch (e) {
        err = e;
      }
      expect(err, `${side}, chunks of ${chunk}`).toBeInstanceOf(CodecError);
      expect((err as CodecError).reason).toBe('frame_too_large');
    };

    it('regression: a command of two 900-byte arguments (1,8xx bytes) is frame_too_large, whole or in pieces', () => {
      const bytes = encodeCommand([Buffer.from('SET'), Buffer.alloc(900, 0x61), Buffer.alloc(900, 0x62)]);
      for (const chunk of [bytes.length, 700, 1]) refuse('downstream', bytes, chunk);
    });

    it('regression: an inline command whose re-encoded array exceeds the limit is frame_too_large', () => {
      const bytes = Buffer.from(`${'a '.repeat(700)}\r\n`); // 1,402 bytes received, 4,9xx bytes as an array
      for (const chunk of [bytes.length, 100]) refuse('downstream', bytes, chunk);
    });

    it('regression: a reply array of 400 small integers (1,606 bytes) is over the limit and never buffered past it', () => {
      const bytes = Buffer.from(`*400\r\n${':1\r\n'.repeat(400)}`);
      // A reply over the limit does not end the shared connection: an error stands in for it, its bytes are skipped.
      for (const chunk of [bytes.length, 100, 7]) {
        const s = redisCodec.create({ maxFrameSize: MAX, side: 'upstream' });
        const frames: string[] = [];
        for (let at = 0; at < bytes.length; at += chunk) {
          s.decode(Buffer.from(bytes.subarray(at, at + chunk)), (f) => frames.push(f.raw.toString()));
          expect(s.buffered, `buffered after ${at + chunk} bytes`).toBeLessThanOrEqual(MAX);
        }
        expect(frames, `chunks of ${chunk}`).toEqual([`-ERR upstream reply too large: over the proxy's limit of ${MAX} bytes\r\n`]);
      }
      // Just under the limit it is one frame, whole or in pieces.
      const fits = Buffer.from(`*370\r\n${':1\r\n'.repeat(370)}`);
      for (const chunk of [fits.length, 100, 7]) {
        const s = redisCodec.create({ maxFrameSize: MAX, side: 'upstream' });
        const frames: number[] = [];
        for (let at = 0; at < fits.length; at += chunk) s.decode(Buffer.from(fits.subarray(at, at + chunk)), (f) => frames.push(f.raw.length));
        expect(frames).toEqual([fits.length]);
      }
    });
  },
});
