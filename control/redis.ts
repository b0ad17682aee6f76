/**
 * Aeraki's Redis CRDs (`redis.aeraki.io/v1alpha1` RedisService and RedisDestination) → Envoy's Redis proxy, as
 * Aeraki's redis plugin builds it (internal/plugin/redis in aeraki-mesh/aeraki):
 *
 * - Each ServiceEntry port named `tcp-redis[-suffix]` becomes, per bind address, a Listener `<address>_<port>`
 *   whose network filter is `envoy.filters.network.redis_proxy` (a `RedisProxy`, stat_prefix = the cluster name),
 *   and a cluster `outbound|<port>||<host>` with the entry's endpoints, balanced by key hash (MAGLEV, as Aeraki).
 * - The RedisService whose `host` list names one of the entry's hosts (the first that does, in the entry's host
 *   order) gives the listener its prefix routes (`redis[].match.key.prefix`, longest prefix wins, `removePrefix`),
 *   its catch-all route (a `redis[]` entry without `match.key`), mirrors, faults and settings (`opTimeout`, default
 *   60s as Aeraki; downstream `auth`). Without a RedisService, or one without routes, everything goes to the
 *   entry's own cluster.
 * - The RedisDestination for the entry's host puts `connectionPool.redis.auth` on the cluster as Envoy's
 *   `RedisProtocolOptions` (upstream AUTH) and `connectionPool.tcp` as connect timeout and connection limit;
 *   `mode: CLUSTER` makes the cluster Envoy's `envoy.clusters.redis` (a Redis Cluster) with its seed nodes inline:
 *   `discoveryEndpoints`, else the entry's endpoints.
 *
 * Where Waypost differs: a route or mirror destination's `port` may be left out when the destination service has
 * one Redis port (or one numbered like the listener's); a mirror uses its own `route.port` (Aeraki reuses the
 * primary route's); `settings.caseInsensitive` is translated (Aeraki drops it); a CLUSTER without
 * discoveryEndpoints is seeded with the entry's endpoints (Aeraki: the host name); `auth.secret` is an error
 * (Waypost reads no Kubernetes Secrets: use `auth.plain`); `redis[].allowScripts` is Waypost's own (scripts are
 * refused unless their route allows them, and Aeraki has no such field).
 */

import { applyPeerAuthentication, mtlsModeFor, tlsFor, upstreamTransportSocket } from './security.js';
import { TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER, type ClusterLoadAssignment, type LbEndpoint, type Listener, type NetworkFilter } from '../src/xds/resources.js';
import {
  FILTER_REDIS_PROXY,
  TYPE_REDIS_PROTOCOL_OPTIONS,
  TYPE_REDIS_PROXY,
  type RedisProtocolOptionsJson,
  type RedisProxyConfig,
  type RedisRouteJson,
} from '../src/redis/types.js';
import { Checker, fqdnProblem, hostProblem, isMapping, type Mapping } from './checker.js';
import { clusterName, DEFAULT_CONNECT_TIMEOUT } from './clusters.js';
import { toDurationJson } from '../src/duration.js';
import { ConfigError } from './errors.js';
import { addressesOverlap, bindAddresses, isPortNumber, where, type ConfigModel, type Indexed, type Service } from './model.js';
import { classifyPort } from './protocol.js';
import { fraction } from './routes.js';
import type { CrdDocument, Percent, WorkloadEntry } from './types.js';
import type { WaypostCluster } from './xds-ext.js';

export const KIND_REDIS_SERVICE = 'RedisService';
export const KIND_REDIS_DESTINATION = 'RedisDestination';
export const REDIS_API_VERSIONS: readonly string[] = ['redis.aeraki.io/v1alpha1'];
/** The codec the data plane's Redis proxy needs (listed by `--codec`-aware validation). */
export const REDIS_CODEC = 'waypost.codec.redis';
/** Aeraki's outbound default op timeout. */
export const DEFAULT_OP_TIMEOUT = '60s';
/** Envoy's cluster type for a Redis Cluster. */
export const REDIS_CLUSTER_TYPE = 'envoy.clusters.redis';

// ---------------------------------------------------------------- spec types (Aeraki's protos, JSON names)

export interface RedisAuth {
  plain?: { password: string; username?: string };
  secret?: { name: string; passwordField?: string; usernameField?: string };
}

