/**
 * One Redis client connection through the proxy: commands are decoded, answered locally or routed by key prefix to
 * an upstream pool, and their replies written back strictly in command order — whatever order the upstreams answer
 * in. Each command is one {@link Command} object that is also its own upstream callback and timer item, so the hot
 * path makes no closures or promises per command. Multi-key commands that span routes (MGET, MSET, DEL, EXISTS,
 * UNLINK, TOUCH) fan out as {@link Part}s and are reassembled.
 */
import { timingSafeEqual } from 'node:crypto';
import type net from 'node:net';
import { stackOf, toCodecError, EMPTY_METADATA, type CodecSession, type Frame, type LocalReplyKind, type MessageType } from '../codec.js';
import type { Cluster, Endpoint } from '../cluster.js';
import type { ListenerRuntime } from '../listener.js';
import type { RequestStats } from '../metrics.js';
import { now as clockNow } from '../clock.js';
import { containSafely, recordContained, reenter, type Continuation } from '../contain.js';
import { log } from '../log.js';
import type { ConnectionHandler } from '../network-filter.js';
import { Outbox } from '../outbox.js';
import type { BufferAccount } from '../overload.js';
import type { Expirable } from '../timer-wheel.js';
import type { EndpointPool, UpstreamConnection, UpstreamRequest } from '../upstream.js';
import { describeRequest, type RedisReply, type RedisRequest, redisCodec, skipValue, valueStart } from '../../codecs/redis/index.js';
import { KEY_ERROR_ARITY, KEY_ERROR_NUMKEYS, NO_KEY } from '../../codecs/redis/request.js';
import {
  ARRAY,
  BLOB_ERROR,
  ERROR,
  INTEGER,
  arrayHeader,
  bulkReply,
  encodeCommand,
  errorReply,
  integerReply,
  mapHeader,
  nullReply,
  OK,
  parseInteger,
  PONG,
  simpleReply,
  type Piece,
} from '../../codecs/redis/resp.js';
import type { RedisProxySettings } from './config.js';
import { ASKING, isRedisCluster, keySlot, redirectionOf, slotMapOf, type Redirection, type SlotMapSink } from './cluster-mode.js';
import type { MirrorPolicy, RedisRoute } from './router.js';
import { redisCounters, type RedisCounters } from './metrics.js';
import { upstreamCodec } from './upstream.js';

/** What a listener serving redis_proxy carries in its settings (read per chunk, so config changes apply at once). */
export interface RedisListenerConfig {
  readonly redis?: RedisProxySettings;
}

/** Encodes frames for upstream writes: Redis frames go as their bytes. */
const WIRE: CodecSession = redisCodec.create({ maxFrameSize: Number.MAX_SAFE_INTEGER, side: 'downstream' });

/** Redirections (MOVED/ASK) followed for one command before its last answer is passed on. */
const MAX_REDIRECTS = 3;
/** Failed AUTH / HELLO AUTH attempts one connection may make; the last one's reply is followed by the close. */
export const MAX_AUTH_FAILURES = 5;
/** The Redis feature level the proxy speaks, as HELLO and INFO report it. */
const REDIS_VERSION = '7.0.0';

const Phase = { Waiting: 0, Upstream: 1, Delayed: 2, Done: 3 } as const;
type Phase = (typeof Phase)[keyof typeof Phase];

type Outcome = 'success' | 'error' | 'business_exception' | 'local_reply';

let nextConnectionId = 1;

/** Bytes to send upstream that are not a decoded frame (rewritten keys, fan-out parts). */
class OutFrame implements Frame {
  readonly type: MessageType = 'request';
  readonly requestId = 0;
  readonly metadata = EMPTY_METADATA;
  constructor(readonly raw: Buffer) {}
}

/** An upstream request the connection can batch and track. */
interface Sendable extends UpstreamRequest {
  /** The connection it went out on (undefined: none could be had). */
  attach(conn: UpstreamConnection | undefined): void;
  /** False once answered, failed, timed out or abandoned: a batched request is then not sent. */
  readonly live: boolean;
}

/**
 * Batches upstream writes of one pool across client connections (`max_buffer_size_before_flush`): requests wait
 * until their bytes reach the limit or `buffer_flush_timeout` passes since the first, then leave together.
 */
class Batcher {
  private items: Sendable[] = [];
  private bytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly flushBound = (): void => this.flush();

  constructor(private readonly pool: EndpointPool) {}

  add(req: Sendable, limit: number, timeoutMs: number): void {
    this.items.push(req);
    this.bytes += req.frame.raw.length;
    if (this.bytes >= limit) this.flush();
    else if (this.timer === undefined) this.timer = setTimeout(this.flushBound, timeoutMs);
  }

  flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const items = this.items;
    this.items = [];
    this.bytes = 0;
    // Each request on its own: a throw (a frame that cannot be sent) fails that request, not the batch.
    for (const req of items) if (req.live) reenter(req, 'flush', () => req.attach(this.pool.send(req)));
  }
}

const batchers = new WeakMap<EndpointPool, Batcher>();

function dispatch(settings: RedisProxySettings, pool: EndpointPool, req: Sendable): void {
  if (settings.maxBufferBeforeFlush > 0) {
    let b = batchers.get(pool);
    if (b === undefined) {
      b = new Batcher(pool);
      batchers.set(pool, b);
    }
    b.add(req, settings.maxBufferBeforeFlush, settings.bufferFlushTimeoutMs);
  } else {
    req.attach(pool.send(req));
  }
}

/** The key bytes the endpoint hash uses: the `{tag}` with hash tagging (Redis Cluster's rule), else the whole key. */
function hashOf(buf: Buffer, start: number, end: number, hashtagging: boolean): string {
  if (hashtagging) {
    const open = buf.indexOf(0x7b, start);
    if (open >= 0 && open < end) {
      const close = buf.indexOf(0x7d, open + 1);
      if (close > open + 1 && close < end) return buf.toString('latin1', open + 1, close);
    }
  }
  return buf.toString('latin1', start, end);
}

/** Whether keys choose the endpoint: a Redis Cluster (by slot), or a consistent-hash cluster of several endpoints. */
function hashes(cluster: Cluster): boolean {
  if (isRedisCluster(cluster)) return true;
  const p = cluster.settings.lbPolicy;
  return (p === 'RING_HASH' || p === 'MAGLEV') && cluster.endpoints.length > 1;
}

/** The endpoint for a key hash (undefined: any): its slot's node in a Redis Cluster, else the load balancer's pick. */
function endpointOf(cluster: Cluster, hash: string | undefined): Endpoint | undefined {
  if (isRedisCluster(cluster) && hash !== undefined) return slotMapOf(cluster).endpointFor(keySlot(hash));
  return cluster.pick(hash, undefined);
}

/**
 * A command's answer is a redirection to follow (Redis Cluster, or `enable_redirection`)? A redirection naming a
 * port, slot or host that cannot be is counted and becomes the error its command is answered with.
 */
