/**
 * How long one hostile Thrift request holds the event loop at the codec's limits (codecs/thrift: MAX_VALUES fields
 * and elements walked per message, MAX_HEADERS THeader headers), framed and unframed, 8 MiB frames.
 *
 *   npx tsc -p . && node dist/bench/thrift/scan-limits.js
 *
 * Each case is decoded by a fresh codec session (cold, as the first such request on a connection) and then again
 * warm; the figure is milliseconds per request. Cases at the limit must decode; cases one over must be refused.
 */
import { thriftCodec } from '../../codecs/thrift/index.js';
import { MAX_HEADERS } from '../../codecs/thrift/theader.js';
import { MAX_VALUES } from '../../codecs/thrift/wire.js';
import type { Frame } from '../../src/codec.js';

const MAX_FRAME = 8 * 1024 * 1024;

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}

/** A compact CALL `m` whose argument struct is `body` (STOP included). */
function compact(body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x82, 0x21, 1, 1, 0x6d]), body]);
}

/** A strict binary CALL `m` whose argument struct is `body` (STOP included). */
function binary(body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x80, 1, 0, 1, 0, 0, 0, 1, 0x6d, 0, 0, 0, 1]), body]);
}

function i32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function framed(message: Buffer): Buffer {
  return Buffer.concat([i32(message.length), message]);
}

/** A THeader frame (binary) around a one-byte-struct CALL with `count` distinct headers. */
function theader(count: number): Buffer {
  const parts: Buffer[] = [Buffer.from([0, 0, 1]), varint(count)];
  for (let i = 0; i < count; i++) {
    const k = Buffer.from(i.toString(36));
    parts.push(varint(k.length), k, Buffer.from([0]));
  }
  let header = Buffer.concat(parts);
  header = Buffer.concat([header, Buffer.alloc((4 - (header.length % 4)) % 4)]);
  const payload = binary(Buffer.from([0]));
  const fixed = Buffer.alloc(14);
  fixed.writeInt32BE(10 + header.length + payload.length, 0);
  fixed.writeUInt16BE(0x0fff, 4);
  fixed.writeUInt16BE(header.length / 4, 12);
  return Buffer.concat([fixed, header, payload]);
}

// A list field holding n - 1 elements: with the field itself, n values walked.
const n = MAX_VALUES;
const cases: Array<[string, (over: number) => Buffer]> = [
  ['compact list<struct> of empty structs', (o) => compact(Buffer.concat([Buffer.from([0x19, 0xfc]), varint(n - 1 + o), Buffer.alloc(n - 1 + o), Buffer.from([0])]))],
  ['compact list<map> of empty maps', (o) => compact(Buffer.concat([Buffer.from([0x19, 0xfb]), varint(n - 1 + o), Buffer.alloc(n - 1 + o), Buffer.from([0])]))],
  ['compact bool fields', (o) => compact(Buffer.concat([Buffer.alloc(n + o, 0x11), Buffer.from([0])]))],
  ['binary list<list> of empty lists', (o) => {
    const el = Buffer.from([8, 0, 0, 0, 0]);
    return binary(Buffer.concat([Buffer.from([15, 0, 1, 15]), i32(n - 1 + o), Buffer.concat(Array(n - 1 + o).fill(el)), Buffer.from([0])]));
  }],
  ['compact list<i32> filling 8 MiB (not counted)', () => {
    const count = MAX_FRAME - 32;
    return compact(Buffer.concat([Buffer.from([0x19, 0xf5]), varint(count), Buffer.alloc(count), Buffer.from([0])]));
  }],
  ['compact empty structs at the limit, then list<i32> filling 8 MiB', (o) => {
    const rest = MAX_FRAME - 40 - n;
    return compact(Buffer.concat([Buffer.from([0x19, 0xfc]), varint(n - 2 + o), Buffer.alloc(n - 2 + o), Buffer.from([0x19, 0xf5]), varint(rest), Buffer.alloc(rest), Buffer.from([0])]));
  }],
];

function decode(bytes: Buffer): { ms: number; frames: number; error?: string } {
  const s = thriftCodec.create({ maxFrameSize: MAX_FRAME, side: 'downstream' });
  const t0 = performance.now();
  let frames = 0;
  try {
    s.decode(bytes, (f: Frame) => {
      frames++;
      (f.metadata.get('x-user'));
    });
  } catch (err) {
    return { ms: performance.now() - t0, frames, error: (err as Error).message };
  }
  return { ms: performance.now() - t0, frames };
}

const fmt = (r: { ms: number; frames: number; error?: string }): string =>
  `${r.ms.toFixed(1)} ms ${r.error !== undefined ? `refused: ${r.error}` : `${r.frames} frame`}`;

for (const [name, build] of cases) {
  for (const over of name.includes('not counted') ? [0] : [0, 1]) {
    const message = build(over);
    for (const [wire, bytes] of [['framed', framed(message)], ['unframed', message]] as const) {
      const cold = decode(bytes);
      const warm = decode(bytes);
      console.log(`${name}${over ? ' +1' : ''} (${wire}, ${bytes.length} B): cold ${fmt(cold)}; warm ${fmt(warm)}`);
    }
  }
}
for (const count of [MAX_HEADERS, MAX_HEADERS + 1, 40_000]) {
  const bytes = theader(count);
  const cold = decode(bytes);
  const warm = decode(bytes);
  console.log(`THeader with ${count} headers, read for routing (${bytes.length} B): cold ${fmt(cold)}; warm ${fmt(warm)}`);
}
