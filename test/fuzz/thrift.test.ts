/**
 * Property-based fuzzing of the Thrift codec (codecs/thrift) in every variant it detects: binary strict and lax
 * (old, without version word), compact; framed, unframed (buffered) and THeader (with key/value headers). Valid
 * frames come from the suite's own writer (thrift-writer.ts: random messages of every TType, nested, random field
 * ids) and from python3-thrift (the frames test/fixtures/thrift/peer.py writes from greeter.thrift).
 */
import fc from 'fast-check';
import { afterAll, expect, it } from 'vitest';
import { CodecError } from '../../src/codec.js';
import { thriftCodec } from '../../codecs/thrift/index.js';
import { ensureThriftPeers, generate, pythonFrames, type Generated } from '../fixtures/thrift/peers.js';
import type { Slot } from './harness.js';
import { fuzzCodec, type Sample, type StreamSpec } from './properties.js';
import { MessageType, encodeMessage, frame, messageAt, structArb, type Proto, type Wire } from './thrift-writer.js';

const MAX = 16 * 1024;

interface Variant {
  key: string;
  wire: Wire;
  proto: Proto;
  /** peer.py's name for the same transport/protocol. */
  python: string;
}
const VARIANTS: Variant[] = [
  { key: 'framed binary', wire: 'framed', proto: 'binary', python: 'framed-binary' },
  { key: 'framed compact', wire: 'framed', proto: 'compact', python: 'framed-compact' },
  { key: 'framed lax', wire: 'framed', proto: 'lax', python: 'framed-lax' },
  { key: 'unframed binary', wire: 'unframed', proto: 'binary', python: 'buffered-binary' },
  { key: 'unframed compact', wire: 'unframed', proto: 'compact', python: 'buffered-compact' },
  { key: 'unframed lax', wire: 'unframed', proto: 'lax', python: 'buffered-lax' },
  { key: 'THeader binary', wire: 'header', proto: 'binary', python: 'header-binary' },
  { key: 'THeader compact', wire: 'header', proto: 'compact', python: 'header-compact' },
];

/** Method names: plain, or `Service:method` (TMultiplexedProtocol). The first byte is never NUL (lax detection). */
const methodName = fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,15}$/);
const serviceName = fc.option(fc.stringMatching(/^[A-Z][a-zA-Z0-9]{0,10}$/), { nil: undefined });
/** THeader keys: never `method`/`service`, which the message's own name answers. */
const headerKey = fc.oneof(fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9-]{0,12}$/), fc.constantFrom('X-User', 'trace-id', 'lane')).filter((k) => !['method', 'service'].includes(k.toLowerCase()));
/** Keys distinct ignoring case: a request repeating one is refused (docs/security.md, hostile input). */
const headers = fc.uniqueArray(fc.tuple(headerKey, fc.string({ unit: 'grapheme', maxLength: 30 })), {
  maxLength: 4,
  selector: ([k]) => k.toLowerCase(),
});

function generated(v: Variant): fc.Arbitrary<Sample> {
  return fc
    .record({
      method: methodName,
      service: serviceName,
      type: fc.constantFrom(MessageType.CALL, MessageType.ONEWAY, MessageType.REPLY, MessageType.EXCEPTION),
      seqid: fc.oneof(fc.nat({ max: 200 }), fc.integer()),
      body: structArb,
      result: fc.constantFrom('success', 'exception', 'void'),
      flags: fc.nat({ max: 0xffff }),
      headers,
    })
    .map((m) => {
      const name = m.service === undefined ? m.method : `${m.service}:${m.method}`;
      let body = m.body;
      if (m.type === MessageType.REPLY) {
        // A result struct: field 0 the return value, 1.. a declared exception, none for void.
        const first = body.fields[0] ?? { id: 1, value: { k: 'string', v: Buffer.from('why') } };
        const id = m.result === 'success' ? 0 : m.result === 'exception' ? 1 + (Math.abs(first.id) % 5) : -1;
        body = { k: 'struct', fields: id < 0 ? [] : [{ ...first, id }] };
      }
      const message = encodeMessage(v.proto, { name, type: m.type, seqid: m.seqid, body });
      const bytes = frame(v.wire, v.proto, message, { flags: m.flags, seqid: m.seqid, headers: m.headers });
      const metadata: Record<string, string> = {};
      if (v.wire === 'header') for (const [k, val] of m.headers) metadata[k.toLowerCase()] = val;
      metadata.method = m.method;
      if (m.service !== undefined) metadata.service = m.service;
      const status =
        m.type === MessageType.EXCEPTION ? 'error' : m.type !== MessageType.REPLY ? undefined : m.result === 'exception' ? 'business_exception' : 'ok';
      return {
        bytes,
        type: m.type === MessageType.CALL ? 'request' : m.type === MessageType.ONEWAY ? 'oneway' : 'response',
        requestId: m.seqid,
        ...(status !== undefined ? { status } : {}),
        metadata,
        mutable: v.wire === 'header',
      } satisfies Sample as Sample;
    });
}

