/**
 * What every admin API (a proxy's, the `--workers` primary's, the control plane's) does before it answers:
 *
 * - **Host check (DNS rebinding).** A web page can point a name it controls at 127.0.0.1 and have the browser read
 *   the admin API as that name. So a request is answered only when its `Host` is a loopback name or address
 *   (`localhost`, `*.localhost`, 127.0.0.0/8, ::1), the admin's bind address, or the address the request came in on
 *   (an admin bound to 0.0.0.0 and reached by the pod IP, as the kubelet's probes and Prometheus do), with or without
 *   a port. Anything else gets 403, counted (`waypost_admin_refused_total{reason="host"}`) and logged rate-limited.
 *   A request without `Host` (HTTP/1.0) is no browser's, and passes.
 * - **Read-only.** Anything but GET and HEAD is 405; there is no state-changing request, so no Origin to check.
 * - **Secrets redacted** in every JSON body ({@link redactSecrets}): as Envoy's config dump, a field the protos mark
 *   `(udpa.annotations.sensitive)` — Redis AUTH passwords and usernames, private keys, PKCS#12 bundles and their
 *   passwords, SDS secrets, tokens — shows `"[redacted]"`; fields of messages this build has no proto for are
 *   redacted by name.
 */
import type http from 'node:http';
import net from 'node:net';
import protobuf from 'protobufjs';
import { Counter, type Registry } from 'prom-client';
import { log } from './log.js';
import { lookupTypeUrl } from './xds/protos.js';
import { TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_HTTP_ROUTE, TYPE_LISTENER, TYPE_META_ROUTE } from './xds/resources.js';

export const REDACTED = '[redacted]';

export interface AdminGuard {
  /** True when the request has been answered (refused); the caller answers otherwise. */
  (req: http.IncomingMessage, res: http.ServerResponse): boolean;
  /** Requests refused for their Host so far. */
  readonly refusedHosts: number;
}

/**
 * The guard of an admin API bound to `bindHost`. With `registry`, refusals are counted in
 * `waypost_admin_refused_total{reason}` there.
 */
export function adminGuard(bindHost: string, registry?: Registry): AdminGuard {
  const bind = normalizeHost(bindHost);
  const counter = registry
    ? ((registry.getSingleMetric('waypost_admin_refused_total') as Counter<'reason'> | undefined) ??
      new Counter({ name: 'waypost_admin_refused_total', help: 'Admin API requests refused (reason: host = a Host header that is not the admin\'s own, as DNS rebinding sends)', labelNames: ['reason'], registers: [registry] }))
    : undefined;
  let refused = 0;
  const guard = ((req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    const host = req.headers.host;
    if (host !== undefined && !hostAllowed(host, bind, req.socket.localAddress)) {
      refused++;
      counter?.labels('host').inc();
      log.warnLimited('admin_host', 'admin: refused a request whose Host is not a loopback name or the admin\'s own address (DNS rebinding?)', {
        host: host.slice(0, 100),
        remote: req.socket.remoteAddress,
      });
      res.writeHead(403, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end('forbidden: the admin API answers only to its own address or a loopback name as Host\n');
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET' }).end('the admin API is read-only\n');
      return true;
    }
    return false;
  }) as AdminGuard;
  Object.defineProperty(guard, 'refusedHosts', { get: () => refused });
  return guard;
}

/** Whether a `Host` header names this admin: loopback, the bind address, or the local address of the connection. */
export function hostAllowed(header: string, bind: string, localAddress: string | undefined): boolean {
  const host = normalizeHost(stripPort(header.trim()));
  if (host === '') return false;
  if (host === 'localhost' || host.endsWith('.localhost')) return true;
  if (isLoopbackIp(host)) return true;
  if (bind !== '' && bind !== '0.0.0.0' && bind !== '::' && host === bind) return true;
  return localAddress !== undefined && net.isIP(host) !== 0 && host === normalizeHost(localAddress);
}

function stripPort(h: string): string {
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end < 0 ? '' : h.slice(1, end);
  }
  const colon = h.indexOf(':');
  // A bare IPv6 address has several colons and no port (not valid in Host, but harmless to read).
  if (colon >= 0 && h.indexOf(':', colon + 1) < 0) return h.slice(0, colon);
  return h;
}

/** Lower case, no brackets, no trailing dot, IPv4-mapped IPv6 as IPv4. */
function normalizeHost(h: string): string {
  let s = h.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
  if (s.startsWith('::ffff:') && net.isIPv4(s.slice(7))) s = s.slice(7);
  return s;
}

