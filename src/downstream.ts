import type net from 'node:net';
import { toCodecError, type CodecSession, type Frame } from './codec.js';
import { Exchange } from './exchange.js';
import type { ListenerRuntime } from './listener.js';
import { log } from './log.js';
import type { ConnectionHandler } from './network-filter.js';
import { Outbox } from './outbox.js';

/**
 * One client connection: decodes frames, answers heartbeats, starts an exchange per request and writes answers
 * back. A malformed frame closes this connection only, counted and logged.
 */
export class DownstreamConnection implements ConnectionHandler {
  private readonly session: CodecSession;
  private readonly outbox: Outbox;
  private readonly inflight = new Set<Exchange>();
  private closed = false;
  private readonly onFrameBound = (f: Frame): void => this.onFrame(f);

  constructor(private readonly socket: net.Socket, private readonly listener: ListenerRuntime) {
    this.session = listener.codec.create({ maxFrameSize: listener.maxFrameSize, side: 'downstream' });
    this.outbox = new Outbox(socket);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      log.debug('downstream socket error', { listener: listener.name, error: err.code ?? err.message });
    });
    socket.on('close', () => this.onClose());
  }

  get pending(): number {
    return this.inflight.size;
  }

  write(bytes: Buffer): void {
    if (!this.closed) this.outbox.write(bytes);
  }

  /** Called by an exchange when it ends. */
  completed(ex: Exchange): void {
    this.inflight.delete(ex);
  }

  close(): void {
    this.socket.destroy();
  }

  /** Closes once nothing is in flight (listener removal, drain). */
  closeWhenIdle(): void {
    if (this.inflight.size === 0) this.socket.end();
    else setTimeout(() => this.closeWhenIdle(), 50).unref();
  }

  private onData(chunk: Buffer): void {
    try {
      this.session.decode(chunk, this.onFrameBound);
    } catch (thrown) {
      const { error: err, unexpected } = toCodecError(thrown);
      if (unexpected) log.error('unexpected error on a downstream connection', { listener: this.listener.name, stack: (thrown as Error).stack });
      this.listener.decodeErrors.inc();
      log.warn('malformed downstream frame, closing the connection', {
        listener: this.listener.name,
        protocol: this.listener.protocol,
        remote: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
        reason: err.reason,
        error: err.message,
      });
      this.socket.destroy();
    }
  }

  private onFrame(frame: Frame): void {
    switch (frame.type) {
      case 'request':
      case 'oneway': {
        const ex = new Exchange(frame, this.session, this, this.listener);
        if (ex.expectsResponse) this.inflight.add(ex);
        ex.next();
        return;
      }
      case 'heartbeat': {
        const reply = frame.expectsReply ? this.session.heartbeatReply(frame) : undefined;
        // Some clients (dubbo2.js) stop reading a chunk after an event frame: keep heartbeat answers apart.
        if (reply && !this.closed) this.outbox.writeAlone(reply);
        return;
      }
      default:
        log.debug('ignoring a non-request frame from downstream', { listener: this.listener.name, type: frame.type });
    }
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ex of this.inflight) ex.abandon();
    this.inflight.clear();
    this.listener.connectionClosed(this);
  }
}
