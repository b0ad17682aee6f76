import net from 'node:net';
import type { AccessLog } from './access-log.js';
import type { CodecFactory } from './codec.js';
import type { Cluster } from './cluster.js';
import { recordContained, type Continuation } from './contain.js';
import type { FilterListener, MetaFilter } from './filters/filter.js';
import { DEFAULT_LIMITS, type DownstreamLimits, type TracingMode } from './limits.js';
import { log } from './log.js';
import type { Metrics, RequestStats } from './metrics.js';
import type { ConnectionHandler, NetworkFilterConfig } from './network-filter.js';
import { OverloadManager } from './overload.js';
import type { RouteTable } from './router.js';
import { TimerWheel, WHEEL_TICK_MS } from './timer-wheel.js';
import { tlsAcceptor, type ListenerTls } from './tls.js';


/** What a listener needs from its config; the proxy rebuilds it on every apply. */
export interface ListenerSettings extends NetworkFilterConfig {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** The network filter serving it (`envoy.filters.network.meta_protocol_proxy`, …). */
  readonly networkFilter: string;
  /** TLS on accepted connections (src/tls.ts), from the filter chain's transport socket; read per connection. */
  readonly tls?: ListenerTls | undefined;
}

/** Limits and operations settings shared by every listener of a proxy (CLI flags). */
export interface ListenerOptions {
  readonly limits: DownstreamLimits;
  readonly accessLog: AccessLog | undefined;
  readonly tracing: TracingMode;
  /** The process's memory budget (src/overload.ts), shared by every listener; default: none. */
  readonly overload?: OverloadManager;
  /** The proxy's deadlines (request timeouts, fault delays, frame timeouts), shared by its listeners; default: its own. */
  readonly wheel?: TimerWheel;
}

export const DEFAULT_LISTENER_OPTIONS: ListenerOptions = { limits: DEFAULT_LIMITS, accessLog: undefined, tracing: 'propagate' };

/** What the listener can read from a connection handler that tracks its buffers (MetaProtocol connections do). */
interface BufferedHandler {
  readonly bufferedBytes?: number;
}

/**
 * A bound address and the protocol it speaks. Settings, route table and clusters are swapped on config changes and
 * read per request, so open connections follow a new config at once.
 */
export class ListenerRuntime implements FilterListener {
  private server: net.Server | undefined;
  private readonly connections = new Set<ConnectionHandler>();
  /** Accepted sockets still in their TLS handshake: they count against the connection cap. */
  private readonly handshaking = new Set<net.Socket>();
  routeTable: RouteTable | undefined;
  private settings: ListenerSettings;
  private statsCache = new Map<string, Map<string, RequestStats>>();
  readonly decodeErrors: { inc(): void };
  private readonly connGauge: { inc(): void; dec(): void };
  readonly limits: DownstreamLimits;
  /** Every deadline of this listener's connections and requests. */
  readonly wheel: TimerWheel;
  readonly accessLog: AccessLog | undefined;
  readonly tracing: TracingMode;
  /** The memory budget: connections charge their incomplete frames to it; it may refuse new connections. */
  readonly overload: OverloadManager;
  /** Limit counters, resolved once. */
  readonly counters: {
    readonly overflow: { inc(): void };
    readonly idleTimeout: { inc(): void };
    readonly frameTimeout: { inc(): void };
    readonly pendingLimit: { inc(): void };
    readonly frameTooLarge: { inc(): void };
    readonly pausedByDownstream: { inc(): void };
    readonly pausedByUpstream: { inc(): void };
    /** Redis: a client's pipeline reached --max-pending-per-connection, so reading paused (Redis pipelines wait, not fail). */
    readonly pausedByPending: { inc(): void };
  };
  private lastOverflowLog = 0;
  private draining = false;

