/**
 * Proxyless gRPC: ServiceEntry ports with `protocol: GRPC`, their DestinationRule subsets and the VirtualService
 * `http` routes for them, translated into what gRPC's own xDS clients (grpc-js-xds, grpc-go, grpc-java …) read,
 * as Istio does for proxyless gRPC. Per gRPC port of a ServiceEntry (served under `hosts[0]`, as elsewhere):
 *
 * - a Listener named `<host>:<port>` — exactly the authority of a client's `xds:///<host>:<port>` target — with no
 *   address and an `api_listener` holding an HttpConnectionManager that takes its routes over RDS (ADS) from the
 *   RouteConfiguration of the same name and runs the fault filter, then the router;
 * - an Envoy `envoy.config.route.v3.RouteConfiguration` `<host>:<port>` with one virtual host (domains `<host>`,
 *   `<host>:<port>`) whose routes come from the VirtualService for the host, or one default route to
 *   `outbound|<port>||<host>`;
 * - EDS clusters `outbound|<port>|<subset>|<host>` (as for MetaProtocol ports, ROUND_ROBIN unless the
 *   DestinationRule hashes consistently) and their ClusterLoadAssignments, with what gRPC requires of them: one
 *   LocalityLbEndpoints per locality, each with `locality` and a `load_balancing_weight` (the sum of its endpoints').
 *
 * Validation (`checkGrpc`) runs after the other checks: a VirtualService naming no gRPC host keeps the "not
 * translated yet" warning; one that does is checked field by field (Istio's rules, plus what gRPC clients cannot
 * do) and against the ServiceEntries and DestinationRules it names.
 */

import { isIP } from 'node:net';
import {
  FILTER_HTTP_FAULT,
  FILTER_HTTP_ROUTER,
  TYPE_ENDPOINTS,
  TYPE_HTTP_CONNECTION_MANAGER,
  TYPE_HTTP_FAULT,
  TYPE_HTTP_ROUTE,
  TYPE_HTTP_ROUTER,
  TYPE_LISTENER,
  type ClusterLoadAssignment,
  type HttpFault,
  type HttpRoute,
  type HttpRouteAction,
  type HttpRouteConfiguration,
  type LbEndpoint,
  type Listener,
} from '../src/xds/resources.js';
import { Checker, fieldPath, isDns1123Label, isMapping, type Mapping } from './checker.js';
import { buildServiceClusters, clusterName, effectivePolicy, hashHeader } from './clusters.js';
import { toDurationJson } from '../src/duration.js';
import { ConfigError } from './errors.js';
import { isPortNumber, where, type ConfigModel, type MetaPort, type Service } from './model.js';
import { classifyPort } from './protocol.js';
import { fraction, headerMatcher } from './routes.js';
import { regexProblem } from './validate-specs.js';
import {
  ISTIO_NETWORKING,
  KIND_VIRTUAL_SERVICE,
  type CrdDocument,
  type Destination,
  type HttpFaultInjection,
  type HttpMatchRequest,
  type HttpRetry,
  type StringMatch,
  type VirtualServiceHttpRoute,
  type VirtualServiceSpec,
  type WorkloadEntry,
} from './types.js';
import type { WaypostCluster } from './xds-ext.js';

export const GRPC_PROTOCOL = 'GRPC';

/** What Istio retries when a VirtualService's `retries` leaves `retryOn` out. */
export const DEFAULT_RETRY_ON = 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes';

/** The retryOn conditions gRPC's xDS clients act on (they are gRPC status codes); the others only mean something to Envoy. */
export const GRPC_RETRY_ON: readonly string[] = ['cancelled', 'deadline-exceeded', 'internal', 'resource-exhausted', 'unavailable'];

/** Envoy's `x-envoy-retry-on` conditions Istio accepts in `retryOn` (besides the gRPC ones and HTTP status codes). */
const ENVOY_RETRY_ON: readonly string[] = [
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'envoy-ratelimited',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'retriable-headers',
  'http3-post-connect-failure',
];

/** gRPC status codes by name (Istio's `abort.grpcStatus` takes the name). */
export const GRPC_STATUS: Readonly<Record<string, number>> = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
};

// ---------------------------------------------------------------- the index

export interface GrpcService {
  svc: Service;
  /** The ServiceEntry's ports with protocol GRPC, as MetaPorts (protocol `grpc`) so clusters.ts can build them. */
  ports: MetaPort[];
}

export interface GrpcVirtualService {
  doc: CrdDocument;
  spec: VirtualServiceSpec;
  /** The gRPC hosts it routes (it is the first VirtualService to name each). */
  hosts: string[];
}

