import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The contract's metrics (CONTRACT §5). One registry per proxy instance so that tests can run several proxies in
 * one process. Hot-path users resolve label children once (per route × cluster, per listener) and keep them.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'waypost_requests_total',
    help: 'Requests handled, by outcome (success, error, business_exception, local_reply)',
    labelNames: ['listener', 'protocol', 'route', 'cluster', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly duration = new Histogram({
    name: 'waypost_request_duration_seconds',
    help: 'Time from a request frame decoded to its response written downstream',
    labelNames: ['listener', 'protocol', 'route', 'cluster'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
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
}
