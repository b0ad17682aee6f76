/**
 * Fields the translator emits beyond what src/xds/resources.ts types today (to be merged there): Waypost's route
 * policy on a MetaRoute, and the Envoy Cluster fields carrying DestinationRule traffic policy. Each extends the
 * resources.ts type, so a WaypostSnapshot is a ResourceSnapshot.
 */

import type {
  Cluster,
  DurationJson,
  HeaderMatcher,
  MetaRoute,
  MetaRouteConfiguration,
  ResourceSnapshot,
} from '../src/xds/resources.js';

/** Envoy `type.v3.FractionalPercent`: `numerator / denominator`. The translator always writes MILLION. */
export interface FractionalPercent {
  numerator: number;
  denominator: 'HUNDRED' | 'TEN_THOUSAND' | 'MILLION';
}

/** From a MetaRouter route's `retries`. `retry_on` is the comma list as written (connect-failure, reset, unavailable, timeout, error). */
export interface MetaRetryPolicy {
  num_retries: number;
  per_try_timeout?: DurationJson;
  retry_on?: string;
}

/** From a MetaRouter route's `fault`. `percentage` defaults to 100% (1000000/MILLION) when the CRD leaves it out. */
export interface MetaFault {
  delay?: { fixed_delay: DurationJson; percentage: FractionalPercent };
  abort?: { percentage: FractionalPercent; error_code?: number | string; message?: string };
}

export interface WaypostMetaRoute extends MetaRoute {
  /** Whole-request timeout. */
  timeout?: DurationJson;
  retry_policy?: MetaRetryPolicy;
  fault?: MetaFault;
}

export interface WaypostRouteConfiguration extends MetaRouteConfiguration {
  routes: WaypostMetaRoute[];
}

/** Envoy `config.cluster.v3.OutlierDetection` (the fields Istio's outlierDetection maps to). */
export interface OutlierDetectionJson {
  consecutive_5xx?: number;
  consecutive_gateway_failure?: number;
  interval?: DurationJson;
  base_ejection_time?: DurationJson;
  max_ejection_percent?: number;
}

export interface WaypostCluster extends Cluster {
  /** From connectionPool.tcp.maxConnections. */
  circuit_breakers?: { thresholds: Array<{ max_connections?: number }> };
  outlier_detection?: OutlierDetectionJson;
}

export interface WaypostSnapshot extends ResourceSnapshot {
  clusters: WaypostCluster[];
  routes: WaypostRouteConfiguration[];
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
 * listener's `meta_protocol_filters` before the router, as Aeraki does. The first condition whose match fits takes
 * the request; otherwise `token_bucket` (if any) applies.
 */
export interface LocalRateLimitConfig {
  '@type': typeof TYPE_LOCAL_RATELIMIT;
  stat_prefix: string;
  token_bucket?: TokenBucketJson;
  conditions?: Array<{ match: { metadata: HeaderMatcher[] }; token_bucket: TokenBucketJson }>;
}