/** Length fields: the frame length, THeader header size, the name length, the seqid, the first field header. */
function slotsOf(v: Variant): (f: Buffer) => Slot[] {
  return (f) => {
    const out: Slot[] = [];
    if (v.wire !== 'unframed') out.push({ at: 0, width: 4 });
    if (v.wire === 'header') out.push({ at: 12, width: 2 }, { at: 14, width: 1 }, { at: 15, width: 1 }, { at: 16, width: 1 });
    const m = messageAt(v.wire, f);
    out.push({ at: m, width: 4 }, { at: m + 4, width: 4 }, { at: m + 1, width: 1 }, { at: m + 2, width: 1 }, { at: m + 8, width: 4 });
    return out.filter((s) => 'width' in s && s.at + s.width <= f.length);
  };
}

/** Valid-looking starts before random bytes: a frame length and message head, a THeader fixed part, a lax head. */
const structured: fc.Arbitrary<Buffer> = fc.oneof(
  fc.tuple(fc.constantFrom<Proto>('binary', 'compact', 'lax'), fc.uint8Array({ maxLength: 300 })).map(([p, tail]) => {
    const head = encodeMessage(p, { name: 'hello', type: 1, seqid: 7, body: { k: 'struct', fields: [] } }).subarray(0, -1);
    return frame('framed', p, Buffer.concat([head, Buffer.from(tail)]));
  }),
  fc.tuple(fc.constantFrom<Proto>('binary', 'compact', 'lax'), fc.constantFrom(1, 2, 3, 4), fc.uint8Array({ maxLength: 300 })).map(([p, type, tail]) => {
    const head = encodeMessage(p, { name: 'hello', type, seqid: 7, body: { k: 'struct', fields: [] } }).subarray(0, -1);
    return Buffer.concat([head, Buffer.from(tail)]);
  }),
  fc.tuple(fc.constantFrom<Proto>('binary', 'compact'), fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 200 })).map(([p, section, payload]) => {
    const f = frame('header', p, Buffer.from(payload));
    const words = Math.ceil(section.length / 4);
    const out = Buffer.concat([f.subarray(0, 14), Buffer.from(section), Buffer.alloc(words * 4 - section.length), Buffer.from(payload)]);
    out.writeUInt16BE(words, 12);
    out.writeInt32BE(out.length - 4, 0);
    return out;
  }),
);

let gen: Generated | undefined;
afterAll(() => gen?.cleanup());

async function streams(): Promise<StreamSpec[]> {
  // Never skipped: without thrift-compiler and python3-thrift this suite fails.
  ensureThriftPeers();
  gen = await generate();
  const py = await pythonFrames(gen);
  return VARIANTS.map((v): StreamSpec => {
    const real: Sample[] = [];
    for (const [name, bytes] of py) {
      const [key, dir, call] = name.split('/');
      if (key !== v.python || call === 'big') continue;
      // What python wrote, read back by the codec itself only for type/id (exact metadata is the codec suite's job).
      real.push({ bytes, type: dir === 'req' ? (call === 'ping' ? 'oneway' : 'request') : 'response', mutable: v.wire === 'header' });
    }
    if (real.length === 0) throw new Error(`python wrote no frames for ${v.python}`);
    return {
      name: v.key,
      side: 'downstream',
      sample: fc.oneof({ weight: 4, arbitrary: generated(v) }, { weight: 1, arbitrary: fc.constantFrom(...real) }),
      slots: slotsOf(v),
    };
  });
}

fuzzCodec({
  suite: 'thrift',
  codec: thriftCodec,
  maxFrameSize: MAX,
  slack: 4,
  keys: ['method', 'service', 'x-user'],
  inputs: { downstream: structured, upstream: structured },
  streams,
  // Per variant (eight of them) for the frame properties.
  runs: { bytes: 2000, mutated: 300, split: 100, roundTrip: 100 },
  extra: () => {
    // Found by the connection-level property (proxy.test.ts): a framed request whose struct ran past its frame was
    // forwarded; python's (and Java's) framed reader then read the next frames of the shared upstream connection
    // as the rest of it, and every other client's call on that connection hung.
    it('regression: a framed or THeader message must fill its frame exactly (bad_message otherwise)', () => {
      const hello = (arg: Buffer): Buffer =>
        encodeMessage('binary', { name: 'hello', type: 1, seqid: 0, body: { k: 'struct', fields: [{ id: 1, value: { k: 'string', v: arg } }] } });
      const whole = hello(Buffer.from('ann'));
      const short = Buffer.from(whole.subarray(0, whole.length - 1)); // no STOP: the struct runs past the frame
      const long = Buffer.concat([whole, Buffer.from([0])]); // a byte after the STOP
      const claims = Buffer.from(whole);
      claims.writeInt32BE(100, whole.length - 8); // the string claims 100 bytes, 3 follow
      for (const wire of ['framed', 'header'] as const) {
        const ok: unknown[] = [];
        thriftCodec.create({ maxFrameSize: MAX, side: 'downstream' }).decode(frame(wire, 'binary', whole), (f) => ok.push(f));
        expect(ok, `${wire}: the well-formed message`).toHaveLength(1);
        for (const [name, message] of [['short', short], ['long', long], ['claims', claims]] as const) {
          const s = thriftCodec.create({ maxFrameSize: MAX, side: 'downstream' });
          let err: unknown;
          try {
            s.decode(frame(wire, 'binary', message), () => expect.fail(`${wire} ${name}: no frame`));
          } catch (e) {
            err = e;
          }
          expect(err, `${wire} ${name}`).toBeInstanceOf(CodecError);
          expect((err as CodecError).reason, `${wire} ${name}`).toBe('bad_message');
        }
      }
    });
  },
});
