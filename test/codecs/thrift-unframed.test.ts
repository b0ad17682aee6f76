/**
 * Unframed Thrift carries no length: the codec walks the message struct to find its end. It keeps its place
 * between chunks (codecs/thrift/unframed.ts) instead of walking from the start on every chunk, which cost O(n²)
 * for a large message fed a field at a time. These tests hold the resumable scanner to the one-shot skippers of
 * wire.ts (same end, same refusal, same `needAt` at every cut) and bound the work it does, counted in steps.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CodecError, type CodecSession, type Frame } from '../../src/codec.js';
import { thriftCodec } from '../../codecs/thrift/index.js';
import { NEED_MORE, UnframedScanner } from '../../codecs/thrift/unframed.js';
import { ScanError, Scanner, TRUNCATED, readHead, skipBinaryStruct, skipCompactStruct } from '../../codecs/thrift/wire.js';
import { MessageType, encodeMessage, structArb, type Proto } from '../fuzz/thrift-writer.js';

type Outcome = { total: number } | { needAt: number } | { error: string };

/** What the one-shot skippers say about `buf[0, end)`. */
function oneShot(buf: Buffer, end: number): Outcome {
  const s = new Scanner().reset(buf, 0, end);
  try {
    if (readHead(s).compact) skipCompactStruct(s);
    else skipBinaryStruct(s);
    return { total: s.pos };
  } catch (err) {
    if (err === TRUNCATED) return { needAt: s.needAt };
    if (err instanceof ScanError) return { error: err.message };
    throw err;
  }
}

/**
 * Feeds the resumable scanner `buf` cut at `cuts`, each prefix copied into a fresh buffer at an offset (the codec
 * moves the bytes it gathers), and checks it agrees with the one-shot skippers at every cut. Returns the last
 * outcome.
 */
function agreeAtEveryCut(buf: Buffer, cuts: number[], pad: number): Outcome {
  const scanner = new UnframedScanner();
  let last: Outcome = { needAt: 0 };
  for (const cut of [...cuts, buf.length]) {
    const moved = Buffer.alloc(pad + cut);
    buf.copy(moved, pad, 0, cut);
    let got: Outcome;
    try {
      const total = scanner.scan(moved, pad, pad + cut);
      got = total === NEED_MORE ? { needAt: scanner.needAt } : { total };
    } catch (err) {
      if (!(err instanceof ScanError)) throw err;
      got = { error: err.message };
    }
    expect(got).toEqual(oneShot(buf, cut));
    last = got;
    if (!('needAt' in last)) break;
  }
  return last;
}

const PROTOS: Proto[] = ['binary', 'lax', 'compact'];

const messageArb = (proto: Proto) =>
  fc
    .record({
      name: fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_:]{0,15}$/),
      type: fc.constantFrom(MessageType.CALL, MessageType.ONEWAY, MessageType.REPLY, MessageType.EXCEPTION),
      seqid: fc.integer(),
      body: structArb,
    })
    .map((m) => encodeMessage(proto, m));

/** Sorted cut points inside `[0, length]`. */
const cutsArb = (length: number) => fc.uniqueArray(fc.nat({ max: length }), { maxLength: 12 }).map((c) => c.sort((a, b) => a - b));