  constructor(
    settings: ListenerSettings,
    readonly clusters: ReadonlyMap<string, Cluster>,
    private readonly metrics: Metrics,
    readonly maxFrameSize: number,
    options: ListenerOptions = DEFAULT_LISTENER_OPTIONS,
  ) {
    this.settings = settings;
    this.decodeErrors = metrics.decodeErrors.labels(settings.name, settings.protocol, 'downstream');
    this.connGauge = metrics.downstreamConnections.labels(settings.name);
    this.limits = options.limits;
    this.accessLog = options.accessLog;
    this.tracing = options.tracing;
    this.overload = options.overload ?? new OverloadManager({ budgetBytes: Number.POSITIVE_INFINITY });
    this.wheel = options.wheel ?? new TimerWheel(WHEEL_TICK_MS);
    const name = settings.name;
    this.counters = {
      overflow: metrics.downstreamRejected.labels(name, 'overflow'),
      idleTimeout: metrics.downstreamTimeouts.labels(name, 'idle'),
      frameTimeout: metrics.downstreamTimeouts.labels(name, 'frame'),
      pendingLimit: metrics.downstreamRequestsRejected.labels(name, 'pending_limit'),
      frameTooLarge: metrics.framesTooLarge.labels(name, settings.protocol, 'downstream'),
      pausedByDownstream: metrics.backpressurePauses.labels(name, 'downstream_write'),
      pausedByUpstream: metrics.backpressurePauses.labels(name, 'upstream_write'),
      pausedByPending: metrics.backpressurePauses.labels(name, 'pending_limit'),
    };
  }

  get name(): string {
    return this.settings.name;
  }
  get codec(): CodecFactory {
    return this.settings.codec;
  }
  get protocol(): string {
    return this.settings.protocol;
  }
  get filters(): readonly MetaFilter[] {
    return this.settings.filters;
  }
  get routeConfigName(): string | undefined {
    return this.settings.routeConfigName;
  }
  get networkFilter(): string {
    return this.settings.networkFilter;
  }
  /** The current settings: network filters with config of their own read it per request, so open connections follow changes. */
  get config(): ListenerSettings {
    return this.settings;
  }
  get address(): string {
    return `${this.settings.host}:${this.boundPort ?? this.settings.port}`;
  }
  get boundPort(): number | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Bytes held for this listener's connections (the `waypost_downstream_buffered_bytes` gauge). */
  get bufferedBytes(): number {
    let n = 0;
    for (const c of this.connections) n += (c as BufferedHandler).bufferedBytes ?? 0;
    return n;
  }

  /** True once drain() was called: connections close as soon as they have nothing in flight. */
  get isDraining(): boolean {
    return this.draining;
  }

