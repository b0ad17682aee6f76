/**
 * A frame whose bytes arrive over several reads, gathered until complete. Small frames are copied into one buffer of
 * their full size as they come (one copy per byte); a frame announced larger than {@link PREALLOCATE_LIMIT} keeps
 * the reads' own buffers and joins them once, at the end: memory held is what arrived, not what the header
 * announced, so connections that announce the maximum frame size and send a few bytes cannot make the proxy reserve
 * it for each of them.
 */
export const PREALLOCATE_LIMIT = 64 * 1024;

export class PartialFrame {
  private whole: Buffer | null;
  private pieces: Buffer[] | null;
  private filled = 0;

  /** `first`: the frame's first bytes (copied when small, kept when not); `total`: its announced size. */
  constructor(first: Buffer, readonly total: number) {
    if (total <= PREALLOCATE_LIMIT) {
      this.whole = Buffer.allocUnsafe(total);
      this.pieces = null;
      first.copy(this.whole, 0);
    } else {
      this.whole = null;
      this.pieces = [first];
    }
    this.filled = first.length;
  }

  /** Bytes gathered so far. */
  get length(): number {
    return this.filled;
  }

  /** Takes what the frame still needs from `chunk` at `off`; returns how many bytes it took. */
  take(chunk: Buffer, off: number): number {
    const n = Math.min(this.total - this.filled, chunk.length - off);
    if (this.whole !== null) chunk.copy(this.whole, this.filled, off, off + n);
    else this.pieces!.push(chunk.subarray(off, off + n));
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