/** The gRPC services, and which VirtualService routes each. Built defensively (validation uses it on bad input). */
export class GrpcIndex {
  readonly services = new Map<string, GrpcService>();
  /** By gRPC host. */
  readonly routers = new Map<string, GrpcVirtualService>();
  /** Every VirtualService document with an Istio apiVersion and a mapping spec, in document order. */
  readonly virtualServices: Array<{ doc: CrdDocument; spec: Mapping }> = [];
  /** A later VirtualService naming a host an earlier one routes. */
  readonly conflicts: Array<{ doc: CrdDocument; path: string; message: string }> = [];

  constructor(readonly model: ConfigModel) {
    for (const svc of model.services.values()) {
      const ports = grpcPorts(svc);
      if (ports.length > 0) this.services.set(svc.host, { svc, ports });
    }
    for (const doc of model.docs) {
      if (doc.kind !== KIND_VIRTUAL_SERVICE || !ISTIO_NETWORKING.includes(doc.apiVersion) || !isMapping(doc.spec)) continue;
      const spec = doc.spec;
      this.virtualServices.push({ doc, spec });
      if (!appliesToMesh(spec)) continue;
      const hosts = Array.isArray(spec.hosts) ? spec.hosts : [];
      let entry: GrpcVirtualService | undefined;
      hosts.forEach((host, i) => {
        if (typeof host !== 'string' || !this.services.has(host)) return;
        const existing = this.routers.get(host);
        if (existing) {
          if (existing.doc !== doc) {
            this.conflicts.push({
              doc,
              path: `spec.hosts[${i}]`,
              message: `host "${host}" already has VirtualService/${existing.doc.name} (${where(existing.doc)}): at most one VirtualService per gRPC host`,
            });
          }
          return;
        }
        entry ??= { doc, spec: spec as unknown as VirtualServiceSpec, hosts: [] };
        entry.hosts.push(host);
        this.routers.set(host, entry);
      });
    }
  }

  /** The gRPC hosts a VirtualService document routes (none: it is ignored). */
  hostsOf(doc: CrdDocument): string[] {
    for (const r of this.routers.values()) if (r.doc === doc) return r.hosts;
    return [];
  }
}

/** The ServiceEntry's ports with protocol GRPC (any case, any name but a MetaProtocol or Redis one), first of each number. */
export function grpcPorts(svc: Service): MetaPort[] {
  const out: MetaPort[] = [];
  const ports = Array.isArray(svc.spec.ports) ? svc.spec.ports : [];
  ports.forEach((p, index) => {
    if (!isMapping(p) || typeof p.protocol !== 'string' || p.protocol.toUpperCase() !== GRPC_PROTOCOL) return;
    if (typeof p.name !== 'string' || !isPortNumber(p.number) || out.some((q) => q.number === p.number)) return;
    if (classifyPort(p.name).kind !== 'other') return;
    const port: MetaPort = { index, number: p.number, name: p.name, protocol: 'grpc' };
    if (isPortNumber(p.targetPort)) port.targetPort = p.targetPort;
    out.push(port);
  });
  return out;
}

/** Istio applies a VirtualService to sidecars (and proxyless clients) when `gateways` is empty or lists `mesh`. */
function appliesToMesh(spec: Mapping): boolean {
  const gateways = spec.gateways;
  return !Array.isArray(gateways) || gateways.length === 0 || gateways.includes('mesh');
}

/** The gRPC port a destination goes to: explicit (if the service has it), its only one, or the listener's own. */
function grpcDestinationPort(svc: GrpcService, explicit: number | undefined, listenerPort: number | undefined): number | undefined {
  if (explicit !== undefined) return svc.ports.some((p) => p.number === explicit) ? explicit : undefined;
  if (svc.ports.length === 1) return svc.ports[0]!.number;
  if (listenerPort !== undefined && svc.ports.some((p) => p.number === listenerPort)) return listenerPort;
  return undefined;
}

// ---------------------------------------------------------------- translation

export interface GrpcResources {
  listeners: Listener[];
  /** Envoy HTTP RouteConfigurations (the snapshot's `http_routes`). */
  routes: HttpRouteConfiguration[];
  clusters: WaypostCluster[];
  endpoints: ClusterLoadAssignment[];
}

