/**
 * Clusters and their endpoints (EDS ClusterLoadAssignments) for one service, named as Istio names them:
 * `outbound|<port>||<host>` with every endpoint, and `outbound|<port>|<subset>|<host>` per DestinationRule subset
 * with the endpoints whose labels contain all the subset's labels. DestinationRule traffic policy goes on the
 * cluster in Envoy's field names; a subset's policy overrides the top-level one field by field (loadBalancer,
 * connectionPool, outlierDetection), as Istio merges them.
 */

import { TYPE_CLUSTER, TYPE_ENDPOINTS, type ClusterLoadAssignment, type LbEndpoint } from '../src/xds/resources.js';
import { formatDuration, parseDuration } from '../src/duration.js';
import type { MetaPort, Service } from './model.js';
import { tlsFor, upstreamTransportSocket } from './security.js';
import type { DestinationRuleSpec, TrafficPolicy, WorkloadEntry } from './types.js';
import type { OutlierDetectionJson, WaypostCluster } from './xds-ext.js';

export const DEFAULT_CONNECT_TIMEOUT = '10s';

/** Istio's cluster name. */
export function clusterName(port: number, subset: string | undefined, host: string): string {
  return `outbound|${port}|${subset ?? ''}|${host}`;
}

/** The traffic policy that applies to `subset` (or to the whole host when undefined). */
export function effectivePolicy(dr: DestinationRuleSpec | undefined, subset?: string): TrafficPolicy {
  const top = dr?.trafficPolicy ?? {};
  const sub = subset !== undefined ? dr?.subsets?.find((s) => s.name === subset)?.trafficPolicy : undefined;
  if (!sub) return top;
  return {
    loadBalancer: sub.loadBalancer ?? top.loadBalancer,
    connectionPool: sub.connectionPool ?? top.connectionPool,
    outlierDetection: sub.outlierDetection ?? top.outlierDetection,
    // TLS as Istio merges it: the subset's port-level, the subset's, the top-level port-level, the top-level.
    ...(sub.tls || sub.portLevelSettings?.some((p) => p?.tls) ? { tls: sub.tls ?? top.tls, portLevelSettings: [...(sub.portLevelSettings ?? []), ...(sub.tls ? [] : top.portLevelSettings ?? [])] } : { tls: top.tls, portLevelSettings: top.portLevelSettings }),
  };
}

