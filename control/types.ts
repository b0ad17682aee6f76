/**
 * The CRDs Waypost reads, as TypeScript types of their `spec` (field names and meanings are Istio's and Aeraki's;
 * only the fields Waypost uses are typed). A loaded document's `spec` is `unknown` until `validateDocuments`
 * accepts it; the translator then reads it through these types.
 */

/** One resource from a YAML/JSON file. */
export interface CrdDocument {
  /** The file as given (or joined to the directory it was found under). */
  file: string;
  /** 0-based position of the document in its file; empty documents count but are not returned. */
  index: number;
  apiVersion: string;
  kind: string;
  /** `metadata.name` ('' when missing: validation reports it). */
  name: string;
  /** `metadata.namespace`, when given. */
  namespace?: string;
  /** `metadata.annotations` with string values, when any (a MetaRouter's `waypost.io/meta-protocol-filters`). */
  annotations?: Record<string, string>;
  spec: unknown;
}

/** Reads string-valued annotations; undefined when there are none. */
export function stringAnnotations(value: unknown): Record<string, string> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const out: Record<string, string> = {};
  let any = false;
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === 'string') {
      out[k] = v;
      any = true;
    }
  }
  return any ? out : undefined;
}

export const KIND_SERVICE_ENTRY = 'ServiceEntry';
export const KIND_DESTINATION_RULE = 'DestinationRule';
export const KIND_META_ROUTER = 'MetaRouter';
export const KIND_APPLICATION_PROTOCOL = 'ApplicationProtocol';
export const KIND_REDIS_SERVICE = 'RedisService';
export const KIND_REDIS_DESTINATION = 'RedisDestination';
/** Translated for gRPC services only (control/grpc.ts); otherwise loaded and ignored with a warning. */
export const KIND_VIRTUAL_SERVICE = 'VirtualService';

export const ISTIO_NETWORKING: readonly string[] = ['networking.istio.io/v1alpha3', 'networking.istio.io/v1beta1', 'networking.istio.io/v1'];
const AERAKI_METAPROTOCOL = ['metaprotocol.aeraki.io/v1alpha1'];
const AERAKI_REDIS = ['redis.aeraki.io/v1alpha1'];
export const KIND_PEER_AUTHENTICATION = 'PeerAuthentication';
export const KIND_DUBBO_AUTHORIZATION_POLICY = 'DubboAuthorizationPolicy';
/** Waypost's own kind (docs/security.md): DubboAuthorizationPolicy's semantics for any protocol, by request attribute. */
export const KIND_META_AUTHORIZATION_POLICY = 'MetaAuthorizationPolicy';
const ISTIO_SECURITY = ['security.istio.io/v1beta1', 'security.istio.io/v1'];
const AERAKI_DUBBO = ['dubbo.aeraki.io/v1alpha1'];
const WAYPOST_METAPROTOCOL = ['metaprotocol.waypost.io/v1alpha1'];

/** The kinds Waypost translates, with the apiVersions each accepts. */
export const TRANSLATED_KINDS: Readonly<Record<string, readonly string[]>> = {
  [KIND_SERVICE_ENTRY]: ISTIO_NETWORKING,
  [KIND_DESTINATION_RULE]: ISTIO_NETWORKING,
  [KIND_META_ROUTER]: AERAKI_METAPROTOCOL,
  [KIND_APPLICATION_PROTOCOL]: AERAKI_METAPROTOCOL,
  [KIND_REDIS_SERVICE]: AERAKI_REDIS,
  [KIND_REDIS_DESTINATION]: AERAKI_REDIS,
  [KIND_PEER_AUTHENTICATION]: ISTIO_SECURITY,
  [KIND_DUBBO_AUTHORIZATION_POLICY]: AERAKI_DUBBO,
  [KIND_META_AUTHORIZATION_POLICY]: WAYPOST_METAPROTOCOL,
};

/** Kinds Istio/Aeraki users have that Waypost loads but does not translate yet (a VirtualService: unless it is for a gRPC service). */
export const UNTRANSLATED_KINDS: readonly string[] = ['VirtualService'];

// ---- networking.istio.io ServiceEntry ----

export type Resolution = 'NONE' | 'STATIC' | 'DNS' | 'DNS_ROUND_ROBIN';
export const RESOLUTIONS: readonly Resolution[] = ['NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN'];

export interface ServicePort {
  number: number;
  name: string;
  protocol?: string;
  targetPort?: number;
}

