import type net from 'node:net';
import { stackOf, toCodecError, type CodecSession, type Frame } from './codec.js';
import { containSafely, recordContained, type Continuation } from './contain.js';
import { Exchange } from './exchange.js';
import type { ListenerRuntime } from './listener.js';
import { log } from './log.js';
import type { ConnectionHandler } from './network-filter.js';
import { Outbox } from './outbox.js';
import type { BufferAccount } from './overload.js';
import { peerIdentity, type PeerIdentity } from './tls.js';
import type { Expirable } from './timer-wheel.js';
import type { DrainWaiter, UpstreamConnection } from './upstream.js';

/**
 * One client connection: decodes frames, answers heartbeats, starts an exchange per request and writes answers
 * back. A malformed frame closes this connection only, counted and logged.
 *
 * Limits (docs/operations-limits.md): at most `maxPendingPerConnection` requests in flight (more are answered
 * over_limit); closed when idle for `idleTimeoutMs`, or when a frame stays incomplete for `frameTimeoutMs`
 * (slowloris). Backpressure: reading stops while this connection's unwritten answers exceed the buffer limit (a
 * client that does not read cannot make the proxy pile up answers), and while an upstream connection it sent to is
 * over its own (a slow upstream holds back the clients feeding it, not the proxy's memory).
 */
export class DownstreamConnection implements ConnectionHandler, Expirable, DrainWaiter {
  private readonly session: CodecSession;
  private readonly outbox: Outbox;
  private readonly inflight = new Set<Exchange>();
  /** Bytes of the frames of requests in `inflight` not yet handed to an upstream (held by a delay or a filter). */
  private heldBytes = 0;
  private closed = false;
  private draining = false;
  /** end() was called: nothing more is written or read. */
  private ended = false;
  private readonly onFrameBound = (f: Frame): void => this.onFrame(f);
  /** Reading is paused while either holds: our answers are over the buffer limit, or upstreams we fed are over theirs. */
  private pausedForWrite = false;
  private blockedOn: Set<UpstreamConnection> | undefined;
  private paused = false;
  /** Frame deadline: when the incomplete frame the session holds was begun (performance.now()), or -1. */
  private frameStartedAt = -1;
  private framesDecoded = 0;
  /** This connection's charge against the memory budget (src/overload.ts), opened on the first read. */
  private account: BufferAccount | undefined;
  wheelTick = -1;
  wheelIndex = -1;