function isLoopbackIp(h: string): boolean {
  if (net.isIPv4(h)) return h.startsWith('127.');
  if (net.isIPv6(h)) return h === '::1' || h === '0:0:0:0:0:0:0:1';
  return false;
}

// ---- redaction ----------------------------------------------------------------------------------------------------

/** Resource lists of a snapshot (ResourceSnapshot, a config dump's `resources`) and their message types. */
const LIST_TYPES: Record<string, string> = {
  listeners: TYPE_LISTENER,
  clusters: TYPE_CLUSTER,
  endpoints: TYPE_ENDPOINTS,
  routes: TYPE_META_ROUTE,
  http_routes: TYPE_HTTP_ROUTE,
};

/** Fields redacted by name where no proto says (the names Envoy's protos mark sensitive, and the obvious ones). */
const SENSITIVE_NAME = /^(.*_)?(password|passwords|passwd|private_key|pkcs12|secret|secret_data|token|backend_token|api_key|credential|credentials)$/i;

/** A copy of `value` with its secrets replaced by `"[redacted]"` (see the file comment). */
export function redactSecrets(value: unknown): unknown {
  return untyped(value, false);
}

function untyped(v: unknown, inResources: boolean): unknown {
  if (Array.isArray(v)) return v.map((x) => untyped(x, inResources));
  if (v === null || typeof v !== 'object') return v;
  const obj = v as Record<string, unknown>;
  const at = typeof obj['@type'] === 'string' ? lookupTypeUrl(obj['@type']) : undefined;
  if (at) return typed(at, obj);
  const out: Record<string, unknown> = {};
  for (const [k, item] of Object.entries(obj)) {
    if (SENSITIVE_NAME.test(k)) out[k] = redactAll(item);
    else if (LIST_TYPES[k] && Array.isArray(item) && (inResources || k !== 'endpoints')) {
      const type = lookupTypeUrl(LIST_TYPES[k]!);
      out[k] = item.map((x) => (type && x !== null && typeof x === 'object' && !Array.isArray(x) ? typed(type, x as Record<string, unknown>) : untyped(x, false)));
    } else out[k] = untyped(item, k === 'resources');
  }
  return out;
}

function typed(type: protobuf.Type, obj: Record<string, unknown>): unknown {
  // Struct, Value and the like: no fields of their own to trust, names decide.
  if (type.fullName.startsWith('.google.protobuf.')) return untyped(obj, false);
  const out: Record<string, unknown> = {};
  for (const [k, item] of Object.entries(obj)) {
    const field = type.fields[k];
    if (!field) {
      out[k] = k === '@type' ? item : SENSITIVE_NAME.test(k) ? redactAll(item) : untyped(item, false);
      continue;
    }
    if (isSensitive(field)) {
      out[k] = redactAll(item);
      continue;
    }
    const rt = field.resolvedType;
    const one = (x: unknown): unknown =>
      rt instanceof protobuf.Type && x !== null && typeof x === 'object' && !Array.isArray(x) ? typed(anyType(rt, x as Record<string, unknown>), x as Record<string, unknown>) : untyped(x, false);
    if (field.map && item !== null && typeof item === 'object') {
      out[k] = Object.fromEntries(Object.entries(item as Record<string, unknown>).map(([mk, mv]) => [mk, one(mv)]));
    } else if (field.repeated && Array.isArray(item)) out[k] = item.map(one);
    else out[k] = one(item);
  }
  return out;
}

/** The type of a message value: an Any is read as the type its `@type` names. */
function anyType(declared: protobuf.Type, obj: Record<string, unknown>): protobuf.Type {
  if (typeof obj['@type'] === 'string') return lookupTypeUrl(obj['@type']) ?? declared;
  return declared;
}

function isSensitive(field: protobuf.Field): boolean {
  if (field.options?.['(udpa.annotations.sensitive)'] === true) return true;
  const parsed = (field as unknown as { parsedOptions?: Array<Record<string, unknown>> }).parsedOptions;
  return (parsed ?? []).some((o) => o['(udpa.annotations.sensitive)'] === true);
}

/** Under a sensitive field: every string is `[redacted]`, other scalars go (as Envoy clears them); shape kept. */
function redactAll(v: unknown): unknown {
  if (typeof v === 'string') return REDACTED;
  if (Array.isArray(v)) return v.map(redactAll);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, item] of Object.entries(v as Record<string, unknown>)) {
      if (k === '@type') out[k] = item;
      else if (typeof item === 'object' || typeof item === 'string') out[k] = redactAll(item);
    }
    return out;
  }
  return REDACTED;
}
