/**
 * Shared machinery of the property-based codec fuzz suites (fast-check): feeding bytes to a session in arbitrary
 * chunkings and checking what the data plane relies on (only CodecErrors, bounded buffering, frames no larger than
 * the limit), byte-level mutations of valid frames, frame snapshots for comparing decodings, and the per-suite tally
 * printed as one `[fuzz] <suite>: …` line at the end.
 *
 * Runs are random each time (fast-check's own seed); a failure names its seed and shrink path. To replay one, or to
 * hunt longer:
 *
 *     FUZZ_SEED=<seed> FUZZ_PATH=<path> npx vitest run test/fuzz/dubbo.test.ts
 *     FUZZ_SCALE=20 npx vitest run test/fuzz          # 20× the runs of every property
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import { CodecError, toCodecError, type CodecFactory, type CodecSession, type Frame, type KeyValue } from '../../src/codec.js';

export type Side = 'downstream' | 'upstream';

export const SCALE = Number(process.env.FUZZ_SCALE) > 0 ? Number(process.env.FUZZ_SCALE) : 1;
/** Per-test timeout: generous for a loaded 2-core machine, and scaled with the runs. */
export const TIMEOUT = 60_000 * Math.max(1, SCALE);

/** fast-check parameters: `numRuns` (scaled by FUZZ_SCALE), and a replayed seed/path when FUZZ_SEED is set. */
export function params<T>(numRuns: number): fc.Parameters<T> {
  const seed = process.env.FUZZ_SEED;
  return {
    numRuns: Math.max(1, Math.round(numRuns * SCALE)),
    ...(seed !== undefined && seed !== '' ? { seed: Number(seed), ...(process.env.FUZZ_PATH ? { path: process.env.FUZZ_PATH } : {}) } : {}),
  };
}

/** Checks `property`; records how many cases ran in `tally` (fast-check's error names the seed and path). */
export function check<Ts extends [unknown, ...unknown[]]>(
  tally: Tally,
  label: string,
  numRuns: number,
  arbs: { [K in keyof Ts]: fc.Arbitrary<Ts[K]> },
  predicate: (...args: Ts) => void,
): void {
  const p = params<Ts>(numRuns);
  let runs = 0;
  fc.assert(
    fc.property(...arbs, (...args: Ts) => {
      runs++;
      predicate(...args);
    }),
    p,
  );
  tally.cases(label, runs);
}

// ---- tally ------------------------------------------------------------------------------------------------------

/** What one suite did: cases per property, frames decoded, inputs refused by reason. Printed once, at the end. */
export class Tally {
  private readonly perProperty = new Map<string, number>();
  frames = 0;
  refused = 0;
  private readonly reasons = new Map<string, number>();

  constructor(readonly suite: string) {}

  cases(label: string, n: number): void {
    this.perProperty.set(label, (this.perProperty.get(label) ?? 0) + n);
  }

  refusedWith(reason: string): void {
    this.refused++;
    this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
  }

  get total(): number {
    let n = 0;
    for (const v of this.perProperty.values()) n += v;
    return n;
  }

  line(): string {
    const props = [...this.perProperty].map(([k, v]) => `${k} ${v}`).join(', ');
    const reasons = [...this.reasons].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
    return (
      `[fuzz] ${this.suite}: ${this.total} cases (${props}); ${this.frames} frames decoded; ` +
      `${this.refused} inputs refused with a CodecError${reasons ? ` (${reasons})` : ''}; 0 unexpected errors`
    );
  }

  print(): void {
    process.stdout.write(`${this.line()}\n`);
  }
}

// ---- feeding bytes ------------------------------------------------------------------------------------------------

export interface FeedOptions {
  codec: CodecFactory;
  side: Side;
  maxFrameSize: number;
  /** Bytes a session may hold beyond maxFrameSize (the fixed header the limit does not count). */
  slack: number;
  tally: Tally;
  /** Also drive each frame the way the data plane may (metadata, encode, replies): only CodecErrors allowed. */
  exercise?: boolean;
  /** The metadata keys to read when exercising. */
  keys?: readonly string[];
}

