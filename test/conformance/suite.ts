/**
 * The codec conformance suite: what the data plane relies on from every codec, checked generically from a small
 * fixture of sample frames. Run it on a codec with
 *
 *     import { runConformance } from '../conformance/suite.js';
 *     runConformance('my codec', { codec, samples, garbage, oversize, documentedKeys, heartbeats: false });
 *
 * in a `*.test.ts` file (see docs/codecs.md). `fixture` may also be an async function (samples written by a real
 * peer at test time). Everything here uses only the public API (`src/index.ts`, the package's `waypost`).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import {
  CodecError,
  CodecRegistry,
  type CodecFactory,
  type CodecSession,
  type Frame,
  type KeyValue,
  type LocalReply,
  type LocalReplyKind,
  type MessageType,
  type RequestId,
  type ResponseStatus,
} from '../../src/index.js';

/** One frame as a real peer writes it, and what the codec must read from it. */
export interface Sample {
  /** Names the sample in failure messages. */
  name: string;
  /** Exactly one whole frame. The suite never changes it (it works on copies). */
  bytes: Buffer;
  type: MessageType;
  /** Expected `requestId` (compared with `==` semantics across number/bigint: give what the codec returns). */
  requestId?: RequestId;
  status?: ResponseStatus;
  /** Heartbeats: whether the proxy must answer it. */
  expectsReply?: boolean;
  /** Entries `metadata.get` must return (lower-case keys); the frame may have more. */
  metadata?: Record<string, string>;
  /** Whether `encode({mutation})` writes a mutation into this frame (readable back from the result). */
  mutable?: boolean;
  /**
   * Which session decodes it (default `downstream`). Only for codecs whose sessions differ by side (Redis: requests
   * downstream, replies upstream); a local reply or heartbeat answer is read by a session of the other side.
   */
  side?: Side;
}

export type Side = 'downstream' | 'upstream';
/** Garbage for a session of one side (a plain Buffer: downstream). */
export type Garbage = Buffer | { bytes: Buffer; side: Side };

export interface CodecFixture {
  codec: CodecFactory;
  /**
   * Frames of every kind the codec supports (at least a request and a response). The samples of each side are also
   * fed back to back as one connection's stream, in this order: they must all be of the variant one connection speaks.
   */
  samples: Sample[];
  /** Byte strings a fresh session must refuse at once with a CodecError (not wait for more). */
  garbage: Garbage[];
  /** The first bytes — the header alone, fewer than `maxFrameSize` — of a frame larger than `maxFrameSize` (downstream). */
  oversize(maxFrameSize: number): Buffer;
  /** The metadata keys the codec documents (each must appear in some sample); lookups must ignore their case. */
  documentedKeys: string[];
  /** Whether the protocol has heartbeats the proxy answers (then a sample must be one that expects a reply). */
  heartbeats: boolean;
  /** The session limit used throughout (default 1 MiB). */
  maxFrameSize?: number;
  /** Random byte mutations of valid frames to decode (default 400), and the PRNG seed. */
  fuzzRounds?: number;
  seed?: number;
}

const KINDS: readonly LocalReplyKind[] = [
  'no_route',
  'no_healthy_upstream',
  'upstream_reset',
  'timeout',
  'over_limit',
  'fault_abort',
  'bad_response',
  'permission_denied',
  'bad_request',
  'internal_error',
];

/** Upstream ids the proxy may assign (it keeps them in 1..2^31-1), chosen to change varint widths. */
const NEW_IDS = [1, 300, 70_000, 0x7fff_ffff];

