/**
 * The protobuf types the xDS client and server speak, loaded once from the repository's `proto/` directory: Envoy's
 * ADS service and v3 resources (vendored from @grpc/grpc-js-xds, see proto/README.md), Aeraki's MetaProtocol
 * messages and Waypost's route policy (proto/aeraki, proto/waypost). The google/protobuf well-known types come
 * bundled with protobufjs. Field names are the protos' own (`keepCase`), as in src/xds/resources.ts.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import {
  TYPE_CLUSTER,
  TYPE_ENDPOINTS,
  TYPE_HTTP_ROUTE,
  TYPE_LISTENER,
  TYPE_LOCAL_RATELIMIT,
  TYPE_META_PROTOCOL_PROXY,
  TYPE_META_ROUTE,
} from './resources.js';

export const TYPE_URL_PREFIX = 'type.googleapis.com/';
export const TYPE_UDPA_TYPED_STRUCT = 'type.googleapis.com/udpa.type.v1.TypedStruct';
export const TYPE_XDS_TYPED_STRUCT = 'type.googleapis.com/xds.type.v3.TypedStruct';
export const TYPE_META_ROUTER_FILTER = 'type.googleapis.com/aeraki.meta_protocol_proxy.filters.router.v1alpha.Router';

export const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
export const ADS_SOTW_PATH = `/${ADS_SERVICE}/StreamAggregatedResources`;
export const ADS_DELTA_PATH = `/${ADS_SERVICE}/DeltaAggregatedResources`;

/**
 * The resource types Waypost serves, in the order a push sends them (make before break). The data plane consumes
 * the first four; Envoy's HTTP RouteConfiguration is for proxyless gRPC clients.
 */
export const XDS_TYPES = [TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER, TYPE_META_ROUTE, TYPE_HTTP_ROUTE] as const;
export type XdsTypeUrl = (typeof XDS_TYPES)[number];

/** Short names for logs and the admin pages. */
export const TYPE_SHORT: Readonly<Record<string, string>> = {
  [TYPE_LISTENER]: 'LDS',
  [TYPE_CLUSTER]: 'CDS',
  [TYPE_ENDPOINTS]: 'EDS',
  [TYPE_META_ROUTE]: 'RDS',
  [TYPE_HTTP_ROUTE]: 'HTTP-RDS',
};

/** Files loaded (and everything they import). */
const ENTRY_FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/filters/http/fault/v3/fault.proto',
  'envoy/extensions/filters/network/redis_proxy/v3/redis_proxy.proto',
  'udpa/type/v1/typed_struct.proto',
  'xds/type/v3/typed_struct.proto',
  'aeraki/meta_protocol_proxy/v1alpha/meta_protocol_proxy.proto',
  'aeraki/meta_protocol_proxy/config/route/v1alpha/route.proto',
  'aeraki/meta_protocol_proxy/filters/local_ratelimit/v1alpha/local_ratelimit.proto',
  'aeraki/meta_protocol_proxy/filters/router/v1alpha/router.proto',
  'aeraki/meta_protocol_proxy/filters/global_ratelimit/v1alpha/global_ratelimit.proto',
  'envoy/service/ratelimit/v3/rls.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto',
  'waypost/meta_protocol/filters/authz/v1alpha/authz.proto',
];

let rootCache: protobuf.Root | undefined;
let protoDirCache: string | undefined;

/** The `proto/` directory: the nearest ancestor of this module holding `proto/aeraki` (works from src/ and dist/). */
export function protoDir(): string {
  if (protoDirCache) return protoDirCache;
  const fromEnv = process.env.WAYPOST_PROTO_DIR;
  if (fromEnv) return (protoDirCache = path.resolve(fromEnv));
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = path.join(dir, 'proto');
    if (existsSync(path.join(candidate, 'aeraki')) && existsSync(path.join(candidate, 'envoy'))) return (protoDirCache = candidate);
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find the proto/ directory above ${fileURLToPath(import.meta.url)} (set WAYPOST_PROTO_DIR)`);
    dir = up;
  }
}

/** The loaded protobuf root (loaded on first use, then shared). */
export function xdsRoot(): protobuf.Root {
  if (rootCache) return rootCache;
  // validate.proto and udpa's annotations extend google.protobuf.FieldOptions: descriptor.proto is not among
  // protobufjs's bundled files until registered (what @grpc/proto-loader does when it is first required).
  const require = createRequire(import.meta.url);
  const descriptor = require('protobufjs/google/protobuf/descriptor.json') as {
    nested: { google: { nested: { protobuf: { nested: Record<string, unknown> } } } };
  };
  protobuf.common('descriptor', descriptor.nested.google.nested.protobuf.nested);
  const dir = protoDir();
  const root = new protobuf.Root();
  root.resolvePath = (_origin: string, target: string): string => {
    if (target.startsWith('google/protobuf/')) return target; // bundled with protobufjs
    return path.isAbsolute(target) ? target : path.join(dir, target);
  };
  root.loadSync(ENTRY_FILES, { keepCase: true, alternateCommentMode: false });
  root.resolveAll();
  return (rootCache = root);
}

/** The message type of a type URL (`type.googleapis.com/pkg.Msg`), or undefined when it is not loaded. */
export function lookupTypeUrl(typeUrl: string): protobuf.Type | undefined {
  const name = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
  if (!name) return undefined;
  try {
    return xdsRoot().lookupType(name);
  } catch {
    return undefined;
  }
}

export function messageType(fullName: string): protobuf.Type {
  return xdsRoot().lookupType(fullName);
}

/** Type URLs the converters know by name (for docs and tests). */
export const KNOWN_TYPE_URLS = [
  TYPE_LISTENER,
  TYPE_CLUSTER,
  TYPE_ENDPOINTS,
  TYPE_META_ROUTE,
  TYPE_META_PROTOCOL_PROXY,
  TYPE_LOCAL_RATELIMIT,
  TYPE_META_ROUTER_FILTER,
  TYPE_HTTP_ROUTE,
] as const;