function redirectionFor(frame: Frame, cluster: Cluster | undefined, conn: RedisConnection, redirects: number): Redirection | Buffer | undefined {
  if (frame.status !== 'error' || cluster === undefined || redirects >= MAX_REDIRECTS) return undefined;
  if (!isRedisCluster(cluster) && !conn.settings.redirection) return undefined;
  try {
    return redirectionOf(frame.raw);
  } catch (err) {
    conn.counters.invalid.labels(cluster.name, 'redirection').inc();
    log.warnLimited(`redis_redirection:${cluster.name}`, 'redis: an upstream redirection names an unusable node; its command fails', {
      cluster: cluster.name,
      error: (err as Error).message,
    });
    return errorReply(`ERR upstream sent an unusable redirection: ${(err as Error).message}`);
  }
}

/** Counts a reply the codec refused (over the size or depth limit) and skipped. */
function noteRefused(frame: Frame, conn: RedisConnection): void {
  const why = (frame as RedisReply).refused;
  if (why !== undefined) conn.counters.replies.labels(conn.listener.name, why).inc();
}

/**
 * Sends `req` again to the node a redirection names (after `ASKING` for ASK; MOVED also updates the slot map).
 * Undefined when no connection could be had.
 */
function resend(req: UpstreamRequest, cluster: Cluster, r: Redirection, resp3: boolean): { endpoint: Endpoint; conn: UpstreamConnection | undefined } {
  const map = slotMapOf(cluster);
  const endpoint = r.ask ? map.node(r.host, r.port) : map.moved(r);
  const pool = cluster.pool(endpoint, upstreamCodec(cluster, resp3), 'redis');
  if (r.ask) pool.send(new Asking());
  return { endpoint, conn: pool.send(req) };
}

/** ASKING before an ASK-redirected command; its answer is dropped. */
class Asking implements UpstreamRequest {
  readonly frame: Frame = new OutFrame(ASKING);
  readonly session = WIRE;
  readonly mutation = undefined;
  readonly expectsResponse = true;
  readonly copyOnEncode = false;
  upstreamId = 0;
  onResponse(): void {}
  onFailure(): void {}
  contain(): void {}
}

/** Where one upstream request goes: the cluster, the endpoint and its pool (or a local error reply). */
interface Target {
  cluster: Cluster;
  endpoint: Endpoint;
  pool: EndpointPool;
}

export class RedisConnection implements ConnectionHandler, Expirable {
  readonly id = nextConnectionId++;
  /** When the chunk being handled was read (performance.now()): the start time of the commands it holds. */
  readAt = 0;
  /** Owned by the timer wheel: this connection sweeps its commands' op timeouts (one wheel entry, not one each). */
  wheelTick = -1;
  wheelIndex = -1;
  /** The deadline the wheel entry is set for. */
  private sweepAt = Number.POSITIVE_INFINITY;
  /** Commands decoded while the connection was at its pending limit, started as replies drain. */
  private held: Frame[] | undefined;
  private heldHead = 0;
  private releasing = false;
  /** Frame deadline (slowloris): when the incomplete command the session holds was begun, or -1. */
  private frameStartedAt = -1;
  private framesDecoded = 0;
  private readonly session: CodecSession;
  private readonly outbox: Outbox;
  private queue: Array<Command | undefined> = [];
  private head = 0;
  private closed = false;
  /** QUIT or a protocol error: nothing more is read; the connection ends once the replies before are written. */
  private closing = false;
  private paused = false;
  private account: BufferAccount | undefined;
  authed: boolean;
  resp3 = false;
  private clientName: Buffer | undefined;
  private authFailures = 0;
  settings: RedisProxySettings;
  readonly counters: RedisCounters;
  /** Where the slot maps this connection uses count what their nodes send that cannot be used. */
  readonly slotSink: SlotMapSink;
  private readonly onFrameBound = (f: Frame): void => this.onFrame(f);

