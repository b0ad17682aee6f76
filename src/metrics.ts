import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Registry } from 'prom-client';

/** What prom-client's registry reads from a metric object when it formats a scrape. */
interface ExportedMetric {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  values: Array<{ labels: Record<string, string | number>; value: number; metricName?: string }>;
}

/** How a request ended; `downstream_closed`: its client went away before it was answered. */
export type Outcome = 'success' | 'error' | 'business_exception' | 'local_reply' | 'downstream_closed';
const OUTCOMES: readonly Outcome[] = ['success', 'error', 'business_exception', 'local_reply', 'downstream_closed'];
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Per listener × route × cluster request counts and latencies, kept as plain numbers on the hot path. prom-client's
 * label children still hash their labels on every `inc()`/`observe()`; these are resolved once and read only when
 * Prometheus scrapes (through the two exporters below, which the prom-client registry formats like its own).
 */
export class RequestStats {
  readonly counts = OUTCOMES.map(() => 0);
  readonly buckets = new Float64Array(DURATION_BUCKETS.length);
  sum = 0;
  count = 0;
  constructor(readonly labels: { listener: string; protocol: string; route: string; cluster: string }) {}

  record(outcome: Outcome, seconds: number): void {
    this.counts[OUTCOMES.indexOf(outcome)]!++;
    this.sum += seconds;
    this.count++;
    for (let i = 0; i < DURATION_BUCKETS.length; i++) {
      if (seconds <= DURATION_BUCKETS[i]!) {
        this.buckets[i]!++;
        break;
      }
    }
  }
}

/** Duck-typed prom-client metric: `waypost_requests_total` from the request stats. */
class RequestsExporter {
  readonly name = 'waypost_requests_total';
  readonly help = 'Requests handled, by outcome (success, error, business_exception, local_reply, downstream_closed)';
  readonly type = 'counter';
  readonly aggregator = 'sum';
  constructor(private readonly stats: readonly RequestStats[]) {}
  get(): ExportedMetric {
    const values: ExportedMetric['values'] = [];
    for (const s of this.stats) {
      OUTCOMES.forEach((outcome, i) => {
        if (s.counts[i]! > 0) values.push({ labels: { ...s.labels, outcome }, value: s.counts[i]! });
      });
    }
    return { name: this.name, help: this.help, type: 'counter', aggregator: 'sum', values };
  }
}

/** Duck-typed prom-client metric: `waypost_request_duration_seconds` from the request stats. */
class DurationExporter {
  readonly name = 'waypost_request_duration_seconds';
  readonly help = 'Time from a request frame decoded to its answer written downstream';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  constructor(private readonly stats: readonly RequestStats[]) {}
  get(): ExportedMetric {
    const values: ExportedMetric['values'] = [];
    for (const s of this.stats) {
      if (s.count === 0) continue;
      let acc = 0;
      DURATION_BUCKETS.forEach((le, i) => {
        acc += s.buckets[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { ...s.labels, le }, value: acc });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { ...s.labels, le: '+Inf' }, value: s.count });
      values.push({ metricName: `${this.name}_sum`, labels: s.labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels: s.labels, value: s.count });
    }
    return { name: this.name, help: this.help, type: 'histogram', aggregator: 'sum', values };
  }
}

