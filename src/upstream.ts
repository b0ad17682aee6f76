import net from 'node:net';
import { stackOf, toCodecError, type CodecError, type CodecFactory, type CodecSession, type Frame, type KeyValue, type LocalReplyKind } from './codec.js';
import { containSafely, type Containable } from './contain.js';
import { log } from './log.js';
import { Outbox } from './outbox.js';
import { connectTls, type UpstreamTls } from './tls.js';

/**
 * Upstream connections. One connection (a client, in undici's terms) carries requests from many downstream
 * connections: for id-multiplexed protocols each request gets a fresh upstream id and the response is matched back
 * by it; for FIFO protocols responses are matched by order. A pool holds a few connections to one endpoint.
 */

/**
 * A request as the upstream side sees it: the frame to send and where its answer goes. What its answer or failure
 * handling throws goes to its own `contain`: one request's bad bytes never fail the connection others share.
 */
export interface UpstreamRequest extends Containable {
  readonly frame: Frame;
  /** The session that decoded `frame` (it encodes it, with the new id). */
  readonly session: CodecSession;
  readonly mutation: readonly KeyValue[] | undefined;
  /** Whether an answer is expected (false for oneway). */
  readonly expectsResponse: boolean;
  /** Encode into new bytes, leaving the frame untouched (a retry or mirror sends a frame again). */
  readonly copyOnEncode: boolean;
  /** Set by the connection: the id the request carries upstream (to withdraw it in O(1)). */
  upstreamId: number;
  onResponse(frame: Frame, session: CodecSession): void;
  onFailure(kind: LocalReplyKind, message: string): void;
}

export interface PoolHooks {
  /** A malformed upstream frame closed a connection. */
  onDecodeError(err: CodecError): void;
  /** An answer that matches no request waiting on the connection (a wrong id, a second answer, a request frame). */
  onStrayFrame(): void;
  onConnectionOpen(): void;
  onConnectionClose(): void;
  /** Circuit breaker: whether another connection may be opened. */
  canOpen(): boolean;
}

export interface PoolOptions {
  readonly host: string;
  readonly port: number;
  readonly codec: CodecFactory;
  readonly maxFrameSize: number;
  readonly connectTimeoutMs: number;
  /** Connections to keep to this endpoint; requests spread over them. */
  readonly connections: number;
  /** For messages: which cluster this pool serves. */
  readonly cluster: string;
  readonly hooks: PoolHooks;
  /**
   * Bytes a connection may have queued for writing before the downstreams feeding it are paused
   * (`--per-connection-buffer-limit`; at least the socket's 16 KiB high-water mark in effect).
   */
  readonly bufferLimitBytes: number;
  /** The cluster's TLS settings, read when a connection opens (src/tls.ts); none: plaintext. */
  readonly tls?: () => UpstreamTls | undefined;
}

/** Something paused until an upstream connection's write buffer drains (a downstream connection feeding it). */
export interface DrainWaiter {
  upstreamDrained(conn: UpstreamConnection): void;
}

/** Stands in for a withdrawn FIFO request: its answer is read and dropped. */
const DISCARD: UpstreamRequest = {
  frame: undefined as never,
  session: undefined as never,
  mutation: undefined,
  expectsResponse: true,
  copyOnEncode: false,
  upstreamId: 0,
  onResponse: () => undefined,
  onFailure: () => undefined,
  contain: () => undefined,
};

/** Ids stay in the positive int32 range so that every protocol (Thrift seqids are i32) can carry them. */
const MAX_ID = 0x7fffffff;

export class UpstreamConnection {
  private readonly socket: net.Socket;
  private readonly session: CodecSession;
  private readonly outbox: Outbox;
  private state: 'connecting' | 'open' | 'closed' = 'connecting';
  /** Requests written before the socket connected (net.Socket buffers them; we only track them). */
  private readonly byId = new Map<number, UpstreamRequest>();
  /** FIFO protocols: answers come back in order. */
  private readonly fifo: UpstreamRequest[] = [];
  private fifoHead = 0;
  private nextId = 1;
  /** Answers to the session's handshake still to come (they precede every request's). */
  private handshakeReplies = 0;
  private connectTimer: NodeJS.Timeout | undefined;
  private readonly onFrameBound = (f: Frame): void => this.onFrame(f);
  /** Downstreams paused because this connection's write buffer is over the limit; released on 'drain' or close. */
  private drainWaiters: Set<DrainWaiter> | undefined;