  constructor(
    private readonly socket: net.Socket,
    readonly listener: ListenerRuntime,
    settings: RedisProxySettings,
  ) {
    this.settings = settings;
    this.authed = settings.passwords === undefined;
    this.counters = redisCounters(listener.metricsRegistry);
    const invalid = this.counters.invalid;
    this.slotSink = { invalid: (cluster, what) => invalid.labels(cluster, what).inc() };
    this.session = listener.codec.create({ maxFrameSize: listener.maxFrameSize, side: 'downstream' });
    // After a flush the socket may have taken everything (no 'drain' then): commands held for the buffer go on.
    this.outbox = new Outbox(socket, 'tick', () => {
      if (this.held !== undefined) this.maybeResume();
    });
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => this.maybeResume());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      log.debug('downstream socket error', { listener: listener.name, error: err.code ?? err.message });
    });
    socket.on('close', () => this.onClose());
    const idle = listener.limits.idleTimeoutMs;
    if (idle > 0) {
      // Node re-arms the socket timer on every read and write: it fires after `idle` ms without a byte either way.
      socket.setTimeout(idle);
      socket.on('timeout', () => this.onIdle());
    }
  }

  get pending(): number {
    return this.queue.length - this.head;
  }

  /** The listener's request stats for a route × cluster; the last pair is kept (a pipeline mostly repeats it). */
  statsFor(route: string, cluster: string): RequestStats {
    if (route !== this.lastStatsRoute || cluster !== this.lastStatsCluster) {
      this.lastStats = this.listener.stats(route, cluster);
      this.lastStatsRoute = route;
      this.lastStatsCluster = cluster;
    }
    return this.lastStats!;
  }
  private lastStatsRoute: string | undefined;
  private lastStatsCluster: string | undefined;
  private lastStats: RequestStats | undefined;

  /** Bytes held for this connection: replies not yet written, bytes read but not decoded, an incomplete command. */
  get bufferedBytes(): number {
    if (this.closed) return 0;
    return this.socket.writableLength + this.outbox.buffered + this.socket.readableLength + this.session.buffered;
  }

  close(): void {
    this.socket.destroy();
  }

  /** A throw in this connection's own continuations (its sweep, a flush): counted, and only this client closes. */
  contain(thrown: unknown, where: Continuation): void {
    this.listener.containedError(where, recordContained(thrown, where, this.listener.name));
    this.socket.destroy();
  }

  closeWhenIdle(): void {
    if (this.pending === 0) {
      this.outbox.flush();
      this.socket.end();
    }
    else setTimeout(() => reenter(this, 'timer', () => this.closeWhenIdle()), 50).unref();
  }

  // ------------------------------------------------------------------------------------------------ input

  private onData(chunk: Buffer): void {
    if (this.closing || this.closed) return;
    const current = (this.listener.config as RedisListenerConfig).redis;
    if (current === undefined) {
      // The listener no longer runs the Redis proxy: this connection belongs to the old config.
      this.socket.destroy();
      return;
    }
    if (current !== this.settings) {
      if (current.passwords === undefined) this.authed = true;
      else if (this.settings.passwords === undefined) this.authed = false;
      this.settings = current;
    }
    this.readAt = clockNow();
    const before = this.framesDecoded;
    try {
      this.session.decode(chunk, this.onFrameBound);
    } catch (thrown) {
      const { error: err, unexpected } = toCodecError(thrown);
      if (unexpected) log.errorLimited(`unexpected:${this.listener.name}`, 'unexpected error on a redis connection', { listener: this.listener.name, stack: stackOf(thrown) });
      this.listener.decodeErrors.inc();
      log.warnLimited(`malformed:${this.listener.name}:${err.reason}`, 'malformed redis command, closing the connection', {
        listener: this.listener.name,
        remote: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
        reason: err.reason,
        error: err.message,
      });
      this.closing = true;
      this.local(errorReply(`ERR Protocol error: ${err.message}`), true);
      return;
    }
    const limits = this.listener.limits;
    // Limits (docs/operations-limits.md). A Redis client pipelines by design: at the pending limit reading pauses
    // until replies drain, where a MetaProtocol listener answers over-limit.
    if (!this.paused) {
      if (this.held !== undefined || this.pending >= limits.maxPendingPerConnection) this.pause(this.listener.counters.pausedByPending);
      else if (this.socket.writableLength + this.outbox.buffered > limits.bufferLimitBytes) this.pause(this.listener.counters.pausedByDownstream);
    }
    if (limits.frameTimeoutMs > 0) {
      if (this.session.buffered > 0) {
        // A new incomplete command (none yet, or the previous one completed in this chunk) starts the clock.
        if (this.frameStartedAt < 0 || this.framesDecoded !== before) {
          this.frameStartedAt = this.readAt;
          this.watch(this.readAt + limits.frameTimeoutMs);
        }
      } else this.frameStartedAt = -1;
    }
    // An incomplete command beyond the per-connection limit goes against the memory budget, which may pause or shed it.
    const account = (this.account ??= this.listener.overload.account(this.listener.name, limits.bufferLimitBytes, {
      pause: () => this.socket.pause(),
      resume: () => {
        if (!this.paused && !this.closed) this.socket.resume();
      },
      shed: () => this.socket.destroy(),
      bytes: () => this.bufferedBytes,
    }));
    account.update(this.session.buffered + this.socket.readableLength);
  }

  private pause(counter: { inc(): void }): void {
    this.paused = true;
    counter.inc();
    this.socket.pause();
  }

  private onIdle(): void {
    if (this.closed || this.pending > 0) return; // a reply still due; its write re-arms the timer
    // Commands held, or replies not yet taken by a client that is not reading: not idle (as Envoy: no active requests).
    if (this.held !== undefined || this.socket.writableLength > 0) return;
    if (this.frameStartedAt >= 0 && this.listener.limits.frameTimeoutMs > 0) return; // a command begun: the frame deadline's
    this.listener.counters.idleTimeout.inc();
    log.debug('closing an idle redis connection', {
      listener: this.listener.name,
      remote: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
      idle_timeout_ms: this.listener.limits.idleTimeoutMs,
    });
    this.socket.destroy();
  }

  /** The frame deadline passed: the incomplete command is too old, unless the proxy was the one not reading. */
  private checkFrameDeadline(now: number): number {
    if (this.frameStartedAt < 0) return Number.POSITIVE_INFINITY;
    const timeout = this.listener.limits.frameTimeoutMs;
    if (timeout <= 0) return Number.POSITIVE_INFINITY;
    if (this.paused) this.frameStartedAt = now;
    const at = this.frameStartedAt + timeout;
    if (at > now) return at;
    this.listener.counters.frameTimeout.inc();
    log.warnLimited(`frame_timeout:${this.listener.name}`, 'a redis command did not complete in time, closing the connection', {
      listener: this.listener.name,
      remote: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
      frame_timeout_ms: timeout,
      buffered: this.session.buffered,
    });
    this.socket.destroy();
    return Number.POSITIVE_INFINITY;
  }

  private onFrame(frame: Frame): void {
    this.framesDecoded++;
    if (this.closing) return;
    // At the pending limit, commands decoded from the chunk already read wait, in order, until replies drain.
    if (this.held !== undefined || this.pending >= this.listener.limits.maxPendingPerConnection) {
      (this.held ??= []).push(frame);
      return;
    }
    this.handle(frame);
  }

  /** Starts the commands held at the pending limit, while there is room. */
  private releaseHeld(): void {
    const held = this.held;
    if (held === undefined || this.releasing) return;
    this.releasing = true;
    const { maxPendingPerConnection: max, bufferLimitBytes } = this.listener.limits;
    // Not while replies pile up unread: a client that does not read gets no more of them.
    while (this.heldHead < held.length && this.pending < max && !this.closed && this.socket.writableLength + this.outbox.buffered <= bufferLimitBytes) {
      this.handle(held[this.heldHead++]!);
    }
    if (this.heldHead >= held.length || this.closed) {
      this.held = undefined;
      this.heldHead = 0;
    }
    this.releasing = false;
  }

  /** One decoded command; what it throws closes this connection only (its place in the reply order is lost). */
  private handle(frame: Frame): void {
    if (this.closing) return;
    try {
      this.command(frame as RedisRequest);
    } catch (thrown) {
      this.closing = true;
      containSafely(this, thrown, 'request');
    }
  }

  private command(req: RedisRequest): void {
    const spec = req.spec;
    if (!this.authed && spec.kind !== 'local') {
      this.reject(errorReply('NOAUTH Authentication required.'));
      return;
    }
    switch (spec.kind) {
      case 'local':
        this.localCommand(req);
        return;
      case 'unsupported':
        this.refuse('unsupported_command', `ERR unsupported command '${printableKey(req.command)}'${spec.reason ? `: ${spec.reason}` : ''}`);
        return;
      case 'mget':
      case 'mset':
      case 'sum':
        this.fanOut(req);
        return;
      default:
        this.routed(req);
    }
  }

  /** Commands routed whole to one upstream: by their key(s), or to the catch-all route when keyless. */
  private routed(req: RedisRequest): void {
    const spec = req.spec;
    const router = this.settings.router;
    const ki = spec.kind === 'keyless' ? NO_KEY : req.firstKeyIndex();
    if (ki === KEY_ERROR_ARITY) {
      this.reject(errorReply(`ERR wrong number of arguments for '${req.command}' command`));
      return;
    }
    if (ki === KEY_ERROR_NUMKEYS) {
      this.reject(errorReply('ERR value is not an integer or out of range'));
      return;
    }
    if (spec.script && ki === NO_KEY) {
      // A script without declared keys could touch any route's keys: there is no route it may run on.
      this.refuse('script_without_keys', `ERR unsupported command '${req.command}' without keys: a script must declare the keys it uses (numkeys > 0)`);
      return;
    }
    if (spec.patternOption && hasSortPattern(req)) {
      this.refuse('sort_pattern', `ERR unsupported command '${req.command}' with BY or GET patterns: they read keys the proxy cannot route`);
      return;
    }
    if (spec.dbOption && hasDbOption(req)) {
      this.refuse('other_database', `ERR unsupported command '${req.command}' with DB: the proxy serves database 0 only`);
      return;
    }
    if (spec.blockOption && req.hasBlockOption()) {
      this.reject(errorReply(`ERR unsupported command '${req.command}' with BLOCK: blocking commands would stall every client sharing the upstream connection`));
      return;
    }
    if (ki === NO_KEY) {
      const route = router.catchAll;
      if (route === undefined) {
        this.reject(errorReply(`ERR no route for command '${req.command}'`));
        return;
      }
      this.start(req, route, req, undefined, undefined);
      return;
    }
    const raw = req.raw;
    const route = router.match(raw, req.argStart(ki), req.argEnd(ki));
    if (route === undefined) {
      this.reject(errorReply(`ERR no route for ${describeRequest(req)}`));
      return;
    }
    // Several keys: all must meet on one route (and endpoint, when the cluster hashes keys).
    let keys: number[] | undefined;
    if (req.argc > ki + 1 && (spec.kind !== 'keys' || spec.last !== spec.first || spec.storeOption)) {
      keys = req.keyIndices();
      if (keys.length > 1) {
        for (const k of keys) {
          const other = router.match(raw, req.argStart(k), req.argEnd(k));
          if (other !== route) {
            this.reject(
              errorReply(`CROSSSLOT Keys in request don't route to the same upstream: '${req.command}' has keys for routes '${route.name}' and '${other?.name ?? '(none)'}'`),
            );
            return;
          }
        }
      } else keys = undefined;
    }
    if (spec.script && !route.allowScripts) {
      this.refuse('script_not_allowed', `ERR unsupported command '${req.command}': scripts are not allowed on route '${route.name}'`);
      return;
    }
    let hash: string | undefined;
    const cluster = this.listener.clusters.get(route.cluster);
    if (cluster !== undefined && hashes(cluster)) {
      hash = hashOf(raw, req.argStart(ki), req.argEnd(ki), this.settings.hashtagging);
      if (keys !== undefined) {
        const first = endpointOf(cluster, hash);
        for (const k of keys) {
          if (endpointOf(cluster, hashOf(raw, req.argStart(k), req.argEnd(k), this.settings.hashtagging)) !== first) {
            this.reject(
              errorReply(`CROSSSLOT Keys in request don't hash to the same upstream server of cluster ${cluster.name}: use hash tags ({…}) with enable_hashtagging`),
            );
            return;
          }
        }
      }
    }
    let out: Frame = req;
    if (route.removePrefix && route.prefix.length > 0) {
      const strip = route.prefix.length;
      const stripped = keys ?? [ki];
      const pieces: Piece[] = [];
      for (let i = 0; i < req.argc; i++) {
        const s = req.argStart(i);
        pieces.push([raw, stripped.includes(i) ? s + strip : s, req.argEnd(i)]);
      }
      out = new OutFrame(encodeCommand(pieces));
    }
    this.start(req, route, out, hash, cluster);
  }

  /** MGET / MSET / DEL, EXISTS, UNLINK, TOUCH: one request per route × endpoint, answers reassembled in order. */
  private fanOut(req: RedisRequest): void {
    const spec = req.spec;
    const argc = req.argc;
    if (argc < 2 || (spec.kind === 'mset' && (argc - 1) % 2 !== 0)) {
      this.reject(errorReply(`ERR wrong number of arguments for '${req.command}' command`));
      return;
    }
    if (argc - 1 > MAX_SPLIT_ARGS) {
      // Splitting and merging run on the event loop: 200k keys held it for 0.3 s, every other client waiting.
      this.refuse('too_many_keys', `ERR '${req.command}' with ${argc - 1} arguments: the proxy splits at most ${MAX_SPLIT_ARGS} (send them in batches)`);
      return;
    }
    const router = this.settings.router;
    const raw = req.raw;
    const keys = req.keyIndices();
    const groups: Group[] = [];
    const unrouted: number[] = [];
    for (let slot = 0; slot < keys.length; slot++) {
      const k = keys[slot]!;
      const route = router.match(raw, req.argStart(k), req.argEnd(k));
      if (route === undefined) {
        unrouted.push(slot);
        continue;
      }
      const cluster = this.listener.clusters.get(route.cluster);
      let endpoint: Endpoint | undefined;
      // A Redis Cluster takes multi-key commands only for keys of one hash slot: group by slot there.
      let hashSlot = -1;
      if (cluster !== undefined && hashes(cluster)) {
        const hash = hashOf(raw, req.argStart(k), req.argEnd(k), this.settings.hashtagging);
        if (isRedisCluster(cluster)) hashSlot = keySlot(hash);
        endpoint = endpointOf(cluster, hash);
      }
      let g: Group | undefined;
      for (const x of groups) {
        if (x.route === route && x.endpoint === endpoint && x.hashSlot === hashSlot) {
          g = x;
          break;
        }
      }
      if (g === undefined) {
        g = { route, endpoint, hashSlot, slots: [] };
        groups.push(g);
      }
      g.slots.push(slot);
    }
    // All keys on one route and endpoint, nothing to rewrite: forward the command as it came.
    if (groups.length === 1 && unrouted.length === 0 && !(groups[0]!.route.removePrefix && groups[0]!.route.prefix.length > 0)) {
      const g = groups[0]!;
      const cluster = this.listener.clusters.get(g.route.cluster);
      const hash = g.endpoint !== undefined ? hashOf(raw, req.argStart(keys[0]!), req.argEnd(keys[0]!), this.settings.hashtagging) : undefined;
      this.start(req, g.route, req, hash, cluster);
      return;
    }
    if (groups.length === 0) {
      this.reject(errorReply(`ERR no route for ${describeRequest(req)}`));
      return;
    }
    const cmd = this.enqueue(req);
    if (!this.applyFault(cmd)) return;
    const fan = new FanOut(cmd, keys.length, spec.kind as 'mget' | 'mset' | 'sum');
    cmd.fan = fan;
    cmd.phase = Phase.Upstream;
    for (const slot of unrouted) {
      const k = keys[slot]!;
      fan.localSlot(slot, errorReply(`ERR no route for key '${printableKey(req.argString(k))}'`));
    }
    const name: Piece = [raw, req.argStart(0), req.argEnd(0)];
    for (const g of groups) {
      const strip = g.route.removePrefix ? g.route.prefix.length : 0;
      const pieces: Piece[] = [name];
      for (const slot of g.slots) {
        const k = keys[slot]!;
        pieces.push([raw, req.argStart(k) + strip, req.argEnd(k)]);
        if (spec.kind === 'mset') pieces.push([raw, req.argStart(k + 1), req.argEnd(k + 1)]);
      }
      const part = new Part(fan, g.route, g.slots, new OutFrame(encodeCommand(pieces)));
      fan.parts.push(part);
    }
    cmd.armTimeout();
    for (const part of fan.parts) {
      const k = keys[part.slots[0]!]!;
      const cluster = this.listener.clusters.get(part.route.cluster);
      const hash = cluster !== undefined && hashes(cluster) ? hashOf(raw, req.argStart(k), req.argEnd(k), this.settings.hashtagging) : undefined;
      part.send(this, hash);
      this.mirror(part.route, req, part.frame, hash);
    }
  }

  /** Starts a command routed whole to `route`. */
  private start(req: RedisRequest, route: RedisRoute, out: Frame, hash: string | undefined, cluster: Cluster | undefined): void {
    const cmd = this.enqueue(req);
    cmd.route = route;
    if (!this.applyFault(cmd)) return;
    cmd.frame = out;
    cmd.send(cluster ?? this.listener.clusters.get(route.cluster), hash);
    this.mirror(route, req, out, hash);
  }

  /** Faults (after auth and local commands, as Envoy): an ERROR fault answers now; a DELAY holds the answer. */
  private applyFault(cmd: Command): boolean {
    const faults = this.settings.faults;
    if (faults === undefined) return true;
    const fault = faults.pick(cmd.request!.command);
    if (fault === undefined) return true;
    const routeName = cmd.route?.name ?? 'none';
    this.listener.faultCounter(routeName, fault.type === 'error' ? 'abort' : 'delay').inc();
    cmd.delayMs = fault.delayMs;
    if (fault.type === 'error') {
      cmd.complete(errorReply('ERR Fault Injected: Error'), 'local_reply');
      return false;
    }
    return true;
  }

  private mirror(route: RedisRoute, req: RedisRequest, out: Frame, hash: string | undefined): void {
    const mirrors = route.mirrors;
    for (let i = 0; i < mirrors.length; i++) {
      const m: MirrorPolicy = mirrors[i]!;
      if (m.excludeReads && !req.spec.write) continue;
      if (m.fraction < 1 && Math.random() >= m.fraction) continue;
      new Mirror(out).send(this, m.cluster, hash);
    }
  }

  // ------------------------------------------------------------------------------------------------ local commands

  private localCommand(req: RedisRequest): void {
    const argc = req.argc;
    switch (req.command) {
      case 'auth':
        this.auth(req);
        return;
      case 'hello':
        this.hello(req);
        return;
      case 'quit':
        this.closing = true;
        this.local(OK, true);
        return;
      case 'reset':
        this.resp3 = false;
        this.clientName = undefined;
        this.authed = this.settings.passwords === undefined;
        this.local(simpleReply('RESET'));
        return;
    }
    if (!this.authed) {
      this.local(errorReply('NOAUTH Authentication required.'));
      return;
    }
    switch (req.command) {
      case 'ping':
        if (argc === 1) this.local(PONG);
        else if (argc === 2) this.local(bulkReply(req.raw, req.argStart(1), req.argEnd(1)));
        else this.wrongArgs(req);
        return;
      case 'echo':
        if (argc === 2) this.local(bulkReply(req.raw, req.argStart(1), req.argEnd(1)));
        else this.wrongArgs(req);
        return;
      case 'time': {
        const micros = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000));
        this.local(Buffer.concat([arrayHeader(2), bulkReply(String(micros / 1_000_000n)), bulkReply(String(micros % 1_000_000n))]));
        return;
      }
      case 'select': {
        if (argc !== 2) this.wrongArgs(req);
        else if (req.integerArg(1) === 0) this.local(OK);
        else this.local(errorReply(`ERR unsupported command 'select' with database ${printableKey(req.argString(1))}: the proxy serves database 0 only`));
        return;
      }
      case 'client':
        this.client(req);
        return;
      case 'info':
        // Never forwarded: a server's INFO tells its configuration, clients and replication to whoever asks.
        this.local(this.infoReply());
        return;
      default:
        this.local(errorReply(`ERR unsupported command '${req.command}'`));
    }
  }

  private client(req: RedisRequest): void {
    const sub = req.argLower(1);
    switch (sub) {
      case 'setname':
        if (req.argc !== 3) return this.wrongArgs(req);
        this.clientName = req.argLength(2) > 0 ? Buffer.from(req.arg(2)) : undefined;
        return this.local(OK);
      case 'getname':
        return this.local(this.clientName ? bulkReply(this.clientName) : nullReply(this.resp3));
      case 'setinfo':
        return this.local(OK);
      case 'id':
        return this.local(integerReply(this.id));
    }
  }

  private wrongArgs(req: RedisRequest): void {
    this.local(errorReply(`ERR wrong number of arguments for '${req.command}' command`));
  }

  private auth(req: RedisRequest): void {
    const argc = req.argc;
    if (argc < 2 || argc > 3) {
      this.local(errorReply(argc < 2 ? "ERR wrong number of arguments for 'auth' command" : 'ERR syntax error'));
      return;
    }
    if (this.settings.passwords === undefined) {
      this.local(
        errorReply('ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?'),
      );
      return;
    }
    if (this.checkCredentials(argc === 3 ? req.arg(1) : undefined, req.arg(argc - 1))) {
      this.authed = true;
      this.local(OK);
    } else {
      this.authFailed();
    }
  }

  /**
   * A wrong password: WRONGPASS, counted; the MAX_AUTH_FAILURES-th on one connection also closes it (after that
   * reply), so guessing costs a new connection every few tries instead of running at pipeline speed.
   */
  private authFailed(): void {
    const auth = this.counters.auth;
    auth.labels(this.listener.name, 'rejected').inc();
    const wrong = errorReply('WRONGPASS invalid username-password pair or user is disabled.');
    if (++this.authFailures < MAX_AUTH_FAILURES) {
      this.local(wrong);
      return;
    }
    auth.labels(this.listener.name, 'closed').inc();
    log.warnLimited(`redis_auth:${this.listener.name}`, 'closing a redis connection after too many failed AUTH attempts', {
      listener: this.listener.name,
      remote: `${this.socket.remoteAddress}:${this.socket.remotePort}`,
      failures: this.authFailures,
    });
    this.closing = true;
    this.local(wrong, true);
  }

  private checkCredentials(user: Buffer | undefined, password: Buffer): boolean {
    const expectedUser = this.settings.username ?? 'default';
    if (user !== undefined ? !sameBytes(user, Buffer.from(expectedUser)) : this.settings.username !== undefined && this.settings.username !== 'default') {
      return false;
    }
    let ok = false;
    for (const p of this.settings.passwords ?? []) if (sameBytes(password, Buffer.from(p))) ok = true;
    return ok;
  }

  /** HELLO [protover [AUTH username password] [SETNAME clientname]]: answered by the proxy. */
  private hello(req: RedisRequest): void {
    const argc = req.argc;
    let proto = this.resp3 ? 3 : 2;
    let i = 1;
    if (argc >= 2) {
      const v = req.integerArg(1);
      if (v !== 2 && v !== 3) {
        this.local(errorReply('NOPROTO unsupported protocol version'));
        return;
      }
      proto = v;
      i = 2;
    }
    let user: Buffer | undefined;
    let password: Buffer | undefined;
    let name: Buffer | undefined;
    for (; i < argc; i++) {
      if (req.argIs(i, 'auth') && i + 2 < argc) {
        user = req.arg(i + 1);
        password = req.arg(i + 2);
        i += 2;
      } else if (req.argIs(i, 'setname') && i + 1 < argc) {
        name = Buffer.from(req.arg(++i));
      } else {
        this.local(errorReply(`ERR Syntax error in HELLO option '${printableKey(req.argString(i))}'`));
        return;
      }
    }
    if (password !== undefined) {
      if (this.settings.passwords === undefined) {
        this.local(errorReply('ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?'));
        return;
      }
      if (!this.checkCredentials(user, password)) {
        this.authFailed();
        return;
      }
      this.authed = true;
    } else if (!this.authed) {
      this.local(
        errorReply(
          'NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time',
        ),
      );
      return;
    }
    if (name !== undefined) this.clientName = name.length > 0 ? name : undefined;
    this.resp3 = proto === 3;
    const r3 = this.resp3;
    this.local(
      Buffer.concat([
        mapHeader(7, r3),
        bulkReply('server'),
        bulkReply('redis'),
        bulkReply('version'),
        bulkReply(REDIS_VERSION),
        bulkReply('proto'),
        integerReply(proto),
        bulkReply('id'),
        integerReply(this.id),
        bulkReply('mode'),
        bulkReply('standalone'),
        bulkReply('role'),
        bulkReply('master'),
        bulkReply('modules'),
        arrayHeader(0),
      ]),
    );
  }

  /** INFO when there is no catch-all route to ask: what clients' ready checks look for. */
  private infoReply(): Buffer {
    return bulkReply(
      `# Server\r\nredis_version:${REDIS_VERSION}\r\nredis_mode:standalone\r\nproxy:waypost\r\n\r\n# Persistence\r\nloading:0\r\n`,
    );
  }

  // ------------------------------------------------------------------------------------------------ output

  /** A reply the proxy makes itself, in its turn. */
  private local(bytes: Buffer, closeAfter = false): void {
    if (this.head === this.queue.length && !closeAfter) {
      this.write(bytes);
      return;
    }
    const cmd = new Command(this, undefined);
    cmd.closeAfter = closeAfter;
    this.queue.push(cmd);
    cmd.complete(bytes, 'none');
  }

  /** A command the policy refuses (never forwarded): counted as a local reply and by reason. */
  private refuse(reason: string, text: string): void {
    this.counters.refused.labels(this.listener.name, reason).inc();
    this.reject(errorReply(text));
  }

  /** An error the proxy answers a data command with (no route, unsupported, …): counted as a local reply. */
  private reject(bytes: Buffer): void {
    this.listener.stats('none', 'none').record('local_reply', 0);
    this.local(bytes);
  }

  private enqueue(req: RedisRequest): Command {
    const cmd = new Command(this, req);
    this.queue.push(cmd);
    return cmd;
  }

  /** A command finished: writes every finished reply at the head of the queue, in order. */
  completed(cmd: Command): void {
    if (this.queue[this.head] !== cmd) return;
    const q = this.queue;
    while (this.head < q.length) {
      const c = q[this.head]!;
      if (c.phase !== Phase.Done) break;
      q[this.head++] = undefined;
      this.write(c.reply!);
      if (c.closeAfter) {
        this.outbox.flush();
        this.socket.end();
        return;
      }
    }
    if (this.head === q.length) {
      q.length = 0;
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > q.length) {
      q.splice(0, this.head);
      this.head = 0;
    }
    this.maybeResume();
  }

  private write(bytes: Buffer): void {
    if (!this.closed) this.outbox.write(bytes);
  }

  /**
   * Op timeouts. Every command of a connection gets the same `op_timeout` from the moment it is sent, and commands
   * are sent in queue order, so the earliest deadline is that of the first command still upstream: one wheel entry
   * per connection, set for it, replaces a schedule and a cancel per command.
   */
  watch(deadline: number): void {
    if (deadline >= this.sweepAt && this.wheelTick >= 0) return;
    this.sweepAt = deadline;
    this.listener.wheel.schedule(this, deadline - performance.now());
  }

  /** The wheel entry fired: the frame deadline, then the commands past their op timeout; then waits for the next. */
  onDeadline(): void {
    this.sweepAt = Number.POSITIVE_INFINITY;
    if (this.closed) return;
    const now = performance.now();
    const frameAt = this.checkFrameDeadline(now);
    if (this.closed) return;
    const q = this.queue;
    let expired: Command[] | undefined;
    let next = Number.POSITIVE_INFINITY;
    for (let i = this.head; i < q.length; i++) {
      const c = q[i];
      if (c === undefined || c.phase !== Phase.Upstream) continue;
      if (c.deadline <= now) (expired ??= []).push(c);
      else if (c.deadline < next) {
        next = c.deadline;
        break; // later commands were sent later
      }
    }
    if (expired !== undefined) for (const c of expired) c.expire();
    next = Math.min(next, frameAt);
    if (next !== Number.POSITIVE_INFINITY && !this.closed) this.watch(next);
  }

  private maybeResume(): void {
    this.releaseHeld();
    const limits = this.listener.limits;
    if (this.paused && this.held === undefined && this.pending <= limits.maxPendingPerConnection / 2 && this.socket.writableLength + this.outbox.buffered <= limits.bufferLimitBytes / 2) {
      this.paused = false;
      this.socket.resume();
    }
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.account?.close();
    if (this.wheelTick >= 0) this.listener.wheel.cancel(this);
    this.held = undefined;
    for (let i = this.head; i < this.queue.length; i++) this.queue[i]?.abandon();
    this.queue = [];
    this.head = 0;
    this.listener.connectionClosed(this);
  }
}

