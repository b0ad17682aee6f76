/**
 * Schema checks of one document's `spec`, kind by kind: the rules of Istio's and Aeraki's validating webhooks
 * (ServiceEntry, DestinationRule, MetaRouter, ApplicationProtocol) plus the types their CRD schemas declare, plus
 * Waypost's route fields (timeout, retries, fault). Checks that need other documents (does a destination exist, do
 * two services bind the same port) are in validate-refs.ts.
 *
 * Regex attribute matches are RE2 expressions that must match the WHOLE attribute value, as Envoy's safe_regex
 * does; they are checked by the data plane's own compiler (src/regex.ts), so what validate accepts the proxy runs.
 */

import { checkClientTls, checkPortLevelSettings } from './security.js';
import { isIP } from 'node:net';
import {
  Checker,
  describe,
  fieldPath,
  fqdnProblem,
  hostProblem,
  isDns1123Label,
  isMapping,
  type Mapping,
} from './checker.js';
import { regexProblem as configRegexProblem } from '../src/regex.js';
import { classifyPort } from './protocol.js';
import { RESOLUTIONS, RETRY_ON, SIMPLE_LBS, type Resolution } from './types.js';

// ---------------------------------------------------------------- ServiceEntry

const HTTP_OR_TLS = new Set(['http', 'https', 'http2', 'grpc', 'grpc-web', 'tls']);