export interface WorkloadEntry {
  address: string;
  ports?: Record<string, number>;
  labels?: Record<string, string>;
  weight?: number;
  locality?: string;
  network?: string;
}

export interface ServiceEntrySpec {
  hosts: string[];
  addresses?: string[];
  ports: ServicePort[];
  location?: string;
  resolution?: Resolution;
  endpoints?: WorkloadEntry[];
  workloadSelector?: { labels?: Record<string, string> };
  exportTo?: string[];
}

// ---- networking.istio.io DestinationRule ----

export type SimpleLb = 'UNSPECIFIED' | 'ROUND_ROBIN' | 'RANDOM' | 'LEAST_REQUEST' | 'LEAST_CONN' | 'PASSTHROUGH';
/** Values Waypost accepts for `loadBalancer.simple` (LEAST_CONN is Istio's deprecated name for LEAST_REQUEST). */
export const SIMPLE_LBS: readonly SimpleLb[] = ['UNSPECIFIED', 'ROUND_ROBIN', 'RANDOM', 'LEAST_REQUEST', 'LEAST_CONN'];

export interface LoadBalancerSettings {
  simple?: SimpleLb;
  consistentHash?: { httpHeaderName?: string; [other: string]: unknown };
}

export interface ConnectionPoolSettings {
  tcp?: { maxConnections?: number; connectTimeout?: string };
  /** Istio's HTTP pool settings; Waypost reads the request caps as its circuit breakers for every protocol. */
  http?: { http1MaxPendingRequests?: number; http2MaxRequests?: number; [other: string]: unknown };
}

export interface OutlierDetection {
  consecutiveErrors?: number;
  consecutive5xxErrors?: number;
  consecutiveGatewayErrors?: number;
  interval?: string;
  baseEjectionTime?: string;
  maxEjectionPercent?: number;
  minHealthPercent?: number;
}

/** Istio's ClientTLSSettings (file paths are read by the proxy). */
export type TlsMode = 'DISABLE' | 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';
export const TLS_MODES: readonly TlsMode[] = ['DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'];

export interface ClientTlsSettings {
  mode?: TlsMode;
  clientCertificate?: string;
  privateKey?: string;
  caCertificates?: string;
  sni?: string;
  subjectAltNames?: string[];
  insecureSkipVerify?: boolean;
}

/** Istio's per-port traffic policy; Waypost translates its `tls`. */
export interface PortTrafficPolicy {
  port?: { number?: number };
  tls?: ClientTlsSettings;
}

export interface TrafficPolicy {
  loadBalancer?: LoadBalancerSettings;
  connectionPool?: ConnectionPoolSettings;
  outlierDetection?: OutlierDetection;
  tls?: ClientTlsSettings;
  portLevelSettings?: PortTrafficPolicy[];
}

export interface Subset {
  name: string;
  labels?: Record<string, string>;
  trafficPolicy?: TrafficPolicy;
}

export interface DestinationRuleSpec {
  host: string;
  trafficPolicy?: TrafficPolicy;
  subsets?: Subset[];
  exportTo?: string[];
}

// ---- metaprotocol.aeraki.io MetaRouter ----

/** Aeraki's StringMatch: at most one of exact / prefix / regex; none means "the attribute is present". */
export interface StringMatch {
  exact?: string;
  prefix?: string;
  regex?: string;
}

export interface MetaRouteMatch {
  attributes?: Record<string, StringMatch>;
}

export interface Destination {
  host: string;
  subset?: string;
  port?: { number?: number };
}

export interface MetaRouteDestination {
  destination: Destination;
  weight?: number;
}

export interface KeyValue {
  key: string;
  value: string;
}

export interface Percent {
  value?: number;
}

/** Waypost's route policy, on a MetaRouter route next to Aeraki's fields. */
export interface RetryPolicy {
  attempts?: number;
  perTryTimeout?: string;
  /** Comma list of {@link RETRY_ON}. */
  retryOn?: string;
}

export const RETRY_ON: readonly string[] = ['connect-failure', 'reset', 'unavailable', 'timeout', 'error'];

export interface FaultInjection {
  delay?: { fixedDelay?: string; percentage?: Percent };
  abort?: { percentage?: Percent; errorCode?: number | string; message?: string };
}

export interface MetaRoute {
  name?: string;
  match?: MetaRouteMatch;
  route: MetaRouteDestination[];
  mirror?: Destination;
  mirrorPercentage?: Percent;
  requestMutation?: KeyValue[];
  responseMutation?: KeyValue[];
  timeout?: string;
  retries?: RetryPolicy;
  fault?: FaultInjection;
}