export interface FeedResult {
  frames: Frame[];
  error: CodecError | undefined;
  /** What the session still held after the last chunk (undefined after an error). */
  buffered: number | undefined;
}

/** Fails a property with the whole story of a non-CodecError. */
export function unexpected(err: unknown, where: string): Error {
  const e = err as Error;
  return new Error(`${where}: threw ${e?.name ?? typeof err} (not a CodecError, classified unexpected): ${e?.message}\n${e?.stack ?? ''}`);
}

/** `bytes` cut at `cuts` (sorted, deduplicated offsets in (0, length)); each chunk a fresh copy the session owns. */
export function chunked(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % (bytes.length + 1))))]
    .filter((c) => c > 0 && c < bytes.length)
    .sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    out.push(Buffer.from(bytes.subarray(at, p)));
    at = p;
  }
  out.push(Buffer.from(bytes.subarray(at)));
  return out;
}

/** Arbitrary chunkings: up to `max` raw cut values (taken modulo the length + 1 by {@link chunked}). */
export const cutsArb = (max = 8): fc.Arbitrary<number[]> => fc.array(fc.nat({ max: 0xffff }), { maxLength: max });

/**
 * Decodes `chunks` with a fresh session. The decoder must return or throw a CodecError (anything else fails with
 * `where`); after every chunk it must hold at most `maxFrameSize + slack` bytes; every frame it emits must be at
 * most that big. Errors are counted in the tally.
 */
export function feed(o: FeedOptions, chunks: readonly Buffer[], where: string, session?: CodecSession): FeedResult {
  const s = session ?? o.codec.create({ maxFrameSize: o.maxFrameSize, side: o.side });
  const frames: Frame[] = [];
  const limit = o.maxFrameSize + o.slack;
  const sink = (f: Frame): void => {
    if (f.raw.length > limit) throw new Error(`${where}: a frame of ${f.raw.length} bytes was emitted, over the limit ${o.maxFrameSize} (+${o.slack})`);
    frames.push(f);
    o.tally.frames++;
  };
  for (const chunk of chunks) {
    try {
      s.decode(chunk, sink);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith(`${where}: a frame of`)) throw err;
      const { error, unexpected: bug } = toCodecError(err);
      if (bug) throw unexpected(err, `${where} (decode)`);
      if (!/^[a-z0-9_]+$/.test(error.reason)) throw new Error(`${where}: CodecError reason "${error.reason}" is not a short snake_case word`);
      if (error.message.length === 0) throw new Error(`${where}: CodecError ${error.reason} without a message`);
      o.tally.refusedWith(error.reason);
      if (o.exercise) for (const f of frames) exercise(s, f, o.keys ?? [], where);
      return { frames, error, buffered: undefined };
    }
    const held = s.buffered;
    if (!(held >= 0 && held <= limit)) {
      throw new Error(`${where}: the session holds ${held} bytes after a chunk, over maxFrameSize ${o.maxFrameSize} + ${o.slack}`);
    }
  }
  if (o.exercise) for (const f of frames) exercise(s, f, o.keys ?? [], where);
  return { frames, error: undefined, buffered: s.buffered };
}

/**
 * What the data plane may do with a decoded frame, in an order that reads metadata before and after encoding:
 * each step may fail only with a CodecError (the proxy closes that connection).
 */