export interface RedisDestinationRef {
  host: string;
  port?: number;
}

export interface RedisRouteCrd {
  match?: { key?: { prefix?: string; removePrefix?: boolean } };
  route: RedisDestinationRef;
  mirror?: Array<{ route: RedisDestinationRef; percentage?: Percent; excludeReadCommands?: boolean }>;
  /** Waypost's extension (Aeraki has none): scripts whose keys are all on this route may run on it. */
  allowScripts?: boolean;
}

export type ReadPolicyCrd = 'MASTER' | 'PREFER_MASTER' | 'REPLICA' | 'PREFER_REPLICA' | 'ANY';
const READ_POLICIES: readonly ReadPolicyCrd[] = ['MASTER', 'PREFER_MASTER', 'REPLICA', 'PREFER_REPLICA', 'ANY'];

export interface RedisServiceSpec {
  host: string[];
  settings?: {
    caseInsensitive?: boolean;
    opTimeout?: string;
    enableCommandStats?: boolean;
    maxBufferSizeBeforeFlush?: number;
    bufferFlushTimeout?: string;
    maxUpstreamUnknownConnections?: number;
    enableHashtagging?: boolean;
    enableRedirection?: boolean;
    readPolicy?: ReadPolicyCrd;
    auth?: RedisAuth;
  };
  redis?: RedisRouteCrd[];
  faults?: Array<{ type?: 'DELAY' | 'ERROR'; percentage?: Percent; delay?: string; commands?: string[] }>;
}

export interface RedisDestinationSpec {
  host: string;
  trafficPolicy?: {
    connectionPool?: {
      tcp?: { maxConnections?: number; connectTimeout?: string; tcpKeepalive?: unknown };
      redis?: { mode?: 'PROXY' | 'CLUSTER'; auth?: RedisAuth; discoveryEndpoints?: string[] };
    };
  };
}

/** A `tcp-redis[-suffix]` port of a ServiceEntry. */
export interface RedisPort {
  index: number;
  number: number;
  name: string;
  targetPort?: number;
}

// ---------------------------------------------------------------- spec checks

