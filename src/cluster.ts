import type { CodecError, CodecFactory } from './codec.js';
import type { Metrics } from './metrics.js';
import { EndpointPool } from './upstream.js';
import type { Cluster as ClusterResource, ClusterLoadAssignment, LbEndpoint } from './xds/resources.js';
import { parseDuration } from './xds/duration.js';

/** One upstream host:port of a cluster, with its pools (one per codec that talks to it). */
export class Endpoint {
  readonly key: string;
  readonly pools = new Map<string, EndpointPool>();
  healthy = true;

  constructor(
    readonly host: string,
    readonly port: number,
    public labels: Record<string, string>,
    public weight: number,
  ) {
    this.key = `${host}:${port}`;
  }

  get active(): number {
    let n = 0;
    for (const p of this.pools.values()) n += p.active;
    return n;
  }

  close(): void {
    for (const p of this.pools.values()) p.close();
    this.pools.clear();
  }
}

export interface ClusterSettings {
  readonly connectTimeoutMs: number;
  readonly lbPolicy: string;
}

export interface ClusterContext {
  readonly metrics: Metrics;
  readonly maxFrameSize: number;
  readonly connectionsPerEndpoint: number;
}

/** A named set of endpoints with a load balancer. Endpoints are replaced in place when EDS changes them. */
export class Cluster {
  private endpointList: Endpoint[] = [];
  private rr = 0;
  settings: ClusterSettings;
  private readonly upstreamGauge;
  private readonly decodeErrorCounters = new Map<string, { inc(): void }>();

  constructor(readonly name: string, resource: ClusterResource, private readonly ctx: ClusterContext) {
    this.settings = settingsOf(resource);
    this.upstreamGauge = ctx.metrics.upstreamConnections.labels(name);
  }

  get endpoints(): readonly Endpoint[] {
    return this.endpointList;
  }

  update(resource: ClusterResource): void {
    this.settings = settingsOf(resource);
  }

  /** Applies a ClusterLoadAssignment: keeps endpoints (and their open connections) that stay. */
  setEndpoints(cla: ClusterLoadAssignment | undefined): void {
    const next: Endpoint[] = [];
    const old = new Map(this.endpointList.map((e) => [e.key, e]));
    for (const lbe of flatten(cla)) {
      const sa = lbe.endpoint?.address?.socket_address;
      if (!sa) continue;
      if (lbe.health_status === 'UNHEALTHY' || lbe.health_status === 'DRAINING') continue;
      const key = `${sa.address}:${sa.port_value}`;
      const labels = labelsOf(lbe);
      const weight = lbe.load_balancing_weight ?? 1;
      const existing = old.get(key);
      if (existing) {
        old.delete(key);
        existing.labels = labels;
        existing.weight = weight;
        next.push(existing);
      } else {
        next.push(new Endpoint(sa.address, sa.port_value, labels, weight));
      }
    }
    this.endpointList = next;
    for (const gone of old.values()) gone.close();
  }

  /** Round robin over healthy endpoints. */
  pick(): Endpoint | undefined {
    const list = this.endpointList;
    const n = list.length;
    for (let i = 0; i < n; i++) {
      const e = list[this.rr++ % n]!;
      if (e.healthy) return e;
    }
    return undefined;
  }

  /** The pool for `endpoint` speaking `codec`, created on first use. */
  pool(endpoint: Endpoint, codec: CodecFactory, listenerProtocol: string): EndpointPool {
    let pool = endpoint.pools.get(codec.name);
    if (!pool) {
      const decodeErrors = this.decodeErrorsFor(listenerProtocol);
      pool = new EndpointPool({
        host: endpoint.host,
        port: endpoint.port,
        codec,
        maxFrameSize: this.ctx.maxFrameSize,
        connectTimeoutMs: this.settings.connectTimeoutMs,
        connections: this.ctx.connectionsPerEndpoint,
        cluster: this.name,
        hooks: {
          onDecodeError: (_err: CodecError) => decodeErrors.inc(),
          onConnectionOpen: () => this.upstreamGauge.inc(),
          onConnectionClose: () => this.upstreamGauge.dec(),
        },
      });
      endpoint.pools.set(codec.name, pool);
    }
    return pool;
  }

  close(): void {
    for (const e of this.endpointList) e.close();
    this.endpointList = [];
  }

  private decodeErrorsFor(protocol: string): { inc(): void } {
    let c = this.decodeErrorCounters.get(protocol);
    if (!c) {
      c = this.ctx.metrics.decodeErrors.labels(this.name, protocol, 'upstream');
      this.decodeErrorCounters.set(protocol, c);
    }
    return c;
  }
}

function settingsOf(r: ClusterResource): ClusterSettings {
  return {
    connectTimeoutMs: r.connect_timeout ? parseDuration(r.connect_timeout) : 10_000,
    lbPolicy: r.lb_policy ?? 'ROUND_ROBIN',
  };
}

function flatten(cla: ClusterLoadAssignment | undefined): LbEndpoint[] {
  if (!cla) return [];
  return (cla.endpoints ?? []).flatMap((l) => l.lb_endpoints ?? []);
}

function labelsOf(lbe: LbEndpoint): Record<string, string> {
  const fm = lbe.metadata?.filter_metadata;
  const raw = (fm?.istio?.labels ?? fm?.['envoy.lb'] ?? {}) as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const k of Object.keys(raw)) out[k] = String(raw[k]);
  return out;
}