export function exercise(s: CodecSession, f: Frame, keys: readonly string[], where: string): void {
  void [f.type, f.requestId, f.status, f.expectsReply, f.upstreamKey, f.raw.length];
  const steps: Array<[string, () => unknown]> = [
    ['metadata.get', () => keys.map((k) => f.metadata.get(k))],
    ['metadata.entries', () => [...f.metadata.entries()]],
    ['encode copy+mutation', () => s.encode(f, { copy: true, mutation: [{ key: 'x-fuzz', value: 'v' }], requestId: 9 })],
    ['localReply', () => (f.type === 'request' || f.type === 'oneway' ? s.localReply(f, { kind: 'no_route', message: 'fuzz' }) : undefined)],
    ['heartbeatReply', () => s.heartbeatReply(f)],
    ['encode requestId', () => s.encode(f, { requestId: 11 })],
    ['metadata.entries again', () => [...f.metadata.entries()]],
  ];
  for (const [name, step] of steps) {
    try {
      step();
    } catch (err) {
      if (!(err instanceof CodecError)) throw unexpected(err, `${where} (${name} on a decoded ${f.type})`);
    }
  }
}

// ---- snapshots ------------------------------------------------------------------------------------------------------

/** Everything the data plane reads from a frame, as a string (for comparing decodings). */
export function snapshot(f: Frame, opts: { raw?: boolean; requestId?: boolean } = {}): string {
  return JSON.stringify({
    type: f.type,
    ...(opts.requestId === false ? {} : { requestId: `${typeof f.requestId}:${String(f.requestId)}` }),
    status: f.status ?? null,
    expectsReply: f.expectsReply ?? null,
    upstreamKey: f.upstreamKey ?? null,
    metadata: entriesOf(f),
    ...(opts.raw === false ? {} : { raw: f.raw.toString('hex') }),
  });
}

export function entriesOf(f: Frame): Record<string, string> {
  return Object.fromEntries([...f.metadata.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

export function hex(b: Buffer, max = 64): string {
  return b.length <= max ? b.toString('hex') : `${b.toString('hex', 0, max)}…(${b.length} bytes)`;
}

// ---- mutations of valid frames --------------------------------------------------------------------------------------

/** A length (or count) field of a frame: binary big-endian of `width` bytes, or decimal text in [at, end). */
export type Slot = { at: number; width: 1 | 2 | 4 | 8 } | { at: number; end: number; text: true };

export type Edit =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'set'; at: number; value: number }
  | { op: 'truncate'; at: number }
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; n: number }
  | { op: 'duplicate'; at: number; n: number }
  | { op: 'extreme'; slot: number; value: number };

/** Values a length field is set to: empty, tiny, sign boundaries, type maxima, and around the session limit. */
export function extremeValues(max: number): number[] {
  return [0, 1, -1, -2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x10000, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 2 ** 53 - 1, max - 1, max, max + 1];
}

export function editArb(max: number): fc.Arbitrary<Edit> {
  const at = fc.nat({ max: 0xffff });
  return fc.oneof(
    fc.record({ op: fc.constant('flip' as const), at, bit: fc.nat({ max: 7 }) }),
    fc.record({ op: fc.constant('set' as const), at, value: fc.oneof(fc.constantFrom(0x00, 0x7f, 0x80, 0xff), fc.nat({ max: 255 })) }),
    fc.record({ op: fc.constant('truncate' as const), at }),
    fc.record({ op: fc.constant('insert' as const), at, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    fc.record({ op: fc.constant('delete' as const), at, n: fc.integer({ min: 1, max: 16 }) }),
    fc.record({ op: fc.constant('duplicate' as const), at, n: fc.integer({ min: 1, max: 32 }) }),
    fc.record({ op: fc.constant('extreme' as const), slot: fc.nat({ max: 0xffff }), value: fc.constantFrom(...extremeValues(max)) }),
  );
}

/** 1-4 edits. */
export const editsArb = (max: number): fc.Arbitrary<Edit[]> => fc.array(editArb(max), { minLength: 1, maxLength: 4 });

/** Applies `edits` to a copy of `base`; `slots` are its length fields (consulted before any edit moves bytes). */
export function applyEdits(base: Buffer, edits: readonly Edit[], slots: readonly Slot[]): Buffer {
  let b: Buffer = Buffer.from(base);
  // Length fields first, while their offsets still hold.
  for (const e of edits) {
    if (e.op !== 'extreme' || slots.length === 0) continue;
    b = writeSlot(b, slots[e.slot % slots.length]!, e.value);
  }
  for (const e of edits) {
    if (b.length === 0) break;
    const at = 'at' in e ? e.at % b.length : 0;
    switch (e.op) {
      case 'flip':
        b[at] = b[at]! ^ (1 << e.bit);
        break;
      case 'set':
        b[at] = e.value;
        break;
      case 'truncate':
        b = b.subarray(0, at);
        break;
      case 'insert':
        b = Buffer.concat([b.subarray(0, at), Buffer.from(e.bytes), b.subarray(at)]);
        break;
      case 'delete':
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + e.n))]);
        break;
      case 'duplicate': {
        const end = Math.min(b.length, at + e.n);
        b = Buffer.concat([b.subarray(0, end), b.subarray(at, end), b.subarray(end)]);
        break;
      }
      case 'extreme':
        break;
    }
  }
  return Buffer.from(b);
}