/** The resources of every gRPC service, in document order (assumes `checkGrpc` found no errors). */
export function translateGrpc(model: ConfigModel): GrpcResources {
  const index = new GrpcIndex(model);
  const out: GrpcResources = { listeners: [], routes: [], clusters: [], endpoints: [] };
  for (const g of index.services.values()) {
    const { svc, ports } = g;
    for (const port of ports) {
      const name = grpcListenerName(svc.host, port.number);
      out.listeners.push(buildApiListener(name, clusterName(port.number, undefined, svc.host)));
      out.routes.push({
        '@type': TYPE_HTTP_ROUTE,
        name,
        virtual_hosts: [{ name, domains: [svc.host, name], routes: buildRoutes(index, g, port.number) }],
      });
    }
    const dr = model.destinationRules.get(svc.host)?.spec;
    const built = buildServiceClusters({ ...svc, metaPorts: ports }, dr);
    for (const cluster of built.clusters) {
      // gRPC's xDS clients balance ROUND_ROBIN or RING_HASH (by lb_policy); anything else would be NACKed.
      if (cluster.lb_policy !== 'RING_HASH') cluster.lb_policy = 'ROUND_ROBIN';
      out.clusters.push(cluster);
    }
    out.endpoints.push(...grpcEndpoints(svc, ports, dr?.subsets ?? []));
  }
  return out;
}

/** The Listener and RouteConfiguration name: the `host:port` a client's `xds:///host:port` target asks for. */
export function grpcListenerName(host: string, port: number): string {
  return `${host}:${port}`;
}

function buildApiListener(name: string, statPrefix: string): Listener {
  return {
    '@type': TYPE_LISTENER,
    name,
    filter_chains: [],
    api_listener: {
      api_listener: {
        '@type': TYPE_HTTP_CONNECTION_MANAGER,
        stat_prefix: statPrefix,
        rds: { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: name },
        http_filters: [
          // Empty: a route's fault (typed_per_filter_config) configures it; the router must come last.
          { name: FILTER_HTTP_FAULT, typed_config: { '@type': TYPE_HTTP_FAULT } },
          { name: FILTER_HTTP_ROUTER, typed_config: { '@type': TYPE_HTTP_ROUTER } },
        ],
      },
    },
  };
}

function buildRoutes(index: GrpcIndex, g: GrpcService, listenerPort: number): HttpRoute[] {
  const router = index.routers.get(g.svc.host);
  if (!router) {
    const action: HttpRouteAction = { cluster: clusterName(listenerPort, undefined, g.svc.host) };
    const header = hashHeader(effectivePolicy(index.model.destinationRules.get(g.svc.host)?.spec));
    if (header) action.hash_policy = [{ header: { header_name: header } }];
    return [{ name: 'default', match: { prefix: '/' }, route: action }];
  }
  const routes: HttpRoute[] = [];
  (router.spec.http ?? []).forEach((http, i) => {
    const action = routeAction(index, http, listenerPort);
    const name = http.name || `route-${i}`;
    const matches: Array<HttpMatchRequest | undefined> = http.match && http.match.length > 0 ? http.match : [undefined];
    for (const m of matches) {
      const route: HttpRoute = { name, match: routeMatch(m), route: action };
      if (http.fault) route.typed_per_filter_config = { [FILTER_HTTP_FAULT]: faultConfig(http.fault) };
      routes.push(route);
    }
  });
  return routes;
}

function routeMatch(m: HttpMatchRequest | undefined): HttpRoute['match'] {
  const out: HttpRoute['match'] = {};
  const uri = m?.uri;
  if (uri?.exact != null) out.path = uri.exact;
  else if (uri?.prefix != null) out.prefix = uri.prefix;
  else if (uri?.regex != null) out.safe_regex = { regex: uri.regex };
  else out.prefix = '/';
  const headers = Object.entries(m?.headers ?? {}).map(([name, sm]) => headerMatcher(name, sm ?? {}));
  if (headers.length > 0) out.headers = headers;
  return out;
}

function routeAction(index: GrpcIndex, http: VirtualServiceHttpRoute, listenerPort: number): HttpRouteAction {
  const several = http.route.length > 1;
  const targets: Array<{ name: string; weight: number }> = [];
  const hashes: string[] = [];
  for (const d of http.route) {
    const weight = several ? (d.weight ?? 0) : 100;
    if (weight === 0) continue; // as Istio: a zero-weight destination gets nothing
    targets.push({ name: destinationCluster(index, d.destination, listenerPort), weight });
    const dr = index.model.destinationRules.get(d.destination.host)?.spec;
    const header = hashHeader(effectivePolicy(dr, d.destination.subset || undefined));
    if (header && !hashes.includes(header)) hashes.push(header);
  }
  const action: HttpRouteAction = targets.length === 1 ? { cluster: targets[0]!.name } : { weighted_clusters: { clusters: targets } };
  if (http.timeout != null) {
    const timeout = toDurationJson(http.timeout);
    // gRPC reads max_stream_duration (A31); Envoy reads timeout. Istio sends both for proxyless clients.
    action.timeout = timeout;
    action.max_stream_duration = { max_stream_duration: timeout };
  }
  const policy = retryPolicy(http.retries);
  if (policy) action.retry_policy = policy;
  if (hashes.length > 0) action.hash_policy = hashes.map((header_name) => ({ header: { header_name } }));
  return action;
}

