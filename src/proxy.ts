import type { CodecRegistry } from './codec-registry.js';
import { createFilterRegistry, filterDeps, type FilterDeps, type FilterRegistry } from './filters/index.js';
import { Cluster, type OutlierSettings } from './cluster.js';
import type { AccessLog } from './access-log.js';
import { DEFAULT_LIMITS, defaultMemoryBudget, type DownstreamLimits, type TracingMode } from './limits.js';
import { ListenerRuntime, type ListenerOptions, type ListenerSettings } from './listener.js';
import { log } from './log.js';
import { Metrics, type RequestCounts } from './metrics.js';
import { TimerWheel, WHEEL_TICK_MS } from './timer-wheel.js';
import { RouteTable } from './router.js';
import { networkFilters } from './network-filters.js';
import { OverloadManager } from './overload.js';
import { listenerTlsOf, resolveSnapshotTls } from './tls.js';
import type { ClusterLoadAssignment, Listener, MetaRoute, ResourceSnapshot } from './xds/resources.js';

export interface ProxyOptions {
  readonly codecs: CodecRegistry;
  /** MetaProtocol filters by name; default the built-in ones. */
  readonly filters?: FilterRegistry;
  /** Default 8 MiB. */
  readonly maxFrameSize?: number;
  /** Upstream connections per endpoint (each multiplexed or pipelined). Default 1. */
  readonly connectionsPerEndpoint?: number;
  /** `--mesh-certs DIR`: Istio's cert-chain.pem, key.pem, root-cert.pem for the SDS secrets `default` / `ROOTCA` (src/tls.ts). */
  readonly meshCerts?: string | undefined;
  /** Connection and buffer limits (docs/operations-limits.md); default DEFAULT_LIMITS. */
  readonly limits?: Partial<DownstreamLimits>;
  /** `--access-log`: one JSON line per MetaProtocol request. */
  readonly accessLog?: AccessLog | undefined;
  /** `--tracing`: W3C traceparent handling (default `propagate`). */
  readonly tracing?: TracingMode;
  /** `--memory-budget`: bytes this process may hold in connection buffers (src/overload.ts); default {@link defaultMemoryBudget}. */
  readonly memoryBudget?: number;
}

/** A config that could not be applied; the previous one keeps serving. */
export class ConfigRejectedError extends Error {
  constructor(readonly problems: string[]) {
    super(`config rejected: ${problems.join('; ')}`);
    this.name = 'ConfigRejectedError';
  }
}

interface PreparedListener {
  readonly key: string;
  readonly settings: ListenerSettings;
}

/**
 * The data plane: listeners, route tables and clusters built from xDS resources. `apply` is all-or-nothing for
 * what can be checked up front (codecs, filters, routes); a listener that cannot bind is reported and retried on the
 * next apply, while everything else keeps serving.
 */
export class Proxy {
  readonly metrics = new Metrics();
  private readonly listeners = new Map<string, ListenerRuntime>();
  private readonly clusters = new Map<string, Cluster>();
  private routeTables = new Map<string, RouteTable>();
  private snapshot: ResourceSnapshot | undefined;
  private appliedAt: string | undefined;
  readonly maxFrameSize: number;
  private readonly connectionsPerEndpoint: number;

  private readonly listenerOptions: ListenerOptions;
  /** Bytes an upstream connection may queue before the downstreams feeding it pause (--per-connection-buffer-limit). */
  private readonly upstreamBufferLimit: number;
  /** The memory budget every listener's connections charge (src/overload.ts). */
  readonly overload: OverloadManager;

  private readonly filters: FilterRegistry;
  private readonly filterDeps: FilterDeps;

  constructor(private readonly options: ProxyOptions) {
    this.filters = options.filters ?? createFilterRegistry();
    this.filterDeps = filterDeps(this.metrics.registry);
    this.maxFrameSize = options.maxFrameSize ?? 8 * 1024 * 1024;
    const limits: DownstreamLimits = { ...DEFAULT_LIMITS, ...options.limits };
    this.overload = new OverloadManager({ budgetBytes: options.memoryBudget ?? defaultMemoryBudget(), sample: () => this.totalBufferedBytes() });
    this.overload.start(this.metrics.registry);
    this.listenerOptions = { limits, accessLog: options.accessLog, tracing: options.tracing ?? 'propagate', overload: this.overload, wheel: new TimerWheel(WHEEL_TICK_MS) };
    this.upstreamBufferLimit = limits.bufferLimitBytes;
    if (options.accessLog) options.accessLog.onDropped = () => this.metrics.accessLogDropped.inc();
    this.metrics.bufferedBytesSource = () => this.bufferedBytes();
    this.connectionsPerEndpoint = options.connectionsPerEndpoint ?? 1;
  }