/** Registers the conformance tests for one codec under `describe(name)`. */
export function runConformance(name: string, fixtureOrLoader: CodecFixture | (() => CodecFixture | Promise<CodecFixture>)): void {
  describe(`codec conformance: ${name}`, () => {
    let fx: CodecFixture;
    let max: number;
    /** Per side: its samples back to back, and what decoding them in one chunk gives. */
    let streams: Array<{ side: Side; samples: Sample[]; stream: Buffer; reference: string[] }>;

    beforeAll(async () => {
      fx = typeof fixtureOrLoader === 'function' ? await fixtureOrLoader() : fixtureOrLoader;
      max = fx.maxFrameSize ?? 1 << 20;
      streams = [];
      for (const side of ['downstream', 'upstream'] as const) {
        const samples = fx.samples.filter((sm) => sideOf(sm) === side);
        if (samples.length === 0) continue;
        const stream = Buffer.concat(samples.map((sm) => sm.bytes));
        const reference = decodeAll(session(side), [Buffer.from(stream)]).map((f) => snapshot(f));
        streams.push({ side, samples, stream, reference });
      }
    });

    const sideOf = (sm: Sample): Side => sm.side ?? 'downstream';
    const other = (side: Side): Side => (side === 'downstream' ? 'upstream' : 'downstream');
    const session = (side: Side = 'downstream', maxFrameSize = max): CodecSession => fx.codec.create({ maxFrameSize, side });
    /** A fresh copy of `bytes` decoded on its own: exactly one frame. */
    const one = (bytes: Buffer, s: CodecSession = session()): Frame => {
      const frames = decodeAll(s, [Buffer.from(bytes)]);
      expect(frames, 'one frame').toHaveLength(1);
      return frames[0]!;
    };
    /** A sample decoded on its own side; `s` (when given) is a session of that side. */
    const decoded = (sm: Sample, bytes: Buffer = sm.bytes, s: CodecSession = session(sideOf(sm))): Frame => one(bytes, s);

    it('factory: a name, a port-name-safe protocol, a multiplexing mode; registers; sessions start empty', () => {
      const c = fx.codec;
      expect(typeof c.name).toBe('string');
      expect(c.name.length).toBeGreaterThan(0);
      expect(c.protocol).toMatch(/^[a-z0-9]+$/); // tcp-metaprotocol-<protocol>: no '-' either
      expect(['id', 'fifo']).toContain(c.multiplexing);
      const registry = new CodecRegistry();
      registry.register(c);
      expect(registry.get(c.name)).toBe(c);
      expect(registry.forProtocol(c.protocol)).toBe(c);
      for (const side of ['downstream', 'upstream'] as const) expect(c.create({ maxFrameSize: max, side }).buffered).toBe(0);
    });

    it('fixture: covers a request and a response, every documented key, and heartbeats as declared', () => {
      const types = new Set(fx.samples.map((s) => s.type));
      expect(types.has('request'), 'a request sample').toBe(true);
      expect(types.has('response'), 'a response sample').toBe(true);
      expect(fx.garbage.length).toBeGreaterThan(0);
      for (const key of fx.documentedKeys) {
        expect(key, 'documented keys are lower-case').toBe(key.toLowerCase());
        expect(
          fx.samples.some((sm) => decoded(sm).metadata.get(key) !== undefined),
          `some sample carries documented key "${key}"`,
        ).toBe(true);
      }
      const answerable = fx.samples.filter((s) => s.type === 'heartbeat' && s.expectsReply === true);
      if (fx.heartbeats) expect(answerable.length, 'a heartbeat sample that expects a reply').toBeGreaterThan(0);
      else expect(types.has('heartbeat'), 'heartbeat samples for a protocol without heartbeats').toBe(false);
    });

    it('decodes each sample alone as the fixture says, raw equal to the bytes, nothing left buffered', () => {
      for (const sm of fx.samples) {
        const s = session(sideOf(sm));
        const f = decoded(sm, sm.bytes, s);
        expect(s.buffered, sm.name).toBe(0);
        expect(f.type, sm.name).toBe(sm.type);
        expect(f.raw.equals(sm.bytes), sm.name).toBe(true);
        if (sm.requestId !== undefined) expect(f.requestId, sm.name).toBe(sm.requestId);
        if (sm.status !== undefined || f.type === 'response') expect(f.status, sm.name).toBe(sm.status);
        if (f.type === 'request' || f.type === 'oneway') expect(f.status, sm.name).toBeUndefined();
        if (sm.expectsReply !== undefined) expect(f.expectsReply === true, sm.name).toBe(sm.expectsReply);
        for (const [k, v] of Object.entries(sm.metadata ?? {})) expect(f.metadata.get(k), `${sm.name}: ${k}`).toBe(v);
      }
    });

    it('gives identical frames when the stream is split at every byte boundary', () => {
      for (const { side, samples, stream, reference } of streams) {
        expect(reference, side).toHaveLength(samples.length);
        for (let i = 1; i < stream.length; i++) {
          const s = session(side);
          const frames: Frame[] = [];
          const copy = Buffer.from(stream);
          s.decode(copy.subarray(0, i), (f) => frames.push(f));
          const consumed = frames.reduce((n, f) => n + f.raw.length, 0);
          expect(s.buffered, `buffered after the first ${i} bytes`).toBe(i - consumed);
          s.decode(copy.subarray(i), (f) => frames.push(f));
          expect(s.buffered, `split at ${i}`).toBe(0);
          const got = frames.map((f) => snapshot(f));
          if (got.join('\n') !== reference.join('\n')) expect(got, `${side}: split at ${i}`).toEqual(reference);
        }
      }
    });

    it('gives identical frames fed one byte at a time and in three pieces', () => {
      for (const { side, stream, reference } of streams) {
        const s = session(side);
        const bytes = Buffer.from(stream);
        const frames: Frame[] = [];
        for (let i = 0; i < bytes.length; i++) s.decode(bytes.subarray(i, i + 1), (f) => frames.push(f));
        expect(frames.map((f) => snapshot(f))).toEqual(reference);
        const rnd = mulberry32(fx.seed ?? 1);
        for (let round = 0; round < 200; round++) {
          const a = 1 + Math.floor(rnd() * (stream.length - 1));
          const b = a + Math.floor(rnd() * (stream.length - a));
          const copy = Buffer.from(stream);
          const got = decodeAll(session(side), [copy.subarray(0, a), copy.subarray(a, b), copy.subarray(b)]).map((f) => snapshot(f));
          if (got.join('\n') !== reference.join('\n')) expect(got, `${side}: pieces at ${a}/${b}`).toEqual(reference);
        }
      }
    });

    it('emits 100 frames from one chunk in order, as views of that chunk (no copy)', () => {
      for (const { side, samples } of streams) {
        const picks = Array.from({ length: 100 }, (_, i) => samples[i % samples.length]!);
        const chunk = Buffer.concat(picks.map((p) => p.bytes));
        const s = session(side);
        const frames = decodeAll(s, [chunk]);
        expect(frames).toHaveLength(100);
        expect(s.buffered).toBe(0);
        let offset = 0;
        frames.forEach((f, i) => {
          const p = picks[i]!;
          expect(f.type, `frame ${i} (${p.name})`).toBe(p.type);
          if (p.requestId !== undefined) expect(f.requestId, `frame ${i}`).toBe(p.requestId);
          expect(f.raw.buffer === chunk.buffer, `frame ${i} (${p.name}) shares the chunk's memory`).toBe(true);
          expect(f.raw.byteOffset, `frame ${i}`).toBe(chunk.byteOffset + offset);
          expect(f.raw.equals(p.bytes), `frame ${i}`).toBe(true);
          offset += p.bytes.length;
        });
      }
    });

    it('emits nothing for a truncated frame and buffers exactly what it was fed', () => {
      for (const sm of fx.samples) {
        for (const n of prefixLengths(sm.bytes.length)) {
          const s = session(sideOf(sm));
          const frames = decodeAll(s, [Buffer.from(sm.bytes.subarray(0, n))]);
          expect(frames, `${sm.name}: first ${n} of ${sm.bytes.length} bytes`).toHaveLength(0);
          expect(s.buffered, `${sm.name}: first ${n} bytes`).toBe(n);
        }
      }
    });

    it('refuses garbage with a CodecError and a reason, at once; frames before it are still emitted', () => {
      for (const item of fx.garbage) {
        const [g, side] = Buffer.isBuffer(item) ? [item, 'downstream' as const] : [item.bytes, item.side];
        const err = codecError(() => session(side).decode(Buffer.from(g), () => undefined), `garbage ${hex(g)}`);
        expect(err.reason, `garbage ${hex(g)}`).toMatch(/^[a-z0-9_]+$/);
        expect(err.message.length).toBeGreaterThan(0);
        const first = fx.samples.find((sm) => sideOf(sm) === side);
        if (!first) continue;
        const frames: Frame[] = [];
        codecError(() => session(side).decode(Buffer.concat([first.bytes, g]), (f) => frames.push(f)), `${first.name} + garbage ${hex(g)}`);
        expect(frames.map((f) => f.type), `${first.name} before garbage ${hex(g)}`).toEqual([first.type]);
      }
    });

    it('refuses an oversize frame as frame_too_large from its header alone, also when it arrives byte by byte', () => {
      const head = fx.oversize(max);
      expect(head.length, 'the oversize fixture is a header, not a whole frame').toBeLessThan(max);
      expect(codecError(() => session().decode(Buffer.from(head), () => undefined), 'oversize').reason).toBe('frame_too_large');
      const s = session();
      let err: CodecError | undefined;
      for (let i = 0; i < head.length && err === undefined; i++) {
        try {
          s.decode(head.subarray(i, i + 1), () => expect.fail('no frame from an oversize header'));
        } catch (e) {
          if (!(e instanceof CodecError)) throw e;
          err = e;
        }
      }
      expect(err?.reason, 'byte by byte').toBe('frame_too_large');
    });

    it('encode without an edit returns frame.raw itself, untouched', () => {
      for (const sm of fx.samples) {
        const f = decoded(sm);
        const s = session(sideOf(sm));
        expect(s.encode(f) === f.raw, sm.name).toBe(true);
        expect(s.encode(f, {}) === f.raw, `${sm.name}: {}`).toBe(true);
        expect(s.encode(f, { mutation: [] }) === f.raw, `${sm.name}: empty mutation`).toBe(true);
        expect(f.raw.equals(sm.bytes), sm.name).toBe(true);
      }
    });

    it('encode({requestId}) round-trips: the result decodes with the new id and is otherwise the same frame', () => {
      if (fx.codec.multiplexing !== 'id') return; // FIFO protocols have no ids to rewrite
      for (const sm of fx.samples) {
        for (const id of NEW_IDS) {
          const s = session(sideOf(sm));
          const f = decoded(sm, sm.bytes, s);
          const before = snapshot(f, { raw: false, requestId: false });
          const out = s.encode(f, { requestId: id });
          expect(f.requestId, `${sm.name}: frame.requestId keeps the id received`).toBe(decoded(sm).requestId);
          const back = decoded(sm, out);
          expect(back.requestId, `${sm.name} → ${id}`).toBe(id);
          expect(snapshot(back, { raw: false, requestId: false }), `${sm.name} → ${id}`).toEqual(before);
        }
      }
    });

    it('encode({copy: true, ...}) leaves the frame bytes untouched and returns new bytes', () => {
      for (const sm of fx.samples) {
        const s = session(sideOf(sm));
        const f = decoded(sm, sm.bytes, s);
        const copied = s.encode(f, { copy: true });
        expect(copied !== f.raw, sm.name).toBe(true);
        expect(copied.equals(sm.bytes), sm.name).toBe(true);
        copied[copied.length - 1] = copied[copied.length - 1]! ^ 0xff; // new bytes: writing them leaves raw alone
        expect(f.raw.equals(sm.bytes), `${sm.name}: the copy shares no memory with raw`).toBe(true);
        if (fx.codec.multiplexing !== 'id') continue;
        const out = s.encode(f, { copy: true, requestId: 0x7fff_fffe });
        expect(f.raw.equals(sm.bytes), `${sm.name}: raw untouched`).toBe(true);
        expect(out !== f.raw, sm.name).toBe(true);
        expect(decoded(sm, out).requestId, sm.name).toBe(0x7fff_fffe);
        const mutated = s.encode(f, { copy: true, requestId: 5, mutation: [{ key: 'x-conformance', value: '1' }] });
        expect(f.raw.equals(sm.bytes), `${sm.name}: raw untouched by a copied mutation`).toBe(true);
        expect(decoded(sm, mutated).requestId, sm.name).toBe(5);
      }
    });

    it('mutation round trip: the key reads back from the re-decoded frame, the rest of it unchanged', () => {
      const mutation: KeyValue[] = [
        { key: 'x-conformance', value: 'añadido ✓ 🚦' },
        { key: 'X-Conformance-Case', value: 'Mixed Value' },
      ];
      for (const sm of fx.samples) {
        const s = session(sideOf(sm));
        const f = decoded(sm, sm.bytes, s);
        const beforeEntries = entriesOf(f);
        const out = s.encode(f, { mutation, requestId: 77 });
        const back = decoded(sm, out);
        expect(back.type, sm.name).toBe(f.type);
        expect(back.status, sm.name).toBe(f.status);
        if (fx.codec.multiplexing === 'id') expect(back.requestId, sm.name).toBe(77);
        // Frame.mutable tells the proxy whether a mutation reaches the wire (false: it counts and logs the drop).
        if (sm.mutable === true) expect(f.mutable, `${sm.name}: a frame that carries mutations must not say mutable: false`).not.toBe(false);
        if (sm.mutable === false) expect(f.mutable, `${sm.name}: a frame that cannot carry a mutation must say so`).toBe(false);
        if (sm.mutable !== true) continue;
        expect(back.metadata.get('x-conformance'), sm.name).toBe('añadido ✓ 🚦');
        expect(back.metadata.get('x-conformance-case'), `${sm.name}: a mixed-case mutation key reads back lower-case`).toBe('Mixed Value');
        const after = entriesOf(back);
        for (const [k, v] of Object.entries(beforeEntries)) expect(after[k], `${sm.name}: entry ${k} kept`).toBe(v);
        // and again on the mutated frame: a key already there is replaced, not repeated
        const twice = decoded(sm, s.encode(back, { mutation: [{ key: 'x-conformance', value: 'second' }] }));
        expect(twice.metadata.get('x-conformance'), sm.name).toBe('second');
        expect([...twice.metadata.entries()].filter(([k]) => k === 'x-conformance'), sm.name).toHaveLength(1);
        // setting what is already there changes nothing: same bytes (so nothing was appended beside the old entry)
        const same = s.encode(back, { mutation });
        expect(same.equals(back.raw), `${sm.name}: re-applying a mutation is idempotent`).toBe(true);
      }
    });

    it('a mutation the codec cannot carry (a 70,000-byte value) is written or refused with a CodecError', () => {
      const huge: KeyValue[] = [{ key: 'x-huge', value: 'v'.repeat(70_000) }];
      for (const sm of fx.samples) {
        const s = session(sideOf(sm));
        const f = decoded(sm, sm.bytes, s);
        let out: Buffer;
        try {
          out = s.encode(f, { mutation: huge, requestId: 3 });
        } catch (err) {
          expect(err, `${sm.name}: ${(err as Error).message}`).toBeInstanceOf(CodecError);
          continue;
        }
        const back = decoded(sm, out, session(sideOf(sm), max + 100_000));
        expect(back.type, sm.name).toBe(sm.type);
        if (sm.mutable === true) expect(back.metadata.get('x-huge'), sm.name).toBe(huge[0]!.value);
      }
    });

    it('localReply: every kind decodes as a non-ok response with the id the client sent; none for oneway', () => {
      for (const sm of fx.samples) {
        if (sm.type !== 'request' && sm.type !== 'oneway') continue;
        const s = session(sideOf(sm));
        const f = decoded(sm, sm.bytes, s);
        const clientId = f.requestId;
        // The proxy patches its upstream id into raw before a failure is known: the reply must not read it back.
        if (fx.codec.multiplexing === 'id') s.encode(f, { requestId: 0x0102_0304 });
        const replies: LocalReply[] = [
          ...KINDS.map((kind) => ({ kind, message: `${kind}: route "r" → cluster outbound|1||h 🚧` })),
          { kind: 'fault_abort', message: 'abort with a code', code: 7 },
        ];
        for (const reply of replies) {
          const bytes = s.localReply(f, reply);
          if (sm.type === 'oneway') {
            expect(bytes, `${sm.name}: ${reply.kind}`).toBeUndefined();
            continue;
          }
          expect(bytes, `${sm.name}: ${reply.kind}`).toBeInstanceOf(Buffer);
          const back = one(bytes!, session(other(sideOf(sm)))); // read by the peer that sent the request
          expect(back.type, `${sm.name}: ${reply.kind}`).toBe('response');
          expect(back.requestId, `${sm.name}: ${reply.kind}`).toBe(clientId);
          expect(back.status, `${sm.name}: ${reply.kind}`).toBeDefined();
          expect(back.status, `${sm.name}: ${reply.kind}`).not.toBe('ok');
        }
      }
    });

    it('heartbeats: answered where the protocol has them, with the same id; nothing else is answered', () => {
      for (const sm of fx.samples) {
        const s = session(sideOf(sm));
        const f = decoded(sm, sm.bytes, s);
        const reply = s.heartbeatReply(f);
        if (!fx.heartbeats || f.type !== 'heartbeat' || f.expectsReply !== true) {
          expect(reply, sm.name).toBeUndefined();
          continue;
        }
        expect(reply, sm.name).toBeInstanceOf(Buffer);
        const back = one(reply!, session(other(sideOf(sm))));
        expect(['heartbeat', 'response'], sm.name).toContain(back.type);
        expect(back.requestId, sm.name).toBe(f.requestId);
        expect(back.expectsReply === true, `${sm.name}: an answer expects no answer`).toBe(false);
        expect(s.heartbeatReply(back), sm.name).toBeUndefined();
      }
    });

    it('metadata: entries have lower-case keys that get() returns; documented keys ignore case', () => {
      for (const sm of fx.samples) {
        const f = decoded(sm);
        for (const [k, v] of f.metadata.entries()) {
          expect(k, `${sm.name}: key`).toBe(k.toLowerCase());
          expect(f.metadata.get(k), `${sm.name}: get(${k})`).toBe(v);
        }
        for (const k of fx.documentedKeys) {
          const v = f.metadata.get(k);
          if (v === undefined) continue;
          expect(f.metadata.get(k.toUpperCase()), `${sm.name}: ${k.toUpperCase()}`).toBe(v);
          expect(f.metadata.get(k[0]!.toUpperCase() + k.slice(1)), `${sm.name}: ${k}`).toBe(v);
        }
        expect(f.metadata.get('x-conformance-absent'), sm.name).toBeUndefined();
      }
    });

    it('never throws anything but CodecError on random byte mutations of valid frames', () => {
      const rnd = mulberry32(Number(process.env.CONFORMANCE_SEED) || (fx.seed ?? 0x5eed));
      // CONFORMANCE_FUZZ_ROUNDS=20000 for a longer hunt (the default keeps `npm test` quick).
      const rounds = Number(process.env.CONFORMANCE_FUZZ_ROUNDS) || (fx.fuzzRounds ?? 400);
      let emitted = 0;
      let refused = 0;
      for (let round = 0; round < rounds; round++) {
        const group = streams[round % streams.length]!;
        const base = round % 10 === 9 ? group.stream : group.samples[Math.floor(rnd() * group.samples.length)]!.bytes;
        const bytes = mutate(base, rnd);
        const where = `round ${round}: ${hex(bytes, 96)}`;
        const cut = Math.floor(rnd() * (bytes.length + 1));
        // Twice: frames remember what they read, so once reading metadata first and once encoding first.
        for (const order of ['metadata first', 'encode first'] as const) {
          const s = session(group.side);
          const sink = (f: Frame): void => {
            emitted++;
            exercise(s, f, order, where);
          };
          try {
            s.decode(Buffer.from(bytes.subarray(0, cut)), sink);
            s.decode(Buffer.from(bytes.subarray(cut)), sink);
            expect(s.buffered, where).toBeGreaterThanOrEqual(0);
            expect(s.buffered, where).toBeLessThanOrEqual(bytes.length);
          } catch (err) {
            if (!(err instanceof CodecError)) throw unexpected(err, `${where} (decode)`);
            expect(err.reason, where).toMatch(/^[a-z0-9_]+$/);
            refused++;
          }
        }
      }
      // Not vacuous: some mutations still frame, others are refused.
      expect(emitted).toBeGreaterThan(0);
      expect(refused).toBeGreaterThan(0);
    });

    /**
     * What the data plane may do with a decoded frame. Each step may fail only with a CodecError (the proxy closes
     * that connection); anything else escapes the data plane's handlers.
     */
    function exercise(s: CodecSession, f: Frame, order: 'metadata first' | 'encode first', where: string): void {
      void [f.type, f.requestId, f.status, f.expectsReply, f.upstreamKey, f.raw.length];
      const steps: Array<[string, () => unknown]> = [
        ['metadata.get', () => fx.documentedKeys.map((k) => f.metadata.get(k))],
        ['metadata.entries', () => [...f.metadata.entries()]],
        ['encode mutation', () => s.encode(f, { copy: true, mutation: [{ key: 'x-fuzz', value: 'v' }], requestId: 9 })],
        ['localReply', () => (f.type === 'request' || f.type === 'oneway' ? s.localReply(f, { kind: 'no_route', message: 'fuzz' }) : undefined)],
        ['heartbeatReply', () => s.heartbeatReply(f)],
        ['encode requestId', () => s.encode(f, { requestId: 11 })],
      ];
      if (order === 'encode first') steps.reverse();
      for (const [name, step] of steps) {
        try {
          step();
        } catch (err) {
          if (!(err instanceof CodecError)) throw unexpected(err, `${where} (${name}, ${order})`);
        }
      }
    }
  });
}

