/**
 * The xDS resources the data plane consumes, as proto3 JSON with the protos' own (snake_case) field names — the
 * same shape `waypost translate` prints and an xDS server sends (decoded). Only the fields Waypost reads are typed;
 * unknown fields are ignored, as an Envoy would.
 *
 * Listener / Cluster / ClusterLoadAssignment are Envoy v3. A MetaProtocol listener's network filter carries
 * Aeraki's `aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy`, and its routes come as Aeraki's
 * `aeraki.meta_protocol_proxy.config.route.v1alpha.RouteConfiguration` — the RDS type Aeraki's control plane really
 * sends (see docs/decisions.md), extended with Waypost's route policy fields.
 */

export const TYPE_LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';
export const TYPE_CLUSTER = 'type.googleapis.com/envoy.config.cluster.v3.Cluster';
export const TYPE_ENDPOINTS = 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment';
export const TYPE_META_ROUTE = 'type.googleapis.com/aeraki.meta_protocol_proxy.config.route.v1alpha.RouteConfiguration';
export const TYPE_META_PROTOCOL_PROXY = 'type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy';
export const FILTER_META_PROTOCOL_PROXY = 'envoy.filters.network.meta_protocol_proxy';
export const META_FILTER_ROUTER = 'aeraki.meta_protocol.filters.router';

export interface SocketAddress {
  socket_address: { address: string; port_value: number; protocol?: 'TCP' };
}

/** Envoy `google.protobuf.Duration` in JSON: `"1.5s"`. */
export type DurationJson = string;

export interface MetaProtocolProxyConfig {
  '@type': typeof TYPE_META_PROTOCOL_PROXY;
  stat_prefix: string;
  rds?: { config_source: { ads?: Record<string, never>; resource_api_version?: 'V3' }; route_config_name: string };
  route_config?: MetaRouteConfiguration;
  protocol: { name: string; codec: { name: string }; multiplexing?: boolean };
  meta_protocol_filters?: Array<{ name: string; config?: unknown }>;
  idle_timeout?: DurationJson;
}

export interface NetworkFilter {
  name: string;
  typed_config: MetaProtocolProxyConfig | { '@type': string; [k: string]: unknown };
}

/**
 * A socket listener has `address` and `filter_chains`. An API listener (proxyless gRPC: named `host:port`, what a
 * gRPC client's `xds:///host:port` target asks for) has `api_listener`, no address and no filter chains (an empty
 * list, which is also what a decoded one without the field means); the Waypost data plane skips it.
 */
export interface Listener {
  '@type'?: typeof TYPE_LISTENER;
  name: string;
  address?: SocketAddress;
  filter_chains: FilterChain[];
  api_listener?: { api_listener: HttpConnectionManagerConfig };
  /** `envoy.filters.listener.tls_inspector` goes with a TLS and a plaintext filter chain (PERMISSIVE mTLS). */
  listener_filters?: Array<{ name: string; typed_config?: { '@type': string; [k: string]: unknown } }>;
}

/**
 * One filter chain. Waypost runs the first chain's network filters; a chain with a TLS `transport_socket` makes the
 * listener speak TLS, and a TLS chain beside a plaintext one (`filter_chain_match.transport_protocol` `tls` /
 * `raw_buffer`) makes it accept both (see src/tls.ts).
 */
export interface FilterChain {
  filter_chain_match?: { transport_protocol?: string };
  filters: NetworkFilter[];
  transport_socket?: TransportSocket;
}

/** Envoy `type.v3.FractionalPercent`: `numerator / denominator`. */
export interface FractionalPercent {
  numerator: number;
  denominator?: 'HUNDRED' | 'TEN_THOUSAND' | 'MILLION';
}

/** Envoy `config.cluster.v3.OutlierDetection` (the fields Istio's outlierDetection maps to). */
export interface OutlierDetectionJson {
  consecutive_5xx?: number;
  consecutive_gateway_failure?: number;
  interval?: DurationJson;
  base_ejection_time?: DurationJson;
  max_ejection_percent?: number;
}