/**
 * The metrics of docs/configuration.md ("Metrics"). One registry per proxy instance so that tests can run several proxies in
 * one process. Hot-path users resolve label children once (per route × cluster, per listener) and keep them.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly requestStats: RequestStats[] = [];
  private readonly requestStatsByKey = new Map<string, RequestStats>();
  readonly retries = new Counter({
    name: 'waypost_upstream_retries_total',
    help: 'Upstream retries',
    labelNames: ['route', 'cluster'] as const,
    registers: [this.registry],
  });
  readonly faults = new Counter({
    name: 'waypost_faults_injected_total',
    help: 'Faults injected',
    labelNames: ['route', 'type'] as const,
    registers: [this.registry],
  });
  readonly mutationsDropped = new Counter({
    name: 'waypost_mutations_dropped_total',
    help: 'Messages forwarded without their route\'s mutation because their framing has nowhere to carry it (Thrift without THeader)',
    labelNames: ['listener', 'route'] as const,
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: 'waypost_rate_limited_total',
    help: 'Requests answered locally because a rate limit was exceeded',
    labelNames: ['listener', 'route'] as const,
    registers: [this.registry],
  });
  readonly containedErrors = new Counter({
    name: 'waypost_contained_errors_total',
    help: 'Throws while handling a request or connection (a malformed part of a frame, a bug), answered locally or closing only their own connection',
    labelNames: ['listener', 'where', 'reason'] as const,
    registers: [this.registry],
  });
  readonly upstreamStrayFrames = new Counter({
    name: 'waypost_upstream_stray_frames_total',
    help: 'Frames from an upstream that answer no request waiting for one (a wrong or late id, a request sent by the upstream): dropped',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly decodeErrors = new Counter({
    name: 'waypost_decode_errors_total',
    help: 'Malformed frames; each closed its connection',
    labelNames: ['listener', 'protocol', 'direction'] as const,
    registers: [this.registry],
  });
  readonly downstreamConnections = new Gauge({
    name: 'waypost_downstream_connections_active',
    help: 'Open downstream connections',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly upstreamConnections = new Gauge({
    name: 'waypost_upstream_connections_active',
    help: 'Open upstream connections',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly outlierEjections = new Counter({
    name: 'waypost_outlier_ejections_total',
    help: 'Endpoints ejected by outlier detection',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });
  readonly xdsUpdates = new Counter({
    name: 'waypost_xds_updates_total',
    help: 'xDS updates received, by result',
    labelNames: ['type_url', 'result'] as const,
    registers: [this.registry],
  });
  readonly configApplies = new Counter({
    name: 'waypost_config_applies_total',
    help: 'Configuration applies, by result (ok, rejected)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  // ---- security (docs/security.md) ----
  readonly authzDenied = new Counter({
    name: 'waypost_authz_denied_total',
    help: 'Requests denied by an authorization policy (answered with the protocol-native error)',
    labelNames: ['listener', 'policy'] as const,
    registers: [this.registry],
  });
  readonly tlsHandshakeErrors = new Counter({
    name: 'waypost_tls_handshake_errors_total',
    help: 'Downstream connections closed during TLS setup, by reason',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  // ---- limits and operations (docs/operations-limits.md) ----
  readonly downstreamRejected = new Counter({
    name: 'waypost_downstream_connections_rejected_total',
    help: 'Downstream connections closed as soon as accepted, by reason (overflow: the listener was at --max-connections-per-listener)',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  readonly downstreamTimeouts = new Counter({
    name: 'waypost_downstream_timeouts_total',
    help: 'Downstream connections closed by a timeout, by kind (idle: --idle-timeout; frame: a frame not complete within --frame-timeout)',
    labelNames: ['listener', 'kind'] as const,
    registers: [this.registry],
  });
  readonly downstreamRequestsRejected = new Counter({
    name: 'waypost_downstream_requests_rejected_total',
    help: 'Requests answered over_limit because their connection already had --max-pending-per-connection in flight',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  readonly framesTooLarge = new Counter({
    name: 'waypost_frames_too_large_total',
    help: 'Frames over --max-frame-size; each closed its connection (also counted in waypost_decode_errors_total)',
    labelNames: ['listener', 'protocol', 'direction'] as const,
    registers: [this.registry],
  });
  readonly backpressurePauses = new Counter({
    name: 'waypost_backpressure_pauses_total',
    help: 'Times a downstream connection stopped being read, by cause (downstream_write: its own answers piled up; upstream_write: an upstream connection it feeds is over its buffer limit)',
    labelNames: ['listener', 'cause'] as const,
    registers: [this.registry],
  });
  readonly upstreamOverflow = new Counter({
    name: 'waypost_upstream_overflow_total',
    help: 'Requests answered over_limit by a cluster circuit breaker, by limit (requests, connections)',
    labelNames: ['cluster', 'limit'] as const,
    registers: [this.registry],
  });
  readonly accessLogDropped = new Counter({
    name: 'waypost_access_log_dropped_total',
    help: 'Access log lines dropped because the log could not keep up or could not be written',
    registers: [this.registry],
  });
  /** Set by the proxy: bytes held per listener / per cluster, read at scrape time. */
  bufferedBytesSource: (() => { downstream: Map<string, number>; upstream: Map<string, number> }) | undefined;
  readonly downstreamBuffered = new Gauge({
    name: 'waypost_downstream_buffered_bytes',
    help: 'Bytes the proxy holds for downstream connections: answers not yet written, bytes read but not yet decoded, an incomplete frame, the frames of requests in flight',
    labelNames: ['listener'] as const,
    registers: [this.registry],
    collect: () => this.collectBuffered(),
  });
  readonly upstreamBuffered = new Gauge({
    name: 'waypost_upstream_buffered_bytes',
    help: 'Bytes the proxy holds for upstream connections: requests not yet written, answers read but not yet decoded',
    labelNames: ['cluster'] as const,
    registers: [this.registry],
  });

  /**
   * How long the event loop was blocked: one request that stalls it (a costly regex, a huge decode) delays every
   * other client and the admin API. Sampled by Node every 10 ms; the gauge is the largest delay since the previous
   * scrape (reset on each, as prom-client's own `nodejs_eventloop_lag_max_seconds`).
   */
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 10 });
  readonly eventLoopDelayMax: Gauge = new Gauge({
    name: 'waypost_event_loop_delay_max_seconds',
    help: 'The longest the event loop was blocked since the previous scrape (sampled every 10 ms)',
    registers: [this.registry],
    // With --workers, the worst of them.
    aggregator: 'max',
    collect: (): void => {
      this.eventLoopDelayMax.set(this.loopDelay.max / 1e9);
      this.loopDelay.reset();
    },
  });

  constructor() {
    this.loopDelay.enable();
    this.registry.registerMetric(new RequestsExporter(this.requestStats) as never);
    this.registry.registerMetric(new DurationExporter(this.requestStats) as never);
  }

  private collectBuffered(): void {
    const src = this.bufferedBytesSource?.();
    this.downstreamBuffered.reset();
    this.upstreamBuffered.reset();
    if (!src) return;
    for (const [listener, bytes] of src.downstream) this.downstreamBuffered.labels(listener).set(bytes);
    for (const [cluster, bytes] of src.upstream) this.upstreamBuffered.labels(cluster).set(bytes);
  }

  /** The stats of one listener × route × cluster (shared by every lookup of the same labels). */
  requestStatsFor(listener: string, protocol: string, route: string, cluster: string): RequestStats {
    const key = `${listener}\u0000${protocol}\u0000${route}\u0000${cluster}`;
    let s = this.requestStatsByKey.get(key);
    if (!s) {
      s = new RequestStats({ listener, protocol, route, cluster });
      this.requestStatsByKey.set(key, s);
      this.requestStats.push(s);
    }
    return s;
  }

  /** Read-only: every listener × route × cluster's request counts so far, by outcome (admin `/stats/summary`). */
  requestCountsDump(): RequestCounts[] {
    return this.requestStats.map((s) => ({
      ...s.labels,
      total: s.count,
      success: s.counts[0]!,
      error: s.counts[1]!,
      business_exception: s.counts[2]!,
      local_reply: s.counts[3]!,
      duration_seconds_sum: s.sum,
    }));
  }
}

/** One row of {@link Metrics.requestCountsDump}: cumulative counters, as `waypost_requests_total` exports them. */
export interface RequestCounts {
  readonly listener: string;
  readonly protocol: string;
  readonly route: string;
  readonly cluster: string;
  readonly total: number;
  readonly success: number;
  readonly error: number;
  readonly business_exception: number;
  readonly local_reply: number;
  readonly duration_seconds_sum: number;
}
