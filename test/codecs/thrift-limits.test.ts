/**
 * What bounds the work one Thrift request can cost the proxy: THeader key/value headers (MAX_HEADERS, refused as
 * `bad_body` when their count is read), struct fields and container elements walked to find a message's end
 * (MAX_VALUES, refused as `bad_message`, framed and unframed alike), and the shortcuts that walk nothing:
 * fixed-width containers skipped by arithmetic, compact integer lists by a word loop, THeader mutation in one pass.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CodecError, type Frame, type KeyValue } from '../../src/codec.js';
import { badBody } from '../helpers/codec.js';
import { thriftCodec, type ThriftFrame } from '../../codecs/thrift/index.js';
import { MAX_HEADERS, mutateHeaders, readHeaderLayout } from '../../codecs/thrift/theader.js';
import { NEED_MORE, UnframedScanner } from '../../codecs/thrift/unframed.js';
import {
  MAX_VALUES,
  ScanError,
  Scanner,
  TRUNCATED,
  binaryWidth,
  compactWidth,
  readHead,
  skipBinaryStruct,
  skipCompactStruct,
} from '../../codecs/thrift/wire.js';

// ---------------------------------------------------------------------------------------------------------------
// Builders

function i32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v | 0);
  return b;
}

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** A strict binary CALL `m` with the argument struct `body` (STOP included). */
function binaryCall(body: Buffer): Buffer {
  return Buffer.concat([i32(0x80010001), i32(1), Buffer.from('m'), i32(1), body]);
}

/** A compact CALL `m` with the argument struct `body` (STOP included). */
function compactCall(body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x82, 0x21, 1, 1, 0x6d]), body]);
}

function framed(message: Buffer): Buffer {
  return Buffer.concat([i32(message.length), message]);
}

/** A THeader frame (binary, no transforms) with key/value info blocks `blocks`, each a list of [key, value]. */
function theader(payload: Buffer, blocks: Array<Array<[string, string]>>, claimed?: number): Buffer {
  const parts: Buffer[] = [Buffer.from([0, 0])];
  for (const headers of blocks) {
    parts.push(Buffer.from([1]), varint(claimed ?? headers.length));
    for (const [k, v] of headers) parts.push(varint(Buffer.byteLength(k)), Buffer.from(k), varint(Buffer.byteLength(v)), Buffer.from(v));
  }
  let header = Buffer.concat(parts);
  header = Buffer.concat([header, Buffer.alloc((4 - (header.length % 4)) % 4)]);
  const fixed = Buffer.alloc(14);
  fixed.writeInt32BE(10 + header.length + payload.length, 0);
  fixed.writeUInt16BE(0x0fff, 4);
  fixed.writeUInt16BE(header.length / 4, 12);
  return Buffer.concat([fixed, header, payload]);
}

const headersOf = (count: number, from = 0): Array<[string, string]> =>
  Array.from({ length: count }, (_, i) => [`k${(from + i).toString(36)}`, 'v'] as [string, string]);

function decodeOne(bytes: Buffer): ThriftFrame {
  const frames: Frame[] = [];
  thriftCodec.create({ maxFrameSize: 16 << 20, side: 'downstream' }).decode(bytes, (f) => frames.push(f));
  expect(frames).toHaveLength(1);
  return frames[0] as ThriftFrame;
}

/** The CodecError decoding `bytes` throws (fails if it decodes). */
function refusal(bytes: Buffer): CodecError {
  try {
    thriftCodec.create({ maxFrameSize: 16 << 20, side: 'downstream' }).decode(bytes, () => {});
  } catch (err) {
    expect(err).toBeInstanceOf(CodecError);
    return err as CodecError;
  }
  throw new Error('expected the codec to refuse these bytes');
}

// ---------------------------------------------------------------------------------------------------------------
// THeader headers