  get version(): string | undefined {
    return this.snapshot?.version;
  }

  /** Ready once a config is applied (and with it, every listener bound: a config whose listeners cannot all bind is rejected). */
  get ready(): boolean {
    return this.snapshot !== undefined;
  }

  async apply(snapshot: ResourceSnapshot): Promise<void> {
    let prepared: PreparedListener[];
    let tables: Map<string, RouteTable>;
    try {
      // Certificate files are read now: a missing or bad one rejects the whole config.
      resolveSnapshotTls(snapshot, { meshCerts: this.options.meshCerts });
      tables = new Map(snapshot.routes.map((r) => [r.name, RouteTable.compile(r)]));
      // API listeners (proxyless gRPC's `host:port`, no address) are for gRPC clients to read, not for us to bind.
      prepared = snapshot.listeners.filter((l) => !(l.api_listener && !l.address)).map((l) => this.prepareListener(l));
    } catch (err) {
      this.metrics.configApplies.labels('rejected').inc();
      throw new ConfigRejectedError([(err as Error).message]);
    }

    // New listeners bind before anything changes: if one cannot, the others just bound are closed again and the
    // config is rejected whole, so the last good one keeps serving with nothing of the rejected one left behind.
    const fresh = new Map<string, ListenerRuntime>();
    const bindFailures: string[] = [];
    for (const p of prepared) {
      if (this.listeners.has(p.key) || fresh.has(p.key)) continue;
      const runtime = new ListenerRuntime(p.settings, this.clusters, this.metrics, this.maxFrameSize, this.listenerOptions);
      try {
        await runtime.listen();
        fresh.set(p.key, runtime);
      } catch (err) {
        bindFailures.push(`listener ${p.settings.name}: cannot bind ${p.key}: ${(err as Error).message}`);
      }
    }
    if (bindFailures.length) {
      await Promise.all([...fresh.values()].map((r) => r.close()));
      this.metrics.configApplies.labels('rejected').inc();
      for (const f of bindFailures) log.error(f);
      throw new ConfigRejectedError(bindFailures);
    }

    // Clusters first, so routes never point at a cluster that is not there yet.
    const cla = new Map<string, ClusterLoadAssignment>(snapshot.endpoints.map((e) => [e.cluster_name, e]));
    const wanted = new Set<string>();
    for (const res of snapshot.clusters) {
      wanted.add(res.name);
      let cluster = this.clusters.get(res.name);
      if (cluster) cluster.update(res);
      else {
        cluster = new Cluster(res.name, res, {
          metrics: this.metrics,
          maxFrameSize: this.maxFrameSize,
          connectionsPerEndpoint: this.connectionsPerEndpoint,
          bufferLimitBytes: this.upstreamBufferLimit,
        });
        this.clusters.set(res.name, cluster);
      }
      const serviceName = res.eds_cluster_config?.service_name ?? res.name;
      cluster.setEndpoints(res.load_assignment ?? cla.get(serviceName) ?? cla.get(res.name));
    }

    this.routeTables = tables;
    const wantedListeners = new Set<string>();
    for (const p of prepared) {
      wantedListeners.add(p.key);
      let runtime = this.listeners.get(p.key);
      if (runtime) runtime.update(p.settings);
      else {
        runtime = fresh.get(p.key)!;
        this.listeners.set(p.key, runtime);
      }
      runtime.routeTable = p.settings.inlineRoutes ?? (p.settings.routeConfigName ? tables.get(p.settings.routeConfigName) : undefined);
      if (!runtime.routeTable && p.settings.routeConfigName !== undefined) log.warn('listener has no route configuration yet', { listener: p.settings.name, route_config: p.settings.routeConfigName });
    }
    for (const [key, runtime] of this.listeners) {
      if (!wantedListeners.has(key)) {
        this.listeners.delete(key);
        void runtime.close();
        log.info('listener removed', { listener: runtime.name });
      }
    }
    // Removed clusters go after listeners stopped routing to them; their connections close.
    for (const [name, cluster] of this.clusters) {
      if (!wanted.has(name)) {
        this.clusters.delete(name);
        cluster.close();
      }
    }
    this.snapshot = snapshot;
    this.appliedAt = new Date().toISOString();
    this.metrics.configApplies.labels('ok').inc();
    log.info('config applied', {
      version: snapshot.version,
      listeners: this.listeners.size,
      clusters: this.clusters.size,
      routes: tables.size,
    });
  }

