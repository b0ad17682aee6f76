/**
 * The MetaProtocol RouteConfiguration of one service port (`<host>_<port>`), from the MetaRouter whose host is the
 * service's host, or a catch-all `default` route to `outbound|<port>||<host>` when there is none (or it only has
 * rate limits). Attribute matches become Envoy HeaderMatchers on the lower-cased attribute name; a `regex` is
 * passed on as written: RE2 syntax, matching the whole value (src/regex.ts).
 */

import {
  TYPE_GLOBAL_RATELIMIT,
  TYPE_META_ROUTE,
  type GlobalRateLimitConfig,
  type HeaderMatcher,
  type MetaRoute,
} from '../src/xds/resources.js';
import { clusterName, effectivePolicy, hashHeader } from './clusters.js';
import { formatDuration, parseDuration } from '../src/duration.js';
import { destinationPort, type ConfigModel, type MetaPort, type Service } from './model.js';
import type {
  Destination,
  FaultInjection,
  GlobalRateLimit,
  LocalRateLimit,
  MetaRoute as MetaRouteCrd,
  MetaRouteMatch,
  Percent,
  RetryPolicy,
  StringMatch,
  TokenBucket,
} from './types.js';
import {
  TYPE_LOCAL_RATELIMIT,
  type FractionalPercent,
  type LocalRateLimitConfig,
  type MetaFault,
  type MetaRetryPolicy,
  type TokenBucketJson,
  type WaypostMetaRoute,
  type WaypostRouteConfiguration,
} from './xds-ext.js';

export function routeConfigName(host: string, port: number): string {
  return `${host}_${port}`;
}

export function buildRouteConfiguration(model: ConfigModel, svc: Service, port: MetaPort): WaypostRouteConfiguration {
  const router = model.metaRouters.get(svc.host);
  const crdRoutes = router?.spec.routes ?? [];
  const routes: WaypostMetaRoute[] =
    crdRoutes.length > 0
      ? crdRoutes.map((r, i) => buildRoute(model, r, i, port.number))
      : [defaultRoute(model, svc, port)];
  return { '@type': TYPE_META_ROUTE, name: routeConfigName(svc.host, port.number), routes };
}

function defaultRoute(model: ConfigModel, svc: Service, port: MetaPort): WaypostMetaRoute {
  const route: MetaRoute['route'] = { cluster: clusterName(port.number, undefined, svc.host) };
  const header = hashHeader(effectivePolicy(model.destinationRules.get(svc.host)?.spec));
  if (header) route.hash_policy = [header];
  return { name: 'default', route };
}

function buildRoute(model: ConfigModel, crd: MetaRouteCrd, index: number, listenerPort: number): WaypostMetaRoute {
  const action: MetaRoute['route'] = {};
  const hashes: string[] = [];
  const targets = crd.route.map((d) => {
    const name = destinationCluster(model, d.destination, listenerPort);
    const header = hashHeader(effectivePolicy(model.destinationRules.get(d.destination.host)?.spec, subsetOf(d.destination)));
    if (header && !hashes.includes(header)) hashes.push(header);
    return { name, weight: d.weight ?? 0 };
  });
  if (targets.length === 1) action.cluster = targets[0]!.name;
  else action.weighted_clusters = { clusters: targets, total_weight: 100 };
  if (hashes.length > 0) action.hash_policy = hashes;
  if (crd.mirror) {
    action.request_mirror_policies = [
      {
        cluster: destinationCluster(model, crd.mirror, listenerPort),
        runtime_fraction: { default_value: fraction(crd.mirrorPercentage) },
      },
    ];
  }

  const name = crd.name || `route-${index}`;
  const metadata = headerMatchers(crd.match);
  const out: WaypostMetaRoute = metadata.length > 0 ? { name, match: { metadata }, route: action } : { name, route: action };
  if (crd.requestMutation?.length) out.request_mutation = crd.requestMutation.map(({ key, value }) => ({ key, value }));
  if (crd.responseMutation?.length) out.response_mutation = crd.responseMutation.map(({ key, value }) => ({ key, value }));
  if (crd.timeout !== undefined) out.timeout = durationJson(crd.timeout);
  if (crd.retries) out.retry_policy = retryPolicy(crd.retries);
  if (crd.fault) out.fault = fault(crd.fault);
  return out;
}

/** One HeaderMatcher per attribute of a MetaRouteMatch. */
export function headerMatchers(match: MetaRouteMatch | undefined): HeaderMatcher[] {
  return Object.entries(match?.attributes ?? {}).map(([attr, sm]) => headerMatcher(attr, sm));
}