export function checkRedisService(c: Checker, raw: unknown): void {
  const spec = c.mapping(raw, 'spec', true);
  if (!spec) return;
  const hosts = c.list(spec.host, 'spec.host', true);
  if (hosts && hosts.length === 0) c.error('spec.host', 'must list at least one host');
  hosts?.forEach((h, i) => {
    const host = c.string(h, `spec.host[${i}]`, true);
    if (host === undefined) return;
    const problem = hostProblem(host);
    if (problem) c.error(`spec.host[${i}]`, problem);
  });

  const settings = c.mapping(spec.settings, 'spec.settings');
  let caseInsensitive = false;
  if (settings) {
    const p = 'spec.settings';
    caseInsensitive = c.boolean(settings.caseInsensitive, `${p}.caseInsensitive`) ?? false;
    c.duration(settings.opTimeout, `${p}.opTimeout`);
    c.boolean(settings.enableCommandStats, `${p}.enableCommandStats`);
    c.integer(settings.maxBufferSizeBeforeFlush, `${p}.maxBufferSizeBeforeFlush`, { min: 0, max: 4294967295 });
    c.duration(settings.bufferFlushTimeout, `${p}.bufferFlushTimeout`);
    c.boolean(settings.enableHashtagging, `${p}.enableHashtagging`);
    if (c.integer(settings.maxUpstreamUnknownConnections, `${p}.maxUpstreamUnknownConnections`, { min: 0 }) !== undefined) {
      c.warn(`${p}.maxUpstreamUnknownConnections`, 'Waypost does not limit connections to redirection targets: ignored');
    }
    c.boolean(settings.enableRedirection, `${p}.enableRedirection`);
    const policy = c.string(settings.readPolicy, `${p}.readPolicy`);
    if (policy !== undefined) {
      if (!(READ_POLICIES as readonly string[]).includes(policy)) c.error(`${p}.readPolicy`, `must be one of ${READ_POLICIES.join(', ')} (got "${policy}")`);
      else if (policy !== 'MASTER') c.warn(`${p}.readPolicy`, 'Waypost reads from masters only: ignored');
    }
    checkAuth(c, settings.auth, `${p}.auth`);
  }

  const routes = c.list(spec.redis, 'spec.redis');
  let catchAll: number | undefined;
  const prefixes = new Map<string, number>();
  routes?.forEach((r, i) => {
    const path = `spec.redis[${i}]`;
    const route = c.mapping(r, path, true);
    if (!route) return;
    const match = c.mapping(route.match, `${path}.match`);
    const key = match ? c.mapping(match.key, `${path}.match.key`) : undefined;
    if (match) for (const k of Object.keys(match)) if (k !== 'key') c.error(`${path}.match.${k}`, 'unknown match: only key is supported');
    if (key) {
      const prefix = c.string(key.prefix, `${path}.match.key.prefix`) ?? '';
      c.boolean(key.removePrefix, `${path}.match.key.removePrefix`);
      const folded = caseInsensitive ? prefix.toLowerCase() : prefix;
      const first = prefixes.get(folded);
      if (first !== undefined) c.error(`${path}.match.key.prefix`, `prefix "${prefix}" is already routed by spec.redis[${first}]${caseInsensitive ? ' (prefixes are case-insensitive)' : ''}`);
      else prefixes.set(folded, i);
    } else if (catchAll !== undefined) {
      c.error(path, `only one route may have no match.key (the catch-all route): spec.redis[${catchAll}] already is one`);
    } else {
      catchAll = i;
    }
    checkDestination(c, route.route, `${path}.route`);
    c.boolean(route.allowScripts, `${path}.allowScripts`);
    const mirrors = c.list(route.mirror, `${path}.mirror`);
    mirrors?.forEach((m, j) => {
      const mp = `${path}.mirror[${j}]`;
      const mirror = c.mapping(m, mp, true);
      if (!mirror) return;
      checkDestination(c, mirror.route, `${mp}.route`);
      if (mirror.percentage !== undefined && mirror.percentage !== null) c.percent(mirror.percentage, `${mp}.percentage`);
      c.boolean(mirror.excludeReadCommands, `${mp}.excludeReadCommands`);
    });
  });

  const faults = c.list(spec.faults, 'spec.faults');
  faults?.forEach((f, i) => {
    const path = `spec.faults[${i}]`;
    const fault = c.mapping(f, path, true);
    if (!fault) return;
    const type = c.string(fault.type, `${path}.type`);
    if (type !== undefined && type !== 'DELAY' && type !== 'ERROR') c.error(`${path}.type`, `must be DELAY or ERROR (got "${type}")`);
    if (fault.percentage !== undefined && fault.percentage !== null) c.percent(fault.percentage, `${path}.percentage`);
    const delay = c.duration(fault.delay, `${path}.delay`);
    if ((type ?? 'DELAY') === 'DELAY' && delay === undefined && fault.delay === undefined) {
      c.warn(`${path}.delay`, 'a DELAY fault without delay does nothing');
    }
    const commands = c.list(fault.commands, `${path}.commands`);
    commands?.forEach((cmd, j) => c.string(cmd, `${path}.commands[${j}]`, true));
  });
}

export function checkRedisDestination(c: Checker, raw: unknown): void {
  const spec = c.mapping(raw, 'spec', true);
  if (!spec) return;
  const host = c.string(spec.host, 'spec.host', true);
  if (host !== undefined) {
    const problem = hostProblem(host);
    if (problem) c.error('spec.host', problem);
  }
  const policy = c.mapping(spec.trafficPolicy, 'spec.trafficPolicy');
  const pool = policy ? c.mapping(policy.connectionPool, 'spec.trafficPolicy.connectionPool') : undefined;
  if (!pool) return;
  const p = 'spec.trafficPolicy.connectionPool';
  const tcp = c.mapping(pool.tcp, `${p}.tcp`);
  if (tcp) {
    c.integer(tcp.maxConnections, `${p}.tcp.maxConnections`, { min: 0, max: 2147483647 });
    c.duration(tcp.connectTimeout, `${p}.tcp.connectTimeout`);
    if (tcp.tcpKeepalive !== undefined && tcp.tcpKeepalive !== null) c.warn(`${p}.tcp.tcpKeepalive`, 'TCP keepalive settings are not translated yet: ignored');
  }
  const redis = c.mapping(pool.redis, `${p}.redis`);
  if (!redis) return;
  const mode = c.string(redis.mode, `${p}.redis.mode`);
  if (mode !== undefined && mode !== 'PROXY' && mode !== 'CLUSTER') c.error(`${p}.redis.mode`, `must be PROXY or CLUSTER (got "${mode}")`);
  checkAuth(c, redis.auth, `${p}.redis.auth`);
  const endpoints = c.list(redis.discoveryEndpoints, `${p}.redis.discoveryEndpoints`);
  endpoints?.forEach((e, i) => {
    const path = `${p}.redis.discoveryEndpoints[${i}]`;
    const text = c.string(e, path, true);
    if (text !== undefined && text !== '' && parseHostPort(text) === undefined) c.error(path, `"${text}" is not host or host:port`);
  });
  if (endpoints && endpoints.length > 0 && mode !== 'CLUSTER') c.warn(`${p}.redis.discoveryEndpoints`, 'only used with mode CLUSTER: ignored');
}