interface Group {
  route: RedisRoute;
  endpoint: Endpoint | undefined;
  /** The Redis Cluster hash slot of its keys, or -1. */
  hashSlot: number;
  /** Positions of its keys among the command's keys. */
  slots: number[];
}

/**
 * Picks an endpoint and a pool for one upstream request, or says why not (as a local reply kind and message).
 */
function target(conn: RedisConnection, cluster: Cluster | undefined, clusterName: string, hash: string | undefined): Target | [LocalReplyKind, string] {
  if (cluster === undefined) return ['no_healthy_upstream', `unknown cluster ${clusterName}`];
  if (!cluster.hasRequestCapacity) return ['over_limit', `cluster ${cluster.name} is at its limit of ${cluster.settings.maxRequests} requests in flight`];
  if (isRedisCluster(cluster)) slotMapOf(cluster, conn.slotSink);
  const endpoint = endpointOf(cluster, hash);
  if (endpoint === undefined) return ['no_healthy_upstream', `no healthy upstream in cluster ${cluster.name}`];
  return { cluster, endpoint, pool: cluster.pool(endpoint, upstreamCodec(cluster, conn.resp3), 'redis') };
}

function failureText(kind: LocalReplyKind, message: string): Buffer {
  switch (kind) {
    case 'timeout':
      return errorReply('ERR timeout');
    case 'over_limit':
      return errorReply(`ERR upstream overloaded: ${message}`);
    default:
      return errorReply(`ERR upstream failure: ${message}`);
  }
}