describe('unframed thrift: the resumable scanner agrees with a one-shot scan', () => {
  for (const proto of PROTOS) {
    it(`${proto}: random messages cut into random chunks end where a one-shot scan ends`, () => {
      fc.assert(
        fc.property(
          messageArb(proto).chain((msg) => fc.tuple(fc.constant(msg), cutsArb(msg.length), fc.nat({ max: 7 }))),
          ([msg, cuts, pad]) => {
            expect(agreeAtEveryCut(msg, cuts, pad)).toEqual({ total: msg.length });
          },
        ),
        { numRuns: 300 },
      );
    });

    it(`${proto}: damaged messages are refused (or awaited) alike, at every cut`, () => {
      const damaged = messageArb(proto).chain((msg) =>
        fc.tuple(
          fc.constant(msg),
          fc.array(fc.tuple(fc.nat({ max: msg.length - 1 }), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }),
          fc.nat({ max: msg.length }),
        ),
      );
      fc.assert(
        fc.property(
          damaged.chain(([msg, edits, keep]) => {
            const bad = Buffer.from(msg.subarray(0, Math.max(keep, 1)));
            for (const [at, b] of edits) if (at < bad.length) bad[at] = b;
            return fc.tuple(fc.constant(bad), cutsArb(bad.length), fc.nat({ max: 7 }));
          }),
          ([bad, cuts, pad]) => {
            agreeAtEveryCut(bad, cuts, pad);
          },
        ),
        { numRuns: 500 },
      );
    });
  }

  /** A nesting of `kinds` around one string, as the argument struct of a binary or compact CALL. */
  function nested(compact: boolean, kinds: Array<'struct' | 'list' | 'map'>): Buffer {
    const ct: Record<string, number> = { struct: 12, list: 9, map: 11, string: 8 };
    const bt: Record<string, number> = { struct: 12, list: 15, map: 13, string: 11 };
    const str = compact ? Buffer.from([1, 0x61]) : Buffer.from([0, 0, 0, 1, 0x61]);
    let inner = str;
    let innerKind = 'string';
    for (const kind of [...kinds].reverse()) {
      if (kind === 'struct') {
        const header = compact ? Buffer.from([0x10 | ct[innerKind]!]) : Buffer.from([bt[innerKind]!, 0, 1]);
        inner = Buffer.concat([header, inner, Buffer.from([0])]);
      } else if (kind === 'list') {
        const header = compact ? Buffer.from([0x10 | ct[innerKind]!]) : Buffer.from([bt[innerKind]!, 0, 0, 0, 1]);
        inner = Buffer.concat([header, inner]);
      } else {
        // One pair: a string key, the nested value.
        const header = compact
          ? Buffer.from([1, (ct.string! << 4) | ct[innerKind]!])
          : Buffer.from([bt.string!, bt[innerKind]!, 0, 0, 0, 1]);
        inner = Buffer.concat([header, str, inner]);
      }
      innerKind = kind;
    }
    const field = compact ? Buffer.from([0x10 | ct[innerKind]!]) : Buffer.from([bt[innerKind]!, 0, 1]);
    const body = Buffer.concat([field, inner, Buffer.from([0])]);
    return encodeRaw(compact, body);
  }

  it('nesting around the depth limit is accepted or refused alike (binary and compact)', () => {
    const kind = fc.constantFrom<'struct' | 'list' | 'map'>('struct', 'list', 'map');
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.array(kind, { minLength: 55, maxLength: 70 }),
        fc.nat({ max: 7 }),
        (compact, kinds, pad) => {
          const msg = nested(compact, kinds);
          const cuts = Array.from({ length: 10 }, (_, i) => Math.floor((msg.length * i) / 10));
          const out = agreeAtEveryCut(msg, cuts, pad);
          expect('total' in out || ('error' in out && /nesting deeper than 64/.test(out.error))).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
    // Both sides of the limit are reached.
    expect(oneShot(nested(false, Array(62).fill('struct')), Infinity)).toHaveProperty('total');
    expect(oneShot(nested(false, Array(64).fill('struct')), Infinity)).toEqual({ error: 'struct nesting deeper than 64' });
    expect(agreeAtEveryCut(nested(true, Array(64).fill('list')), [3, 40, 60], 1)).toEqual({ error: 'container nesting deeper than 64' });
  });
});

function encodeRaw(compact: boolean, body: Buffer): Buffer {
  const head = compact
    ? Buffer.from([0x82, (MessageType.CALL << 5) | 1, 7, 1, 0x6d])
    : Buffer.from([0x80, 0x01, 0x00, MessageType.CALL, 0, 0, 0, 1, 0x6d, 0, 0, 0, 7]);
  return Buffer.concat([head, body]);
}

// ---------------------------------------------------------------------------------------------------------------
// Through the codec session

function session(maxFrameSize = 64 << 20): CodecSession & { readonly unframedWork: number } {
  return thriftCodec.create({ maxFrameSize, side: 'downstream' }) as CodecSession & { readonly unframedWork: number };
}

function feed(s: CodecSession, chunks: Buffer[]): Frame[] {
  const frames: Frame[] = [];
  for (const c of chunks) s.decode(c, (f) => frames.push(f));
  return frames;
}

describe('unframed thrift through the codec', () => {
  for (const proto of PROTOS) {
    it(`${proto}: back-to-back messages cut anywhere come out whole, each once`, () => {
      fc.assert(
        fc.property(
          fc.array(messageArb(proto), { minLength: 1, maxLength: 4 }).chain((msgs) => {
            const all = Buffer.concat(msgs);
            return fc.tuple(fc.constant(msgs), fc.constant(all), cutsArb(all.length));
          }),
          ([msgs, all, cuts]) => {
            const bounds = [0, ...cuts, all.length];
            const chunks = bounds.slice(1).map((b, i) => all.subarray(bounds[i]!, b)).filter((c) => c.length > 0);
            const frames = feed(session(), chunks);
            expect(frames.map((f) => Buffer.from(f.raw).toString('hex'))).toEqual(msgs.map((m) => m.toString('hex')));
          },
        ),
        { numRuns: 200 },
      );
    });
  }

  it('a message that grows past the limit a field at a time is frame_too_large, and counts only bytes received', () => {
    const s = session(4096);
    const head = encodeRaw(false, Buffer.alloc(0));
    const field = Buffer.from([8, 0, 1, 0, 0, 0, 1]);
    s.decode(head, () => {});
    let err: unknown;
    let sent = head.length;
    try {
      for (let i = 0; i < 1000; i++) {
        s.decode(field, () => {});
        sent += field.length;
      }
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CodecError);
    expect((err as CodecError).reason).toBe('frame_too_large');
    // Refused with the first chunk that takes it over the limit.
    expect(sent).toBeLessThanOrEqual(4096);
    expect(sent + field.length).toBeGreaterThan(4096);
  });
});

describe('unframed thrift: the work to find a message end is linear in the bytes received', () => {
  /**
   * The attack: a large unfinished struct, then one small field per chunk. Walking from the start on each chunk
   * costs (chunks × size); keeping the place costs O(size + chunks).
   */
  function grow(head: Buffer, field: Buffer, bulkFields: number, chunks: number, close: Buffer): void {
    const s = session();
    const bulk = Buffer.concat([head, Buffer.concat(Array(bulkFields).fill(field))]);
    const frames: Frame[] = [];
    s.decode(bulk, (f) => frames.push(f));
    let total = bulk.length;
    for (let i = 0; i < chunks; i++) {
      s.decode(field, (f) => frames.push(f));
      total += field.length;
    }
    expect(frames).toHaveLength(0);
    s.decode(close, (f) => frames.push(f));
    total += close.length;
    expect(frames.map((f) => f.raw.length)).toEqual([total]);
    expect(s.unframedWork).toBeLessThan(3 * total);
    // A rescan per chunk would have taken more than (chunks × bulk) steps: far above the bound.
    expect(chunks * bulk.length).toBeGreaterThan(100 * 3 * total);
  }

  it('strict binary: 1 MiB of i32 fields, then 30000 chunks of one 7-byte field', () => {
    grow(encodeRaw(false, Buffer.alloc(0)), Buffer.from([8, 0, 1, 0, 0, 0, 1]), 150_000, 30_000, Buffer.from([0]));
  });

  it('lax binary: the same, without version word', () => {
    const head = Buffer.from([0, 0, 0, 1, 0x6d, MessageType.CALL, 0, 0, 0, 7]);
    grow(head, Buffer.from([8, 0, 1, 0, 0, 0, 1]), 150_000, 30_000, Buffer.from([0]));
  });

  it('compact: 800 KiB of i32 fields, then 50000 chunks of one 2-byte field', () => {
    // 450,000 fields in all: under the limit of values walked per message (wire.ts MAX_VALUES).
    grow(encodeRaw(true, Buffer.alloc(0)), Buffer.from([0x15, 0x02]), 400_000, 50_000, Buffer.from([0]));
  });

  it('binary: a list of structs nested 20 deep grows an element per chunk', () => {
    // 20 nested structs (field 1 each), then field 1: list<struct> of 240000 elements { 1: i32 }, fed one by one
    // (480,021 values walked: under MAX_VALUES).
    const count = Buffer.alloc(4);
    count.writeInt32BE(240_000);
    const open = Buffer.concat([...Array(20).fill(Buffer.from([12, 0, 1])), Buffer.from([15, 0, 1, 12]), count]);
    const element = Buffer.from([8, 0, 1, 0, 0, 0, 9, 0]);
    const s = session();
    const frames: Frame[] = [];
    let total = 0;
    const send = (b: Buffer) => {
      s.decode(b, (f) => frames.push(f));
      total += b.length;
    };
    send(Buffer.concat([encodeRaw(false, Buffer.alloc(0)), open, Buffer.concat(Array(80_000).fill(element))]));
    for (let i = 0; i < 160_000; i++) send(element);
    expect(frames).toHaveLength(0);
    send(Buffer.alloc(21)); // STOP of the outer 20 structs, and of the arguments
    expect(frames.map((f) => f.raw.length)).toEqual([total]);
    expect(s.unframedWork).toBeLessThan(3 * total);
  });

  for (const proto of PROTOS) {
    it(`${proto}: random messages fed one byte at a time take a bounded number of steps per byte`, () => {
      fc.assert(
        fc.property(messageArb(proto), (msg) => {
          const s = session();
          const chunks = Array.from(msg, (b) => Buffer.from([b]));
          expect(feed(s, chunks).map((f) => f.raw.length)).toEqual([msg.length]);
          expect(s.unframedWork).toBeLessThanOrEqual(3 * msg.length);
        }),
        { numRuns: 200 },
      );
    });
  }
});
