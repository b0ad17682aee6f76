/**
 * The unit-level properties every codec is fuzzed with, registered by {@link fuzzCodec} from a small per-codec
 * description: generators of valid frames (with what each must decode to), where their length fields are, and how
 * many runs each property gets.
 *
 *  1. arbitrary bytes (optionally behind a valid-looking prefix), in arbitrary chunkings: decode returns or throws a
 *     CodecError; buffering and emitted frames stay within the limit; decoded frames can be driven without anything
 *     but CodecErrors;
 *  2. valid frames mutated (bit flips, byte sets, truncation, inserted/deleted/duplicated runs, length fields set to
 *     extremes): the same;
 *  3. valid frames back to back, split at arbitrary points: exactly the frames of decoding them whole, which are the
 *     frames written (type, id, status, metadata, bytes);
 *  4. decode → encode without an edit returns the bytes received; an id rewritten then restored (as the proxy does
 *     upstream and back) gives the original bytes; a mutation reads back and keeps every other metadata value.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it as vitestIt } from 'vitest';
import type { CodecFactory, Frame, MessageType, RequestId, ResponseStatus } from '../../src/codec.js';
import {
  TIMEOUT,
  Tally,
  applyEdits,
  check,
  chunked,
  cutsArb,
  decodeOne,
  editsArb,
  entriesOf,
  expectedMutation,
  feed,
  hex,
  mutationArb,
  snapshot,
  streamSlots,
  type Side,
  type Slot,
} from './harness.js';

/** One valid frame and what the codec must read from it. */
export interface Sample {
  bytes: Buffer;
  type: MessageType;
  requestId?: RequestId;
  status?: ResponseStatus;
  expectsReply?: boolean;
  /** Entries `metadata.get` must return (lower-case keys). */
  metadata?: Record<string, string>;
  /** Whether a mutation is written into this frame (readable back). */
  mutable: boolean;
  /** False where the codec re-encodes what it received (Redis inline commands): `raw` then differs by design. */
  rawIsInput?: boolean;
}

/** Frames one connection may carry (one side, one variant), generated. */
export interface StreamSpec {
  name: string;
  side: Side;
  sample: fc.Arbitrary<Sample>;
  /** The length fields of one frame of this stream. */
  slots(frame: Buffer): Slot[];
}

export interface Runs {
  bytes: number;
  mutated: number;
  split: number;
  roundTrip: number;
}

export interface CodecFuzzSpec {
  suite: string;
  codec: CodecFactory;
  maxFrameSize: number;
  /** Bytes beyond maxFrameSize a frame or the session's buffer may hold (a header the limit does not count). */
  slack: number;
  /** Metadata keys the codec documents (read when driving decoded frames). */
  keys: string[];
  /**
   * Structured random inputs per side, mixed into the arbitrary bytes (a valid header before a random body, …), so
   * that random bytes reach past the first checks.
   */
  inputs?: Partial<Record<Side, fc.Arbitrary<Buffer>>>;
  streams: StreamSpec[] | (() => Promise<StreamSpec[]>);
  /** Runs per property, for each stream (arbitrary bytes: per side). */
  runs: Runs;
  /** Ids the proxy may write upstream; default 1..2^31-1. */
  newId?: fc.Arbitrary<number>;
  /** Extra `it` blocks (regressions) registered inside the suite. */
  extra?: (tally: Tally) => void;
}

/** `it` with the fuzz timeout. */
function it(name: string, fn: () => void | Promise<void>): void {
  vitestIt(name, fn, TIMEOUT);
}