describe('THeader key/value headers: at most MAX_HEADERS per frame', () => {
  const payload = binaryCall(Buffer.from([0]));

  it('reads a request with exactly MAX_HEADERS headers', () => {
    const f = decodeOne(theader(payload, [headersOf(MAX_HEADERS)]));
    expect(f.metadata.get(`k${(MAX_HEADERS - 1).toString(36)}`)).toBe('v');
    expect([...f.metadata.entries()]).toHaveLength(MAX_HEADERS + 1); // and method
  });

  it('refuses one more as bad_body, counted over every key/value block', () => {
    expect(badBody(() => decodeOne(theader(payload, [headersOf(MAX_HEADERS + 1)])).metadata.get('x-user'))).toContain(
      `more than ${MAX_HEADERS} key/value headers`,
    );
    const split = theader(payload, [headersOf(1000), headersOf(MAX_HEADERS - 1000 + 1, 1000)]);
    expect(badBody(() => decodeOne(split).metadata.get('x-user'))).toContain(`more than ${MAX_HEADERS}`);
    // At the limit across two blocks it is read.
    expect(decodeOne(theader(payload, [headersOf(1000), headersOf(MAX_HEADERS - 1000, 1000)])).metadata.get('k0')).toBe('v');
  });

  it('refuses as soon as the count is read: a count over the limit with no headers after it is bad_body, not a short section', () => {
    const f = decodeOne(theader(payload, [[]], MAX_HEADERS + 1));
    expect(badBody(() => f.metadata.get('x-user'))).toContain(`more than ${MAX_HEADERS}`);
    // The same count at the limit is read, and found to run past the section.
    const atLimit = decodeOne(theader(payload, [[]], MAX_HEADERS));
    let err: unknown;
    try {
      atLimit.metadata.get('x-user');
    } catch (e) {
      err = e;
    }
    expect((err as CodecError).reason).toBe('bad_frame');
  });

  it('refuses a mutation of a frame over the limit, replies included', () => {
    const over = decodeOne(theader(payload, [headersOf(MAX_HEADERS + 1)]));
    expect(badBody(() => over.encode(5, [{ key: 'x-a', value: '1' }]))).toContain(`more than ${MAX_HEADERS}`);
    const reply = Buffer.concat([i32(0x80010002), i32(1), Buffer.from('m'), i32(1), Buffer.from([0])]);
    const r = decodeOne(theader(reply, [headersOf(MAX_HEADERS + 1)]));
    expect(badBody(() => r.metadata.get('x-user'))).toContain(`more than ${MAX_HEADERS}`);
  });
});