/**
 * One client command, in its place in the reply order. For a command routed whole it is the upstream request
 * itself; for a fan-out it holds the {@link FanOut}. It is its own timer item: the op timeout while upstream, the
 * fault delay after.
 */
class Command implements Sendable, Expirable {
  frame: Frame;
  readonly session = WIRE;
  readonly mutation = undefined;
  readonly expectsResponse = true;
  readonly copyOnEncode = false;
  upstreamId = 0;
  wheelTick = -1;
  wheelIndex = -1;

  phase: Phase = Phase.Waiting;
  reply: Buffer | undefined;
  closeAfter = false;
  route: RedisRoute | undefined;
  fan: FanOut | undefined;
  delayMs = 0;
  /** When the op timeout ends (performance.now() ms). */
  deadline = Number.POSITIVE_INFINITY;
  private redirects = 0;
  private cluster: Cluster | undefined;
  private endpoint: Endpoint | undefined;
  private upstream: UpstreamConnection | undefined;
  private readonly startedAt: number;

  constructor(
    readonly conn: RedisConnection,
    readonly request: RedisRequest | undefined,
  ) {
    this.frame = request as Frame;
    this.startedAt = conn.readAt;
  }

  get live(): boolean {
    return this.phase === Phase.Upstream && this.upstream === undefined;
  }