function checkAuth(c: Checker, raw: unknown, path: string): void {
  const auth = c.mapping(raw, path);
  if (!auth) return;
  const plain = c.mapping(auth.plain, `${path}.plain`);
  const hasSecret = auth.secret !== undefined && auth.secret !== null;
  if (plain && hasSecret) c.error(path, 'only one of plain or secret can be set');
  if (plain) {
    c.string(plain.password, `${path}.plain.password`, true);
    c.string(plain.username, `${path}.plain.username`);
  }
  if (hasSecret) {
    const secret = c.mapping(auth.secret, `${path}.secret`);
    if (secret) c.string(secret.name, `${path}.secret.name`, true);
    c.error(`${path}.secret`, 'Waypost reads no Kubernetes Secrets: give the credentials with auth.plain');
  }
  if (!plain && !hasSecret) c.error(path, 'needs plain (or secret)');
}

function checkDestination(c: Checker, raw: unknown, path: string): void {
  const dest = c.mapping(raw, path, true);
  if (!dest) return;
  const host = c.string(dest.host, `${path}.host`, true);
  if (host !== undefined) {
    const problem = fqdnProblem(host);
    if (problem) c.error(`${path}.host`, problem);
  }
  if (dest.port !== undefined && dest.port !== null && dest.port !== 0) c.integer(dest.port, `${path}.port`, { min: 1, max: 65535 });
}

/** `host[:port]` (IPv6 as `[addr]:port`); port undefined when not given. */
export function parseHostPort(text: string): { host: string; port?: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d{1,5}))?$/.exec(text);
  if (!m) return undefined;
  const host = m[1] ?? m[2]!;
  if (m[3] === undefined) return { host };
  const port = Number(m[3]);
  return port >= 1 && port <= 65535 ? { host, port } : undefined;
}

// ---------------------------------------------------------------- the index of Redis documents

/** RedisServices by each host they name, RedisDestinations by host; clashes recorded for validation. */
export class RedisIndex {
  readonly services = new Map<string, Indexed<RedisServiceSpec>>();
  readonly destinations = new Map<string, Indexed<RedisDestinationSpec>>();
  readonly conflicts: Array<{ doc: CrdDocument; path: string; message: string }> = [];

  constructor(readonly model: ConfigModel) {
    for (const doc of model.docs) {
      if (!REDIS_API_VERSIONS.includes(doc.apiVersion) || !isMapping(doc.spec)) continue;
      const spec = doc.spec;
      if (doc.kind === KIND_REDIS_SERVICE) {
        const hosts = Array.isArray(spec.host) ? spec.host : [];
        hosts.forEach((h, i) => {
          if (typeof h !== 'string' || h === '') return;
          const existing = this.services.get(h);
          if (existing && existing.doc !== doc) {
            this.conflicts.push({ doc, path: `spec.host[${i}]`, message: `host "${h}" already has RedisService/${existing.doc.name} (${where(existing.doc)}): at most one RedisService per host` });
          } else if (!existing) {
            this.services.set(h, { doc, spec: spec as unknown as RedisServiceSpec });
          }
        });
      } else if (doc.kind === KIND_REDIS_DESTINATION) {
        const h = spec.host;
        if (typeof h !== 'string' || h === '') continue;
        const existing = this.destinations.get(h);
        if (existing) {
          this.conflicts.push({ doc, path: 'spec.host', message: `host "${h}" already has RedisDestination/${existing.doc.name} (${where(existing.doc)}): at most one RedisDestination per host` });
        } else {
          this.destinations.set(h, { doc, spec: spec as unknown as RedisDestinationSpec });
        }
      }
    }
  }

