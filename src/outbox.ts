import type net from 'node:net';

/**
 * Batches writes into few syscalls: the first write of a batch corks the socket and one scheduled callback uncorks
 * it, so consecutive frames leave together (ARCHITECTURE "Forward slices").
 *
 * A downstream socket flushes at the end of the current tick (`nextTick`): its answers go out as soon as the read
 * that produced them is handled. A shared upstream socket flushes once per event-loop iteration (`setImmediate`):
 * the requests of every client read in that iteration leave in one write instead of one per client.
 */
export class Outbox {
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(
    private readonly socket: net.Socket,
    private readonly flushAt: 'tick' | 'iteration' = 'tick',
  ) {}

  write(bytes: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      if (this.flushAt === 'tick') process.nextTick(this.uncork);
      else setImmediate(this.uncork);
    }
    this.socket.write(bytes);
  }

  /** Writes at once, outside any batch (a heartbeat answer some clients need in a segment of its own). */
  writeAlone(bytes: Buffer): void {
    if (this.corked) {
      this.corked = false;
      this.socket.uncork();
    }
    this.socket.write(bytes);
  }
}