  /** Sends the command to `cluster` (endpoint by `hash`). */
  send(cluster: Cluster | undefined, hash: string | undefined): void {
    const t = target(this.conn, cluster, this.route!.cluster, hash);
    if (Array.isArray(t)) {
      this.complete(failureText(t[0], t[1]), 'local_reply');
      return;
    }
    this.cluster = t.cluster;
    this.endpoint = t.endpoint;
    t.cluster.active++;
    t.endpoint.active++;
    this.phase = Phase.Upstream;
    this.armTimeout();
    dispatch(this.conn.settings, t.pool, this);
  }

  attach(conn: UpstreamConnection | undefined): void {
    if (conn === undefined) {
      this.release();
      this.complete(failureText('over_limit', `cluster ${this.cluster?.name} is at its limit of ${this.cluster?.settings.maxConnections} connections`), 'local_reply');
      return;
    }
    this.upstream = conn;
  }

  /** Starts the op timeout (`settings.op_timeout`), if any: the connection sweeps it. */
  armTimeout(): void {
    const ms = this.conn.settings.opTimeoutMs;
    if (ms === Number.POSITIVE_INFINITY) return;
    this.deadline = this.startedAt + ms;
    this.conn.watch(this.deadline);
  }

  onResponse(frame: Frame): void {
    if (this.phase !== Phase.Upstream) return;
    noteRefused(frame, this.conn);
    const r = redirectionFor(frame, this.cluster, this.conn, this.redirects);
    if (Buffer.isBuffer(r)) {
      if (this.endpoint) this.cluster?.reportError(this.endpoint);
      this.release();
      this.complete(r, 'error');
      return;
    }
    if (r !== undefined) {
      this.redirects++;
      const cluster = this.cluster!;
      this.release();
      const { endpoint, conn } = resend(this, cluster, r, this.conn.resp3);
      this.endpoint = endpoint;
      cluster.active++;
      endpoint.active++;
      this.attach(conn);
      return;
    }
    const status = frame.status;
    if (status === 'error') this.cluster?.reportError(this.endpoint!);
    else this.cluster?.reportSuccess(this.endpoint!);
    this.release();
    this.complete(frame.raw, status === 'error' ? 'error' : status === 'business_exception' ? 'business_exception' : 'success');
  }