  /** The RedisService for a service: the first of the entry's hosts that one names (Aeraki's order). */
  serviceFor(svc: Service): Indexed<RedisServiceSpec> | undefined {
    for (const h of hostsOf(svc)) {
      const rs = this.services.get(h);
      if (rs) return rs;
    }
    return undefined;
  }

  destinationFor(svc: Service): Indexed<RedisDestinationSpec> | undefined {
    for (const h of hostsOf(svc)) {
      const rd = this.destinations.get(h);
      if (rd) return rd;
    }
    return undefined;
  }

  /** The service defining `host` (as any of its hosts). */
  serviceByHost(host: string): Service | undefined {
    const direct = this.model.service(host);
    if (direct) return direct;
    for (const svc of this.model.services.values()) if (hostsOf(svc).includes(host)) return svc;
    return undefined;
  }
}

function hostsOf(svc: Service): string[] {
  return Array.isArray(svc.spec.hosts) ? svc.spec.hosts.filter((h): h is string => typeof h === 'string') : [];
}

/** The `tcp-redis[-suffix]` ports of a service (first of each number). */
export function redisPorts(svc: Service): RedisPort[] {
  const out: RedisPort[] = [];
  const ports = Array.isArray(svc.spec.ports) ? svc.spec.ports : [];
  ports.forEach((p, index) => {
    if (!isMapping(p) || typeof p.name !== 'string' || !isPortNumber(p.number)) return;
    if (classifyPort(p.name).kind !== 'redis' || out.some((x) => x.number === p.number)) return;
    if (svc.metaPorts.some((m) => m.number === p.number)) return;
    const port: RedisPort = { index, number: p.number, name: p.name };
    if (isPortNumber(p.targetPort)) port.targetPort = p.targetPort;
    out.push(port);
  });
  return out;
}

/**
 * The Redis port a route destination goes to: an explicit `port` must be a Redis port of the service; without
 * one, the service's only Redis port, or else its Redis port numbered like the listener's, or else named like it.
 */
export function redisDestinationPort(svc: Service, explicit: number | undefined, listener: RedisPort): number | undefined {
  const ports = redisPorts(svc);
  if (explicit !== undefined && explicit !== 0) return ports.some((p) => p.number === explicit) ? explicit : undefined;
  if (ports.length === 1) return ports[0]!.number;
  return ports.find((p) => p.number === listener.number)?.number ?? ports.find((p) => p.name === listener.name)?.number;
}

// ---------------------------------------------------------------- references

export interface RedisRefOptions {
  bind: string;
  knownCodecs?: string[];
}

export function checkRedisReferences(model: ConfigModel, options: RedisRefOptions, errors: ConfigError[], warnings: ConfigError[]): void {
  const index = new RedisIndex(model);
  const checker = (doc: CrdDocument) => new Checker(doc, errors, warnings);
  for (const x of index.conflicts) errors.push(ConfigError.at(x.doc, x.path, x.message));

  // Listener clashes involving a Redis port (MetaProtocol-only clashes are validate-refs.ts' business).
  const bound: Array<{ address: string; port: number; svc: Service; portName: string; redis: boolean }> = [];
  for (const svc of model.services.values()) {
    const c = checker(svc.doc);
    const addresses = bindAddresses(svc.spec, options.bind);
    const rports = redisPorts(svc);
    const all = [
      ...svc.metaPorts.map((p) => ({ index: p.index, number: p.number, name: p.name, redis: false })),
      ...rports.map((p) => ({ index: p.index, number: p.number, name: p.name, redis: true })),
    ].sort((a, b) => a.index - b.index);
    for (const port of all) {
      for (const address of addresses) {
        const clash = bound.find((b) => b.port === port.number && addressesOverlap(b.address, address));
        if (clash) {
          if (!port.redis && !clash.redis) continue;
          const by = clash.svc === svc ? `this ServiceEntry's port ${clash.portName}` : `ServiceEntry/${clash.svc.doc.name} (${where(clash.svc.doc)}) port ${clash.portName}`;
          c.error(`spec.ports[${port.index}].number`, `${address}:${port.number} is already bound by ${by}`);
        } else {
          bound.push({ address, port: port.number, svc, portName: port.name, redis: port.redis });
        }
      }
    }
    if (rports.length > 0 && options.knownCodecs && !options.knownCodecs.includes(REDIS_CODEC)) {
      c.error(`spec.ports[${rports[0]!.index}].name`, `the Redis proxy needs codec "${REDIS_CODEC}", which the data plane does not have`);
    }
  }

  for (const doc of model.docs) {
    if (!REDIS_API_VERSIONS.includes(doc.apiVersion) || !isMapping(doc.spec)) continue;
    const c = checker(doc);
    if (doc.kind === KIND_REDIS_SERVICE) checkServiceRefs(index, c, doc.spec);
    if (doc.kind === KIND_REDIS_DESTINATION && typeof doc.spec.host === 'string' && doc.spec.host !== '') {
      const svc = index.serviceByHost(doc.spec.host);
      if (!svc) c.warn('spec.host', `no ServiceEntry defines host "${doc.spec.host}": the RedisDestination is not used`);
      else if (redisPorts(svc).length === 0) c.warn('spec.host', `ServiceEntry/${svc.doc.name} has no tcp-redis port: the RedisDestination is not used`);
    }
  }
}