function destinationCluster(index: GrpcIndex, dest: Destination, listenerPort: number): string {
  const svc = index.services.get(dest.host);
  const port = svc ? grpcDestinationPort(svc, dest.port?.number, listenerPort) : undefined;
  if (port === undefined) throw new Error(`translate: destination host "${dest.host}" has no usable gRPC port (validate the documents first)`);
  return clusterName(port, dest.subset || undefined, dest.host);
}

function retryPolicy(r: HttpRetry | undefined): HttpRouteAction['retry_policy'] {
  if (!r || !r.attempts) return undefined; // attempts 0 (or unset): no retries, as in Istio
  const retryOn = (r.retryOn ?? DEFAULT_RETRY_ON)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .join(',');
  const out: NonNullable<HttpRouteAction['retry_policy']> = { retry_on: retryOn, num_retries: r.attempts };
  if (r.perTryTimeout != null) out.per_try_timeout = toDurationJson(r.perTryTimeout);
  return out;
}

function faultConfig(f: HttpFaultInjection): HttpFault {
  const out: HttpFault = { '@type': TYPE_HTTP_FAULT };
  if (f.delay) out.delay = { fixed_delay: toDurationJson(f.delay.fixedDelay ?? '0s'), percentage: fraction(f.delay.percentage) };
  if (f.abort) {
    out.abort = { percentage: fraction(f.abort.percentage) };
    if (f.abort.grpcStatus != null) out.abort.grpc_status = GRPC_STATUS[f.abort.grpcStatus]!;
    else out.abort.http_status = f.abort.httpStatus!;
  }
  return out;
}

/**
 * ClusterLoadAssignments for gRPC's clients: for each cluster (every port × {all, each subset}), the endpoints
 * grouped by locality (`region/zone/sub_zone`, '' for none) in first-seen order, each group with its `locality`
 * and the sum of its endpoints' weights (1 each by default) as `load_balancing_weight`.
 */
function grpcEndpoints(svc: Service, ports: MetaPort[], subsets: ReadonlyArray<{ name: string; labels?: Record<string, string> }>): ClusterLoadAssignment[] {
  const out: ClusterLoadAssignment[] = [];
  const workloads = svc.spec.endpoints ?? [];
  for (const port of ports) {
    const variants: Array<{ subset?: string; labels: Record<string, string> }> = [{ labels: {} }];
    for (const s of subsets) variants.push({ subset: s.name, labels: s.labels ?? {} });
    for (const { subset, labels } of variants) {
      const name = clusterName(port.number, subset, svc.host);
      const groups = new Map<string, { weight: number; lb: LbEndpoint[] }>();
      for (const w of workloads) {
        if (!hasLabels(w.labels ?? {}, labels)) continue;
        const key = w.locality ?? '';
        let group = groups.get(key);
        if (!group) groups.set(key, (group = { weight: 0, lb: [] }));
        group.weight += w.weight && w.weight > 0 ? w.weight : 1;
        group.lb.push(lbEndpoint(w, port));
      }
      out.push({
        '@type': TYPE_ENDPOINTS,
        cluster_name: name,
        endpoints: [...groups].map(([locality, g]) => ({ locality: localityOf(locality), load_balancing_weight: g.weight, lb_endpoints: g.lb })),
      });
    }
  }
  return out;
}

function localityOf(text: string): { region?: string; zone?: string; sub_zone?: string } {
  const [region, zone, subZone] = text.split('/');
  const out: { region?: string; zone?: string; sub_zone?: string } = {};
  if (region) out.region = region;
  if (zone) out.zone = zone;
  if (subZone) out.sub_zone = subZone;
  return out;
}

function lbEndpoint(w: WorkloadEntry, port: MetaPort): LbEndpoint {
  const own = w.ports && Object.hasOwn(w.ports, port.name) ? w.ports[port.name] : undefined;
  const ep: LbEndpoint = { endpoint: { address: { socket_address: { address: w.address, port_value: own ?? port.targetPort ?? port.number } } } };
  if (w.weight !== undefined && w.weight > 0) ep.load_balancing_weight = w.weight;
  ep.metadata = { filter_metadata: { istio: { labels: { ...(w.labels ?? {}) } } } };
  ep.health_status = 'HEALTHY';
  return ep;
}