export interface Cluster {
  '@type'?: typeof TYPE_CLUSTER;
  name: string;
  /** From DestinationRule connectionPool (max_connections) — Waypost also reads max_pending_requests. */
  circuit_breakers?: { thresholds: Array<{ max_connections?: number; max_pending_requests?: number; max_requests?: number }> };
  outlier_detection?: OutlierDetectionJson;
  type?: 'EDS' | 'STATIC' | 'STRICT_DNS' | 'LOGICAL_DNS';
  eds_cluster_config?: { eds_config?: { ads?: Record<string, never>; resource_api_version?: 'V3' }; service_name?: string };
  connect_timeout?: DurationJson;
  lb_policy?: 'ROUND_ROBIN' | 'RANDOM' | 'LEAST_REQUEST' | 'RING_HASH' | 'MAGLEV';
  /** Inline endpoints (STATIC / DNS clusters). */
  load_assignment?: ClusterLoadAssignment;
  /**
   * Protocol options by filter name, as Envoy's: `envoy.filters.network.redis_proxy` holds a
   * `RedisProtocolOptions` (`auth_password` / `auth_username` as `{inline_string}`) for the upstream AUTH.
   */
  typed_extension_protocol_options?: Record<string, { '@type'?: string; [k: string]: unknown }>;
  /** A custom cluster type, as Envoy's (`envoy.clusters.redis`: a Redis Cluster, slots discovered from its nodes). */
  cluster_type?: { name: string; typed_config?: unknown };
  /** `envoy.transport_sockets.tls` with an {@link UpstreamTlsContext}: connections to the endpoints use TLS. */
  transport_socket?: TransportSocket;
}

export interface LbEndpoint {
  endpoint: { address: SocketAddress };
  /** Istio puts endpoint labels under `filter_metadata.istio.labels` (we also read `envoy.lb`). */
  metadata?: { filter_metadata?: Record<string, Record<string, unknown>> };
  load_balancing_weight?: number;
  health_status?: 'UNKNOWN' | 'HEALTHY' | 'UNHEALTHY' | 'DRAINING' | 'TIMEOUT' | 'DEGRADED';
}

export interface ClusterLoadAssignment {
  '@type'?: typeof TYPE_ENDPOINTS;
  cluster_name: string;
  /**
   * Per locality. gRPC's xDS clients need `locality` set and a `load_balancing_weight` (a locality without one is
   * skipped); the Waypost data plane reads only `lb_endpoints`.
   */
  endpoints: Array<{ lb_endpoints: LbEndpoint[]; locality?: { region?: string; zone?: string; sub_zone?: string }; load_balancing_weight?: number }>;
}

/** Envoy v3 `config.route.v3.HeaderMatcher`, as Aeraki uses it for metadata matching. */
export interface HeaderMatcher {
  name: string;
  string_match?: { exact?: string; prefix?: string; suffix?: string; safe_regex?: { regex: string }; ignore_case?: boolean };
  /** Older spellings Aeraki's control plane still emits. */
  exact_match?: string;
  prefix_match?: string;
  safe_regex_match?: { regex: string };
  present_match?: boolean;
  invert_match?: boolean;
}

export interface WeightedClusters {
  clusters: Array<{ name: string; weight: number }>;
  total_weight?: number;
}

export interface MetaRoute {
  name: string;
  match?: { metadata?: HeaderMatcher[] };
  route: {
    cluster?: string;
    weighted_clusters?: WeightedClusters;
    hash_policy?: string[];
    request_mirror_policies?: Array<{ cluster: string; runtime_fraction?: { default_value?: FractionalPercent } }>;
  };
  request_mutation?: Array<{ key: string; value: string }>;
  response_mutation?: Array<{ key: string; value: string }>;
  /** Waypost route policy (not in Aeraki's message): whole-request timeout. */
  timeout?: DurationJson;
  /** Waypost: `retry_on` is a comma list of connect-failure, reset, unavailable, timeout, error. */
  retry_policy?: { num_retries: number; per_try_timeout?: DurationJson; retry_on?: string };
  /** Waypost: fault injection; `percentage` defaults to 100%. */
  fault?: {
    delay?: { fixed_delay: DurationJson; percentage?: FractionalPercent };
    abort?: { percentage?: FractionalPercent; error_code?: number | string; message?: string };
  };
}

export interface MetaRouteConfiguration {
  '@type'?: typeof TYPE_META_ROUTE;
  name: string;
  routes: MetaRoute[];
}

/** Everything the data plane needs, as an xDS server's four resource types (and proxyless gRPC's routes). */
export interface ResourceSnapshot {
  version: string;
  listeners: Listener[];
  clusters: Cluster[];
  endpoints: ClusterLoadAssignment[];
  /** Aeraki MetaProtocol RouteConfigurations (RDS, {@link TYPE_META_ROUTE}). */
  routes: MetaRouteConfiguration[];
  /**
   * Envoy HTTP RouteConfigurations (RDS, {@link TYPE_HTTP_ROUTE}) for proxyless gRPC clients; absent when there are
   * none. The Waypost data plane does not use them.
   */
  http_routes?: HttpRouteConfiguration[];
}

// ---- proxyless gRPC: Envoy's HTTP connection manager and HTTP routes, as gRPC's xDS clients read them ----