function checkServiceRefs(index: RedisIndex, c: Checker, spec: Mapping): void {
  const hosts = Array.isArray(spec.host) ? spec.host : [];
  const served: Array<{ svc: Service; port: RedisPort }> = [];
  hosts.forEach((h, i) => {
    if (typeof h !== 'string' || h === '') return;
    const svc = index.serviceByHost(h);
    if (!svc) c.warn(`spec.host[${i}]`, `no ServiceEntry defines host "${h}": the RedisService is not used for it`);
    else if (redisPorts(svc).length === 0) c.warn(`spec.host[${i}]`, `ServiceEntry/${svc.doc.name} has no tcp-redis port: the RedisService is not used for it`);
    else if (index.serviceFor(svc)?.spec === (spec as unknown)) for (const port of redisPorts(svc)) served.push({ svc, port });
  });
  const routes = Array.isArray(spec.redis) ? spec.redis : [];
  const reported = new Set<string>();
  const error = (path: string, message: string): void => {
    if (reported.has(`${path}\n${message}`)) return;
    reported.add(`${path}\n${message}`);
    c.error(path, message);
  };
  routes.forEach((r, i) => {
    if (!isMapping(r)) return;
    const check = (raw: unknown, path: string): void => {
      if (!isMapping(raw) || typeof raw.host !== 'string' || raw.host === '') return;
      const svc = index.serviceByHost(raw.host);
      if (!svc) return error(`${path}.host`, `host "${raw.host}" is not defined by any ServiceEntry`);
      const ports = redisPorts(svc);
      if (ports.length === 0) return error(`${path}.host`, `host "${raw.host}" has no Redis port (a port named tcp-redis[-suffix])`);
      const explicit = typeof raw.port === 'number' && raw.port !== 0 ? raw.port : undefined;
      const list = ports.map((p) => p.number).join(', ');
      if (explicit !== undefined) {
        if (!ports.some((p) => p.number === explicit)) error(`${path}.port`, `host "${raw.host}" has no Redis port ${explicit} (its Redis ports: ${list})`);
        return;
      }
      for (const s of served) {
        if (redisDestinationPort(svc, undefined, s.port) === undefined) {
          error(`${path}.port`, `required: host "${raw.host}" has several Redis ports (${list}) and none is like the listener's port ${s.port.number}`);
        }
      }
    };
    check(r.route, `spec.redis[${i}].route`);
    const mirrors = Array.isArray(r.mirror) ? r.mirror : [];
    mirrors.forEach((m, j) => {
      if (isMapping(m)) check(m.route, `spec.redis[${i}].mirror[${j}].route`);
    });
  });
}

// ---------------------------------------------------------------- translation

export interface RedisResources {
  listeners: Listener[];
  clusters: WaypostCluster[];
  endpoints: ClusterLoadAssignment[];
}