export function fuzzCodec(spec: CodecFuzzSpec): Tally {
  const tally = new Tally(spec.suite);
  const base = { codec: spec.codec, maxFrameSize: spec.maxFrameSize, slack: spec.slack, tally, keys: spec.keys };
  const newId = spec.newId ?? fc.integer({ min: 1, max: 0x7fff_ffff });
  const idCodec = spec.codec.multiplexing === 'id';

  describe(`fuzz: ${spec.suite}`, () => {
    let streams: StreamSpec[] = [];
    const ready = (async () => {
      streams = typeof spec.streams === 'function' ? await spec.streams() : spec.streams;
    })();
    const withStreams = async (): Promise<StreamSpec[]> => {
      await ready;
      return streams;
    };

    afterAll(() => tally.print());

    for (const side of ['downstream', 'upstream'] as const) {
      it(`arbitrary bytes in arbitrary chunks (${side}): a CodecError or frames, never anything else; bounded buffering`, () => {
        const structured = spec.inputs?.[side];
        const bytesArb: fc.Arbitrary<Uint8Array> = fc.oneof(
          { weight: 2, arbitrary: fc.uint8Array({ maxLength: 4096 }) },
          { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }) },
          ...(structured ? [{ weight: 3, arbitrary: structured as fc.Arbitrary<Uint8Array> }] : []),
        );
        check(tally, `arbitrary bytes (${side})`, spec.runs.bytes, [bytesArb, cutsArb()], (bytes, cuts) => {
          const buf = Buffer.from(bytes);
          feed({ ...base, side, exercise: true }, chunked(buf, cuts), `random ${hex(buf)}`);
        });
      });
    }

    it('mutated valid frames (flips, sets, cuts, inserts, deletes, duplicates, extreme lengths): a CodecError or frames', async () => {
      for (const st of await withStreams()) {
        const arb = fc.tuple(fc.array(st.sample, { minLength: 1, maxLength: 3 }), editsArb(spec.maxFrameSize), cutsArb(4));
        check(tally, `mutated ${st.name}`, spec.runs.mutated, [arb], ([samples, edits, cuts]) => {
          const frames = samples.map((s) => s.bytes);
          const bytes = applyEdits(Buffer.concat(frames), edits, streamSlots(frames, st.slots));
          feed({ ...base, side: st.side, exercise: true }, chunked(bytes, cuts), `${st.name} mutated ${JSON.stringify(edits)} → ${hex(bytes)}`);
        });
      }
    });

    it('valid frames split at arbitrary points and several per chunk: exactly the frames written, as decoded whole', async () => {
      for (const st of await withStreams()) {
        const arb = fc.tuple(fc.array(st.sample, { minLength: 1, maxLength: 5 }), cutsArb(10), fc.boolean());
        check(tally, `split ${st.name}`, spec.runs.split, [arb], ([samples, cuts, bytewise]) => {
          const stream = Buffer.concat(samples.map((s) => s.bytes));
          const where = `${st.name}: ${samples.length} frames, ${hex(stream)}`;
          const whole = feed({ ...base, side: st.side }, [Buffer.from(stream)], where);
          expect(whole.error, where).toBeUndefined();
          expect(whole.buffered, where).toBe(0);
          expect(whole.frames, where).toHaveLength(samples.length);
          whole.frames.forEach((f, i) => expectSample(f, samples[i]!, `${where}, frame ${i}`));
          const reference = whole.frames.map((f) => snapshot(f));
          const chunks = bytewise && stream.length <= 600 ? [...stream].map((b) => Buffer.from([b])) : chunked(stream, cuts);
          const split = feed({ ...base, side: st.side }, chunks, `${where} in ${chunks.length} chunks`);
          expect(split.error, where).toBeUndefined();
          expect(split.buffered, where).toBe(0);
          const got = split.frames.map((f) => snapshot(f));
          if (got.join('\n') !== reference.join('\n')) expect(got, `${where}: split at ${chunks.map((c) => c.length).join('+')}`).toEqual(reference);
        });
      }
    });

    it('decode → encode: unchanged bytes without an edit; id rewritten and restored gives the original; mutations keep the rest', async () => {
      for (const st of await withStreams()) {
        const arb = fc.tuple(st.sample, newId, mutationArb, fc.boolean());
        check(tally, `round trip ${st.name}`, spec.runs.roundTrip, [arb], ([sample, id, mutation, withId]) => {
          const where = `${st.name}: ${hex(sample.bytes)}`;
          const original = Buffer.from(sample.bytes);
          const s = spec.codec.create({ maxFrameSize: spec.maxFrameSize, side: st.side });
          const f = decodeOne(spec.codec, st.side, original, spec.maxFrameSize, where);
          // No edit: the frame's own bytes, which are the bytes received.
          expect(s.encode(f) === f.raw, where).toBe(true);
          expect(s.encode(f, {}) === f.raw, where).toBe(true);
          if (sample.rawIsInput !== false) expect(f.raw.equals(original), where).toBe(true);
          const received = Buffer.from(f.raw);
          const copy = s.encode(f, { copy: true });
          expect(copy !== f.raw && copy.equals(received), `${where}: copy`).toBe(true);
          const before = snapshot(f, { raw: false, requestId: false });

          if (idCodec) {
            // Upstream with the proxy's id, back downstream with the client's: the bytes the client sent.
            const up = s.encode(f, { requestId: id, copy: true });
            expect(f.raw.equals(received), `${where}: copy leaves raw alone`).toBe(true);
            const upFrame = decodeOne(spec.codec, st.side, up, spec.maxFrameSize, `${where} → id ${id}`);
            expect(Number(upFrame.requestId), `${where} → id ${id}`).toBe(id);
            expect(snapshot(upFrame, { raw: false, requestId: false }), `${where} → id ${id}`).toBe(before);
            const back = spec.codec.create({ maxFrameSize: spec.maxFrameSize, side: st.side }).encode(upFrame, { requestId: f.requestId });
            expect(hex(back, 1 << 20), `${where}: id ${id} restored to ${String(f.requestId)}`).toBe(hex(received, 1 << 20));
            // And in place, as the proxy does on the hot path.
            const inPlace = s.encode(f, { requestId: id });
            expect(Number(decodeOne(spec.codec, st.side, inPlace, spec.maxFrameSize, where).requestId), where).toBe(id);
            expect(s.encode(f, { requestId: f.requestId }).equals(received), `${where}: restored in place`).toBe(true);
          }

          const edited = s.encode(f, { mutation, copy: true, ...(withId && idCodec ? { requestId: id } : {}) });
          expect(f.raw.equals(received), `${where}: a copied mutation leaves raw alone`).toBe(true);
          const m = decodeOne(spec.codec, st.side, edited, spec.maxFrameSize + 1024, `${where} + ${JSON.stringify(mutation)}`);
          expect(m.type, where).toBe(f.type);
          expect(m.status, where).toBe(f.status);
          expect(m.expectsReply, where).toBe(f.expectsReply);
          if (idCodec) expect(m.requestId, where).toStrictEqual(withId ? id : f.requestId);
          const after = entriesOf(m);
          const want = expectedMutation(mutation);
          if (sample.mutable) {
            for (const [k, v] of want) expect(m.metadata.get(k), `${where}: mutated ${k}`).toBe(v);
            for (const [k, v] of Object.entries(entriesOf(f))) {
              if (!want.has(k)) expect(after[k], `${where}: untouched ${k}`).toBe(v);
            }
          } else {
            expect(after, `${where}: a frame without headers is unchanged by a mutation`).toEqual(entriesOf(f));
          }
        });
      }
    });

    spec.extra?.(tally);
  });
  return tally;
}

/** The frame reads as the sample says. */
export function expectSample(f: Frame, s: Sample, where: string): void {
  expect(f.type, where).toBe(s.type);
  if (s.rawIsInput !== false) expect(f.raw.equals(s.bytes), `${where}: raw is the bytes written`).toBe(true);
  if (s.requestId !== undefined) expect(f.requestId, where).toStrictEqual(s.requestId);
  if (s.status !== undefined) expect(f.status, where).toBe(s.status);
  if (f.type === 'request' || f.type === 'oneway') expect(f.status, where).toBeUndefined();
  if (s.expectsReply !== undefined) expect(f.expectsReply === true, where).toBe(s.expectsReply);
  for (const [k, v] of Object.entries(s.metadata ?? {})) expect(f.metadata.get(k), `${where}: metadata ${k}`).toBe(v);
}
