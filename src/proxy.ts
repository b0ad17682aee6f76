import type { CodecRegistry } from './codec-registry.js';
import { Cluster } from './cluster.js';
import { ListenerRuntime, type ListenerSettings } from './listener.js';
import { log } from './log.js';
import { Metrics } from './metrics.js';
import { RouteTable } from './router.js';
import { networkFilters } from './network-filters.js';
import type { ClusterLoadAssignment, Listener, ResourceSnapshot } from './xds/resources.js';

export interface ProxyOptions {
  readonly codecs: CodecRegistry;
  /** Default 8 MiB. */
  readonly maxFrameSize?: number;
  /** Upstream connections per endpoint (each multiplexed or pipelined). Default 1. */
  readonly connectionsPerEndpoint?: number;
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
  private bindFailures: string[] = [];
  readonly maxFrameSize: number;
  private readonly connectionsPerEndpoint: number;

  constructor(private readonly options: ProxyOptions) {
    this.maxFrameSize = options.maxFrameSize ?? 8 * 1024 * 1024;
    this.connectionsPerEndpoint = options.connectionsPerEndpoint ?? 1;
  }

  get version(): string | undefined {
    return this.snapshot?.version;
  }

  /** Ready once a config is applied and every listener is bound. */
  get ready(): boolean {
    return this.snapshot !== undefined && this.bindFailures.length === 0;
  }

  async apply(snapshot: ResourceSnapshot): Promise<void> {
    let prepared: PreparedListener[];
    let tables: Map<string, RouteTable>;
    try {
      tables = new Map(snapshot.routes.map((r) => [r.name, RouteTable.compile(r)]));
      // API listeners (proxyless gRPC's `host:port`, no address) are for gRPC clients to read, not for us to bind.
      prepared = snapshot.listeners.filter((l) => !(l.api_listener && !l.address)).map((l) => this.prepareListener(l));
    } catch (err) {
      this.metrics.configApplies.labels('rejected').inc();
      throw new ConfigRejectedError([(err as Error).message]);
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
        });
        this.clusters.set(res.name, cluster);
      }
      const serviceName = res.eds_cluster_config?.service_name ?? res.name;
      cluster.setEndpoints(res.load_assignment ?? cla.get(serviceName) ?? cla.get(res.name));
    }

    this.routeTables = tables;
    const bindFailures: string[] = [];
    const wantedListeners = new Set<string>();
    for (const p of prepared) {
      wantedListeners.add(p.key);
      let runtime = this.listeners.get(p.key);
      if (runtime) runtime.update(p.settings);
      else {
        runtime = new ListenerRuntime(p.settings, this.clusters, this.metrics, this.maxFrameSize);
        try {
          await runtime.listen();
          this.listeners.set(p.key, runtime);
        } catch (err) {
          bindFailures.push(`listener ${p.settings.name}: cannot bind ${p.key}: ${(err as Error).message}`);
          continue;
        }
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
    this.bindFailures = bindFailures;
    if (bindFailures.length) {
      this.metrics.configApplies.labels('rejected').inc();
      for (const f of bindFailures) log.error(f);
      throw new ConfigRejectedError(bindFailures);
    }
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

  async close(): Promise<void> {
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
    const config = networkFilters.get(filter.name)!.prepare(l.name, filter.typed_config, { codecs: this.options.codecs });
    return {
      key: `${sa.address}:${sa.port_value}`,
      settings: { ...config, name: l.name, host: sa.address, port: sa.port_value, networkFilter: filter.name },
    };
  }
}
