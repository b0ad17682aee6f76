import type net from 'node:net';

/** Above this many bytes a batch is handed over as its pieces under cork (no copy); at or below, copied into one. */
const COPY_LIMIT = 64 * 1024;

/**
 * Batches writes into few syscalls and few stream writes: frames written in one batch are kept here and handed to
 * the socket together, copied into one buffer when small (docs/architecture.md). Each `socket.write` costs
 * a stream chunk, a write request and a callback slot; a pipelined batch of hundreds of small frames is cheaper
 * copied once than written piece by piece, while a large batch keeps the zero-copy cork/uncork path.
 *
 * A downstream socket flushes at the end of the current tick (`nextTick`): its answers go out as soon as the read
 * that produced them is handled. A shared upstream socket flushes once per event-loop iteration (`setImmediate`):
 * the requests of every client read in that iteration leave in one write instead of one per client.
 */
export class Outbox {
  private parts: Buffer[] = [];
  private bytes = 0;
  private scheduled = false;
  private readonly flushBound = (): void => this.flush();

  constructor(
    private readonly socket: net.Socket,
    private readonly flushAt: 'tick' | 'iteration' = 'tick',
    /** Runs after each flush: whoever stopped producing while bytes waited here can look again. */
    private readonly afterFlush?: () => void,
  ) {}

  /** Bytes written here and not yet handed to the socket. */
  get buffered(): number {
    return this.bytes;
  }

  /**
   * Queues `bytes`. What a codec hands over is checked here, where a throw is still its caller's (and contained
   * with its request): a value that is not bytes would otherwise fail later, in the flush, with no request to blame.
   */
  write(bytes: Buffer): void {
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`a codec produced ${bytes === null ? 'null' : typeof bytes} instead of bytes`);
    this.parts.push(bytes);
    this.bytes += bytes.length;
    if (!this.scheduled) {
      this.scheduled = true;
      if (this.flushAt === 'tick') process.nextTick(this.flushBound);
      else setImmediate(this.flushBound);
    }
  }

  /** Hands what is batched to the socket now (before `end()`, or when order with a direct write matters). */
  flush(): void {
    this.scheduled = false;
    const parts = this.parts;
    const n = parts.length;
    if (n === 0) return;
    const socket = this.socket;
    if (!socket.destroyed && socket.writable) {
      if (n === 1) socket.write(parts[0]!);
      else if (this.bytes <= COPY_LIMIT) socket.write(Buffer.concat(parts, this.bytes));
      else {
        socket.cork();
        for (let i = 0; i < n; i++) socket.write(parts[i]!);
        socket.uncork();
      }
    }
    parts.length = 0;
    this.bytes = 0;
    this.afterFlush?.();
  }

  /** Writes at once, after what is batched (a heartbeat answer some clients need in a segment of its own). */
  writeAlone(bytes: Buffer): void {
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`a codec produced ${bytes === null ? 'null' : typeof bytes} instead of bytes`);
    this.flush();
    this.socket.write(bytes);
  }
}
