import net from 'node:net';
import type { CodecFactory } from './codec.js';
import type { Cluster } from './cluster.js';
import type { MetaFilter } from './filters/index.js';
import { log } from './log.js';
import type { Metrics, RequestStats } from './metrics.js';
import type { ConnectionHandler, NetworkFilterConfig } from './network-filter.js';
import type { RouteTable } from './router.js';


/** What a listener needs from its config; the proxy rebuilds it on every apply. */
export interface ListenerSettings extends NetworkFilterConfig {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** The network filter serving it (`envoy.filters.network.meta_protocol_proxy`, …). */
  readonly networkFilter: string;
}

/**
 * A bound address and the protocol it speaks. Settings, route table and clusters are swapped on config changes and
 * read per request, so open connections follow a new config at once.
 */
export class ListenerRuntime {
  private server: net.Server | undefined;
  private readonly connections = new Set<ConnectionHandler>();
  routeTable: RouteTable | undefined;
  private settings: ListenerSettings;
  private statsCache = new Map<string, Map<string, RequestStats>>();
  readonly decodeErrors: { inc(): void };
  private readonly connGauge: { inc(): void; dec(): void };

  constructor(
    settings: ListenerSettings,
    readonly clusters: ReadonlyMap<string, Cluster>,
    private readonly metrics: Metrics,
    readonly maxFrameSize: number,
  ) {
    this.settings = settings;
    this.decodeErrors = metrics.decodeErrors.labels(settings.name, settings.protocol, 'downstream');
    this.connGauge = metrics.downstreamConnections.labels(settings.name);
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

  /** A new config for the same address. A codec change applies to new connections only. */
  update(settings: ListenerSettings): void {
    if (settings.protocol !== this.settings.protocol) this.statsCache = new Map();
    this.settings = settings;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
      server.once('error', reject);
      server.listen({ host: this.settings.host, port: this.settings.port }, () => {
        server.off('error', reject);
        server.on('error', (err) => log.error('listener error', { listener: this.name, error: err.message }));
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

  /** Closes everything at once (shutdown, tests). */
  destroy(): void {
    this.server?.close();
    this.server = undefined;
    for (const c of this.connections) c.close();
  }

  connectionClosed(c: ConnectionHandler): void {
    if (this.connections.delete(c)) this.connGauge.dec();
  }

  /** Counters of rarer events (retries, faults, rate limits), resolved on use. */
  retryCounter(route: string, cluster: string): { inc(): void } {
    return this.metrics.retries.labels(route, cluster);
  }
  faultCounter(route: string, type: 'delay' | 'abort'): { inc(): void } {
    return this.metrics.faults.labels(route, type);
  }
  rateLimitedCounter(route: string): { inc(): void } {
    return this.metrics.rateLimited.labels(this.name, route);
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
    const conn = this.settings.accept(socket, this);
    this.connections.add(conn);
    this.connGauge.inc();
  }
}
