/**
 * The resource shapes the translator emits are the data plane's own (src/xds/resources.ts); these names are kept for
 * the control plane's readability. A WaypostSnapshot is a ResourceSnapshot.
 */
export type {
  FractionalPercent,
  OutlierDetectionJson,
  TokenBucketJson,
  LocalRateLimitConfig,
  Cluster as WaypostCluster,
  MetaRoute as WaypostMetaRoute,
  MetaRouteConfiguration as WaypostRouteConfiguration,
  ResourceSnapshot as WaypostSnapshot,
} from '../src/xds/resources.js';
export { META_FILTER_LOCAL_RATELIMIT, TYPE_LOCAL_RATELIMIT } from '../src/xds/resources.js';

import type { MetaRoute } from '../src/xds/resources.js';
/** From a MetaRouter route's `retries`. */
export type MetaRetryPolicy = NonNullable<MetaRoute['retry_policy']>;
/** From a MetaRouter route's `fault`. */
export type MetaFault = NonNullable<MetaRoute['fault']>;
