import type net from 'node:net';

/** Above this many bytes a batch is written as its pieces (no copy); at or below, copied into one buffer. */
const COPY_LIMIT = 64 * 1024;

/**
 * Gathers the writes of one tick and hands them to the socket as one buffer. Replies to a pipelined batch are many
 * small buffers; a corked socket passes them to `writev` one stream chunk each (a write request, a callback slot and
 * a buffer-list entry per piece), which costs more than copying a few KiB into one buffer and writing that.
 * Large batches keep the zero-copy cork/uncork path.
 */
export class CoalescingWriter {
  private parts: Buffer[] = [];
  private bytes = 0;
  private scheduled = false;
  private readonly flushBound = (): void => this.flush();

  /** `afterFlush` runs after each flush: whoever stopped producing while bytes waited here can look again. */
  constructor(
    private readonly socket: net.Socket,
    private readonly afterFlush?: () => void,
  ) {}

  /** Bytes handed to this writer and not yet to the socket. */
  get buffered(): number {
    return this.bytes;
  }

  write(bytes: Buffer): void {
    this.parts.push(bytes);
    this.bytes += bytes.length;
    if (!this.scheduled) {
      this.scheduled = true;
      process.nextTick(this.flushBound);
    }
  }

  flush(): void {
    this.scheduled = false;
    const parts = this.parts;
    const n = parts.length;
    if (n === 0) return;
    const socket = this.socket;
    if (socket.destroyed) {
      parts.length = 0;
      this.bytes = 0;
      return;
    }
    if (n === 1) socket.write(parts[0]!);
    else if (this.bytes <= COPY_LIMIT) socket.write(Buffer.concat(parts, this.bytes));
    else {
      socket.cork();
      for (let i = 0; i < n; i++) socket.write(parts[i]!);
      socket.uncork();
    }
    parts.length = 0;
    this.bytes = 0;
    this.afterFlush?.();
  }
}