  /** The port a listener actually bound (port 0 in config picks a free one). */
  listenerPort(name: string): number | undefined {
    for (const l of this.listeners.values()) if (l.name === name) return l.boundPort;
    return undefined;
  }

  configDump(): unknown {
    return { version: this.snapshot?.version ?? null, applied_at: this.appliedAt ?? null, resources: this.snapshot ?? null };
  }

  clustersDump(): unknown {
    const now = Date.now();
    return [...this.clusters.values()].map((c) => ({
      name: c.name,
      lb_policy: c.settings.lbPolicy,
      active_requests: c.active,
      endpoints: c.endpoints.map((e) => ({
        address: e.key,
        labels: e.labels,
        weight: e.weight,
        health: e.available(now) ? 'HEALTHY' : 'EJECTED',
        ...(e.available(now) ? {} : { ejected_for_ms: e.ejectedUntil - now }),
        ejections: e.ejections,
        active_requests: e.active,
        awaiting_answers: e.awaitingAnswers,
        connections: e.connectionCount,
      })),
    }));
  }

  listenersDump(): unknown {
    return [...this.listeners.values()].map((l) => ({
      name: l.name,
      address: l.address,
      protocol: l.protocol,
      network_filter: l.networkFilter,
      codec: l.codec.name,
      route_config: l.routeConfigName ?? null,
      connections: l.connectionCount,
    }));
  }

  /**
   * Read-only: the state the admin page (`GET /`, `GET /stats/summary`) shows — listeners with the routes they use,
   * clusters with each endpoint's health and load, and the request counters. Numbers, not Prometheus text.
   */
  summaryDump(now: number = Date.now()): ProxySummary {
    const listenerResources = new Map((this.snapshot?.listeners ?? []).map((l) => [l.name, l]));
    const finite = (n: number): number | null => (Number.isFinite(n) ? n : null);
    return {
      version: this.snapshot?.version ?? null,
      applied_at: this.appliedAt ?? null,
      ready: this.ready,
      now,
      listeners: [...this.listeners.values()].map((l) => {
        const filter = listenerResources.get(l.name)?.filter_chains?.[0]?.filters?.find((f) => f.name === l.networkFilter);
        const prefixRoutes = (filter?.typed_config as { prefix_routes?: unknown } | undefined)?.prefix_routes;
        return {
          name: l.name,
          address: l.address,
          protocol: l.protocol,
          network_filter: l.networkFilter,
          codec: l.codec.name,
          connections: l.connectionCount,
          route_config: l.routeConfigName ?? null,
          route_table: l.routeTable ? { name: l.routeTable.name, routes: l.routeTable.routes.map((r) => ({ name: r.name, config: r.config })) } : null,
          ...(prefixRoutes !== undefined ? { prefix_routes: prefixRoutes } : {}),
        };
      }),
      clusters: [...this.clusters.values()].map((c) => ({
        name: c.name,
        lb_policy: c.settings.lbPolicy,
        active_requests: c.active,
        active_retries: c.activeRetries,
        connections: c.connectionCount,
        max_requests: finite(c.settings.maxRequests),
        max_connections: finite(c.settings.maxConnections),
        outlier: c.settings.outlier ?? null,
        endpoints: c.endpoints.map((e) => ({
          address: e.key,
          labels: e.labels,
          weight: e.weight,
          ejected_until: e.available(now) ? null : e.ejectedUntil,
          ejections: e.ejections,
          consecutive_errors: e.consecutiveErrors,
          active_requests: e.active,
          connections: e.connectionCount,
        })),
      })),
      requests: this.metrics.requestCountsDump(),
    };
  }

  /** Bytes held per listener (downstream connections) and per cluster (upstream connections), for the gauges. */
  bufferedBytes(): { downstream: Map<string, number>; upstream: Map<string, number> } {
    const downstream = new Map<string, number>();
    for (const l of this.listeners.values()) downstream.set(l.name, (downstream.get(l.name) ?? 0) + l.bufferedBytes);
    const upstream = new Map<string, number>();
    for (const c of this.clusters.values()) {
      let n = 0;
      for (const e of c.endpoints) for (const byKey of e.pools.values()) for (const pool of byKey.values()) n += pool.bufferedBytes;
      upstream.set(c.name, n);
    }
    return { downstream, upstream };
  }