  onFailure(kind: LocalReplyKind, message: string): void {
    if (this.phase !== Phase.Upstream) return;
    if (this.endpoint) this.cluster?.reportError(this.endpoint);
    this.release();
    this.complete(failureText(kind, message), 'error');
  }

  /** The fault delay is over. */
  onDeadline(): void {
    if (this.phase === Phase.Delayed) this.finish();
  }

  /** A throw while handling this command: it alone gets an error reply; if even that fails, its client closes. */
  contain(thrown: unknown, where: Continuation): void {
    const listener = this.conn.listener;
    listener.containedError(where, recordContained(thrown, where, listener.name));
    try {
      if (this.phase === Phase.Upstream) this.release();
      this.complete(errorReply(where === 'response' ? 'ERR bad reply from upstream' : 'ERR internal error in the proxy'), 'local_reply');
    } catch {
      this.conn.close();
    }
  }

  /** The op timeout passed while upstream. */
  expire(): void {
    if (this.phase !== Phase.Upstream) return;
    if (this.fan !== undefined) {
      this.fan.abandon();
      this.complete(errorReply('ERR timeout'), 'local_reply');
      return;
    }
    // The late answer still comes in its turn on the FIFO connection; onResponse drops it (phase Done).
    if (this.endpoint) this.cluster?.reportError(this.endpoint);
    this.release();
    this.complete(errorReply('ERR timeout'), 'local_reply');
  }

  /**
   * The answer is known: holds it for a fault delay if one applies, then takes its place in the reply order.
   * `none` records no metric (replies to local commands).
   */
  complete(reply: Buffer, outcome: Outcome | 'none'): void {
    if (this.phase === Phase.Done || this.phase === Phase.Delayed) return;
    if (this.wheelTick >= 0) this.conn.listener.wheel.cancel(this);
    this.reply = reply;
    if (outcome !== 'none' && this.fan === undefined) this.record(outcome);
    if (this.delayMs > 0) {
      this.phase = Phase.Delayed;
      this.conn.listener.wheel.schedule(this, this.delayMs);
      return;
    }
    this.finish();
  }

  private finish(): void {
    this.phase = Phase.Done;
    this.conn.completed(this);
  }

  private record(outcome: Outcome): void {
    this.conn.statsFor(this.route?.name ?? 'none', this.cluster?.name ?? 'none').record(outcome, (clockNow() - this.startedAt) / 1000);
  }

  /**
   * The client went away. The answer, if one is coming, is still read in its turn on the FIFO upstream
   * connection and dropped (phase Done): nothing to withdraw, so abandoning costs O(1) per command.
   */
  abandon(): void {
    if (this.phase === Phase.Done) return;
    if (this.wheelTick >= 0) this.conn.listener.wheel.cancel(this);
    if (this.phase === Phase.Upstream) {
      this.release();
      this.fan?.abandon();
    }
    this.phase = Phase.Done;
  }

  private release(): void {
    if (this.cluster !== undefined && this.endpoint !== undefined) {
      this.cluster.active--;
      this.endpoint.active--;
      this.endpoint = undefined;
    }
    this.upstream = undefined;
  }
}

/** Arguments a split command (MGET, MSET, DEL…) may carry: splitting is linear in them, on the event loop. */
export const MAX_SPLIT_ARGS = 16_384;

/** A multi-key command split per route × endpoint; answers are combined once every part has one. */
class FanOut {
  readonly parts: Part[] = [];
  /** Per key slot: the bytes of its answer element (MGET) or its error. */
  private readonly slots: Array<Buffer | undefined>;
  private waiting: number;
  private errors = 0;
  private firstError: string | undefined;
  private sum = 0n;

  constructor(
    private readonly cmd: Command,
    keys: number,
    private readonly kind: 'mget' | 'mset' | 'sum',
  ) {
    this.slots = new Array(keys);
    this.waiting = keys;
  }

  /** A key answered by the proxy (no route). */
  localSlot(slot: number, error: Buffer): void {
    this.slots[slot] = error;
    this.noteError(error.toString('utf8', 1, error.length - 2));
    this.waiting--;
  }

  /** A part's answer (or the error that replaced it). */
  partDone(part: Part, raw: Buffer): void {
    const t = raw[valueStart(raw)];
    const isError = t === ERROR || t === BLOB_ERROR;
    if (this.kind === 'mget' && t === ARRAY && !isError) {
      // Distribute the array's elements back to their key slots.
      const at = valueStart(raw);
      const cr = raw.indexOf(13, at);
      const n = parseInteger(raw, at + 1, cr);
      let pos = cr + 2;
      for (let i = 0; i < n && i < part.slots.length; i++) {
        const end = skipValue(raw, pos);
        this.slots[part.slots[i]!] = raw.subarray(pos, end);
        pos = end;
      }
    } else if (isError) {
      for (const s of part.slots) this.slots[s] = raw;
      this.errors += part.slots.length - 1;
      this.noteError(errorText(raw));
    } else if (this.kind === 'sum' && t === INTEGER) {
      const at = valueStart(raw);
      this.sum += BigInt(parseInteger(raw, at + 1, raw.indexOf(13, at)));
    } else if (this.kind === 'mset' && raw.equals(OK)) {
      // ok
    } else {
      for (const s of part.slots) this.slots[s] = errorReply('ERR upstream protocol error');
      this.errors += part.slots.length - 1;
      this.noteError(`unexpected reply to ${this.kind}`);
    }
    this.waiting -= part.slots.length;
    if (this.waiting === 0) this.done();
  }