  constructor(private readonly opts: PoolOptions, private readonly onClosed: (c: UpstreamConnection) => void) {
    this.session = opts.codec.create({ maxFrameSize: opts.maxFrameSize, side: 'upstream' });
    const tlsSettings = opts.tls?.();
    this.socket = tlsSettings ? connectTls(tlsSettings, opts.host, opts.port) : net.connect({ host: opts.host, port: opts.port, noDelay: true });
    this.outbox = new Outbox(this.socket, 'iteration', () => {
      // Congested only by batched bytes the socket has now taken whole: no 'drain' will come, so release here.
      if (this.drainWaiters !== undefined && !this.socket.writableNeedDrain) this.releaseWaiters();
    });
    const handshake = this.session.handshake?.();
    if (handshake) {
      this.handshakeReplies = handshake.replies;
      this.outbox.write(handshake.bytes);
    }
    this.connectTimer = setTimeout(() => {
      this.fail('no_healthy_upstream', `connect timeout after ${opts.connectTimeoutMs} ms to ${this.describe()}`);
    }, opts.connectTimeoutMs);
    this.socket.once(tlsSettings ? 'secureConnect' : 'connect', () => {
      clearTimeout(this.connectTimer);
      this.connectTimer = undefined;
      if (this.state !== 'connecting') return;
      this.state = 'open';
      opts.hooks.onConnectionOpen();
    });
    this.socket.on('data', (chunk: Buffer) => {
      try {
        this.session.decode(chunk, this.onFrameBound);
      } catch (thrown) {
        const { error: err, unexpected } = toCodecError(thrown);
        if (unexpected) log.errorLimited(`unexpected_upstream:${opts.cluster}`, 'unexpected error on an upstream connection', { cluster: opts.cluster, stack: stackOf(thrown) });
        opts.hooks.onDecodeError(err);
        log.warnLimited(`malformed_upstream:${opts.cluster}:${err.reason}`, 'malformed upstream frame, closing upstream connection', {
          cluster: opts.cluster,
          upstream: `${opts.host}:${opts.port}`,
          reason: err.reason,
          error: err.message,
        });
        this.fail('bad_response', `malformed response from ${this.describe()}: ${err.message}`);
      }
    });
    this.socket.on('error', (err: NodeJS.ErrnoException) => {
      const connecting = this.state === 'connecting';
      this.fail(
        connecting ? 'no_healthy_upstream' : 'upstream_reset',
        `${connecting ? 'connect failure' : 'upstream reset'} (${err.code ?? err.message}) to ${this.describe()}`,
      );
    });
    this.socket.on('close', () => this.fail('upstream_reset', `upstream connection closed by ${this.describe()}`));
    this.socket.on('drain', () => this.releaseWaiters());
  }

  /**
   * Whether requests are piling up in this connection's write buffer beyond the buffer limit: the upstream (or the
   * network) does not keep up. A waiter is always released: on 'drain', or after the flush of the batched bytes
   * when the socket took them whole.
   */
  get congested(): boolean {
    // Bytes batched for this iteration count too; a waiter is released after the flush if the socket took them all.
    return this.socket.writableLength + this.outbox.buffered > this.opts.bufferLimitBytes;
  }

  /** Bytes held for this connection: requests not yet written, answers read but not decoded yet. */
  get bufferedBytes(): number {
    return this.socket.writableLength + this.outbox.buffered + this.socket.readableLength + this.session.buffered;
  }

  /** Calls `w.upstreamDrained(this)` once the write buffer has drained (or the connection closed). */
  waitForDrain(w: DrainWaiter): void {
    (this.drainWaiters ??= new Set()).add(w);
  }

  private releaseWaiters(): void {
    const ws = this.drainWaiters;
    if (!ws) return;
    this.drainWaiters = undefined;
    for (const w of ws) w.upstreamDrained(this);
  }

  get pending(): number {
    return this.byId.size + (this.fifo.length - this.fifoHead);
  }

  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /**
   * Encodes and queues `req`. It is registered as waiting for an answer only once its bytes are queued: a frame that
   * cannot be encoded throws to the caller and leaves nothing behind here. (Queued bytes leave in a later flush, so
   * no answer can come before the registration.)
   */
  send(req: UpstreamRequest): void {
    const copy = req.copyOnEncode;
    if (this.opts.codec.multiplexing === 'id' && req.expectsResponse) {
      const id = this.allocateId();
      this.outbox.write(req.session.encode(req.frame, { requestId: id, mutation: req.mutation, copy }));
      this.byId.set(id, req);
      req.upstreamId = id;
      return;
    }
    // A oneway call gets no answer and keeps its id; FIFO protocols match answers by order.
    this.outbox.write(req.mutation || copy ? req.session.encode(req.frame, { mutation: req.mutation, copy }) : req.session.encode(req.frame));
    if (req.expectsResponse) this.fifo.push(req);
  }

  /** Withdraws a request whose downstream went away or timed out: its answer, if any, is dropped. */
  forget(req: UpstreamRequest): void {
    if (this.byId.get(req.upstreamId) === req) {
      this.byId.delete(req.upstreamId);
      return;
    }
    // FIFO: the answer still arrives in its turn and must be consumed, so the slot stays, emptied of its owner.
    const i = this.fifo.indexOf(req, this.fifoHead);
    if (i >= 0) this.fifo[i] = DISCARD;
  }

