import type { CodecError, CodecFactory } from './codec.js';
import { createLoadBalancer, type LoadBalancer } from './lb.js';
import { log } from './log.js';
import type { Metrics } from './metrics.js';
import { EndpointPool } from './upstream.js';
import { upstreamTlsOf, type UpstreamTls } from './tls.js';
import type { Cluster as ClusterResource, ClusterLoadAssignment, LbEndpoint } from './xds/resources.js';
import { durationMs } from './duration.js';

/** One upstream host:port of a cluster, with its pools (one per codec that talks to it) and its health. */
export class Endpoint {
  readonly key: string;
  /** By codec, then by the codec's wire variant (Frame.upstreamKey; '' when none): no key string built per request. */
  readonly pools = new Map<CodecFactory, Map<string, EndpointPool>>();
  /** Requests in flight to this endpoint (LEAST_REQUEST, admin). */
  active = 0;
  /** Outlier detection state. */
  consecutiveErrors = 0;
  ejectedUntil = 0;
  ejections = 0;
  lastEjection = 0;

  constructor(
    readonly host: string,
    readonly port: number,
    public labels: Record<string, string>,
    public weight: number,
  ) {
    this.key = `${host}:${port}`;
  }

  available(now: number): boolean {
    return now >= this.ejectedUntil;
  }

  get connectionCount(): number {
    let n = 0;
    for (const byKey of this.pools.values()) for (const p of byKey.values()) n += p.connectionCount;
    return n;
  }

  /** Requests written to this endpoint's connections and still awaiting their answer (mirrors included). */
  get awaitingAnswers(): number {
    let n = 0;
    for (const byKey of this.pools.values()) for (const p of byKey.values()) n += p.active;
    return n;
  }

  close(): void {
    for (const byKey of this.pools.values()) for (const p of byKey.values()) p.close();
    this.pools.clear();
  }
}

export interface OutlierSettings {
  readonly consecutiveErrors: number;
  readonly intervalMs: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionPercent: number;
}

export interface ClusterSettings {
  readonly connectTimeoutMs: number;
  readonly lbPolicy: string;
  readonly outlier: OutlierSettings | undefined;
  /** Circuit breakers: connections across the cluster, requests in flight across the cluster. */
  readonly maxConnections: number;
  readonly maxRequests: number;
  /** Envoy `typed_extension_protocol_options`, by filter name (e.g. Redis upstream auth), as given. */
  readonly protocolOptions: Readonly<Record<string, unknown>> | undefined;
  /** Envoy `cluster_type.name` of a custom cluster type (`envoy.clusters.redis`), if any. */
  readonly clusterType: string | undefined;
  /** TLS to the endpoints (Envoy `transport_socket`), for new connections. */
  readonly tls: UpstreamTls | undefined;
}

export interface ClusterContext {
  readonly metrics: Metrics;
  readonly maxFrameSize: number;
  readonly connectionsPerEndpoint: number;
  /** Bytes an upstream connection may queue before the downstreams feeding it pause. */
  readonly bufferLimitBytes: number;
}

/** Envoy's retry budget defaults: retries may add 20% to the requests in flight, and at least 3 may run. */
const RETRY_BUDGET_PERCENT = 20;
const RETRY_BUDGET_MIN_CONCURRENCY = 3;

/** A named set of endpoints with a load balancer, outlier detection and circuit breakers. */
export class Cluster {
  private endpointList: Endpoint[] = [];
  private lb: LoadBalancer<Endpoint>;
  settings: ClusterSettings;
  /** Requests in flight (circuit breaker, retry budget) and retries among them. */
  active = 0;
  activeRetries = 0;
  private readonly upstreamGauge;
  private readonly ejectionCounter;
  private readonly decodeErrorCounters = new Map<string, { inc(): void }>();

  constructor(readonly name: string, resource: ClusterResource, private readonly ctx: ClusterContext) {
    this.settings = settingsOf(resource);
    this.lb = createLoadBalancer(this.settings.lbPolicy, []);
    this.transportSocket = JSON.stringify(resource.transport_socket ?? null);
    this.upstreamGauge = ctx.metrics.upstreamConnections.labels(name);
    this.ejectionCounter = ctx.metrics.outlierEjections.labels(name);
  }

  get endpoints(): readonly Endpoint[] {
    return this.endpointList;
  }

  update(resource: ClusterResource): void {
    const before = this.settings.lbPolicy;
    const tlsBefore = this.transportSocket;
    this.settings = settingsOf(resource);
    if (this.settings.lbPolicy !== before) this.lb = createLoadBalancer(this.settings.lbPolicy, this.endpointList);
    // Changed TLS settings (docs/security.md): connections made under the old ones close, new ones use the new.
    this.transportSocket = JSON.stringify(resource.transport_socket ?? null);
    if (tlsBefore !== this.transportSocket) for (const e of this.endpointList) e.close();
  }
  private transportSocket = 'null';