export function checkServiceEntry(c: Checker, raw: unknown): void {
  const spec = c.mapping(raw, 'spec', true);
  if (!spec) return;

  const hosts = c.list(spec.hosts, 'spec.hosts', true);
  if (hosts && hosts.length === 0) c.error('spec.hosts', 'must list at least one host');
  const hostNames: string[] = [];
  hosts?.forEach((h, i) => {
    const host = c.string(h, `spec.hosts[${i}]`, true);
    if (host === undefined) return;
    hostNames.push(host);
    const problem = hostProblem(host);
    if (problem) c.error(`spec.hosts[${i}]`, problem);
  });

  let resolution: Resolution = 'NONE';
  const res = c.string(spec.resolution, 'spec.resolution');
  if (res !== undefined) {
    if ((RESOLUTIONS as readonly string[]).includes(res)) resolution = res as Resolution;
    else c.error('spec.resolution', `must be one of ${RESOLUTIONS.join(', ')} (got "${res}")`);
  }

  const portNames = new Set<string>();
  /** Ports Waypost serves (MetaProtocol and Redis): they bind each address and need endpoints. */
  let metaPorts = 0;
  const ports = c.list(spec.ports, 'spec.ports', true);
  if (ports && ports.length === 0) c.error('spec.ports', 'must list at least one port');
  const numbers = new Map<number, number>();
  const names = new Map<string, number>();
  const protocols: string[] = [];
  ports?.forEach((p, i) => {
    const path = `spec.ports[${i}]`;
    const port = c.mapping(p, path, true);
    if (!port) return;
    const number = c.integer(port.number, `${path}.number`, { min: 1, max: 65535, required: true });
    if (number !== undefined) {
      const first = numbers.get(number);
      if (first !== undefined) c.error(`${path}.number`, `port ${number} is already defined by spec.ports[${first}]`);
      else numbers.set(number, i);
    }
    const name = c.string(port.name, `${path}.name`, true);
    if (name !== undefined) {
      portNames.add(name);
      const first = names.get(name);
      if (first !== undefined) c.error(`${path}.name`, `port name "${name}" is already used by spec.ports[${first}]`);
      else names.set(name, i);
      if (!isDns1123Label(name)) {
        c.error(`${path}.name`, `"${name}" is not a valid port name: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters`);
      }
      const kind = classifyPort(name);
      if (kind.kind === 'metaprotocol' || kind.kind === 'redis') metaPorts++;
      else if (kind.kind === 'metaprotocol-without-protocol') {
        c.error(`${path}.name`, `"${name}" names no protocol: write tcp-metaprotocol-<protocol>[-suffix], e.g. tcp-metaprotocol-dubbo`);
      }
    }
    const protocol = c.string(port.protocol, `${path}.protocol`);
    protocols.push((protocol ?? '').toLowerCase());
    c.integer(port.targetPort, `${path}.targetPort`, { min: 0, max: 65535 });
  });

  const multiHostProblem =
    hostNames.length > 1 && resolution !== 'NONE' && (protocols.length === 0 || protocols.some((p) => !HTTP_OR_TLS.has(p)));
  if (multiHostProblem) {
    c.error('spec.hosts', `several hosts need resolution NONE or only HTTP/TLS ports: a TCP proxy cannot tell the hosts apart (Istio's rule)`);
  } else if (hostNames.length > 1 && metaPorts > 0) {
    for (let i = 1; i < hostNames.length; i++) {
      c.warn(`spec.hosts[${i}]`, `only hosts[0] is served on MetaProtocol ports (as Aeraki does): "${hostNames[i]}" is ignored`);
    }
  }

  const addresses = c.list(spec.addresses, 'spec.addresses');
  const seenAddresses = new Map<string, number>();
  addresses?.forEach((a, i) => {
    const path = `spec.addresses[${i}]`;
    const address = c.string(a, path, true);
    if (address === undefined) return;
    const parsed = parseAddress(address);
    if (!parsed) {
      c.error(path, `"${address}" is not an IP address or CIDR range`);
      return;
    }
    if (parsed.cidr) {
      if (resolution !== 'NONE' && resolution !== 'STATIC') c.error(path, 'CIDR addresses are allowed only with resolution NONE or STATIC');
      if (!parsed.single && metaPorts > 0) {
        c.error(path, `"${address}" is a CIDR range: Waypost binds each address of a MetaProtocol service, so give single IP addresses`);
      }
    }
    const first = seenAddresses.get(parsed.ip);
    if (first !== undefined) c.error(path, `address ${parsed.ip} is already listed as spec.addresses[${first}]`);
    else seenAddresses.set(parsed.ip, i);
  });

  const endpoints = c.list(spec.endpoints, 'spec.endpoints');
  const selector = c.mapping(spec.workloadSelector, 'spec.workloadSelector');
  if (selector) {
    c.labels(selector.labels, 'spec.workloadSelector.labels');
    if (endpoints) c.error('spec.workloadSelector', 'only one of workloadSelector or endpoints can be set');
    else if (metaPorts > 0) {
      c.warn('spec.workloadSelector', 'Waypost has no workload registry, so the service has no endpoints: list them in spec.endpoints');
    }
  }
  if (endpoints && endpoints.length > 0 && resolution === 'NONE') {
    c.error('spec.endpoints', 'resolution NONE takes no endpoints (Istio\'s rule): set resolution: STATIC, or DNS for host names');
  }
  if (!selector && (!endpoints || endpoints.length === 0) && metaPorts > 0 && (resolution === 'STATIC' || resolution === 'NONE')) {
    c.warn('spec.endpoints', 'the service has no endpoints: requests to it will fail');
  }
  if (!endpoints?.length && (resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN')) {
    hostNames.forEach((host, i) => {
      const problem = fqdnProblem(host);
      if (problem || host.includes('*')) {
        c.error(`spec.hosts[${i}]`, `resolution ${resolution} without endpoints resolves the hosts themselves, so each must be a host name (got "${host}")`);
      }
    });
  }
  endpoints?.forEach((e, i) => {
    const path = `spec.endpoints[${i}]`;
    const endpoint = c.mapping(e, path, true);
    if (!endpoint) return;
    const address = c.string(endpoint.address, `${path}.address`, true);
    if (address !== undefined) {
      if (address.startsWith('unix://')) c.error(`${path}.address`, 'unix domain socket endpoints are not supported by Waypost');
      else if (address.includes('*')) c.error(`${path}.address`, `"${address}" must not contain a wildcard`);
      else if (resolution === 'STATIC' && !isIP(address)) {
        c.error(`${path}.address`, `"${address}" is not an IP address: resolution STATIC needs IP addresses (use resolution: DNS for host names)`);
      } else if ((resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') && !isIP(address) && fqdnProblem(address)) {
        c.error(`${path}.address`, `"${address}" is not a valid host name or IP address`);
      }
    }
    const epPorts = c.mapping(endpoint.ports, `${path}.ports`);
    if (epPorts) {
      for (const [name, value] of Object.entries(epPorts)) {
        const portPath = fieldPath(`${path}.ports`, name);
        if (!portNames.has(name)) c.error(portPath, `no port named "${name}" in spec.ports`);
        c.integer(value, portPath, { min: 1, max: 65535, required: true });
      }
    }
    c.labels(endpoint.labels, `${path}.labels`);
    c.integer(endpoint.weight, `${path}.weight`, { min: 0, max: 4294967295 });
    c.string(endpoint.locality, `${path}.locality`);
  });
}

interface ParsedAddress {
  ip: string;
  cidr: boolean;
  /** A CIDR naming one address (/32, /128). */
  single: boolean;
}

/** An IP address, or a CIDR range `ip/prefix`. */
export function parseAddress(text: string): ParsedAddress | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return isIP(text) ? { ip: text, cidr: false, single: true } : undefined;
  const ip = text.slice(0, slash);
  const prefix = text.slice(slash + 1);
  const family = isIP(ip);
  if (!family || !/^[0-9]{1,3}$/.test(prefix)) return undefined;
  const bits = Number(prefix);
  const max = family === 4 ? 32 : 128;
  if (bits > max) return undefined;
  return { ip, cidr: true, single: bits === max };
}

// ---------------------------------------------------------------- DestinationRule

export function checkDestinationRule(c: Checker, raw: unknown): void {
  const spec = c.mapping(raw, 'spec', true);
  if (!spec) return;
  const host = c.string(spec.host, 'spec.host', true);
  if (host !== undefined) {
    const problem = hostProblem(host);
    if (problem) c.error('spec.host', problem);
  }
  checkTrafficPolicy(c, spec.trafficPolicy, 'spec.trafficPolicy');
  const subsets = c.list(spec.subsets, 'spec.subsets');
  const names = new Map<string, number>();
  subsets?.forEach((s, i) => {
    const path = `spec.subsets[${i}]`;
    const subset = c.mapping(s, path, true);
    if (!subset) return;
    const name = c.string(subset.name, `${path}.name`, true);
    if (name !== undefined) {
      const first = names.get(name);
      if (first !== undefined) c.error(`${path}.name`, `subset "${name}" is already defined by spec.subsets[${first}]`);
      else names.set(name, i);
      if (!isDns1123Label(name)) {
        c.error(`${path}.name`, `"${name}" is not a valid subset name: lowercase letters, digits and '-', starting and ending with a letter or digit`);
      }
    }
    c.labels(subset.labels, `${path}.labels`);
    checkTrafficPolicy(c, subset.trafficPolicy, `${path}.trafficPolicy`);
  });
}

const HASH_KEYS_UNSUPPORTED = ['httpCookie', 'useSourceIp', 'httpQueryParameterName'];

function checkTrafficPolicy(c: Checker, raw: unknown, path: string): void {
  const policy = c.mapping(raw, path);
  if (!policy) return;

  const lbPath = `${path}.loadBalancer`;
  const lb = c.mapping(policy.loadBalancer, lbPath);
  if (lb) {
    const simple = c.string(lb.simple, `${lbPath}.simple`);
    if (simple !== undefined && !(SIMPLE_LBS as readonly string[]).includes(simple)) {
      c.error(
        `${lbPath}.simple`,
        simple === 'PASSTHROUGH'
          ? 'PASSTHROUGH is not supported by Waypost: use ROUND_ROBIN, RANDOM or LEAST_REQUEST'
          : `must be one of ROUND_ROBIN, RANDOM, LEAST_REQUEST (or LEAST_CONN, UNSPECIFIED) (got "${simple}")`,
      );
    }
    const hash = c.mapping(lb.consistentHash, `${lbPath}.consistentHash`);
    if (simple !== undefined && lb.consistentHash !== undefined && lb.consistentHash !== null) {
      c.error(lbPath, 'only one of simple or consistentHash can be set');
    }
    if (hash) {
      c.string(hash.httpHeaderName, `${lbPath}.consistentHash.httpHeaderName`, hash.httpHeaderName !== undefined);
      for (const key of HASH_KEYS_UNSUPPORTED) {
        if (hash[key] !== undefined) {
          c.warn(`${lbPath}.consistentHash.${key}`, 'Waypost hashes only on httpHeaderName (a request attribute): this key is ignored');
        }
      }
    }
  }

  const poolPath = `${path}.connectionPool`;
  const pool = c.mapping(policy.connectionPool, poolPath);
  if (pool) {
    const tcp = c.mapping(pool.tcp, `${poolPath}.tcp`);
    if (tcp) {
      c.integer(tcp.maxConnections, `${poolPath}.tcp.maxConnections`, { min: 0 });
      c.duration(tcp.connectTimeout, `${poolPath}.tcp.connectTimeout`);
    }
    const http = c.mapping(pool.http, `${poolPath}.http`);
    if (http) {
      c.integer(http.http1MaxPendingRequests, `${poolPath}.http.http1MaxPendingRequests`, { min: 0 });
      c.integer(http.http2MaxRequests, `${poolPath}.http.http2MaxRequests`, { min: 0 });
    }
  }

  const odPath = `${path}.outlierDetection`;
  const od = c.mapping(policy.outlierDetection, odPath);
  if (od) {
    for (const key of ['consecutiveErrors', 'consecutive5xxErrors', 'consecutiveGatewayErrors']) {
      c.integer(od[key], `${odPath}.${key}`, { min: 0 });
    }
    c.duration(od.interval, `${odPath}.interval`);
    c.duration(od.baseEjectionTime, `${odPath}.baseEjectionTime`);
    c.integer(od.maxEjectionPercent, `${odPath}.maxEjectionPercent`, { min: 0, max: 100 });
    c.integer(od.minHealthPercent, `${odPath}.minHealthPercent`, { min: 0, max: 100 });
  }

  // TLS to the upstreams, also per port (control/security.ts).
  checkPortLevelSettings(c, policy.portLevelSettings, `${path}.portLevelSettings`);
  checkClientTls(c, policy.tls, `${path}.tls`);
}

// ---------------------------------------------------------------- MetaRouter

export function checkMetaRouter(c: Checker, raw: unknown): void {
  const spec = c.mapping(raw, 'spec', true);
  if (!spec) return;

  const hosts = c.list(spec.hosts, 'spec.hosts', true);
  if (hosts) {
    if (hosts.length === 0) c.error('spec.hosts', 'a MetaRouter must have one host');
    if (hosts.length > 1) c.error('spec.hosts', `a MetaRouter can only have one host (got ${hosts.length})`);
    if (hosts.length >= 1) {
      const host = c.string(hosts[0], 'spec.hosts[0]', true);
      if (host !== undefined) {
        const problem = fqdnProblem(host);
        if (problem) c.error('spec.hosts[0]', problem);
      }
    }
  }

  const routes = c.list(spec.routes, 'spec.routes');
  const hasLimits = spec.localRateLimit != null || spec.globalRateLimit != null;
  if ((!routes || routes.length === 0) && !hasLimits && (spec.routes == null || Array.isArray(spec.routes))) {
    c.error('spec.routes', 'a MetaRouter needs at least one of routes, localRateLimit or globalRateLimit');
  }
  let catchAll: number | undefined;
  routes?.forEach((r, i) => {
    const path = `spec.routes[${i}]`;
    if (r === null || r === undefined) {
      c.error(path, 'a route must not be null');
      return;
    }
    const route = c.mapping(r, path);
    if (!route) return;
    if (catchAll !== undefined) {
      c.warn(path, `unreachable: spec.routes[${catchAll}] has no match and takes every request before it`);
    }
    checkMetaRoute(c, route, path);
    if (isCatchAll(route.match) && catchAll === undefined) catchAll = i;
  });

  if (spec.localRateLimit != null) {
    checkLocalRateLimit(c, spec.localRateLimit, 'spec.localRateLimit');
  }
  if (spec.globalRateLimit != null) {
    checkGlobalRateLimit(c, spec.globalRateLimit, 'spec.globalRateLimit');
  }
}

function isCatchAll(match: unknown): boolean {
  if (match === undefined || match === null) return true;
  if (!isMapping(match)) return false;
  const attrs = match.attributes;
  return attrs === undefined || attrs === null || (isMapping(attrs) && Object.keys(attrs).length === 0);
}

function checkMetaRoute(c: Checker, route: Mapping, path: string): void {
  c.string(route.name, `${path}.name`);
  checkMatch(c, route.match, `${path}.match`);

  const destinations = c.list(route.route, `${path}.route`, true);
  if (destinations && destinations.length === 0) c.error(`${path}.route`, 'a route needs at least one destination');
  if (destinations) {
    const several = destinations.length > 1;
    let total = 0;
    let weightsOk = true;
    destinations.forEach((d, j) => {
      const dPath = `${path}.route[${j}]`;
      const dest = c.mapping(d, dPath, true);
      if (!dest) {
        weightsOk = false;
        return;
      }
      checkDestination(c, dest.destination, `${dPath}.destination`, true);
      const weight = c.integer(dest.weight, `${dPath}.weight`, { min: 0, max: 100 });
      if (dest.weight === undefined || dest.weight === null) {
        if (several) c.error(`${dPath}.weight`, 'required when a route has several destinations');
        weightsOk = false;
      } else if (weight === undefined) weightsOk = false;
      else total += weight;
    });
    if (several && weightsOk && total !== 100) {
      c.error(`${path}.route`, `the weights of several destinations must add up to 100 (they add up to ${total})`);
    }
  }

  const hasMirror = route.mirror !== undefined && route.mirror !== null;
  if (hasMirror) checkDestination(c, route.mirror, `${path}.mirror`, true);
  if (route.mirrorPercentage !== undefined && route.mirrorPercentage !== null) {
    const pct = c.percent(route.mirrorPercentage, `${path}.mirrorPercentage`);
    if (pct === 0) c.error(`${path}.mirrorPercentage.value`, 'must be greater than 0 (remove mirror to stop mirroring)');
    if (!hasMirror) c.error(`${path}.mirrorPercentage`, 'mirrorPercentage needs mirror');
  }

  checkMutations(c, route.requestMutation, `${path}.requestMutation`);
  checkMutations(c, route.responseMutation, `${path}.responseMutation`);

  c.duration(route.timeout, `${path}.timeout`, false, 0n); // 0s: no timeout (default 15s)

  const retries = c.mapping(route.retries, `${path}.retries`);
  if (retries) {
    c.integer(retries.attempts, `${path}.retries.attempts`, { min: 0 });
    if (retries.attempts === undefined || retries.attempts === null) {
      c.warn(`${path}.retries.attempts`, 'not set: attempts defaults to 0, so nothing is retried');
    }
    c.duration(retries.perTryTimeout, `${path}.retries.perTryTimeout`);
    const retryOn = c.string(retries.retryOn, `${path}.retries.retryOn`);
    if (retryOn !== undefined) {
      const conditions = retryOn.split(',').map((s) => s.trim());
      for (const condition of conditions) {
        if (condition === '') c.error(`${path}.retries.retryOn`, `"${retryOn}" has an empty entry`);
        else if (!RETRY_ON.includes(condition)) {
          c.error(`${path}.retries.retryOn`, `unknown retry condition "${condition}" (known: ${RETRY_ON.join(', ')})`);
        }
      }
    }
  }

  const fault = c.mapping(route.fault, `${path}.fault`);
  if (fault) {
    const delay = c.mapping(fault.delay, `${path}.fault.delay`);
    const abort = c.mapping(fault.abort, `${path}.fault.abort`);
    if (fault.delay == null && fault.abort == null) c.error(`${path}.fault`, 'a fault needs delay or abort');
    if (delay) {
      c.duration(delay.fixedDelay, `${path}.fault.delay.fixedDelay`, true);
      c.percent(delay.percentage, `${path}.fault.delay.percentage`);
    }
    if (abort) {
      c.percent(abort.percentage, `${path}.fault.abort.percentage`);
      const code = abort.errorCode;
      if (code !== undefined && code !== null) {
        // The protocol's own numeric status (Dubbo response status, Thrift TApplicationException type); a string of
        // digits is taken too, as YAML authors quote numbers. A name such as SERVICE_ERROR is not: the data plane
        // would refuse the whole config without a file or field to point at.
        const ok = (typeof code === 'number' && Number.isInteger(code) && code >= 0) || (typeof code === 'string' && /^\d+$/.test(code));
        if (!ok) c.error(`${path}.fault.abort.errorCode`, `must be a non-negative integer, the protocol's own status code (got ${describe(code)})`);
      }
      c.string(abort.message, `${path}.fault.abort.message`);
    }
  }
}

function checkDestination(c: Checker, raw: unknown, path: string, required: boolean): void {
  const dest = c.mapping(raw, path, required);
  if (!dest) return;
  const host = c.string(dest.host, `${path}.host`, true);
  if (host !== undefined) {
    const problem = fqdnProblem(host);
    if (problem) c.error(`${path}.host`, problem);
  }
  const subset = c.string(dest.subset, `${path}.subset`);
  if (subset !== undefined && subset !== '' && !isDns1123Label(subset)) {
    c.error(`${path}.subset`, `"${subset}" is not a valid subset name`);
  }
  const port = c.mapping(dest.port, `${path}.port`);
  if (port) c.integer(port.number, `${path}.port.number`, { min: 1, max: 65535, required: true });
}

const MATCH_TYPES = ['exact', 'prefix', 'regex'];

function checkMatch(c: Checker, raw: unknown, path: string): void {
  const match = c.mapping(raw, path);
  if (!match) return;
  const attrs = c.mapping(match.attributes, `${path}.attributes`);
  if (!attrs) return;
  for (const [name, value] of Object.entries(attrs)) {
    const aPath = fieldPath(`${path}.attributes`, name);
    if (name.trim() === '') c.error(`${path}.attributes`, 'an attribute name must not be empty');
    if (value === null || value === undefined) {
      c.error(aPath, 'must be a mapping: {exact: …}, {prefix: …} or {regex: …}, or {} to match any value');
      continue;
    }
    const sm = c.mapping(value, aPath);
    if (!sm) continue;
    const types = Object.keys(sm).filter((k) => sm[k] !== undefined);
    const unknown = types.filter((k) => !MATCH_TYPES.includes(k));
    for (const k of unknown) c.error(fieldPath(aPath, k), `unknown match type "${k}": use exact, prefix or regex`);
    const used = types.filter((k) => MATCH_TYPES.includes(k));
    if (used.length > 1) c.error(aPath, `only one of exact, prefix or regex can be set (got ${used.join(', ')})`);
    if (sm.exact !== undefined) c.string(sm.exact, `${aPath}.exact`);
    if (sm.prefix !== undefined) c.string(sm.prefix, `${aPath}.prefix`, true);
    if (sm.regex !== undefined) {
      const re = c.string(sm.regex, `${aPath}.regex`, true);
      if (re !== undefined) {
        const problem = regexProblem(re);
        if (problem) c.error(`${aPath}.regex`, problem);
      }
    }
  }
}

/** Why `re` is refused by the data plane's RE2 compiler (syntax RE2 lacks, or a program over the size limit). */
export function regexProblem(re: string): string | undefined {
  return configRegexProblem(re);
}

function checkMutations(c: Checker, raw: unknown, path: string): void {
  const list = c.list(raw, path);
  list?.forEach((kv, i) => {
    const m = c.mapping(kv, `${path}[${i}]`, true);
    if (!m) return;
    c.string(m.key, `${path}[${i}].key`, true);
    c.string(m.value, `${path}[${i}].value`, true);
  });
}

function checkTokenBucket(c: Checker, raw: unknown, path: string, required: boolean): void {
  const bucket = c.mapping(raw, path, required);
  if (!bucket) return;
  c.integer(bucket.maxTokens, `${path}.maxTokens`, { min: 1, required: true });
  c.integer(bucket.tokensPerFill, `${path}.tokensPerFill`, { min: 1, required: true });
  c.duration(bucket.fillInterval, `${path}.fillInterval`, true);
}

function checkLocalRateLimit(c: Checker, raw: unknown, path: string): void {
  const limit = c.mapping(raw, path);
  if (!limit) return;
  const conditions = c.list(limit.conditions, `${path}.conditions`);
  if ((limit.tokenBucket === undefined || limit.tokenBucket === null) && (!conditions || conditions.length === 0)) {
    c.error(path, 'localRateLimit needs tokenBucket or conditions');
  }
  checkTokenBucket(c, limit.tokenBucket, `${path}.tokenBucket`, false);
  conditions?.forEach((cond, i) => {
    const cPath = `${path}.conditions[${i}]`;
    const m = c.mapping(cond, cPath, true);
    if (!m) return;
    if (m.match === undefined || m.match === null) c.error(`${cPath}.match`, 'required');
    else checkMatch(c, m.match, `${cPath}.match`);
    checkTokenBucket(c, m.tokenBucket, `${cPath}.tokenBucket`, true);
  });
}

function checkGlobalRateLimit(c: Checker, raw: unknown, path: string): void {
  const limit = c.mapping(raw, path);
  if (!limit) return;
  c.string(limit.domain, `${path}.domain`, true);
  const service = c.string(limit.rateLimitService, `${path}.rateLimitService`, true);
  if (service !== undefined && !/^outbound\|\d+\|[^|]*\|[^|]+$/.test(service) && !/^[^\s|]+:\d+$/.test(service)) {
    c.error(`${path}.rateLimitService`, `must be a cluster name (outbound|<port>||<host>) or host:port, not "${service}"`);
  }
  checkMatch(c, limit.match, `${path}.match`);
  c.duration(limit.requestTimeout, `${path}.requestTimeout`);
  c.boolean(limit.denyOnFail, `${path}.denyOnFail`);
  const descriptors = c.list(limit.descriptors, `${path}.descriptors`, true);
  if (descriptors && descriptors.length === 0) c.error(`${path}.descriptors`, 'must list at least one descriptor');
  descriptors?.forEach((d, i) => {
    const m = c.mapping(d, `${path}.descriptors[${i}]`, true);
    if (!m) return;
    c.string(m.descriptorKey, `${path}.descriptors[${i}].descriptorKey`, true);
    c.string(m.property, `${path}.descriptors[${i}].property`, true);
  });
}

// ---------------------------------------------------------------- ApplicationProtocol

export function checkApplicationProtocol(c: Checker, raw: unknown): void {
  const spec = c.mapping(raw, 'spec', true);
  if (!spec) return;
  const protocol = c.string(spec.protocol, 'spec.protocol', true);
  c.string(spec.codec, 'spec.codec', true);
  if (protocol !== undefined && !/^[a-z0-9]+$/.test(protocol)) {
    c.warn('spec.protocol', `no port can name protocol "${protocol}": port names are tcp-metaprotocol-<protocol>[-suffix], so a protocol is lowercase letters and digits`);
  }
}