export interface TokenBucket {
  maxTokens?: number;
  tokensPerFill?: number;
  fillInterval?: string;
}

export interface LocalRateLimit {
  tokenBucket?: TokenBucket;
  conditions?: Array<{ match?: MetaRouteMatch; tokenBucket?: TokenBucket }>;
}

export interface GlobalRateLimit {
  match?: MetaRouteMatch;
  domain?: string;
  rateLimitService?: string;
  requestTimeout?: string;
  denyOnFail?: boolean;
  descriptors?: Array<{ property?: string; descriptorKey?: string }>;
}

export interface MetaRouterSpec {
  hosts: string[];
  routes?: MetaRoute[];
  localRateLimit?: LocalRateLimit;
  globalRateLimit?: GlobalRateLimit;
  exportTo?: string[];
}

// ---- metaprotocol.aeraki.io ApplicationProtocol ----

export interface ApplicationProtocolSpec {
  protocol: string;
  codec: string;
}

// ---- networking.istio.io VirtualService (its http routes, for proxyless gRPC: control/grpc.ts) ----

/** Istio's HTTPMatchRequest, the parts gRPC's xDS clients match on. */
export interface HttpMatchRequest {
  name?: string;
  /** gRPC metadata (lower-case names); `{}` means "present". */
  headers?: Record<string, StringMatch>;
  /** The call's path, `/<package>.<Service>/<Method>`. */
  uri?: StringMatch;
}

export interface HttpRouteDestination {
  destination: Destination;
  /** Relative weight; a destination without one gets 0 when the route has several. */
  weight?: number;
}

export interface HttpRetry {
  attempts?: number;
  perTryTimeout?: string;
  /** Comma list of Envoy retry conditions, gRPC status names (`unavailable` …) or HTTP status codes. */
  retryOn?: string;
}

export interface HttpFaultInjection {
  delay?: { fixedDelay?: string; percentage?: Percent };
  /** One of `httpStatus` or `grpcStatus` (a code name such as `UNAVAILABLE`). */
  abort?: { httpStatus?: number; grpcStatus?: string; percentage?: Percent };
}

/** Istio's HTTPRoute. */
export interface VirtualServiceHttpRoute {
  name?: string;
  match?: HttpMatchRequest[];
  route: HttpRouteDestination[];
  timeout?: string;
  retries?: HttpRetry;
  fault?: HttpFaultInjection;
}

export interface VirtualServiceSpec {
  hosts: string[];
  gateways?: string[];
  http?: VirtualServiceHttpRoute[];
  exportTo?: string[];
}

// ---- security.istio.io PeerAuthentication, dubbo.aeraki.io DubboAuthorizationPolicy, Waypost's MetaAuthorizationPolicy ----

export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';
export const MTLS_MODES: readonly MtlsMode[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];

export interface WorkloadSelector {
  matchLabels?: Record<string, string>;
}

export interface PeerAuthenticationSpec {
  selector?: WorkloadSelector;
  mtls?: { mode?: MtlsMode };
  /** By port number (the ServiceEntry port, which is the listener's). */
  portLevelMtls?: Record<string, { mode?: MtlsMode }>;
}

export interface AuthorizationSource {
  principals?: string[];
  notPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
}

export interface DubboOperation {
  interfaces?: string[];
  notInterfaces?: string[];
  methods?: string[];
  notMethods?: string[];
}

/** Aeraki's DubboAuthorizationPolicy (api/dubbo/v1alpha1): scoped by its namespace only (no selector). */
export interface DubboAuthorizationPolicySpec {
  action?: 'ALLOW' | 'DENY';
  rules?: Array<{ from?: Array<{ source?: AuthorizationSource }>; to?: Array<{ operation?: DubboOperation }> }>;
}

export interface MetaOperation {
  /** Request attribute (metadata key) → patterns; one must match. */
  attributes?: Record<string, string[]>;
  /** Request attribute → patterns; none may match. */
  notAttributes?: Record<string, string[]>;
}

/** Waypost's MetaAuthorizationPolicy: the same for any MetaProtocol service, with an optional selector. */
export interface MetaAuthorizationPolicySpec {
  selector?: WorkloadSelector;
  action?: 'ALLOW' | 'DENY';
  rules?: Array<{ from?: Array<{ source?: AuthorizationSource }>; to?: Array<{ operation?: MetaOperation }> }>;
}