export const TYPE_HTTP_ROUTE = 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration';
export const TYPE_HTTP_CONNECTION_MANAGER = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const TYPE_HTTP_ROUTER = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';
export const TYPE_HTTP_FAULT = 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault';
export const FILTER_HTTP_ROUTER = 'envoy.filters.http.router';
export const FILTER_HTTP_FAULT = 'envoy.filters.http.fault';

/** Envoy `HttpConnectionManager`, as an API listener carries it. */
export interface HttpConnectionManagerConfig {
  '@type': typeof TYPE_HTTP_CONNECTION_MANAGER;
  stat_prefix?: string;
  rds?: { config_source: { ads?: Record<string, never>; resource_api_version?: 'V3' }; route_config_name: string };
  route_config?: HttpRouteConfiguration;
  /** The router last; gRPC requires it. */
  http_filters: Array<{ name: string; typed_config: { '@type': string; [k: string]: unknown }; is_optional?: boolean }>;
}

/** Envoy `extensions.filters.http.fault.v3.HTTPFault` (the filter's config and a route's override). */
export interface HttpFault {
  '@type'?: typeof TYPE_HTTP_FAULT;
  delay?: { fixed_delay: DurationJson; percentage?: FractionalPercent };
  abort?: { http_status?: number; grpc_status?: number; percentage?: FractionalPercent };
}

export interface HttpRouteAction {
  cluster?: string;
  /** gRPC reads the weights as relative (total_weight is deprecated and not sent). */
  weighted_clusters?: { clusters: Array<{ name: string; weight: number }> };
  /** Envoy's whole-request timeout; gRPC ignores it and reads `max_stream_duration`. */
  timeout?: DurationJson;
  max_stream_duration?: { max_stream_duration?: DurationJson; grpc_timeout_header_max?: DurationJson };
  /** `retry_on`: comma list without spaces (gRPC splits on ',' alone). */
  retry_policy?: { retry_on: string; num_retries?: number; per_try_timeout?: DurationJson };
  hash_policy?: Array<{ header: { header_name: string } }>;
}

export interface HttpRoute {
  name?: string;
  match: { prefix?: string; path?: string; safe_regex?: { regex: string }; headers?: HeaderMatcher[] };
  route: HttpRouteAction;
  /** By HTTP filter name: `envoy.filters.http.fault` takes an {@link HttpFault}. */
  typed_per_filter_config?: Record<string, HttpFault | { '@type': string; [k: string]: unknown }>;
}

export interface VirtualHost {
  name: string;
  domains: string[];
  routes: HttpRoute[];
}

/** Envoy `config.route.v3.RouteConfiguration` ({@link TYPE_HTTP_ROUTE}). */
export interface HttpRouteConfiguration {
  '@type'?: typeof TYPE_HTTP_ROUTE;
  name: string;
  virtual_hosts: VirtualHost[];
}

export const META_FILTER_LOCAL_RATELIMIT = 'aeraki.meta_protocol.filters.local_ratelimit';
export const TYPE_LOCAL_RATELIMIT = 'type.googleapis.com/aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha.LocalRateLimit';

/** Envoy `type.v3.TokenBucket`. */
export interface TokenBucketJson {
  max_tokens: number;
  tokens_per_fill?: number;
  fill_interval: DurationJson;
}

/**
 * Aeraki's `LocalRateLimit` meta_protocol filter config (from a MetaRouter's `localRateLimit`), carried in the
 * listener's `meta_protocol_filters` before the router. The first condition whose match fits takes the request;
 * otherwise `token_bucket` (if any) applies.
 */
export interface LocalRateLimitConfig {
  '@type'?: typeof TYPE_LOCAL_RATELIMIT;
  stat_prefix?: string;
  token_bucket?: TokenBucketJson;
  conditions?: Array<{ match: { metadata: HeaderMatcher[] }; token_bucket: TokenBucketJson }>;
}

export const META_FILTER_GLOBAL_RATELIMIT = 'aeraki.meta_protocol.filters.ratelimit';
export const TYPE_GLOBAL_RATELIMIT = 'type.googleapis.com/aeraki.meta_protocol_proxy.filters.ratelimit.v1alpha.RateLimit';

/**
 * Aeraki's global `RateLimit` meta_protocol filter config (from a MetaRouter's `globalRateLimit`): requests that
 * `match` are checked with the rate limit service, described by their metadata `property` values under
 * `descriptor_key`s.
 */