/** The request attribute a consistent-hash policy hashes on, if any. */
export function hashHeader(policy: TrafficPolicy): string | undefined {
  const name = policy.loadBalancer?.consistentHash?.httpHeaderName;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

export interface ServiceClusters {
  clusters: WaypostCluster[];
  endpoints: ClusterLoadAssignment[];
}

/** Clusters and endpoints for every MetaProtocol port of `svc`. */
export function buildServiceClusters(svc: Service, dr: DestinationRuleSpec | undefined): ServiceClusters {
  const out: ServiceClusters = { clusters: [], endpoints: [] };
  const workloads = serviceWorkloads(svc);
  for (const port of svc.metaPorts) {
    const variants: Array<{ subset?: string; labels: Record<string, string> }> = [{ labels: {} }];
    for (const subset of dr?.subsets ?? []) variants.push({ subset: subset.name, labels: subset.labels ?? {} });
    for (const { subset, labels } of variants) {
      const name = clusterName(port.number, subset, svc.host);
      const policy = effectivePolicy(dr, subset);
      const cluster = buildCluster(name, policy);
      const transport = upstreamTransportSocket(tlsFor(policy, port.number));
      if (transport) cluster.transport_socket = transport;
      out.clusters.push(cluster);
      const members = workloads.filter((w) => hasLabels(w.labels ?? {}, labels));
      out.endpoints.push({
        '@type': TYPE_ENDPOINTS,
        cluster_name: name,
        endpoints: [{ lb_endpoints: members.map((w) => lbEndpoint(w, port)) }],
      });
    }
  }
  return out;
}

function buildCluster(name: string, policy: TrafficPolicy): WaypostCluster {
  const cluster: WaypostCluster = {
    '@type': TYPE_CLUSTER,
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: name },
    connect_timeout: durationJson(policy.connectionPool?.tcp?.connectTimeout) ?? DEFAULT_CONNECT_TIMEOUT,
    lb_policy: lbPolicy(policy),
  };
  // Circuit breakers as Istio maps them: tcp.maxConnections, http.http1MaxPendingRequests, http.http2MaxRequests.
  const pool = policy.connectionPool;
  const threshold: NonNullable<WaypostCluster['circuit_breakers']>['thresholds'][number] = {};
  if (pool?.tcp?.maxConnections !== undefined) threshold.max_connections = pool.tcp.maxConnections;
  if (pool?.http?.http1MaxPendingRequests !== undefined) threshold.max_pending_requests = pool.http.http1MaxPendingRequests;
  if (pool?.http?.http2MaxRequests !== undefined) threshold.max_requests = pool.http.http2MaxRequests;
  if (Object.keys(threshold).length > 0) cluster.circuit_breakers = { thresholds: [threshold] };
  const od = policy.outlierDetection;
  if (od) {
    const detection: OutlierDetectionJson = {};
    const consecutive5xx = od.consecutive5xxErrors ?? od.consecutiveErrors;
    if (consecutive5xx !== undefined) detection.consecutive_5xx = consecutive5xx;
    if (od.consecutiveGatewayErrors !== undefined) detection.consecutive_gateway_failure = od.consecutiveGatewayErrors;
    const interval = durationJson(od.interval);
    if (interval) detection.interval = interval;
    const baseEjection = durationJson(od.baseEjectionTime);
    if (baseEjection) detection.base_ejection_time = baseEjection;
    if (od.maxEjectionPercent !== undefined) detection.max_ejection_percent = od.maxEjectionPercent;
    cluster.outlier_detection = detection;
  }
  return cluster;
}

function lbPolicy(policy: TrafficPolicy): NonNullable<WaypostCluster['lb_policy']> {
  const lb = policy.loadBalancer;
  if (lb?.consistentHash) return 'RING_HASH';
  switch (lb?.simple) {
    case 'RANDOM':
      return 'RANDOM';
    case 'LEAST_REQUEST':
    case 'LEAST_CONN':
      return 'LEAST_REQUEST';
    default:
      return 'ROUND_ROBIN';
  }
}

/**
 * The workloads behind a service: its `endpoints`; or, for DNS resolution without endpoints, the host itself
 * (Istio resolves the hosts then; here the data plane resolves the name).
 */
function serviceWorkloads(svc: Service): WorkloadEntry[] {
  const endpoints = svc.spec.endpoints ?? [];
  if (endpoints.length > 0) return endpoints;
  const resolution = svc.spec.resolution;
  if (resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') return [{ address: svc.host }];
  return [];
}

function lbEndpoint(w: WorkloadEntry, port: MetaPort): LbEndpoint {
  const own = w.ports && Object.hasOwn(w.ports, port.name) ? w.ports[port.name] : undefined;
  const portValue = own ?? port.targetPort ?? port.number;
  const ep: LbEndpoint = { endpoint: { address: { socket_address: { address: w.address, port_value: portValue } } } };
  // Istio treats weight 0 as unset; Envoy rejects a zero load_balancing_weight.
  if (w.weight !== undefined && w.weight > 0) ep.load_balancing_weight = w.weight;
  ep.metadata = { filter_metadata: { istio: { labels: { ...(w.labels ?? {}) } } } };
  ep.health_status = 'HEALTHY';
  return ep;
}

function hasLabels(labels: Record<string, string>, wanted: Record<string, string>): boolean {
  return Object.entries(wanted).every(([k, v]) => Object.hasOwn(labels, k) && labels[k] === v);
}

function durationJson(text: string | undefined): string | undefined {
  if (text === undefined) return undefined;
  const ns = parseDuration(text);
  return ns === undefined ? undefined : formatDuration(ns);
}