  /** Applies a ClusterLoadAssignment: keeps endpoints (their connections and health) that stay. */
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
    this.lb = createLoadBalancer(this.settings.lbPolicy, next);
    for (const gone of old.values()) gone.close();
  }

  /** An available endpoint per the load balancer; avoids `avoid` (endpoints a retry already tried) when it can. */
  pick(hash: string | undefined, avoid: ReadonlySet<Endpoint> | undefined): Endpoint | undefined {
    // The clock matters only while an ejection may still run: most picks read none (a Date.now() per request was
    // ~3% of the Redis -P 16 profile).
    let now = Number.POSITIVE_INFINITY;
    if (this.ejectionsEndAt !== 0) {
      now = Date.now();
      if (now >= this.ejectionsEndAt) this.ejectionsEndAt = 0;
    }
    return this.lb.pick(now, hash, avoid);
  }

  /** When the last ejection of this cluster's endpoints ends (ms since the epoch); 0 when none is running. */
  private ejectionsEndAt = 0;

  /** Whether one more request fits under the cluster's request circuit breaker. */
  get hasRequestCapacity(): boolean {
    return this.active < this.settings.maxRequests;
  }

  /** Whether the retry budget lets one more retry start. */
  get retryBudgetAllows(): boolean {
    const allowed = Math.max(RETRY_BUDGET_MIN_CONCURRENCY, Math.floor((this.active * RETRY_BUDGET_PERCENT) / 100));
    return this.activeRetries < allowed;
  }

  /** Outlier detection: a call to `e` ended well. */
  reportSuccess(e: Endpoint): void {
    e.consecutiveErrors = 0;
  }

  /** Outlier detection: a call to `e` failed (connect failure, reset, timeout, or an error status). */
  reportError(e: Endpoint): void {
    const od = this.settings.outlier;
    // A threshold of 0 turns consecutive-error ejection off, as Istio's consecutive5xxErrors: 0 does.
    if (!od || od.consecutiveErrors <= 0) return;
    e.consecutiveErrors++;
    if (e.consecutiveErrors < od.consecutiveErrors) return;
    const now = Date.now();
    if (!e.available(now)) return;
    const n = this.endpointList.length;
    let ejected = 0;
    for (const x of this.endpointList) if (!x.available(now)) ejected++;
    // Envoy ejects at least one host whatever the percentage, and never more than the percentage beyond that.
    const cap = Math.max(od.maxEjectionPercent > 0 ? 1 : 0, Math.floor((n * od.maxEjectionPercent) / 100));
    if (ejected >= cap) return;
    // The ejection multiplier decays by one per interval spent healthy since the last ejection.
    if (e.ejections > 0 && e.lastEjection > 0) {
      const healthyFor = now - e.ejectedUntil;
      if (healthyFor > 0) e.ejections = Math.max(0, e.ejections - Math.floor(healthyFor / od.intervalMs));
    }
    e.ejections++;
    e.lastEjection = now;
    e.ejectedUntil = now + od.baseEjectionMs * e.ejections;
    this.ejectionsEndAt = Math.max(this.ejectionsEndAt, e.ejectedUntil);
    e.consecutiveErrors = 0;
    this.ejectionCounter.inc();
    log.warn('outlier detection ejected an endpoint', {
      cluster: this.name,
      endpoint: e.key,
      for_ms: od.baseEjectionMs * e.ejections,
    });
  }

  /**
   * The pool for `endpoint` speaking `codec` (and the codec's wire variant `upstreamKey`, see Frame), created on
   * first use.
   */
  pool(endpoint: Endpoint, codec: CodecFactory, listenerProtocol: string, upstreamKey?: string): EndpointPool {
    let byKey = endpoint.pools.get(codec);
    if (!byKey) {
      byKey = new Map();
      endpoint.pools.set(codec, byKey);
    }
    const key = upstreamKey ?? '';
    let pool = byKey.get(key);
    if (!pool) {
      const decodeErrors = this.decodeErrorsFor(listenerProtocol);
      pool = new EndpointPool({
        host: endpoint.host,
        port: endpoint.port,
        codec,
        maxFrameSize: this.ctx.maxFrameSize,
        connectTimeoutMs: this.settings.connectTimeoutMs,
        connections: this.ctx.connectionsPerEndpoint,
        bufferLimitBytes: this.ctx.bufferLimitBytes,
        cluster: this.name,
        tls: () => this.settings.tls,
        hooks: {
          onDecodeError: (_err: CodecError) => decodeErrors.inc(),
          onStrayFrame: () => this.ctx.metrics.upstreamStrayFrames.labels(this.name).inc(),
          onConnectionOpen: () => this.upstreamGauge.inc(),
          onConnectionClose: () => this.upstreamGauge.dec(),
          canOpen: () => this.connectionCount < this.settings.maxConnections,
        },
      });
      byKey.set(key, pool);
    }
    return pool;
  }

  get connectionCount(): number {
    let n = 0;
    for (const e of this.endpointList) n += e.connectionCount;
    return n;
  }

  close(): void {
    for (const e of this.endpointList) e.close();
    this.endpointList = [];
    this.lb = createLoadBalancer(this.settings.lbPolicy, []);
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
  const od = r.outlier_detection;
  const thresholds = r.circuit_breakers?.thresholds?.[0];
  return {
    connectTimeoutMs: r.connect_timeout ? durationMs(r.connect_timeout) : 10_000,
    lbPolicy: r.lb_policy ?? 'ROUND_ROBIN',
    outlier: od
      ? {
          // Envoy's defaults where the resource leaves a field out.
          consecutiveErrors: od.consecutive_5xx ?? od.consecutive_gateway_failure ?? 5,
          intervalMs: od.interval ? durationMs(od.interval) : 10_000,
          baseEjectionMs: od.base_ejection_time ? durationMs(od.base_ejection_time) : 30_000,
          maxEjectionPercent: od.max_ejection_percent ?? 10,
        }
      : undefined,
    maxConnections: thresholds?.max_connections ?? Number.POSITIVE_INFINITY,
    maxRequests: thresholds?.max_requests ?? thresholds?.max_pending_requests ?? Number.POSITIVE_INFINITY,
    protocolOptions: r.typed_extension_protocol_options,
    clusterType: r.cluster_type?.name,
    tls: upstreamTlsOf(r),
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
