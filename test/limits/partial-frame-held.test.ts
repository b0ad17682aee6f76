/**
 * What an incomplete frame keeps in memory stays close to what arrived (the memory budget charges what arrived): a
 * header announcing a small frame is not an allocation of its size, and a large frame's first bytes do not keep
 * the whole read they came in alive.
 */
import { describe, expect, it } from 'vitest';
import { dubboCodec } from '../../codecs/dubbo/index.js';
import { INITIAL_SIZE, PartialFrame, PREALLOCATE_LIMIT } from '../../src/partial-frame.js';

describe('PartialFrame memory', () => {
  it('holds at most about twice what arrived of a small frame, and gathers the exact bytes', () => {
    const total = PREALLOCATE_LIMIT;
    const frame = Buffer.alloc(total);
    for (let i = 0; i < total; i++) frame[i] = (i * 13 + 5) & 0xff;
    const p = new PartialFrame(frame.subarray(0, 17), total);
    expect(p.held).toBe(INITIAL_SIZE);
    let off = 17;
    while (!p.complete) {
      off += p.take(frame.subarray(off, Math.min(off + 1000, total)), 0);
      expect(p.held).toBeLessThanOrEqual(Math.max(INITIAL_SIZE, 2 * p.length));
    }
    expect(p.held).toBe(total);
    expect(p.bytes().equals(frame)).toBe(true);
  });

  it('copies the first piece of a large frame out of the read it came in', () => {
    const read = Buffer.alloc(65_536, 7);
    const p = new PartialFrame(read.subarray(65_530), 1_000_000);
    read.fill(9); // the read's buffer is reused or freed: the frame must not depend on it
    p.take(Buffer.alloc(1_000_000 - 6, 1), 0);
    const bytes = p.bytes();
    expect(bytes.subarray(0, 6).equals(Buffer.alloc(6, 7))).toBe(true);
    expect(p.held).toBe(1_000_000);
  });

  it('a Dubbo session: 2000 headers announcing 64 KiB, one byte of body each, hold about 4 KiB each, not 64', () => {
    const sessions = Array.from({ length: 2000 }, () => dubboCodec.create({ maxFrameSize: 8 * 1024 * 1024, side: 'downstream' }));
    global.gc?.();
    const before = process.memoryUsage().arrayBuffers;
    sessions.forEach((s, i) => {
      const h = Buffer.alloc(17);
      h.writeUInt16BE(0xdabb, 0);
      h[2] = 0xc2;
      h.writeBigUInt64BE(BigInt(i + 1), 4);
      h.writeUInt32BE(PREALLOCATE_LIMIT - 16, 12);
      s.decode(h, () => undefined);
    });
    const grown = process.memoryUsage().arrayBuffers - before;
    // Allocating the announced size would be 2000 x 64 KiB = 125 MiB.
    expect(grown).toBeLessThan(2000 * 2 * INITIAL_SIZE);
    expect(sessions.every((s) => s.buffered === 17)).toBe(true);
  });
});
