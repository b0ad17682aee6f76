/**
 * A frame whose bytes arrive over several reads, gathered until complete. Small frames are copied into one buffer of
 * their full size as they come (one copy per byte); a frame announced larger than {@link PREALLOCATE_LIMIT} keeps
 * the reads' own buffers and joins them once, at the end: memory held is what arrived, not what the header
 * announced, so connections that announce the maximum frame size and send a few bytes cannot make the proxy reserve
 * it for each of them.
 *
 * What a codec reports as `buffered` (the bytes gathered) is what the memory budget charges (src/overload.ts), so
 * what is held must stay close to it: a small frame's buffer starts at {@link INITIAL_SIZE} (or the frame's size,
 * if smaller) and doubles as bytes arrive, so it is at most twice what arrived (a header announcing 64 KiB followed by
 * one byte holds 4 KiB, not 64); the first piece of a large frame is copied, so that a few bytes at the end of a
 * read do not keep the whole read alive.
 */
export const PREALLOCATE_LIMIT = 64 * 1024;
/** The first buffer of a small frame split across reads. */
export const INITIAL_SIZE = 4096;

export class PartialFrame {
  private whole: Buffer | null;
  private pieces: Buffer[] | null;
  private filled = 0;

  /** `first`: the frame's first bytes (copied); `total`: its announced size. */
  constructor(first: Buffer, readonly total: number) {
    if (total <= PREALLOCATE_LIMIT) {
      this.whole = Buffer.allocUnsafe(Math.min(total, Math.max(INITIAL_SIZE, 2 * first.length)));
      this.pieces = null;
      first.copy(this.whole, 0);
    } else {
      this.whole = null;
      this.pieces = [Buffer.from(first)];
    }
    this.filled = first.length;
  }

  /** Bytes gathered so far. */
  get length(): number {
    return this.filled;
  }

  /** Bytes kept in memory for the frame (at most about twice {@link length}; exact for large frames). */
  get held(): number {
    return this.whole !== null ? this.whole.length : this.filled;
  }

  /** Takes what the frame still needs from `chunk` at `off`; returns how many bytes it took. */
  take(chunk: Buffer, off: number): number {
    const n = Math.min(this.total - this.filled, chunk.length - off);
    if (this.whole !== null) {
      if (this.filled + n > this.whole.length) {
        const grown = Buffer.allocUnsafe(Math.min(this.total, Math.max(this.filled + n, 2 * this.whole.length)));
        this.whole.copy(grown, 0, 0, this.filled);
        this.whole = grown;
      }
      chunk.copy(this.whole, this.filled, off, off + n);
    } else {
      this.pieces!.push(chunk.subarray(off, off + n));
    }
    this.filled += n;
    return n;
  }

  get complete(): boolean {
    return this.filled >= this.total;
  }

  /** The whole frame (call once complete). */
  bytes(): Buffer {
    return this.whole ?? Buffer.concat(this.pieces!, this.total);
  }
}