export interface GlobalRateLimitConfig {
  '@type'?: typeof TYPE_GLOBAL_RATELIMIT;
  match?: { metadata?: HeaderMatcher[] };
  domain: string;
  timeout?: DurationJson;
  failure_mode_deny?: boolean;
  rate_limit_service: {
    grpc_service: { envoy_grpc?: { cluster_name: string }; google_grpc?: { target_uri: string; stat_prefix?: string } };
    transport_api_version?: 'V3';
  };
  descriptors: Array<{ property: string; descriptor_key: string }>;
}

// ---- TLS (Envoy's envoy.transport_sockets.tls) and authorization ----

export const TRANSPORT_SOCKET_TLS = 'envoy.transport_sockets.tls';
export const TYPE_DOWNSTREAM_TLS_CONTEXT = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext';
export const TYPE_UPSTREAM_TLS_CONTEXT = 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext';
export const LISTENER_FILTER_TLS_INSPECTOR = 'envoy.filters.listener.tls_inspector';
export const TYPE_TLS_INSPECTOR = 'type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector';
/** Istio's SDS secret names: the workload certificate and the mesh root CA (Waypost reads them from --mesh-certs). */
export const SDS_SECRET_DEFAULT = 'default';
export const SDS_SECRET_ROOTCA = 'ROOTCA';

/** Envoy `config.core.v3.DataSource`: a file the proxy reads, or the bytes inline. */
export interface DataSourceJson {
  filename?: string;
  inline_string?: string;
  /** base64 */
  inline_bytes?: string;
}

/** Envoy `type.matcher.v3.StringMatcher`. */
export interface StringMatcherJson {
  exact?: string;
  prefix?: string;
  suffix?: string;
  contains?: string;
  safe_regex?: { regex: string };
  ignore_case?: boolean;
}

export interface SdsSecretConfigJson {
  name: string;
  sds_config?: unknown;
}

export interface CertificateValidationContextJson {
  trusted_ca?: DataSourceJson;
  /** The peer certificate must carry a SAN (URI, DNS, IP or email) one of these matches. */
  match_subject_alt_names?: StringMatcherJson[];
}

export interface CommonTlsContextJson {
  tls_certificates?: Array<{ certificate_chain?: DataSourceJson; private_key?: DataSourceJson }>;
  /** `default`: the mesh certificate (Istio's name). */
  tls_certificate_sds_secret_configs?: SdsSecretConfigJson[];
  validation_context?: CertificateValidationContextJson;
  /** `ROOTCA`: the mesh root CA (Istio's name). */
  validation_context_sds_secret_config?: SdsSecretConfigJson;
  combined_validation_context?: {
    default_validation_context?: CertificateValidationContextJson;
    validation_context_sds_secret_config?: SdsSecretConfigJson;
  };
  alpn_protocols?: string[];
}

export interface DownstreamTlsContext {
  '@type': typeof TYPE_DOWNSTREAM_TLS_CONTEXT;
  common_tls_context?: CommonTlsContextJson;
  require_client_certificate?: boolean;
}

export interface UpstreamTlsContext {
  '@type': typeof TYPE_UPSTREAM_TLS_CONTEXT;
  common_tls_context?: CommonTlsContextJson;
  sni?: string;
}

/** Envoy `config.core.v3.TransportSocket`. */
export interface TransportSocket {
  name: string;
  typed_config?: DownstreamTlsContext | UpstreamTlsContext | { '@type': string; [k: string]: unknown };
}

export const META_FILTER_AUTHZ = 'waypost.meta_protocol.filters.authz';
export const TYPE_AUTHZ = 'type.googleapis.com/waypost.meta_protocol.filters.authz.v1alpha.Authorization';

/**
 * Waypost's authorization filter config (proto/waypost/meta_protocol/filters/authz): Istio's evaluation over
 * policies translated from DubboAuthorizationPolicy and MetaAuthorizationPolicy. Patterns are Istio's: `exact`,
 * `prefix*`, `*suffix`, `*` (present and not empty).
 */
export interface AuthorizationConfig {
  '@type'?: typeof TYPE_AUTHZ;
  policies?: AuthorizationPolicyJson[];
}

export interface AuthorizationPolicyJson {
  /** `<Kind>/<namespace>/<name>`: the `policy` label of the denial counter. */
  name: string;
  /** Default ALLOW. */
  action?: 'ALLOW' | 'DENY';
  rules?: Array<{ from?: AuthzSourceJson[]; to?: AuthzOperationJson[] }>;
}

export interface AuthzSourceJson {
  principals?: string[];
  not_principals?: string[];
  namespaces?: string[];
  not_namespaces?: string[];
}

export interface AuthzOperationJson {
  attributes?: Array<{ key: string; values?: string[]; not_values?: string[] }>;
}