  private noteError(text: string): void {
    this.errors++;
    this.firstError ??= text;
  }

  private done(): void {
    let reply: Buffer;
    if (this.kind === 'mget') {
      const list: Buffer[] = [arrayHeader(this.slots.length)];
      for (const s of this.slots) list.push(s ?? nullReply(this.cmd.conn.resp3));
      reply = Buffer.concat(list);
    } else if (this.errors > 0) {
      reply = errorReply(`ERR finished with ${this.errors} error(s): ${this.firstError ?? ''}`);
    } else {
      reply = this.kind === 'mset' ? OK : integerReply(this.sum);
    }
    this.cmd.complete(reply, 'none');
  }

  abandon(): void {
    for (const p of this.parts) p.abandon();
  }
}

function errorText(raw: Buffer): string {
  const at = valueStart(raw);
  if (raw[at] === ERROR) return raw.toString('utf8', at + 1, raw.indexOf(13, at));
  const cr = raw.indexOf(13, at);
  return raw.toString('utf8', cr + 2, cr + 2 + parseInteger(raw, at + 1, cr));
}

/** One route × endpoint share of a fan-out. */
class Part implements Sendable {
  readonly session = WIRE;
  readonly mutation = undefined;
  readonly expectsResponse = true;
  readonly copyOnEncode = false;
  upstreamId = 0;
  private state: Phase = Phase.Waiting;
  private redirects = 0;
  private conn: RedisConnection | undefined;
  private cluster: Cluster | undefined;
  private endpoint: Endpoint | undefined;
  private upstream: UpstreamConnection | undefined;
  private startedAt = 0;

  constructor(
    private readonly fan: FanOut,
    readonly route: RedisRoute,
    readonly slots: readonly number[],
    readonly frame: Frame,
  ) {}

  get live(): boolean {
    return this.state === Phase.Upstream && this.upstream === undefined;
  }

  send(conn: RedisConnection, hash: string | undefined): void {
    this.startedAt = conn.readAt;
    const t = target(conn, conn.listener.clusters.get(this.route.cluster), this.route.cluster, hash);
    this.state = Phase.Upstream;
    if (Array.isArray(t)) {
      this.end(failureText(t[0], t[1]), 'local_reply', conn);
      return;
    }
    this.cluster = t.cluster;
    this.endpoint = t.endpoint;
    t.cluster.active++;
    t.endpoint.active++;
    this.conn = conn;
    dispatch(conn.settings, t.pool, this);
  }

  attach(upstream: UpstreamConnection | undefined): void {
    if (upstream === undefined) {
      this.release();
      this.end(failureText('over_limit', `cluster ${this.cluster?.name} is at its connection limit`), 'local_reply', this.conn!);
      return;
    }
    this.upstream = upstream;
  }

  onResponse(frame: Frame): void {
    if (this.state !== Phase.Upstream) return;
    noteRefused(frame, this.conn!);
    const r = redirectionFor(frame, this.cluster, this.conn!, this.redirects);
    if (Buffer.isBuffer(r)) {
      if (this.endpoint) this.cluster?.reportError(this.endpoint);
      this.release();
      this.end(r, 'error', this.conn!);
      return;
    }
    if (r !== undefined) {
      this.redirects++;
      const cluster = this.cluster!;
      this.release();
      const { endpoint, conn } = resend(this, cluster, r, this.conn!.resp3);
      this.endpoint = endpoint;
      cluster.active++;
      endpoint.active++;
      this.attach(conn);
      return;
    }
    const status = frame.status;
    if (status === 'error') this.cluster?.reportError(this.endpoint!);
    else this.cluster?.reportSuccess(this.endpoint!);
    this.release();
    this.end(frame.raw, status === 'error' ? 'error' : status === 'business_exception' ? 'business_exception' : 'success', this.conn!);
  }

  onFailure(kind: LocalReplyKind, message: string): void {
    if (this.state !== Phase.Upstream) return;
    if (this.endpoint) this.cluster?.reportError(this.endpoint);
    this.release();
    this.end(failureText(kind, message), 'error', this.conn!);
  }

  contain(thrown: unknown, where: Continuation): void {
    const conn = this.conn;
    if (conn === undefined) return;
    conn.listener.containedError(where, recordContained(thrown, where, conn.listener.name));
    if (this.state !== Phase.Upstream) return;
    this.release();
    this.end(errorReply('ERR internal error in the proxy'), 'error', conn);
  }

  private end(raw: Buffer, outcome: Outcome, conn: RedisConnection): void {
    this.state = Phase.Done;
    conn.statsFor(this.route.name, this.cluster?.name ?? 'none').record(outcome, (clockNow() - this.startedAt) / 1000);
    this.fan.partDone(this, raw);
  }

  abandon(): void {
    if (this.state === Phase.Upstream) this.release();
    this.state = Phase.Done;
  }

  private release(): void {
    if (this.cluster !== undefined && this.endpoint !== undefined) {
      this.cluster.active--;
      this.endpoint.active--;
      this.endpoint = undefined;
    }
    this.upstream = undefined;
  }
}

/**
 * A mirrored copy: its answer is read in its turn and dropped; it never touches the primary command's timing or
 * outcome. A mirror that never answers holds only its slot on its own upstream connection.
 */
class Mirror implements Sendable {
  readonly session = WIRE;
  readonly mutation = undefined;
  readonly expectsResponse = true;
  readonly copyOnEncode = false;
  upstreamId = 0;
  private sent = false;

  constructor(readonly frame: Frame) {}

  get live(): boolean {
    return !this.sent;
  }

  send(conn: RedisConnection, clusterName: string, hash: string | undefined): void {
    const cluster = conn.listener.clusters.get(clusterName);
    if (cluster === undefined || !cluster.hasRequestCapacity) return;
    const endpoint = endpointOf(cluster, hashes(cluster) ? hash : undefined);
    if (endpoint === undefined) return;
    dispatch(conn.settings, cluster.pool(endpoint, upstreamCodec(cluster, conn.resp3), 'redis'), this);
  }

  attach(): void {
    this.sent = true;
  }

  onResponse(): void {}

  onFailure(): void {}

  /** Nobody reads a mirror's answer: nothing to contain. */
  contain(): void {}
}

/** SORT's `BY pattern` (other than `BY nosort`) or `GET pattern`: reads keys named by a pattern. */
function hasSortPattern(req: RedisRequest): boolean {
  for (let i = 2; i < req.argc; i++) {
    if (req.argIs(i, 'get')) return true;
    if (req.argIs(i, 'by') && !(i + 1 < req.argc && req.argIs(i + 1, 'nosort'))) return true;
    if (req.argIs(i, 'limit')) i += 2;
    else if (req.argIs(i, 'store') || req.argIs(i, 'by')) i += 1;
  }
  return false;
}

/** COPY src dst [DB n] [REPLACE]: whether a DB option follows the two keys. */
function hasDbOption(req: RedisRequest): boolean {
  for (let i = 3; i < req.argc; i++) if (req.argIs(i, 'db')) return true;
  return false;
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function printableKey(s: string): string {
  const flat = s.replace(/[\x00-\x1f\x7f]/g, '?');
  return flat.length > 100 ? `${flat.slice(0, 97)}...` : flat;
}