function hasLabels(labels: Record<string, string>, wanted: Record<string, string>): boolean {
  return Object.entries(wanted).every(([k, v]) => Object.hasOwn(labels, k) && labels[k] === v);
}

// ---------------------------------------------------------------- validation

/**
 * Every VirtualService (the loop in validate.ts leaves them here), the gRPC ports of ServiceEntries, and the
 * DestinationRules of gRPC hosts. Errors and warnings are pushed onto the lists, pinned to document and field.
 */
export function checkGrpc(model: ConfigModel, errors: ConfigError[], warnings: ConfigError[]): void {
  const index = new GrpcIndex(model);
  const checker = (doc: CrdDocument) => new Checker(doc, errors, warnings);

  for (const { svc, ports } of index.services.values()) checkGrpcServiceEntry(checker(svc.doc), svc, ports);

  for (const [host, { ports }] of index.services) {
    const dr = model.destinationRules.get(host);
    if (!dr) continue;
    const c = checker(dr.doc);
    const numbers = ports.map((p) => p.number).join(', ');
    const lbPaths: Array<[unknown, string]> = [[dr.spec.trafficPolicy, 'spec.trafficPolicy']];
    (Array.isArray(dr.spec.subsets) ? dr.spec.subsets : []).forEach((s, i) => {
      if (isMapping(s)) lbPaths.push([s.trafficPolicy, `spec.subsets[${i}].trafficPolicy`]);
    });
    for (const [policy, path] of lbPaths) {
      const lb = isMapping(policy) && isMapping(policy.loadBalancer) ? policy.loadBalancer : undefined;
      const simple = lb?.simple;
      if (simple === 'RANDOM' || simple === 'LEAST_REQUEST' || simple === 'LEAST_CONN') {
        c.warn(`${path}.loadBalancer.simple`, `gRPC's xDS clients balance only ROUND_ROBIN or by consistent hash: the clusters of gRPC port ${numbers} use ROUND_ROBIN`);
      }
      const od = isMapping(policy) && isMapping(policy.outlierDetection) ? policy.outlierDetection : undefined;
      const counted = ['consecutiveErrors', 'consecutive5xxErrors', 'consecutiveGatewayErrors'].filter((k) => od?.[k] != null);
      if (counted.length > 0) {
        c.warn(
          `${path}.outlierDetection`,
          `gRPC's xDS clients eject by success rate only (gRPC A50), not after consecutive errors: ${counted.join(', ')} ignored by the clients of gRPC port ${numbers}`,
        );
      }
    }
  }

  for (const conflict of index.conflicts) errors.push(ConfigError.at(conflict.doc, conflict.path, conflict.message));

  for (const doc of model.docs) {
    if (doc.kind !== KIND_VIRTUAL_SERVICE) continue;
    const c = checker(doc);
    const entry = index.virtualServices.find((v) => v.doc === doc);
    const hosts = entry ? index.hostsOf(doc) : [];
    if (!entry || hosts.length === 0) {
      if (namesGrpcHost(index, doc.spec)) {
        // A gRPC host, but not routed: the wrong apiVersion, gateways without "mesh", or another VirtualService
        // has the host (reported with the conflicts).
        if (!ISTIO_NETWORKING.includes(doc.apiVersion)) {
          c.error('apiVersion', `VirtualService must be ${ISTIO_NETWORKING.join(', ')} (got "${doc.apiVersion}")`);
        } else if (isMapping(doc.spec) && !appliesToMesh(doc.spec)) {
          c.warn('spec.gateways', 'applies to gateways only (no "mesh" in spec.gateways), and Waypost has no gateways: ignored');
        }
        continue;
      }
      c.warn('', 'VirtualService is not translated yet: ignored');
      continue;
    }
    checkVirtualService(c, entry.spec as unknown as VirtualServiceSpec, index, hosts);
  }
}

function namesGrpcHost(index: GrpcIndex, spec: unknown): boolean {
  return isMapping(spec) && Array.isArray(spec.hosts) && spec.hosts.some((h) => typeof h === 'string' && index.services.has(h));
}

function checkGrpcServiceEntry(c: Checker, svc: Service, ports: MetaPort[]): void {
  const numbers = ports.map((p) => p.number).join(', ');
  const endpoints = Array.isArray(svc.spec.endpoints) ? svc.spec.endpoints : [];
  const resolution = svc.spec.resolution ?? 'NONE';
  // (STATIC already requires IPs, and NONE takes no endpoints: validate-specs.ts says so.)
  if (resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') endpoints.forEach((e, i) => {
    if (!isMapping(e) || typeof e.address !== 'string' || e.address === '' || isIP(e.address) || e.address.startsWith('unix://')) return;
    c.error(`spec.endpoints[${i}].address`, `"${e.address}" is not an IP address: gRPC's xDS clients take IP endpoints only (gRPC port ${numbers})`);
  });
  if (endpoints.length === 0) {
    if (resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') {
      c.error('spec.resolution', `${resolution} without endpoints resolves the host name, but gRPC's xDS clients take IP endpoints only (gRPC port ${numbers}): list the endpoints' IP addresses`);
    } else if (!svc.spec.workloadSelector) {
      c.warn('spec.endpoints', `the service has no endpoints: gRPC calls to port ${numbers} will fail`);
    }
  }
}

