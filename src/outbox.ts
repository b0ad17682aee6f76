import type net from 'node:net';

/**
 * Batches the writes of one event-loop turn into one syscall: the first write of a turn corks the socket and a
 * single nextTick uncorks it, so consecutive frames leave together (ARCHITECTURE "Forward slices").
 */
export class Outbox {
  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  constructor(private readonly socket: net.Socket) {}

  write(bytes: Buffer): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
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