  close(): void {
    this.fail('upstream_reset', `upstream connection to ${this.describe()} closed by the proxy`);
  }

  private allocateId(): number {
    let id = this.nextId;
    // Wrapping skips ids still waiting for answers.
    while (this.byId.has(id)) id = id >= MAX_ID ? 1 : id + 1;
    this.nextId = id >= MAX_ID ? 1 : id + 1;
    return id;
  }

  private onFrame(frame: Frame): void {
    if (frame.type === 'heartbeat') {
      // The proxy sends no heartbeats upstream: an event that expects no reply answers nothing it asked.
      if (!frame.expectsReply) {
        this.opts.hooks.onStrayFrame();
        return;
      }
      const reply = this.session.heartbeatReply(frame);
      if (reply) this.outbox.write(reply);
      return;
    }
    if (frame.type === 'request' || frame.type === 'oneway') {
      this.opts.hooks.onStrayFrame();
      log.debug('ignoring a request sent by an upstream', { cluster: this.opts.cluster });
      return;
    }
    if (this.handshakeReplies > 0) {
      this.handshakeReplies--;
      if (frame.status === 'error' || frame.status === 'business_exception') {
        const answer = frame.raw.toString('utf8', 0, Math.min(frame.raw.length, 200)).replace(/\s+/g, ' ').trim();
        this.fail('no_healthy_upstream', `handshake refused by ${this.describe()}: ${answer}`);
      }
      return;
    }
    let req: UpstreamRequest | undefined;
    if (this.opts.codec.multiplexing === 'id') {
      const id = Number(frame.requestId);
      req = this.byId.get(id);
      if (req) this.byId.delete(id);
    } else if (this.fifoHead < this.fifo.length) {
      req = this.fifo[this.fifoHead];
      this.fifo[this.fifoHead++] = undefined as unknown as UpstreamRequest;
      if (this.fifoHead > 1024 && this.fifoHead * 2 > this.fifo.length) {
        this.fifo.splice(0, this.fifoHead);
        this.fifoHead = 0;
      }
    }
    if (!req) {
      this.opts.hooks.onStrayFrame();
      log.debug('dropping an upstream response nobody waits for', { cluster: this.opts.cluster, id: String(frame.requestId) });
      return;
    }
    try {
      req.onResponse(frame, this.session);
    } catch (thrown) {
      containSafely(req, thrown, 'response');
    }
  }

  private fail(kind: LocalReplyKind, message: string): void {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.socket.destroy();
    if (wasOpen) this.opts.hooks.onConnectionClose();
    this.onClosed(this);
    const waiting = [...this.byId.values(), ...this.fifo.slice(this.fifoHead)];
    this.byId.clear();
    this.fifo.length = 0;
    this.fifoHead = 0;
    for (const req of waiting) {
      try {
        req.onFailure(kind, message);
      } catch (thrown) {
        containSafely(req, thrown, 'upstream_failure');
      }
    }
    this.releaseWaiters();
  }

  private describe(): string {
    return `cluster ${this.opts.cluster} endpoint ${this.opts.host}:${this.opts.port}`;
  }
}

/** The connections to one endpoint for one codec. */
export class EndpointPool {
  private readonly conns: UpstreamConnection[] = [];
  private rr = 0;
  private readonly onClosedBound = (c: UpstreamConnection): void => this.removeConn(c);

  constructor(readonly opts: PoolOptions) {}

  get active(): number {
    let n = 0;
    for (const c of this.conns) n += c.pending;
    return n;
  }

  get connectionCount(): number {
    return this.conns.length;
  }

  get bufferedBytes(): number {
    let n = 0;
    for (const c of this.conns) n += c.bufferedBytes;
    return n;
  }

  /**
   * Sends on one of the pool's connections, opening one while below the target count and the cluster's connection
   * circuit breaker allows. Undefined when there is no connection and none may be opened.
   */
  send(req: UpstreamRequest): UpstreamConnection | undefined {
    let conn: UpstreamConnection;
    if (this.conns.length < Math.max(1, this.opts.connections) && this.opts.hooks.canOpen()) {
      conn = new UpstreamConnection(this.opts, this.onClosedBound);
      this.conns.push(conn);
    } else if (this.conns.length > 0) {
      conn = this.conns[this.rr++ % this.conns.length]!;
    } else {
      return undefined;
    }
    conn.send(req);
    return conn;
  }

  close(): void {
    for (const c of [...this.conns]) c.close();
    this.conns.length = 0;
  }

  private removeConn(c: UpstreamConnection): void {
    const i = this.conns.indexOf(c);
    if (i >= 0) this.conns.splice(i, 1);
  }
}