const MATCH_TYPES = ['exact', 'prefix', 'regex'];
/** HTTPRoute fields with no meaning for a gRPC client: ignored, with a warning. */
const IGNORED_ROUTE_FIELDS = ['rewrite', 'headers', 'mirror', 'mirrors', 'mirrorPercentage', 'mirrorPercent', 'corsPolicy'];
/** HTTPRoute fields that replace forwarding: a route with one is an error (ignoring it would forward instead). */
const UNSUPPORTED_ROUTE_FIELDS = ['redirect', 'directResponse', 'delegate'];
const MATCH_FIELDS = ['name', 'headers', 'uri'];

function checkVirtualService(c: Checker, spec: VirtualServiceSpec, index: GrpcIndex, grpcHosts: string[]): void {
  const raw = spec as unknown as Mapping;
  const hosts = c.list(raw.hosts, 'spec.hosts', true) ?? [];
  hosts.forEach((h, i) => {
    const host = c.string(h, `spec.hosts[${i}]`, true);
    if (host === undefined || grpcHosts.includes(host)) return;
    if (index.routers.get(host)) return; // a conflict, reported
    c.warn(`spec.hosts[${i}]`, `"${host}" is not a gRPC service (a ServiceEntry hosts[0] with a port of protocol GRPC): this host is ignored`);
  });
  const gateways = c.list(raw.gateways, 'spec.gateways');
  gateways?.forEach((g, i) => c.string(g, `spec.gateways[${i}]`, true));
  if (gateways?.some((g) => g !== 'mesh')) c.warn('spec.gateways', 'Waypost has no gateways: only "mesh" applies');
  for (const key of ['tcp', 'tls']) {
    if (raw[key] != null) c.warn(`spec.${key}`, `${key} routes do not apply to gRPC clients: ignored`);
  }

  const http = c.list(raw.http, 'spec.http', true);
  if (http && http.length === 0) c.error('spec.http', 'must list at least one route: gRPC clients take http routes');
  // Listener ports a destination without a port resolves against.
  const listenerPorts = [...new Set(grpcHosts.flatMap((h) => index.services.get(h)!.ports.map((p) => p.number)))];
  let catchAll: number | undefined;
  http?.forEach((r, i) => {
    const path = `spec.http[${i}]`;
    const route = c.mapping(r, path, true);
    if (!route) return;
    if (catchAll !== undefined) c.warn(path, `unreachable: spec.http[${catchAll}] matches every call before it`);
    checkHttpRoute(c, route, path, index, listenerPorts);
    const match = route.match;
    const isCatchAll = match == null || (Array.isArray(match) && (match.length === 0 || match.some((m) => isMapping(m) && m.headers == null && m.uri == null)));
    if (isCatchAll && catchAll === undefined) catchAll = i;
  });
}