/** Listeners, clusters and endpoints for every Redis port (assumes validation found no errors). */
export function translateRedis(model: ConfigModel, bind: string): RedisResources {
  const index = new RedisIndex(model);
  const out: RedisResources = { listeners: [], clusters: [], endpoints: [] };
  for (const svc of model.services.values()) {
    const ports = redisPorts(svc);
    if (ports.length === 0) continue;
    const rs = index.serviceFor(svc)?.spec;
    const rd = index.destinationFor(svc)?.spec;
    // TLS as for any TCP service in Istio: PeerAuthentication on the listener, a DestinationRule's tls upstream.
    const dr = model.destinationRules.get(svc.host)?.spec;
    for (const port of ports) {
      const proxy = buildRedisProxy(index, svc, port, rs);
      const mtls = mtlsModeFor(model, svc, port.number);
      for (const address of bindAddresses(svc.spec, bind)) {
        const listener = buildListener(port, address, proxy);
        applyPeerAuthentication(listener, mtls);
        out.listeners.push(listener);
      }
      const name = clusterName(port.number, undefined, svc.host);
      const cluster = buildCluster(name, rd);
      const transport = upstreamTransportSocket(tlsFor(dr?.trafficPolicy, port.number));
      if (transport) cluster.transport_socket = transport;
      const lbEndpoints = workloads(svc).map((w) => lbEndpoint(w, port));
      const redis = rd?.trafficPolicy?.connectionPool?.redis;
      if (redis?.mode === 'CLUSTER') {
        // Seed nodes inline, as Aeraki's envoy.clusters.redis cluster: discoveryEndpoints, else the entry's endpoints.
        const seeds = redis.discoveryEndpoints?.length
          ? redis.discoveryEndpoints.map((text) => seedEndpoint(text, port.number))
          : lbEndpoints;
        cluster.load_assignment = { cluster_name: name, endpoints: [{ lb_endpoints: seeds }] };
      } else {
        out.endpoints.push({ '@type': TYPE_ENDPOINTS, cluster_name: name, endpoints: [{ lb_endpoints: lbEndpoints }] });
      }
      out.clusters.push(cluster);
    }
  }
  return out;
}

function buildListener(port: RedisPort, address: string, proxy: RedisProxyConfig): Listener {
  return {
    '@type': TYPE_LISTENER,
    name: `${address}_${port.number}`,
    address: { socket_address: { address, port_value: port.number } },
    filter_chains: [{ filters: [{ name: FILTER_REDIS_PROXY, typed_config: { ...proxy } as unknown as NetworkFilter['typed_config'] }] }],
  };
}

function buildRedisProxy(index: RedisIndex, svc: Service, port: RedisPort, rs: RedisServiceSpec | undefined): RedisProxyConfig {
  const own = clusterName(port.number, undefined, svc.host);
  const settings = rs?.settings;
  const proxy: RedisProxyConfig = {
    '@type': TYPE_REDIS_PROXY,
    stat_prefix: own,
    settings: { op_timeout: toDurationJson(settings?.opTimeout ?? DEFAULT_OP_TIMEOUT) },
    prefix_routes: {},
  };
  const s = proxy.settings!;
  if (settings?.enableHashtagging) s.enable_hashtagging = true;
  if (settings?.enableRedirection) s.enable_redirection = true;
  if (settings?.enableCommandStats) s.enable_command_stats = true;
  if (settings?.maxBufferSizeBeforeFlush) s.max_buffer_size_before_flush = settings.maxBufferSizeBeforeFlush;
  if (settings?.bufferFlushTimeout) s.buffer_flush_timeout = toDurationJson(settings.bufferFlushTimeout);
  if (settings?.readPolicy) s.read_policy = settings.readPolicy;
  if (settings?.caseInsensitive) proxy.prefix_routes!.case_insensitive = true;
  const plain = settings?.auth?.plain;
  if (plain?.password) {
    proxy.downstream_auth_passwords = [{ inline_string: plain.password }];
    if (plain.username) proxy.downstream_auth_username = { inline_string: plain.username };
  }
  if (rs?.faults?.length) {
    proxy.faults = rs.faults.map((f) => {
      const fault: NonNullable<RedisProxyConfig['faults']>[number] = {
        fault_type: f.type ?? 'DELAY',
        fault_enabled: { default_value: fraction(f.percentage) },
      };
      if (f.delay) fault.delay = toDurationJson(f.delay);
      if (f.commands?.length) fault.commands = [...f.commands];
      return fault;
    });
  }
  const routes = rs?.redis ?? [];
  if (routes.length === 0) {
    proxy.prefix_routes!.catch_all_route = { cluster: own };
    return proxy;
  }
  for (const r of routes) {
    const route: RedisRouteJson = { cluster: destinationCluster(index, r.route, port) };
    if (r.allowScripts === true) route.allow_scripts = true;
    if (r.mirror?.length) {
      route.request_mirror_policy = r.mirror.map((m) => {
        const policy: NonNullable<RedisRouteJson['request_mirror_policy']>[number] = {
          cluster: destinationCluster(index, m.route, port),
          runtime_fraction: { default_value: fraction(m.percentage) },
        };
        if (m.excludeReadCommands) policy.exclude_read_commands = true;
        return policy;
      });
    }
    const key = r.match?.key;
    if (!key) {
      proxy.prefix_routes!.catch_all_route = route;
    } else {
      (proxy.prefix_routes!.routes ??= []).push({ prefix: key.prefix ?? '', ...(key.removePrefix ? { remove_prefix: true } : {}), ...route });
    }
  }
  return proxy;
}