function writeSlot(b: Buffer, slot: Slot, value: number): Buffer {
  if ('text' in slot) {
    if (slot.end > b.length) return b;
    return Buffer.concat([b.subarray(0, slot.at), Buffer.from(String(value)), b.subarray(slot.end)]);
  }
  if (slot.at + slot.width > b.length) return b;
  const bits = BigInt(slot.width * 8);
  const v = BigInt.asUintN(Number(bits), BigInt(value));
  for (let i = 0; i < slot.width; i++) b[slot.at + i] = Number((v >> BigInt((slot.width - 1 - i) * 8)) & 0xffn);
  return b;
}

/** Slots of frames laid end to end: each frame's slots shifted by where it starts. */
export function streamSlots(frames: readonly Buffer[], slotsOf: (frame: Buffer) => Slot[]): Slot[] {
  const out: Slot[] = [];
  let base = 0;
  for (const f of frames) {
    for (const s of slotsOf(f)) out.push('text' in s ? { at: s.at + base, end: s.end + base, text: true } : { at: s.at + base, width: s.width });
    base += f.length;
  }
  return out;
}

// ---- round-trip checks ----------------------------------------------------------------------------------------------

/** Mutation keys: never a name a codec reads from the frame's own fields instead of its headers. */
export const mutationKeyArb: fc.Arbitrary<string> = fc
  .tuple(fc.constantFrom('x-', 'x-fuzz-', 'trace-', 'lane', 'user-'), fc.stringMatching(/^[a-z0-9][a-z0-9_-]{0,14}$/), fc.boolean())
  .map(([p, s, upper]) => (upper ? `${p}${s}`.toUpperCase() : `${p}${s}`));

export const mutationValueArb: fc.Arbitrary<string> = fc.string({ unit: 'grapheme', maxLength: 40 });

export const mutationArb: fc.Arbitrary<KeyValue[]> = fc.array(fc.record({ key: mutationKeyArb, value: mutationValueArb }), { minLength: 1, maxLength: 4 });

/** The value each key of `mutation` must read back as (the last one wins), by lower-case key. */
export function expectedMutation(mutation: readonly KeyValue[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const kv of mutation) m.set(kv.key.toLowerCase(), kv.value);
  return m;
}

/** Decodes exactly one frame from `bytes` (a fresh copy) with a fresh session. */
export function decodeOne(codec: CodecFactory, side: Side, bytes: Buffer, maxFrameSize: number, where: string): Frame {
  const s = codec.create({ maxFrameSize, side });
  const frames: Frame[] = [];
  try {
    s.decode(Buffer.from(bytes), (f) => frames.push(f));
  } catch (err) {
    throw new Error(`${where}: ${hex(bytes)} does not decode: ${(err as Error).message}`);
  }
  expect(frames, `${where}: one frame from ${hex(bytes)}`).toHaveLength(1);
  expect(s.buffered, where).toBe(0);
  return frames[0]!;
}
