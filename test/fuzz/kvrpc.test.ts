/**
 * Property-based fuzzing of the KV-RPC user codec (examples/custom-codec/codec.ts). Valid frames are written by the
 * example's peer encoder (examples/custom-codec/wire.ts, independent of the codec) with random flags, ids, statuses,
 * header sections (repeated and mixed-case keys, UTF-8) and bodies.
 */
import fc from 'fast-check';
import kvrpcCodec from '../../examples/custom-codec/codec.js';
import { FLAG_HEARTBEAT, FLAG_ONEWAY, FLAG_RESPONSE, encodeHeartbeat, encodeMessage } from '../../examples/custom-codec/wire.js';
import type { Slot } from './harness.js';
import { fuzzCodec, type Sample } from './properties.js';

const MAX = 64 * 1024;

const key = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 24 }).filter((k) => {
  const n = Buffer.byteLength(k);
  return n > 0 && n <= 255;
});
const headerList = fc.array(fc.tuple(fc.oneof(key, fc.constantFrom('service', 'method', 'user', 'User', 'METHOD')), fc.string({ unit: 'grapheme', maxLength: 40 })), {
  maxLength: 6,
});
const body = fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ minLength: 1000, maxLength: 3000 }));

/** Flags a frame may carry: response and oneway never together. */
const flags = fc.constantFrom(0, FLAG_ONEWAY, FLAG_RESPONSE, FLAG_HEARTBEAT, FLAG_HEARTBEAT | FLAG_RESPONSE, FLAG_HEARTBEAT | FLAG_ONEWAY);

const message: fc.Arbitrary<Sample> = fc
  .record({ flags, id: fc.nat({ max: 0xffff_ffff }), status: fc.oneof(fc.constantFrom(0, 1, 3, 8), fc.nat({ max: 255 })), headers: headerList, body })
  .map((m) => {
    const bytes = encodeMessage({ flags: m.flags, id: m.id, status: m.status, headers: m.headers, body: Buffer.from(m.body) });
    const metadata = new Map<string, string>();
    for (const [k, v] of m.headers) {
      const lower = k.toLowerCase();
      metadata.delete(lower);
      metadata.set(lower, v);
    }
    const heartbeat = (m.flags & FLAG_HEARTBEAT) !== 0;
    const response = (m.flags & FLAG_RESPONSE) !== 0;
    const oneway = (m.flags & FLAG_ONEWAY) !== 0;
    const sample: Sample = {
      bytes,
      type: heartbeat ? 'heartbeat' : response ? 'response' : oneway ? 'oneway' : 'request',
      requestId: m.id,
      ...(response ? { status: heartbeat || m.status === 0 ? 'ok' : m.status === 1 ? 'business_exception' : 'error' } : {}),
      ...(heartbeat ? { expectsReply: !response && !oneway } : {}),
      metadata: Object.fromEntries(metadata),
      mutable: !heartbeat,
    };
    return sample;
  });

function slots(frame: Buffer): Slot[] {
  const out: Slot[] = [
    { at: 10, width: 2 },
    { at: 12, width: 4 },
    { at: 4, width: 4 },
    { at: 8, width: 1 },
    { at: 9, width: 1 },
    { at: 3, width: 1 },
  ];
  // The first header entry's key length and value length.
  const section = frame.readUInt16BE(10);
  if (section > 0) {
    out.push({ at: 16, width: 1 });
    const kl = frame[16]!;
    if (19 + kl <= 16 + section) out.push({ at: 17 + kl, width: 2 });
  }
  return out;
}

/** A valid fixed header before a random header section and body of exactly the announced lengths. */
const structured: fc.Arbitrary<Buffer> = fc
  .tuple(flags, fc.nat({ max: 0xffff_ffff }), fc.nat({ max: 255 }), fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 64 }))
  .map(([f, id, status, section, b]) => {
    const out = encodeMessage({ flags: f, id, status, body: Buffer.from(b) });
    const withSection = Buffer.concat([out.subarray(0, 16), Buffer.from(section), out.subarray(16)]);
    withSection.writeUInt16BE(section.length, 10);
    return withSection;
  });

fuzzCodec({
  suite: 'kvrpc',
  codec: kvrpcCodec,
  maxFrameSize: MAX,
  slack: 0,
  keys: ['service', 'method', 'user'],
  inputs: { downstream: structured, upstream: structured },
  streams: [
    { name: 'requests', side: 'downstream', sample: message.filter((s) => s.type !== 'response'), slots },
    { name: 'responses', side: 'upstream', sample: message.filter((s) => s.type === 'response' || s.type === 'heartbeat'), slots },
  ],
  runs: { bytes: 2000, mutated: 1500, split: 400, roundTrip: 500 },
  newId: fc.nat({ max: 0xffff_ffff }),
});