// ---- helpers ---------------------------------------------------------------------------------------------------------

function decodeAll(s: CodecSession, chunks: Buffer[]): Frame[] {
  const out: Frame[] = [];
  for (const c of chunks) s.decode(c, (f) => out.push(f));
  return out;
}

function entriesOf(f: Frame): Record<string, string> {
  return Object.fromEntries([...f.metadata.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** What the data plane sees of a frame, as a string (for comparing decodings). */
function snapshot(f: Frame, opts: { raw?: boolean; requestId?: boolean } = {}): string {
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

/** Wraps a non-CodecError so that it fails the test (the decode loop lets CodecErrors through). */
function unexpected(err: unknown, where: string): Error {
  const e = err as Error;
  return new Error(`${where}\nthrew ${e?.name}: ${e?.message}\n${e?.stack ?? ''}`);
}

function codecError(fn: () => unknown, what: string): CodecError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CodecError) return err;
    throw new Error(`${what}: expected a CodecError, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
  }
  throw new Error(`${what}: expected a CodecError, nothing was thrown`);
}

/** Every length up to 64, then a spread of longer ones (all shorter than the frame). */
function prefixLengths(length: number): number[] {
  const out: number[] = [];
  for (let n = 1; n < length; n++) if (n <= 64 || n % 7 === 0 || n === length - 1) out.push(n);
  return out;
}

function hex(b: Buffer, max = 48): string {
  return b.length <= max ? b.toString('hex') : `${b.toString('hex', 0, max)}…(${b.length} bytes)`;
}

/** mulberry32: a small seeded PRNG, so failures reproduce. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** 1-4 random edits: a byte set, a bit flipped, a boundary value, a cut, a run inserted or doubled. */
function mutate(base: Buffer, rnd: () => number): Buffer {
  let b = Buffer.from(base);
  const edits = 1 + Math.floor(rnd() * 4);
  for (let e = 0; e < edits && b.length > 0; e++) {
    const at = Math.floor(rnd() * b.length);
    switch (Math.floor(rnd() * 6)) {
      case 0:
        b[at] = Math.floor(rnd() * 256);
        break;
      case 1:
        b[at] = b[at]! ^ (1 << Math.floor(rnd() * 8));
        break;
      case 2:
        b[at] = [0x00, 0x7f, 0x80, 0xff][Math.floor(rnd() * 4)]!;
        break;
      case 3:
        b = b.subarray(0, at);
        break;
      case 4: {
        const run = Buffer.alloc(1 + Math.floor(rnd() * 8));
        for (let i = 0; i < run.length; i++) run[i] = Math.floor(rnd() * 256);
        b = Buffer.concat([b.subarray(0, at), run, b.subarray(at)]);
        break;
      }
      default: {
        const end = Math.min(b.length, at + 1 + Math.floor(rnd() * 16));
        b = Buffer.concat([b.subarray(0, end), b.subarray(at, end), b.subarray(end)]);
      }
    }
  }
  return b;
}