  /** Every byte held in connection buffers, both directions (the memory budget's sample). */
  private totalBufferedBytes(): number {
    let n = 0;
    for (const l of this.listeners.values()) n += l.bufferedBytes;
    for (const c of this.clusters.values()) for (const e of c.endpoints) for (const byKey of e.pools.values()) for (const pool of byKey.values()) n += pool.bufferedBytes;
    return n;
  }

  /**
   * Graceful drain (SIGTERM): every listener stops accepting, in-flight requests are answered, each connection is
   * closed once it has nothing in flight; after `timeoutMs` whatever is left is closed. Then everything is closed.
   * Resolves with what happened.
   */
  async drain(timeoutMs: number): Promise<{ drained: boolean; leftOpen: number }> {
    const listeners = [...this.listeners.values()];
    log.info('draining', { listeners: listeners.length, connections: listeners.reduce((n, l) => n + l.connectionCount, 0), timeout_ms: timeoutMs });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const result = await Promise.race([Promise.all(listeners.map((l) => l.drain())).then(() => 'drained' as const), timedOut]);
    clearTimeout(timer);
    const leftOpen = listeners.reduce((n, l) => n + l.connectionCount, 0);
    if (result === 'timeout') log.warn('drain timeout reached, closing the connections left', { connections: leftOpen, timeout_ms: timeoutMs });
    else log.info('drained: every connection closed');
    await this.close();
    return { drained: result === 'drained', leftOpen };
  }

  async close(): Promise<void> {
    this.overload.stop();
    for (const l of this.listeners.values()) l.destroy();
    this.listeners.clear();
    for (const c of this.clusters.values()) c.close();
    this.clusters.clear();
  }

  private prepareListener(l: Listener): PreparedListener {
    const sa = l.address?.socket_address;
    if (!sa) throw new Error(`listener ${l.name}: address.socket_address is required`);
    const filters = l.filter_chains?.[0]?.filters ?? [];
    const filter = filters.find((f) => networkFilters.has(f.name));
    if (!filter) {
      throw new Error(
        `listener ${l.name}: no supported network filter (have ${filters.map((f) => f.name).join(', ') || 'none'}; supported: ${[...networkFilters.keys()].join(', ')})`,
      );
    }
    const config = networkFilters.get(filter.name)!.prepare(l.name, filter.typed_config, {
      codecs: this.options.codecs,
      filters: this.filters,
      filterDeps: this.filterDeps,
    });
    return {
      key: `${sa.address}:${sa.port_value}`,
      settings: { ...config, name: l.name, host: sa.address, port: sa.port_value, networkFilter: filter.name, tls: listenerTlsOf(l) },
    };
  }
}

/** What {@link Proxy.summaryDump} returns (times in ms since the epoch). */
export interface ProxySummary {
  readonly version: string | null;
  readonly applied_at: string | null;
  readonly ready: boolean;
  readonly now: number;
  readonly listeners: ReadonlyArray<{
    readonly name: string;
    readonly address: string;
    readonly protocol: string;
    readonly network_filter: string;
    readonly codec: string;
    readonly connections: number;
    readonly route_config: string | null;
    readonly route_table: { readonly name: string; readonly routes: ReadonlyArray<{ readonly name: string; readonly config: MetaRoute }> } | null;
    /** Redis listeners: the redis_proxy filter's `prefix_routes`, as configured. */
    readonly prefix_routes?: unknown;
  }>;
  readonly clusters: ReadonlyArray<{
    readonly name: string;
    readonly lb_policy: string;
    readonly active_requests: number;
    readonly active_retries: number;
    readonly connections: number;
    /** Circuit breaker limits; null: none. */
    readonly max_requests: number | null;
    readonly max_connections: number | null;
    readonly outlier: OutlierSettings | null;
    readonly endpoints: ReadonlyArray<{
      readonly address: string;
      readonly labels: Record<string, string>;
      readonly weight: number;
      /** Set while outlier detection has the endpoint ejected. */
      readonly ejected_until: number | null;
      readonly ejections: number;
      readonly consecutive_errors: number;
      readonly active_requests: number;
      readonly connections: number;
    }>;
  }>;
  readonly requests: RequestCounts[];
}