describe('THeader mutation: one pass, the same headers as a lookup per mutation key', () => {
  /** What mutation wrote before it was made linear: for each key, the first header equal ignoring case, replaced. */
  function reference(headers: Array<[string, string]>, mutation: readonly KeyValue[]): Array<[string, string]> {
    const out = headers.map(([k, v]) => [k, v] as [string, string]);
    for (const { key, value } of mutation) {
      const i = out.findIndex(([k]) => k.toLowerCase() === key.toLowerCase());
      if (i >= 0) out[i] = [key, value];
      else out.push([key, value]);
    }
    return out;
  }

  const key = fc.constantFrom('a', 'A', 'b', 'B', 'x-user', 'X-User', 'trace', 'Ω', 'ω', 'lane');
  const pair = fc.tuple(key, fc.string({ maxLength: 4 }));

  it('replaces and appends exactly as the per-key lookup did (duplicates, case, order)', () => {
    fc.assert(
      fc.property(fc.array(pair, { maxLength: 8 }), fc.array(pair, { minLength: 1, maxLength: 5 }), (headers, muts) => {
        const mutation = muts.map(([k, v]) => ({ key: k, value: v }));
        const raw = theader(binaryCall(Buffer.from([0])), headers.length > 0 ? [headers] : []);
        const out = mutateHeaders(raw, readHeaderLayout(raw), mutation).frame;
        expect(out).toEqual(theader(binaryCall(Buffer.from([0])), [reference(headers, mutation)]));
      }),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Fields and elements walked

/** Field 1: a list of `n` empty structs (binary or compact). With the field itself, n + 1 values. */
function structList(compact: boolean, n: number): Buffer {
  if (compact) return compactCall(Buffer.concat([Buffer.from([0x19, 0xfc]), varint(n), Buffer.alloc(n), Buffer.from([0])]));
  return binaryCall(Buffer.concat([Buffer.from([15, 0, 1, 12]), i32(n), Buffer.alloc(n), Buffer.from([0])]));
}

/** Field 1: a map<string, string> of `pairs` pairs of empty strings (2 values a pair); field 2: a bool. 2 + 2 * pairs. */
function stringMap(compact: boolean, pairs: number): Buffer {
  if (compact) {
    return compactCall(Buffer.concat([Buffer.from([0x1b]), varint(pairs), Buffer.from([0x88]), Buffer.alloc(2 * pairs), Buffer.from([0x11, 0])]));
  }
  return binaryCall(Buffer.concat([Buffer.from([13, 0, 1, 11, 11]), i32(pairs), Buffer.alloc(8 * pairs), Buffer.from([2, 0, 2, 1, 0])]));
}

/** `n` bool fields (compact: one byte each; binary: four). */
function fields(compact: boolean, n: number): Buffer {
  if (compact) return compactCall(Buffer.concat([Buffer.alloc(n, 0x11), Buffer.from([0])]));
  return binaryCall(Buffer.concat([Buffer.alloc(4 * n).fill(Buffer.from([2, 0, 1, 1])), Buffer.from([0])]));
}

describe(`fields and container elements: at most MAX_VALUES (${MAX_VALUES}) walked per message`, () => {
  const cases: Array<[string, (compact: boolean, over: number) => Buffer]> = [
    ['a list of empty structs', (c, o) => structList(c, MAX_VALUES - 1 + o)],
    ['a map<string, string> (a pair counts two)', (c, o) => stringMap(c, (MAX_VALUES - 2) / 2 + o)],
    ['struct fields', (c, o) => fields(c, MAX_VALUES + o)],
  ];

  for (const compact of [false, true]) {
    for (const [name, build] of cases) {
      const proto = compact ? 'compact' : 'binary';
      it(`${proto}, ${name}: accepted at the limit, refused one over as bad_message (framed and unframed)`, () => {
        const at = build(compact, 0);
        expect(decodeOne(framed(at)).raw.length).toBe(at.length + 4);
        expect(decodeOne(at).raw.length).toBe(at.length);
        const over = build(compact, 1);
        for (const bytes of [framed(over), over]) {
          const err = refusal(bytes);
          expect(err.reason).toBe('bad_message');
          expect(err.message).toBe(`thrift message holds more than ${MAX_VALUES} fields and container elements`);
        }
      });
    }
  }

  it('refuses a container announcing too many elements when its count is read, before its bytes arrive (unframed)', () => {
    const whole = structList(true, MAX_VALUES);
    const head = whole.subarray(0, 12); // the head, the field and the list header: none of the elements
    const err = refusal(head);
    expect(err.reason).toBe('bad_message');
    expect(err.message).toContain(`more than ${MAX_VALUES}`);
  });

  it('charges nested values too: a list of lists counts every inner element once', () => {
    // list<list<struct>>: 2 lists of k and `inner` empty structs. Values: field 1 + 2 outer + k + inner.
    const k = 1000;
    const build = (inner: number): Buffer =>
      binaryCall(Buffer.concat([Buffer.from([15, 0, 1, 15]), i32(2), Buffer.from([12]), i32(k), Buffer.alloc(k), Buffer.from([12]), i32(inner), Buffer.alloc(inner), Buffer.from([0])]));
    const inner = MAX_VALUES - 3 - k;
    expect(decodeOne(framed(build(inner))).raw.length).toBeGreaterThan(0);
    expect(decodeOne(build(inner)).raw.length).toBeGreaterThan(0);
    expect(refusal(framed(build(inner + 1))).message).toContain(`more than ${MAX_VALUES}`);
    expect(refusal(build(inner + 1)).message).toContain(`more than ${MAX_VALUES}`);
  });

  it('fixed-width containers and compact integer lists are not counted: 8 MiB of them is one frame', () => {
    const n = 8 << 20;
    const lists = [
      binaryCall(Buffer.concat([Buffer.from([15, 0, 1, 3]), i32(n), Buffer.alloc(n), Buffer.from([0])])), // list<byte>
      compactCall(Buffer.concat([Buffer.from([0x19, 0xf5]), varint(n), Buffer.alloc(n), Buffer.from([0])])), // list<i32>
      compactCall(Buffer.concat([Buffer.from([0x1b]), varint(n / 2), Buffer.from([0x33]), Buffer.alloc(n), Buffer.from([0])])), // map<byte, byte>
    ];
    for (const m of lists) {
      expect(decodeOne(framed(m)).raw.length).toBe(m.length + 4);
      expect(decodeOne(m).raw.length).toBe(m.length);
    }
  });

  it('the unframed scanner walks a compact integer list in work linear in its bytes, however it is cut', () => {
    const n = 100_000;
    const m = compactCall(Buffer.concat([Buffer.from([0x19, 0xf6]), varint(n), Buffer.alloc(n * 3).fill(Buffer.from([0x81, 0x81, 1])), Buffer.from([0])]));
    const s = new UnframedScanner();
    let result = NEED_MORE;
    for (let cut = 1000; result === NEED_MORE; cut = Math.min(m.length, cut + 997)) result = s.scan(m, 0, cut);
    expect(result).toBe(m.length);
    expect(s.work).toBeLessThanOrEqual(2 * m.length);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Shortcuts agree with an element-by-element walk

type Outcome = { total: number } | { truncated: true } | { error: string };

/** The codec's one-shot skipper over `buf[0, end)`. */
function skip(buf: Buffer, end: number): Outcome {
  const s = new Scanner().reset(buf, 0, end);
  try {
    if (readHead(s).compact) skipCompactStruct(s);
    else skipBinaryStruct(s);
    return { total: s.pos };
  } catch (err) {
    if (err === TRUNCATED) return { truncated: true };
    if (err instanceof ScanError) return { error: err.message };
    throw err;
  }
}

/** The same through the resumable scanner, fed `buf[0, end)` in pieces cut at `cuts`, copied at offset `pad`. */
function scanInPieces(buf: Buffer, end: number, cuts: number[], pad: number): Outcome {
  const s = new UnframedScanner();
  for (const cut of [...cuts.filter((c) => c < end), end]) {
    const moved = Buffer.alloc(pad + cut);
    buf.copy(moved, pad, 0, cut);
    try {
      const total = s.scan(moved, pad, pad + cut);
      if (total !== NEED_MORE) return { total };
    } catch (err) {
      if (err instanceof ScanError) return { error: err.message };
      throw err;
    }
  }
  return { truncated: true };
}

/**
 * A reference walk of a message whose struct is one field holding a list (or set) `et` of `n` elements written
 * in `bytes`: every element read on its own (fixed width: its bytes; compact integers: one varint each).
 */
function walkList(compact: boolean, headerEnd: number, buf: Buffer, end: number, et: number, n: number): Outcome {
  let p = headerEnd;
  for (let i = 0; i < n; i++) {
    const w = compact ? compactWidth(et) : binaryWidth(et);
    if (w > 0) {
      p += w;
      if (p > end) return { truncated: true };
      continue;
    }
    for (let b = 0; ; b++) {
      if (p >= end) return { truncated: true };
      if ((buf[p++]! & 0x80) === 0) break;
      if (b === 9) return { error: 'varint longer than 10 bytes' };
    }
  }
  if (p >= end) return { truncated: true };
  if (buf[p] !== 0) return { error: 'unexpected' };
  return { total: p + 1 };
}

describe('fixed-width and integer lists: the shortcuts give the answers of an element-by-element walk', () => {
  const binaryTypes = [2, 3, 4, 6, 8, 10, 16]; // bool byte double i16 i32 i64 uuid
  const compactTypes = [1, 2, 3, 7, 13, 4, 5, 6]; // bools byte double uuid, then i16 i32 i64 (varints)
  /** A varint's bytes: short, long, or too long (11 bytes), mostly short. */
  const varintBytes = fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 0, max: 0x7f }).map((b) => [b]) },
    { weight: 3, arbitrary: fc.array(fc.integer({ min: 0x80, max: 0xff }), { maxLength: 9 }).chain((c) => fc.integer({ min: 0, max: 0x7f }).map((t) => [...c, t])) },
    { weight: 1, arbitrary: fc.array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 10, maxLength: 11 }) },
  );

  it('binary and compact lists of every fixed-width type and compact integers, whole, cut and damaged', () => {
    const seen = { total: 0, truncated: 0, error: 0 };
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.nat({ max: 7 }),
        fc.nat({ max: 200 }),
        fc.array(varintBytes, { maxLength: 200 }),
        fc.nat({ max: 255 }),
        fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -3, max: 3 }) }),
        fc.array(fc.nat({ max: 3200 }), { maxLength: 5 }),
        fc.nat({ max: 7 }),
        fc.oneof({ weight: 1, arbitrary: fc.constant(1) }, { weight: 1, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) }),
        (compact, ti, count, varints, fill, countSkew, cuts, pad, keep) => {
          const types = compact ? compactTypes : binaryTypes;
          const et = types[ti % types.length]!;
          const isVarint = compact && compactWidth(et) === 0;
          const n = isVarint ? varints.length : count;
          const width = compact ? compactWidth(et) : binaryWidth(et);
          // Element bytes: the varints, or n fixed-width elements; the count announced is sometimes off.
          const elements = isVarint ? Buffer.from(varints.flat()) : Buffer.alloc(n * width, fill);
          const announced = Math.max(0, n + countSkew);
          const header = compact
            ? Buffer.concat([Buffer.from([0x19, 0xf0 | et]), varint(announced)])
            : Buffer.concat([Buffer.from([15, 0, 1, et]), i32(announced)]);
          const msg = compact ? compactCall(Buffer.concat([header, elements, Buffer.from([0, 0])])) : binaryCall(Buffer.concat([header, elements, Buffer.from([0, 0])]));
          const end = Math.max(1, Math.round(msg.length * keep));
          const headerEnd = msg.length - 2 - elements.length;
          const expected = walkList(compact, headerEnd, msg, end, et, announced);
          if ('error' in expected && expected.error === 'unexpected') return; // a byte after the list that is not STOP
          if (headerEnd > end) return; // cut inside the message head or the list header: not what this tests
          expect(skip(msg, end)).toEqual(expected);
          expect(scanInPieces(msg, end, cuts, pad)).toEqual(expected);
          seen[Object.keys(expected)[0] as keyof typeof seen]++;
        },
      ),
      { numRuns: 3000 },
    );
    // Every outcome is reached often: whole lists, lists cut short, varints too long.
    expect(seen.total).toBeGreaterThan(300);
    expect(seen.truncated).toBeGreaterThan(50);
    expect(seen.error).toBeGreaterThan(20);
  });
});
