/**
 * Frames that arrive in pieces: the bytes come out exactly as sent, however they are split, and a frame announced
 * large holds only what arrived (a header announcing the maximum frame size is not an allocation of that size).
 */
import { describe, expect, it } from 'vitest';
import type { Frame } from '../../src/codec.js';
import { dubboCodec } from '../../codecs/dubbo/index.js';
import { thriftCodec } from '../../codecs/thrift/index.js';
import { PartialFrame, PREALLOCATE_LIMIT } from '../../src/partial-frame.js';

const MAX = 8 * 1024 * 1024;

/** A Dubbo two-way request header (16 bytes) announcing a body of `bodyLength` bytes. */
function dubboHeader(id: number, bodyLength: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt16BE(0xdabb, 0);
  h[2] = 0xc2; // request, two-way, hessian2
  h.writeBigUInt64BE(BigInt(id), 4);
  h.writeUInt32BE(bodyLength, 12);
  return h;
}

describe('PartialFrame', () => {
  for (const total of [100, PREALLOCATE_LIMIT, PREALLOCATE_LIMIT + 1, 300_000]) {
    it(`gathers a ${total}-byte frame from pieces of every size into the same bytes`, () => {
      const frame = Buffer.alloc(total);
      for (let i = 0; i < total; i++) frame[i] = (i * 7 + 3) & 0xff;
      for (const piece of [1, 7, 4096, 65_536]) {
        const p = new PartialFrame(frame.subarray(0, Math.min(piece, total)), total);
        let off = Math.min(piece, total);
        while (!p.complete) {
          const chunk = frame.subarray(off, Math.min(off + piece, total));
          off += p.take(chunk, 0);
        }
        expect(p.length).toBe(total);
        expect(p.bytes().equals(frame)).toBe(true);
      }
    });
  }
  it('takes only what the frame needs from a chunk that holds more', () => {
    const p = new PartialFrame(Buffer.from([1, 2]), 4);
    expect(p.take(Buffer.from([9, 3, 4, 5, 6]), 1)).toBe(2);
    expect(p.bytes()).toEqual(Buffer.from([1, 2, 3, 4]));
  });
});

describe('dubbo: frames announced large', () => {
  it('hold what arrived, not what the header announced (200 connections announcing 8 MiB each)', () => {
    const sessions = Array.from({ length: 200 }, () => dubboCodec.create({ maxFrameSize: MAX, side: 'downstream' }));
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    sessions.forEach((s, i) => s.decode(Buffer.concat([dubboHeader(i + 1, MAX - 1), Buffer.from('partial body')]), () => undefined));
    const grown = process.memoryUsage().arrayBuffers - before;
    // Before: 200 × 8 MiB reserved up front (1.6 GB of ArrayBuffers); now a few bytes each.
    expect(grown).toBeLessThan(16 * 1024 * 1024);
    expect(sessions.every((s) => s.buffered === 16 + 'partial body'.length)).toBe(true);
  });

  it('still decodes a large frame split over many reads into the exact bytes', () => {
    const body = Buffer.alloc(200_000, 0x4e); // hessian null ('N') bytes: a response body is not decoded here
    const header = dubboHeader(7, body.length);
    header[2] = 0x02; // a response (hessian2)
    header[3] = 20; // OK
    const whole = Buffer.concat([header, body]);
    const s = dubboCodec.create({ maxFrameSize: MAX, side: 'upstream' });
    const frames: Frame[] = [];
    for (let off = 0; off < whole.length; off += 1000) s.decode(whole.subarray(off, off + 1000), (f) => frames.push(f));
    expect(frames).toHaveLength(1);
    expect(frames[0]!.raw.equals(whole)).toBe(true);
    expect(frames[0]!.requestId).toBe(7);
  });
});

describe('thrift: frames announced large', () => {
  /** A framed strict-binary call `ping` (seqid `id`) whose frame length field says `length`. */
  function framedHead(id: number, length: number): Buffer {
    const name = Buffer.from('ping');
    const msg = Buffer.alloc(8 + name.length + 4);
    msg.writeUInt32BE(0x80010001, 0); // version 1, CALL
    msg.writeUInt32BE(name.length, 4);
    name.copy(msg, 8);
    msg.writeInt32BE(id, 8 + name.length);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(length, 0);
    return Buffer.concat([len, msg]);
  }

  it('hold what arrived, not what the frame length announced (200 connections announcing 8 MiB each)', () => {
    const sessions = Array.from({ length: 200 }, () => thriftCodec.create({ maxFrameSize: MAX, side: 'downstream' }));
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    sessions.forEach((s, i) => s.decode(framedHead(i + 1, MAX - 1), () => undefined));
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
  });

  it('still decodes a large framed call split over many reads into the exact bytes', () => {
    // ping(seqid 9) with one string field of 200 kB, then the struct's stop byte.
    const value = Buffer.alloc(200_000, 0x61);
    const field = Buffer.alloc(1 + 2 + 4);
    field[0] = 11; // string
    field.writeInt16BE(1, 1);
    field.writeInt32BE(value.length, 3);
    const body = Buffer.concat([field, value, Buffer.from([0])]);
    const head = framedHead(9, 0).subarray(4);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(head.length + body.length, 0);
    const whole = Buffer.concat([len, head, body]);
    const s = thriftCodec.create({ maxFrameSize: MAX, side: 'downstream' });
    const frames: Frame[] = [];
    for (let off = 0; off < whole.length; off += 1000) s.decode(whole.subarray(off, off + 1000), (f) => frames.push(f));
    expect(frames).toHaveLength(1);
    expect(frames[0]!.raw.equals(whole)).toBe(true);
    expect(frames[0]!.requestId).toBe(9);
    expect(frames[0]!.metadata.get('method')).toBe('ping');
  });
});

describe('the KV-RPC example codec (a user codec using PartialFrame)', () => {
  it('holds what arrived for frames announced large (200 connections announcing 8 MiB each)', async () => {
    const { kvrpcCodec } = await import('../../examples/custom-codec/codec.js');
    const sessions = Array.from({ length: 200 }, () => kvrpcCodec.create({ maxFrameSize: MAX, side: 'downstream' }));
    // 'K' 'V', version 1, flags 0 (a two-way request), id, status 0, reserved 0, section length 0, body length.
    const head = Buffer.from([0x4b, 0x56, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    let decoded = 0;
    sessions.forEach((s, i) => {
      const h = Buffer.from(head);
      h.writeUInt32BE(i + 1, 4);
      h.writeUInt32BE(MAX - 16, 12);
      s.decode(h, () => decoded++);
    });
    expect(decoded).toBe(0);
    expect(sessions.every((s) => s.buffered === 16)).toBe(true);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
  });
});
