/**
 * Validated documents → the xDS resources the data plane runs on. Per ServiceEntry MetaProtocol port and per bind
 * address (each of `addresses`, or the `bind` option): a Listener `<address>_<port>` whose MetaProtocolProxy filter
 * takes its routes over RDS from RouteConfiguration `<host>_<port>` (and runs the MetaRouter's localRateLimit, if
 * any, as Aeraki's local_ratelimit meta_protocol filter before the router); per port, that RouteConfiguration; and the
 * service's clusters and endpoints (clusters.ts). Resources come in document order; the version is a hash of them.
 *
 * `translate` assumes `validateDocuments` found no errors; on invalid input it may throw.
 */

import {
  FILTER_META_PROTOCOL_PROXY,
  META_FILTER_GLOBAL_RATELIMIT,
  META_FILTER_ROUTER,
  TYPE_LISTENER,
  TYPE_META_PROTOCOL_PROXY,
  type ClusterLoadAssignment,
  type Listener,
  type MetaProtocolProxyConfig,
} from '../src/xds/resources.js';
import { buildServiceClusters, clusterName } from './clusters.js';
import { bindAddresses, ConfigModel, DEFAULT_BIND, type MetaPort, type Service } from './model.js';
import { buildRouteConfiguration, globalRateLimitConfig, localRateLimitConfig, routeConfigName } from './routes.js';
import { translateRedis } from './redis.js';
import { translateGrpc } from './grpc.js';
import { applyPeerAuthentication, authzFilterFor, mtlsModeFor } from './security.js';
import type { CrdDocument } from './types.js';
import { contentVersion } from './version.js';
import { META_FILTER_LOCAL_RATELIMIT, type WaypostCluster, type WaypostRouteConfiguration, type WaypostSnapshot } from './xds-ext.js';

export interface TranslateOptions {
  /** Address listeners bind when a ServiceEntry has no `addresses` (default 127.0.0.1). */
  bind?: string;
  /** Accepted for symmetry with validation; translation does not check codecs. */
  knownCodecs?: string[];
}

export function translate(docs: readonly CrdDocument[], options: TranslateOptions = {}): WaypostSnapshot {
  const bind = options.bind ?? DEFAULT_BIND;
  const model = new ConfigModel(docs);
  const listeners: Listener[] = [];
  const clusters: WaypostCluster[] = [];
  const endpoints: ClusterLoadAssignment[] = [];
  const routes: WaypostRouteConfiguration[] = [];
  for (const svc of model.services.values()) {
    if (svc.metaPorts.length === 0) continue;
    const addresses = bindAddresses(svc.spec, bind);
    const limit = model.metaRouters.get(svc.host)?.spec.localRateLimit;
    const filters: MetaFilter[] = [];
    if (limit) filters.push({ name: META_FILTER_LOCAL_RATELIMIT, config: localRateLimitConfig(svc.host, limit) });
    const globalLimit = model.metaRouters.get(svc.host)?.spec.globalRateLimit;
    if (globalLimit) filters.push({ name: META_FILTER_GLOBAL_RATELIMIT, config: globalRateLimitConfig(globalLimit) });
    const router = model.metaRouters.get(svc.host);
    if (router) filters.push(...annotatedFilters(router.doc));
    filters.push({ name: META_FILTER_ROUTER });
    for (const port of svc.metaPorts) {
      const codec = model.codecs.get(port.protocol);
      if (!codec) throw new Error(`translate: no codec for protocol "${port.protocol}" (validate the documents first)`);
      // Authorization goes first, as Envoy's RBAC: a denied request spends no rate limit token (control/security.ts).
      const authz = authzFilterFor(model, svc, port);
      const portFilters = authz ? [authz, ...filters] : filters;
      const mtls = mtlsModeFor(model, svc, port.number);
      for (const address of addresses) {
        const listener = buildListener(svc, port, address, codec.codec, portFilters);
        applyPeerAuthentication(listener, mtls);
        listeners.push(listener);
      }
      routes.push(buildRouteConfiguration(model, svc, port));
    }
    const built = buildServiceClusters(svc, model.destinationRules.get(svc.host)?.spec);
    clusters.push(...built.clusters);
    endpoints.push(...built.endpoints);
  }
  const redis = translateRedis(model, bind);
  listeners.push(...redis.listeners);
  clusters.push(...redis.clusters);
  endpoints.push(...redis.endpoints);
  // Proxyless gRPC (grpc.ts): API listeners, Envoy RouteConfigurations, clusters. Before the rate limit service's
  // cluster, which then is one of these when that service's port is a GRPC one.
  const grpc = translateGrpc(model);
  listeners.push(...grpc.listeners);
  clusters.push(...grpc.clusters);
  endpoints.push(...grpc.endpoints);
  addRateLimitServiceClusters(model, clusters, endpoints);
  const resources = { listeners, clusters, endpoints, routes, ...(grpc.routes.length > 0 ? { http_routes: grpc.routes } : {}) };
  return { version: contentVersion(resources), ...resources };
}