  constructor(private readonly socket: net.Socket, private readonly listener: ListenerRuntime) {
    this.session = listener.codec.create({ maxFrameSize: listener.maxFrameSize, side: 'downstream' });
    this.outbox = new Outbox(socket, 'tick', () => this.checkWriteBuffer());
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      log.debug('downstream socket error', { listener: listener.name, error: err.code ?? err.message });
    });
    socket.on('close', () => this.onClose());
    socket.on('drain', () => this.onWriteDrained());
    const idle = listener.limits.idleTimeoutMs;
    if (idle > 0) {
      // Node re-arms the socket timer on every read and write: it fires after `idle` ms without a byte either way.
      socket.setTimeout(idle);
      socket.on('timeout', () => this.onIdle());
    }
  }

  /** The client's SPIFFE identity from its verified TLS certificate (source.principal / source.namespace), computed once. */
  get peer(): PeerIdentity | undefined {
    return peerIdentity(this.socket);
  }

  get pending(): number {
    return this.inflight.size;
  }

  /** Bytes held for this connection: answers not yet written, bytes read but not decoded, an incomplete frame. */
  /**
   * Bytes held for this connection: answers not yet written, bytes read but not decoded, an incomplete frame, and
   * the frames of its requests not yet sent upstream (a fault delay or a rate-limit check holds them): the memory
   * budget samples this.
   */
  get bufferedBytes(): number {
    if (this.closed) return 0;
    return this.socket.writableLength + this.outbox.buffered + this.socket.readableLength + this.session.buffered + this.heldBytes;
  }

  write(bytes: Buffer): void {
    if (this.closed || this.ended) return;
    this.outbox.write(bytes);
    this.checkWriteBuffer();
  }

  /** Called by an exchange when it ends. */
  completed(ex: Exchange): void {
    if (this.inflight.delete(ex)) this.released(ex);
    if (this.draining && this.inflight.size === 0) this.endGracefully();
  }

  /**
   * Called by an exchange once its frame is handed to an upstream connection (whose buffers count it from then on),
   * or when it ends: the frame is no longer held here for it.
   */
  released(ex: Exchange): void {
    if (!ex.holdsFrame) return;
    ex.holdsFrame = false;
    this.heldBytes -= ex.frame.raw.length;
    // The budget may let this connection (or a waiting one) read again.
    this.account?.update(this.session.buffered + this.socket.readableLength + this.heldBytes);
  }

  /**
   * Called by an exchange whose request went to an upstream connection that is over its buffer limit: stop reading
   * this client until that connection drains.
   */
  blockOn(conn: UpstreamConnection): void {
    if (this.closed) return;
    const set = (this.blockedOn ??= new Set());
    if (set.has(conn)) return;
    set.add(conn);
    conn.waitForDrain(this);
    this.listener.counters.pausedByUpstream.inc();
    this.updatePause();
  }

  upstreamDrained(conn: UpstreamConnection): void {
    this.blockedOn?.delete(conn);
    this.updatePause();
  }

  close(): void {
    this.socket.destroy();
  }

  /** Closes once nothing is in flight (listener removal, drain): answers already due are written first. */
  closeWhenIdle(): void {
    this.draining = true;
    if (this.inflight.size === 0) this.endGracefully();
  }

  private endGracefully(): void {
    if (this.closed || this.ended) return;
    this.ended = true;
    this.socket.pause();
    // end() flushes what is queued, then FIN; the socket is released once written even if the peer keeps its side open.
    this.outbox.flush(); // answers batched for this tick go before the FIN
    this.socket.end(() => this.socket.destroy());
  }

  private checkWriteBuffer(): void {
    const s = this.socket;
    if (!this.pausedForWrite && s.writableNeedDrain && s.writableLength > this.listener.limits.bufferLimitBytes) {
      this.pausedForWrite = true;
      this.listener.counters.pausedByDownstream.inc();
      this.updatePause();
    }
  }

  private onWriteDrained(): void {
    if (!this.pausedForWrite) return;
    this.pausedForWrite = false;
    this.updatePause();
  }

  private updatePause(): void {
    if (this.ended) return;
    const want = this.pausedForWrite || (this.blockedOn !== undefined && this.blockedOn.size > 0);
    if (want === this.paused || this.closed) return;
    this.paused = want;
    if (want) this.socket.pause();
    else this.socket.resume();
  }

  private onIdle(): void {
    if (this.closed || this.inflight.size > 0) return; // a reply still due; its write re-arms the timer
    this.listener.counters.idleTimeout.inc();
    log.debug('closing an idle downstream connection', {
      listener: this.listener.name,
      remote: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
      idle_timeout_ms: this.listener.limits.idleTimeoutMs,
    });
    this.socket.destroy();
  }

  /** A throw in one of this connection's own continuations (its frame deadline): close it, count it. */
  contain(thrown: unknown, where: Continuation): void {
    this.listener.containedError(where, recordContained(thrown, where, this.listener.name));
    this.socket.destroy();
  }

  /** Frame deadline (the timer wheel): the incomplete frame is too old, unless we were the ones not reading. */
  onDeadline(): void {
    if (this.closed || this.frameStartedAt < 0) return;
    const timeout = this.listener.limits.frameTimeoutMs;
    const now = performance.now();
    if (this.paused) {
      this.frameStartedAt = now;
      this.listener.wheel.schedule(this, timeout);
      return;
    }
    const left = this.frameStartedAt + timeout - now;
    if (left > 0) {
      this.listener.wheel.schedule(this, left);
      return;
    }
    this.listener.counters.frameTimeout.inc();
    log.warnLimited(`frame_timeout:${this.listener.name}`, 'a frame did not complete in time, closing the connection', {
      listener: this.listener.name,
      protocol: this.listener.protocol,
      remote: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
      frame_timeout_ms: timeout,
      buffered: this.session.buffered,
    });
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    const before = this.framesDecoded;
    try {
      this.session.decode(chunk, this.onFrameBound);
    } catch (thrown) {
      const { error: err, unexpected } = toCodecError(thrown);
      if (unexpected) log.errorLimited(`unexpected:${this.listener.name}`, 'unexpected error on a downstream connection', { listener: this.listener.name, stack: stackOf(thrown) });
      this.listener.decodeErrors.inc();
      if (err.reason === 'frame_too_large') this.listener.counters.frameTooLarge.inc();
      log.warnLimited(`malformed:${this.listener.name}:${err.reason}`, 'malformed downstream frame, closing the connection', {
        listener: this.listener.name,
        protocol: this.listener.protocol,
        remote: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
        reason: err.reason,
        error: err.message,
      });
      this.socket.destroy();
      return;
    }
    const timeout = this.listener.limits.frameTimeoutMs;
    if (timeout > 0) {
      if (this.session.buffered > 0) {
        // A new incomplete frame (none yet, or the previous one completed in this chunk) starts the clock.
        if (this.frameStartedAt < 0 || this.framesDecoded !== before) this.frameStartedAt = performance.now();
        if (this.wheelTick < 0) this.listener.wheel.schedule(this, timeout);
      } else {
        this.frameStartedAt = -1;
      }
    }
    // What this connection holds — an incomplete frame, the frames of its requests in flight — goes against the memory
    // budget, which may pause or shed it.
    const account = (this.account ??= this.listener.overload.account(this.listener.name, this.listener.limits.bufferLimitBytes, {
      pause: () => this.socket.pause(),
      resume: () => {
        if (!this.paused && !this.closed && !this.ended) this.socket.resume();
      },
      shed: () => this.socket.destroy(),
      bytes: () => this.bufferedBytes,
    }));
    account.update(this.session.buffered + this.socket.readableLength + this.heldBytes);
  }

  private onFrame(frame: Frame): void {
    this.framesDecoded++;
    switch (frame.type) {
      case 'request':
      case 'oneway': {
        const ex = new Exchange(frame, this.session, this, this.listener);
        // Oneway calls count too: held by a fault delay or a rate-limit check, they hold their frames as long.
        const max = this.listener.limits.maxPendingPerConnection;
        if (this.inflight.size >= max) {
          this.listener.counters.pendingLimit.inc();
          // A oneway call has no answer to carry the refusal: it is dropped, counted.
          ex.localReply('over_limit', `connection has ${max} requests in flight, the listener's limit (--max-pending-per-connection) on ${this.listener.name}`);
          return;
        }
        this.inflight.add(ex);
        ex.holdsFrame = true;
        this.heldBytes += frame.raw.length;
        try {
          ex.next();
        } catch (thrown) {
          containSafely(ex, thrown, 'request');
        }
        return;
      }
      case 'heartbeat': {
        const reply = frame.expectsReply ? this.session.heartbeatReply(frame) : undefined;
        // Some clients (dubbo2.js) stop reading a chunk after an event frame: keep heartbeat answers apart.
        if (reply && !this.closed && !this.ended) {
          this.outbox.writeAlone(reply);
          this.checkWriteBuffer();
        }
        return;
      }
      default:
        log.debug('ignoring a non-request frame from downstream', { listener: this.listener.name, type: frame.type });
    }
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.wheelTick >= 0) this.listener.wheel.cancel(this);
    for (const ex of this.inflight) {
      try {
        ex.abandon();
      } catch (thrown) {
        containSafely(ex, thrown, 'connection');
      }
    }
    this.inflight.clear();
    this.heldBytes = 0;
    this.blockedOn = undefined;
    this.account?.close();
    this.listener.connectionClosed(this);
  }
}