  /** A new config for the same address. A codec change applies to new connections only. */
  update(settings: ListenerSettings): void {
    if (settings.protocol !== this.settings.protocol) this.statsCache = new Map();
    this.settings = settings;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const hooks = { onHandshakeError: (reason: string) => this.metrics.tlsHandshakeErrors.labels(this.name, reason).inc() };
      const plain = tlsAcceptor(() => this.name, () => this.settings.tls, (socket) => this.accept(socket), hooks);
      const server = net.createServer({ noDelay: true }, (raw) => {
        // Every accepted socket holds a descriptor until it closes: the budget refuses connections near `ulimit -n`.
        this.overload.socketOpened();
        raw.once('close', () => this.overload.socketClosed());
        if (!this.settings.tls) {
          plain(raw);
          return;
        }
        // A connection still in its TLS handshake (or PERMISSIVE's first-byte peek) counts against the connection
        // cap: a flood of connections that never finish their handshake cannot get past it.
        if (this.refuseOverflow(raw) || this.refuseOverload(raw)) return;
        this.handshaking.add(raw);
        raw.once('close', () => this.handshaking.delete(raw));
        tlsAcceptor(() => this.name, () => this.settings.tls, (socket) => {
          this.handshaking.delete(raw);
          this.accept(socket);
        }, hooks)(raw);
      });
      server.once('error', reject);
      server.listen({ host: this.settings.host, port: this.settings.port }, () => {
        server.off('error', reject);
        // After listen, errors are failed accepts (EMFILE/ENFILE when out of file descriptors): the kernel's pending
        // connection is dropped; the server keeps listening.
        server.on('error', (err: NodeJS.ErrnoException) => this.overload.acceptError(this.name, err));
        this.server = server;
        log.info('listener bound', { listener: this.name, address: this.address, protocol: this.protocol });
        resolve();
      });
    });
  }

  /** Stops accepting; open connections close once their in-flight requests are answered. */
  close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const c of this.connections) c.closeWhenIdle();
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  /**
   * Graceful drain (SIGTERM): stops accepting, lets in-flight requests be answered, closes each connection once it
   * has nothing in flight. Resolves when every connection is gone.
   */
  drain(): Promise<void> {
    this.draining = true;
    const server = this.server;
    this.server = undefined;
    for (const c of this.connections) c.closeWhenIdle();
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.connections.size === 0) resolve();
        else setTimeout(check, 20).unref();
      };
      if (server) server.close(() => undefined);
      check();
    });
  }

  /** Closes everything at once (shutdown, tests). */
  destroy(): void {
    this.server?.close();
    this.server = undefined;
    for (const c of this.connections) c.close();
  }

  connectionClosed(c: ConnectionHandler): void {
    if (this.connections.delete(c)) this.connGauge.dec();
  }

  /** A cluster circuit breaker answered a request over_limit. */
  overflowCounter(cluster: string, limit: 'requests' | 'connections'): { inc(): void } {
    return this.metrics.upstreamOverflow.labels(cluster, limit);
  }

  /**
   * A route's mutation could not be carried by a message (see `Frame.mutable`): counted each time, logged once per
   * route and direction on this listener so that a misconfiguration is seen without flooding the log.
   */
  mutationDropped(route: string, direction: 'request' | 'response'): void {
    this.metrics.mutationsDropped.labels(this.name, route).inc();
    const key = `${direction} ${route}`;
    if (this.mutationDropWarned.has(key)) return;
    this.mutationDropWarned.add(key);
    log.warn(
      `route ${route} on listener ${this.name} has a ${direction} mutation, but its ${this.protocol} messages have nowhere to carry it ` +
        '(Thrift: only THeader messages have headers); forwarding them unchanged, counted in waypost_mutations_dropped_total',
    );
  }
  private readonly mutationDropWarned = new Set<string>();

  /** A throw contained in one of this listener's requests or connections (src/contain.ts), by where and why. */
  containedError(where: Continuation, reason: string): void {
    this.metrics.containedErrors.labels(this.name, where, reason).inc();
  }

  /** The proxy's metrics, for network filters that keep counters of their own (the Redis proxy). */
  get metricsRegistry(): Metrics['registry'] {
    return this.metrics.registry;
  }

  /** Counters of rarer events (retries, faults), resolved on use. */
  retryCounter(route: string, cluster: string): { inc(): void } {
    return this.metrics.retries.labels(route, cluster);
  }
  faultCounter(route: string, type: 'delay' | 'abort'): { inc(): void } {
    return this.metrics.faults.labels(route, type);
  }

  /** For filters (a rate limit service named by cluster): `host:port` of one endpoint the cluster's balancing picks. */
  pickEndpoint(cluster: string): string | undefined {
    return this.clusters.get(cluster)?.pick(undefined, undefined)?.key;
  }

  /** Metric children for one route × cluster, resolved once and reused. */
  stats(route: string, cluster: string): RequestStats {
    let byCluster = this.statsCache.get(route);
    if (!byCluster) {
      byCluster = new Map();
      this.statsCache.set(route, byCluster);
    }
    let s = byCluster.get(cluster);
    if (!s) {
      s = this.metrics.requestStatsFor(this.name, this.protocol, route, cluster);
      byCluster.set(cluster, s);
    }
    return s;
  }

  private accept(socket: net.Socket): void {
    if (this.draining) {
      // With --workers the primary may still hand over a connection accepted before the listener closed.
      this.metrics.downstreamRejected.labels(this.name, 'draining').inc();
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    if (this.refuseOverflow(socket) || this.refuseOverload(socket)) return;
    let conn: ConnectionHandler;
    try {
      conn = this.settings.accept(socket, this);
    } catch (thrown) {
      // A codec or network filter that cannot start a session (a user codec's bug): this connection only.
      this.containedError('connection', recordContained(thrown, 'connection', this.name));
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    this.connections.add(conn);
    this.connGauge.inc();
  }

  /** Closes `socket` when the memory budget's stop-accepting action is active (counted and logged there). */
  private refuseOverload(socket: net.Socket): boolean {
    if (!this.overload.refuseConnection(this.name)) return false;
    socket.on('error', () => undefined);
    socket.destroy();
    return true;
  }

  /** Closes `socket` when the listener is at --max-connections-per-listener (connections + TLS handshakes). */
  private refuseOverflow(socket: net.Socket): boolean {
    if (this.connections.size + this.handshaking.size >= this.limits.maxConnectionsPerListener) {
      // Envoy's downstream_cx_overflow: closed at once, before a byte is read; counted, and logged at most once a second.
      this.counters.overflow.inc();
      const now = Date.now();
      if (now - this.lastOverflowLog >= 1000) {
        this.lastOverflowLog = now;
        log.warn('listener at its connection limit, closing new connections', {
          listener: this.name,
          limit: this.limits.maxConnectionsPerListener,
          remote: `${socket.remoteAddress}:${socket.remotePort}`,
        });
      }
      socket.on('error', () => undefined);
      socket.destroy();
      return true;
    }
    return false;
  }
}
