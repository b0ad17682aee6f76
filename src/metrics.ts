import { Counter, Gauge, Registry } from 'prom-client';

/** What prom-client's registry reads from a metric object when it formats a scrape. */
interface ExportedMetric {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  aggregator: 'sum';
  values: Array<{ labels: Record<string, string | number>; value: number; metricName?: string }>;
}

export type Outcome = 'success' | 'error' | 'business_exception' | 'local_reply';
const OUTCOMES: readonly Outcome[] = ['success', 'error', 'business_exception', 'local_reply'];
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Per listener × route × cluster request counts and latencies, kept as plain numbers on the hot path. prom-client's
 * label children still hash their labels on every `inc()`/`observe()`; these are resolved once and read only when
 * Prometheus scrapes (through the two exporters below, which the prom-client registry formats like its own).
 */
export class RequestStats {
  readonly counts = [0, 0, 0, 0];
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
  readonly help = 'Requests handled, by outcome (success, error, business_exception, local_reply)';
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
 * The contract's metrics (CONTRACT §5). One registry per proxy instance so that tests can run several proxies in
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
  readonly rateLimited = new Counter({
    name: 'waypost_rate_limited_total',
    help: 'Requests answered locally because a rate limit was exceeded',
    labelNames: ['listener', 'route'] as const,
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

  constructor() {
    this.registry.registerMetric(new RequestsExporter(this.requestStats) as never);
    this.registry.registerMetric(new DurationExporter(this.requestStats) as never);
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
}