function checkHttpRoute(c: Checker, route: Mapping, path: string, index: GrpcIndex, listenerPorts: number[]): void {
  c.string(route.name, `${path}.name`);
  for (const key of UNSUPPORTED_ROUTE_FIELDS) {
    if (route[key] != null) c.error(`${path}.${key}`, `not supported for gRPC clients (Waypost sends them routes to clusters only)`);
  }
  for (const key of IGNORED_ROUTE_FIELDS) {
    if (route[key] != null) c.warn(`${path}.${key}`, 'not translated for gRPC clients: ignored');
  }

  const matches = c.list(route.match, `${path}.match`);
  matches?.forEach((m, j) => {
    const mPath = `${path}.match[${j}]`;
    const match = c.mapping(m, mPath, true);
    if (!match) return;
    for (const key of Object.keys(match)) {
      if (!MATCH_FIELDS.includes(key) && match[key] !== undefined) {
        c.error(fieldPath(mPath, key), `gRPC clients cannot match on "${key}" (they match headers and uri): the route would match more than it says`);
      }
    }
    c.string(match.name, `${mPath}.name`);
    const headers = c.mapping(match.headers, `${mPath}.headers`);
    for (const [name, value] of Object.entries(headers ?? {})) {
      const hPath = fieldPath(`${mPath}.headers`, name);
      if (name === '') c.error(`${mPath}.headers`, 'a header name must not be empty');
      else if (name !== name.toLowerCase()) c.error(hPath, `header name "${name}" must be lower case (gRPC metadata keys are)`);
      checkStringMatch(c, value, hPath, true);
    }
    if (match.uri != null) checkStringMatch(c, match.uri, `${mPath}.uri`, false);
  });

  const destinations = c.list(route.route, `${path}.route`, true);
  if (destinations && destinations.length === 0) c.error(`${path}.route`, 'a route needs at least one destination');
  if (destinations) {
    let total = 0;
    let weightsOk = true;
    destinations.forEach((d, j) => {
      const dPath = `${path}.route[${j}]`;
      const dest = c.mapping(d, dPath, true);
      if (!dest) {
        weightsOk = false;
        return;
      }
      checkDestination(c, dest.destination, `${dPath}.destination`, index, listenerPorts);
      const weight = c.integer(dest.weight, `${dPath}.weight`, { min: 0, max: 0xffffffff });
      if (dest.weight != null && weight === undefined) weightsOk = false;
      else total += weight ?? 0;
    });
    if (destinations.length > 1 && weightsOk) {
      if (total === 0) c.error(`${path}.route`, 'the weights of several destinations add up to 0: give at least one a weight');
      else if (total > 0xffffffff) c.error(`${path}.route`, `the weights add up to ${total}, more than gRPC's limit of 2^32-1`);
    }
  }

  c.duration(route.timeout, `${path}.timeout`);

  const retries = c.mapping(route.retries, `${path}.retries`);
  if (retries) {
    const rPath = `${path}.retries`;
    const attempts = c.integer(retries.attempts, `${rPath}.attempts`, { min: 0 });
    if (retries.attempts == null) c.warn(`${rPath}.attempts`, 'not set: attempts defaults to 0, so nothing is retried');
    c.duration(retries.perTryTimeout, `${rPath}.perTryTimeout`);
    if (retries.perTryTimeout != null && attempts) {
      c.warn(`${rPath}.perTryTimeout`, "gRPC's xDS clients do not support a per-try timeout: sent, but gRPC clients ignore it");
    }
    const retryOn = c.string(retries.retryOn, `${rPath}.retryOn`);
    if (retryOn !== undefined) {
      const conditions = retryOn.split(',').map((s) => s.trim());
      for (const condition of conditions) {
        if (condition === '') c.error(`${rPath}.retryOn`, `"${retryOn}" has an empty entry`);
        else if (!GRPC_RETRY_ON.includes(condition) && !ENVOY_RETRY_ON.includes(condition) && !/^[1-5][0-9][0-9]$/.test(condition)) {
          c.error(`${rPath}.retryOn`, `unknown retry condition "${condition}" (gRPC clients retry on ${GRPC_RETRY_ON.join(', ')})`);
        }
      }
      if (attempts && conditions.every((x) => x === '' || ENVOY_RETRY_ON.includes(x) || /^[1-5][0-9][0-9]$/.test(x))) {
        c.warn(`${rPath}.retryOn`, `gRPC clients retry only on ${GRPC_RETRY_ON.join(', ')}: with none of them, nothing is retried`);
      }
    }
  }

  const fault = c.mapping(route.fault, `${path}.fault`);
  if (fault) checkFault(c, fault, `${path}.fault`);
}

function checkStringMatch(c: Checker, raw: unknown, path: string, emptyMeansPresent: boolean): void {
  if (raw == null) {
    c.error(path, `must be a mapping: {exact: …}, {prefix: …} or {regex: …}${emptyMeansPresent ? ', or {} to match any value' : ''}`);
    return;
  }
  const sm = c.mapping(raw, path);
  if (!sm) return;
  for (const k of MATCH_TYPES) if (sm[k] === null) c.error(fieldPath(path, k), 'must be a string (got null)');
  const keys = Object.keys(sm).filter((k) => sm[k] !== undefined);
  for (const k of keys.filter((k) => !MATCH_TYPES.includes(k))) c.error(fieldPath(path, k), `unknown match type "${k}": use exact, prefix or regex`);
  const used = keys.filter((k) => MATCH_TYPES.includes(k));
  if (used.length > 1) c.error(path, `only one of exact, prefix or regex can be set (got ${used.join(', ')})`);
  if (used.length === 0 && !emptyMeansPresent) c.error(path, 'needs one of exact, prefix or regex');
  const s = sm as StringMatch & Mapping;
  if (s.exact !== undefined) c.string(s.exact, `${path}.exact`);
  if (s.prefix !== undefined) c.string(s.prefix, `${path}.prefix`, !emptyMeansPresent);
  if (s.regex !== undefined) {
    const re = c.string(s.regex, `${path}.regex`, true);
    // The named lookaround/backreference messages first; then the RE2 compiler's own verdict.
    const problem = re !== undefined ? (re2Problem(re) ?? regexProblem(re)) : undefined;
    if (problem) c.error(`${path}.regex`, problem);
  }
}