type MetaFilter = NonNullable<MetaProtocolProxyConfig['meta_protocol_filters']>[number];

/** A MetaRouter's annotation naming extra MetaProtocol filters (docs/filters.md), run after the rate limits. */
export const ANNOTATION_META_FILTERS = 'waypost.io/meta-protocol-filters';

/**
 * The annotation's JSON list: filter names, or `{name, config}` objects. Throws with what is wrong (validation reports
 * it under the annotation's path, so translation only ever sees a good one).
 */
export function parseMetaFilterAnnotation(text: string): MetaFilter[] {
  let list: unknown;
  try {
    list = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(list)) throw new Error('must be a JSON list of filter names or {"name", "config"} objects');
  return list.map((f: unknown, i) => {
    if (typeof f === 'string' && f !== '') return { name: f };
    const o = f as { name?: unknown; config?: unknown } | null;
    if (o && typeof o === 'object' && typeof o.name === 'string' && o.name !== '') {
      return o.config === undefined ? { name: o.name } : { name: o.name, config: o.config };
    }
    throw new Error(`item ${i}: a filter name or an object with a string "name"`);
  });
}

function annotatedFilters(doc: CrdDocument): MetaFilter[] {
  const text = doc.annotations?.[ANNOTATION_META_FILTERS];
  return text === undefined ? [] : parseMetaFilterAnnotation(text);
}

/** `filters`: the meta_protocol filters, router last (a MetaRouter's local rate limit goes before it, as in Aeraki). */
function buildListener(svc: Service, port: MetaPort, address: string, codec: string, filters: MetaFilter[]): Listener {
  return {
    '@type': TYPE_LISTENER,
    name: `${address}_${port.number}`,
    address: { socket_address: { address, port_value: port.number } },
    filter_chains: [
      {
        filters: [
          {
            name: FILTER_META_PROTOCOL_PROXY,
            typed_config: {
              '@type': TYPE_META_PROTOCOL_PROXY,
              stat_prefix: clusterName(port.number, undefined, svc.host),
              rds: {
                config_source: { ads: {}, resource_api_version: 'V3' },
                route_config_name: routeConfigName(svc.host, port.number),
              },
              protocol: { name: port.protocol, codec: { name: codec } },
              meta_protocol_filters: filters.map((f) => ({ ...f })),
            },
          },
        ],
      },
    ],
  };
}

/**
 * A global rate limit names its service as a cluster (`outbound|<port>||<host>`); when that port is not a
 * MetaProtocol one (the service speaks gRPC), no cluster exists for it yet: build one from the ServiceEntry.
 */
function addRateLimitServiceClusters(model: ConfigModel, clusters: WaypostCluster[], endpoints: ClusterLoadAssignment[]): void {
  const have = new Set(clusters.map((c) => c.name));
  for (const router of model.metaRouters.values()) {
    const name = router.spec.globalRateLimit?.rateLimitService;
    const m = name ? /^outbound\|(\d+)\|\|(.+)$/.exec(name) : null;
    if (!m || have.has(name!)) continue;
    const svc = model.services.get(m[2]!);
    const index = svc?.spec.ports?.findIndex((p) => p.number === Number(m[1])) ?? -1;
    if (!svc || index < 0) continue;
    const port = svc.spec.ports![index]!;
    const only: Service = {
      ...svc,
      metaPorts: [{ index, number: port.number, name: port.name, protocol: 'grpc', ...(port.targetPort ? { targetPort: port.targetPort } : {}) }],
    };
    const built = buildServiceClusters(only, undefined);
    const cluster = built.clusters.find((c) => c.name === name);
    const cla = built.endpoints.find((e) => e.cluster_name === name);
    if (cluster && cla) {
      clusters.push(cluster);
      endpoints.push(cla);
      have.add(name!);
    }
  }
}