function destinationCluster(index: RedisIndex, dest: RedisDestinationRef, listener: RedisPort): string {
  const svc = index.serviceByHost(dest.host);
  const port = svc ? redisDestinationPort(svc, dest.port, listener) : undefined;
  if (!svc || port === undefined) throw new Error(`translate: Redis destination "${dest.host}" has no usable port (validate the documents first)`);
  return clusterName(port, undefined, svc.host);
}

function buildCluster(name: string, rd: RedisDestinationSpec | undefined): WaypostCluster {
  const pool = rd?.trafficPolicy?.connectionPool;
  const connectTimeout = pool?.tcp?.connectTimeout ? toDurationJson(pool.tcp.connectTimeout) : DEFAULT_CONNECT_TIMEOUT;
  const cluster: WaypostCluster =
    pool?.redis?.mode === 'CLUSTER'
      ? // A Redis Cluster: Envoy's custom cluster type; the slot map says which node serves a key.
        { '@type': TYPE_CLUSTER, name, cluster_type: { name: REDIS_CLUSTER_TYPE }, connect_timeout: connectTimeout }
      : {
          '@type': TYPE_CLUSTER,
          name,
          type: 'EDS',
          eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: name },
          connect_timeout: connectTimeout,
          // Keys spread over a cluster's endpoints by consistent hash, as Aeraki configures Redis clusters.
          lb_policy: 'MAGLEV',
        };
  if (pool?.tcp?.maxConnections) cluster.circuit_breakers = { thresholds: [{ max_connections: pool.tcp.maxConnections }] };
  const plain = pool?.redis?.auth?.plain;
  if (plain?.password) {
    const options: RedisProtocolOptionsJson = { '@type': TYPE_REDIS_PROTOCOL_OPTIONS, auth_password: { inline_string: plain.password } };
    if (plain.username) options.auth_username = { inline_string: plain.username };
    cluster.typed_extension_protocol_options = { [FILTER_REDIS_PROXY]: options as Record<string, unknown> };
  }
  return cluster;
}

function seedEndpoint(text: string, defaultPort: number): LbEndpoint {
  const hp = parseHostPort(text)!;
  return { endpoint: { address: { socket_address: { address: hp.host, port_value: hp.port ?? defaultPort } } }, health_status: 'HEALTHY' };
}

/** The workloads behind a service: its endpoints; for DNS resolution without endpoints, the host itself. */
function workloads(svc: Service): WorkloadEntry[] {
  const endpoints = svc.spec.endpoints ?? [];
  if (endpoints.length > 0) return endpoints;
  const resolution = svc.spec.resolution;
  if (resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') return [{ address: svc.host }];
  return [];
}

function lbEndpoint(w: WorkloadEntry, port: RedisPort): LbEndpoint {
  const own = w.ports && Object.hasOwn(w.ports, port.name) ? w.ports[port.name] : undefined;
  const ep: LbEndpoint = {
    endpoint: { address: { socket_address: { address: w.address, port_value: own ?? port.targetPort ?? port.number } } },
    metadata: { filter_metadata: { istio: { labels: { ...(w.labels ?? {}) } } } },
    health_status: 'HEALTHY',
  };
  if (w.weight !== undefined && w.weight > 0) ep.load_balancing_weight = w.weight;
  return ep;
}