/** `{name, string_match: {exact}|{prefix}|{safe_regex}}`, or `{name, present_match: true}` for `{}`. */
export function headerMatcher(attribute: string, sm: StringMatch): HeaderMatcher {
  const name = attribute.toLowerCase();
  if (sm.exact !== undefined) return { name, string_match: { exact: sm.exact } };
  if (sm.prefix !== undefined) return { name, string_match: { prefix: sm.prefix } };
  if (sm.regex !== undefined) return { name, string_match: { safe_regex: { regex: sm.regex } } };
  return { name, present_match: true };
}

function destinationCluster(model: ConfigModel, dest: Destination, listenerPort: number): string {
  const svc = model.service(dest.host);
  const port = svc ? destinationPort(svc, dest.port?.number, listenerPort) : undefined;
  if (port === undefined) {
    throw new Error(`translate: destination host "${dest.host}" has no usable port (validate the documents first)`);
  }
  return clusterName(port, subsetOf(dest), dest.host);
}

function subsetOf(dest: Destination): string | undefined {
  return dest.subset ? dest.subset : undefined;
}

/** A CRD percentage (0–100, default 100) as an Envoy FractionalPercent per million. */
export function fraction(pct: Percent | undefined): FractionalPercent {
  const value = pct?.value ?? 100;
  return { numerator: Math.round(value * 10_000), denominator: 'MILLION' };
}

function retryPolicy(r: RetryPolicy): MetaRetryPolicy {
  const out: MetaRetryPolicy = { num_retries: r.attempts ?? 0 };
  if (r.perTryTimeout !== undefined) out.per_try_timeout = durationJson(r.perTryTimeout);
  if (r.retryOn !== undefined) {
    out.retry_on = r.retryOn
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '')
      .join(',');
  }
  return out;
}

function fault(f: FaultInjection): MetaFault {
  const out: MetaFault = {};
  if (f.delay) out.delay = { fixed_delay: durationJson(f.delay.fixedDelay ?? '0s'), percentage: fraction(f.delay.percentage) };
  if (f.abort) {
    out.abort = { percentage: fraction(f.abort.percentage) };
    if (f.abort.errorCode !== undefined) out.abort.error_code = f.abort.errorCode;
    if (f.abort.message !== undefined) out.abort.message = f.abort.message;
  }
  return out;
}

function durationJson(text: string): string {
  const ns = parseDuration(text);
  if (ns === undefined) throw new Error(`translate: "${text}" is not a duration (validate the documents first)`);
  return formatDuration(ns);
}

/** A MetaRouter's `localRateLimit` as Aeraki's local_ratelimit filter config. */
export function localRateLimitConfig(host: string, limit: LocalRateLimit): LocalRateLimitConfig {
  const out: LocalRateLimitConfig = { '@type': TYPE_LOCAL_RATELIMIT, stat_prefix: host };
  if (limit.tokenBucket) out.token_bucket = tokenBucket(limit.tokenBucket);
  if (limit.conditions?.length) {
    out.conditions = limit.conditions.map((c) => ({ match: { metadata: headerMatchers(c.match) }, token_bucket: tokenBucket(c.tokenBucket!) }));
  }
  return out;
}

function tokenBucket(b: TokenBucket): TokenBucketJson {
  const maxTokens = b.maxTokens ?? 0;
  const fillInterval = durationJson(b.fillInterval ?? '0s');
  return b.tokensPerFill
    ? { max_tokens: maxTokens, tokens_per_fill: b.tokensPerFill, fill_interval: fillInterval }
    : { max_tokens: maxTokens, fill_interval: fillInterval };
}

/**
 * A MetaRouter's `globalRateLimit` as Aeraki's ratelimit filter config. `rateLimitService` names a cluster
 * (`outbound|<port>||<host>`, Aeraki's form) or, as a Waypost extension, a `host:port` to call directly.
 */
export function globalRateLimitConfig(limit: GlobalRateLimit): GlobalRateLimitConfig {
  const service = limit.rateLimitService ?? '';
  const out: GlobalRateLimitConfig = {
    '@type': TYPE_GLOBAL_RATELIMIT,
    domain: limit.domain ?? '',
    rate_limit_service: {
      grpc_service: service.startsWith('outbound|') ? { envoy_grpc: { cluster_name: service } } : { google_grpc: { target_uri: service, stat_prefix: 'ratelimit' } },
      transport_api_version: 'V3',
    },
    descriptors: (limit.descriptors ?? []).map((d) => ({ property: d.property ?? '', descriptor_key: d.descriptorKey ?? '' })),
  };
  if (limit.match) out.match = { metadata: headerMatchers(limit.match) };
  if (limit.requestTimeout) out.timeout = durationJson(limit.requestTimeout);
  if (limit.denyOnFail !== undefined) out.failure_mode_deny = limit.denyOnFail;
  return out;
}