/** gRPC clients (and Envoy) compile regexes with RE2, which has no lookaround and no backreferences. */
function re2Problem(re: string): string | undefined {
  if (/\(\?<?[=!]/.test(re)) return `${JSON.stringify(re)} uses lookaround, which RE2 (gRPC's regex engine) does not have`;
  if (/\\[1-9]|\\k</.test(re)) return `${JSON.stringify(re)} uses a backreference, which RE2 (gRPC's regex engine) does not have`;
  return undefined;
}

function checkDestination(c: Checker, raw: unknown, path: string, index: GrpcIndex, listenerPorts: number[]): void {
  const dest = c.mapping(raw, path, true);
  if (!dest) return;
  const host = c.string(dest.host, `${path}.host`, true);
  const subset = c.string(dest.subset, `${path}.subset`);
  if (subset !== undefined && subset !== '' && !isDns1123Label(subset)) c.error(`${path}.subset`, `"${subset}" is not a valid subset name`);
  const port = c.mapping(dest.port, `${path}.port`);
  const explicit = port ? c.integer(port.number, `${path}.port.number`, { min: 1, max: 65535, required: true }) : undefined;
  if (host === undefined) return;

  const svc = index.services.get(host);
  if (!svc) {
    const other = index.model.service(host);
    c.error(
      `${path}.host`,
      other
        ? `host "${host}" has no gRPC port (ServiceEntry/${other.doc.name} has no port with protocol GRPC)`
        : `host "${host}" is not defined by any ServiceEntry`,
    );
    return;
  }
  const numbers = svc.ports.map((p) => p.number).join(', ');
  if (port && explicit !== undefined) {
    if (grpcDestinationPort(svc, explicit, undefined) === undefined) c.error(`${path}.port.number`, `host "${host}" has no gRPC port ${explicit} (its gRPC ports: ${numbers})`);
  } else if (!port) {
    for (const listenerPort of listenerPorts) {
      if (grpcDestinationPort(svc, undefined, listenerPort) === undefined) {
        c.error(`${path}.port`, `required: host "${host}" has several gRPC ports (${numbers}) and none is the listener's port ${listenerPort}`);
        break;
      }
    }
  }
  if (subset !== undefined && subset !== '' && !index.model.subsetNames(host).includes(subset)) {
    c.error(`${path}.subset`, `subset "${subset}" is not defined by any DestinationRule for host "${host}"`);
  }
}

function checkFault(c: Checker, fault: Mapping, path: string): void {
  if (fault.delay == null && fault.abort == null) c.error(path, 'a fault needs delay or abort');
  const delay = c.mapping(fault.delay, `${path}.delay`);
  if (delay) {
    if (delay.exponentialDelay != null) c.error(`${path}.delay.exponentialDelay`, 'not supported: use fixedDelay');
    else c.duration(delay.fixedDelay, `${path}.delay.fixedDelay`, true);
    if (delay.percentage != null) c.percent(delay.percentage, `${path}.delay.percentage`);
  }
  const abort = c.mapping(fault.abort, `${path}.abort`);
  if (abort) {
    const given = ['httpStatus', 'grpcStatus', 'http2Error'].filter((k) => abort[k] != null);
    if (given.length === 0) c.error(`${path}.abort`, 'needs httpStatus or grpcStatus');
    if (given.length > 1) c.error(`${path}.abort`, `only one of httpStatus or grpcStatus can be set (got ${given.join(', ')})`);
    if (abort.http2Error != null) c.error(`${path}.abort.http2Error`, 'not supported for gRPC clients: use grpcStatus');
    c.integer(abort.httpStatus, `${path}.abort.httpStatus`, { min: 200, max: 599 });
    const status = c.string(abort.grpcStatus, `${path}.abort.grpcStatus`, abort.grpcStatus != null);
    if (status !== undefined && status !== '' && (!Object.hasOwn(GRPC_STATUS, status) || status === 'OK')) {
      const names = Object.keys(GRPC_STATUS).filter((n) => n !== 'OK');
      c.error(`${path}.abort.grpcStatus`, `"${status}" is not a gRPC status name (one of ${names.join(', ')})`);
    }
    if (abort.percentage != null) c.percent(abort.percentage, `${path}.abort.percentage`);
  }
}
