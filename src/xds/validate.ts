/**
 * Every number an xDS server sends is checked before the data plane uses it; a resource that fails is NACKed, its
 * `error_detail` naming the resource and the field (`ClusterLoadAssignment "c".endpoints[0]…port_value: …`).
 *
 * - The protos' own validation rules (protoc-gen-validate annotations, as Envoy enforces them): numeric bounds of
 *   integer, double and duration fields (wrappers included), defined enum values, repeated items' bounds. String,
 *   required and size rules are not enforced here: they are not about numbers, and Waypost's translator relies on
 *   Envoy's defaults for some of them.
 * - Envoy's rules outside the annotations: a duration is never negative; the weights of one locality and of the
 *   localities sum to at most 2^32-1; the weights of a weighted route sum to more than 0 and at most 2^32-1.
 * - Waypost's own, where its data plane needs more: an endpoint port is 1..65535 and a listener port 0..65535; an
 *   address is an IP or a host name; a duration is at most 2^31-1 ms (Node's timer limit: a longer one would fire at
 *   once); integers are exact (64-bit values above 2^53 are refused); doubles are finite; a FractionalPercent's
 *   numerator is at most its denominator (Envoy clamps it; a larger one is a mistake worth reporting).
 */
import net from 'node:net';
import protobuf from 'protobufjs';
import { XdsConversionError, type JsonObject } from './convert.js';
import { lookupTypeUrl } from './protos.js';
import { TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER, TYPE_META_ROUTE } from './resources.js';

const UINT32_MAX = 0xffffffff;
/** The longest delay Node's timers keep (a longer one is clamped to 1 ms). */
export const MAX_DURATION_MS = 2 ** 31 - 1;
const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;
const MAX_DURATION_NS = BigInt(MAX_DURATION_MS) * NS_PER_MS;
const DENOMINATORS: Record<string, number> = { HUNDRED: 100, TEN_THOUSAND: 10_000, MILLION: 1_000_000 };
/** RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens (an underscore is tolerated). */
const HOSTNAME = /^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

type Rules = Record<string, unknown>;

const fail = (path: string, problem: string): never => {
  throw new XdsConversionError(path, problem);
};

/** Throws an {@link XdsConversionError} naming the first bad number (or address) of a decoded resource. */
export function validateResource(typeUrl: string, json: JsonObject, label: string): void {
  if (typeUrl === TYPE_ENDPOINTS) checkAssignment(json, label);
  if (typeUrl === TYPE_CLUSTER && isObject(json.load_assignment)) checkAssignment(json.load_assignment, `${label}.load_assignment`);
  if (typeUrl === TYPE_LISTENER && isObject(json.address)) checkSocketAddress(json.address, `${label}.address`, 0);
  if (typeUrl === TYPE_META_ROUTE) checkRoutes(json, label);
  const type = lookupTypeUrl(typeUrl);
  if (type) checkMessage(type, json, label);
  else checkUntyped(json, label);
}

/** Whether `text` is an IP address or a host name. */
export function isIpOrHostname(text: string): boolean {
  return net.isIP(text) !== 0 || HOSTNAME.test(text);
}

// ---- the protos' rules --------------------------------------------------------------------------------------------

function checkMessage(type: protobuf.Type, value: unknown, path: string): void {
  const name = type.fullName;
  if (name === '.google.protobuf.Any') return checkAny(value, path);
  if (name === '.google.protobuf.Duration') return void checkDuration(value, path, undefined);
  if (name === '.google.protobuf.Struct' || name === '.google.protobuf.Value' || name === '.google.protobuf.ListValue') return checkUntyped(value, path);
  if (name.startsWith('.google.protobuf.')) return; // wrappers come as plain values and are checked by their field
  if (!isObject(value)) return;
  if (has(value, '@type') && typeof value['@type'] === 'string') {
    const packed = lookupTypeUrl(value['@type']);
    if (packed && packed !== type) return checkMessage(packed, value, path);
  }
  for (const field of type.fieldsArray) {
    if (!has(value, field.name)) continue;
    const v = value[field.name];
    if (v === null || v === undefined) continue;
    const at = `${path}.${field.name}`;
    const rules = rulesOf(field);
    if (field.map) {
      if (!isObject(v)) continue;
      for (const [k, item] of Object.entries(v)) checkFieldValue(field, item, `${at}[${JSON.stringify(k)}]`, sub(sub(rules, 'map'), 'values'));
    } else if (field.repeated) {
      if (!Array.isArray(v)) continue;
      const items = sub(sub(rules, 'repeated'), 'items');
      v.forEach((item, i) => checkFieldValue(field, item, `${at}[${i}]`, items));
    } else {
      checkFieldValue(field, v, at, rules);
    }
  }
  if (name === '.envoy.type.v3.FractionalPercent') checkFraction(value, path);
}

function checkFieldValue(field: protobuf.Field, v: unknown, path: string, rules: Rules | undefined): void {
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Enum) return checkEnum(rt, v, path, sub(rules, 'enum'));
  if (rt instanceof protobuf.Type) {
    const wrapped = wrapperScalar(rt);
    if (wrapped) return checkScalar(wrapped, v, path, rules);
    if (rt.fullName === '.google.protobuf.Duration') return void checkDuration(v, path, sub(rules, 'duration'));
    return checkMessage(rt, v, path);
  }
  checkScalar(field.type, v, path, rules);
}

function checkAny(value: unknown, path: string): void {
  if (!isObject(value)) return;
  const url = value['@type'];
  const type = typeof url === 'string' ? lookupTypeUrl(url) : undefined;
  if (type) checkMessage(type, value, path);
  else checkUntyped(value, path);
}

const INT_TYPES = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32', 'int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);

function checkScalar(type: string, v: unknown, path: string, rules: Rules | undefined): void {
  if (INT_TYPES.has(type)) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v)) fail(path, `${show(v)} is not an exact integer`);
    if ((type.startsWith('u') || type === 'fixed32' || type === 'fixed64') && (v as number) < 0) fail(path, `${show(v)} is negative`);
    checkBounds(v as number, path, sub(rules, type));
  } else if (type === 'double' || type === 'float') {
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(path, `${show(v)} is not a finite number`);
    checkBounds(v as number, path, sub(rules, type));
  }
}

function checkBounds(n: number, path: string, r: Rules | undefined): void {
  if (!r) return;
  const num = (k: string): number | undefined => (typeof r[k] === 'number' ? (r[k] as number) : typeof r[k] === 'string' ? Number(r[k]) : undefined);
  const gt = num('gt');
  const gte = num('gte');
  const lt = num('lt');
  const lte = num('lte');
  const konst = num('const');
  if (gt !== undefined && !(n > gt)) fail(path, `${n} must be greater than ${gt}`);
  if (gte !== undefined && !(n >= gte)) fail(path, `${n} must be at least ${gte}`);
  if (lt !== undefined && !(n < lt)) fail(path, `${n} must be less than ${lt}`);
  if (lte !== undefined && !(n <= lte)) fail(path, `${n} must be at most ${lte}`);
  if (konst !== undefined && n !== konst) fail(path, `${n} must be ${konst}`);
}

function checkEnum(e: protobuf.Enum, v: unknown, path: string, r: Rules | undefined): void {
  // A decoded value the enum does not define comes out as its number.
  if (typeof v === 'number' && r?.defined_only === true && e.valuesById[v] === undefined) {
    fail(path, `${v} is not a value of ${e.name} (${Object.keys(e.values).join(', ')})`);
  }
}

/** Duration JSON (`"1.5s"`) → nanoseconds, checked: not negative, within Node's timer range, and the field's rules. */
function checkDuration(v: unknown, path: string, r: Rules | undefined): bigint {
  const ns = typeof v === 'string' ? durationNs(v) : undefined;
  if (ns === undefined) return fail(path, `${show(v)} is not a duration`);
  if (ns < 0n) fail(path, `${v} is negative`);
  if (ns > MAX_DURATION_NS) fail(path, `${v} is longer than ${MAX_DURATION_MS} ms, the longest delay Waypost can keep`);
  if (r) {
    const bound = (k: string): bigint | undefined => {
      const b = r[k];
      if (!isObject(b)) return undefined;
      return BigInt(Number(b.seconds ?? 0)) * NS_PER_S + BigInt(Number(b.nanos ?? 0));
    };
    const text = (b: bigint): string => `${Number(b) / 1e9}s`;
    const gt = bound('gt');
    const gte = bound('gte');
    const lt = bound('lt');
    const lte = bound('lte');
    if (gt !== undefined && !(ns > gt)) fail(path, `${v} must be longer than ${text(gt)}`);
    if (gte !== undefined && !(ns >= gte)) fail(path, `${v} must be at least ${text(gte)}`);
    if (lt !== undefined && !(ns < lt)) fail(path, `${v} must be shorter than ${text(lt)}`);
    if (lte !== undefined && !(ns <= lte)) fail(path, `${v} must be at most ${text(lte)}`);
  }
  return ns;
}

/** `"1.5s"` (proto3 JSON, as src/xds/convert.ts writes it) → ns; undefined when it is not one. */
function durationNs(text: string): bigint | undefined {
  const m = /^(-)?(\d+)(?:\.(\d{1,9}))?s$/.exec(text);
  if (!m) return undefined;
  const ns = BigInt(m[2]!) * NS_PER_S + (m[3] ? BigInt(m[3].padEnd(9, '0')) : 0n);
  return m[1] ? -ns : ns;
}

function checkFraction(v: JsonObject, path: string): void {
  const denominator = v.denominator ?? 'HUNDRED';
  const size = typeof denominator === 'string' ? DENOMINATORS[denominator] : undefined;
  if (size === undefined) return fail(`${path}.denominator`, `${show(denominator)} is not HUNDRED, TEN_THOUSAND or MILLION`);
  const numerator = v.numerator ?? 0;
  if (typeof numerator === 'number' && numerator > size) fail(`${path}.numerator`, `${numerator} is more than the denominator (${denominator} = ${size})`);
}

/** Struct contents and Anys of unknown types: only that every number is finite. */
function checkUntyped(v: unknown, path: string): void {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) fail(path, `${v} is not a finite number`);
  } else if (Array.isArray(v)) v.forEach((item, i) => checkUntyped(item, `${path}[${i}]`));
  else if (isObject(v)) for (const [k, item] of Object.entries(v)) checkUntyped(item, `${path}.${k}`);
}

// ---- rules outside the annotations --------------------------------------------------------------------------------

function checkSocketAddress(address: JsonObject, path: string, minPort: 0 | 1): void {
  const sa = address.socket_address;
  if (!isObject(sa)) return;
  const at = `${path}.socket_address`;
  const host = sa.address;
  if (typeof host !== 'string' || !isIpOrHostname(host)) fail(`${at}.address`, `${show(host)} is not an IP address or a host name`);
  if (has(sa, 'named_port') && sa.named_port) fail(`${at}.named_port`, 'named ports are not supported; give port_value');
  const port = sa.port_value ?? 0;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < minPort || port > 65535) {
    fail(`${at}.port_value`, `${show(port)} is not a port (${minPort}..65535)`);
  }
}

function checkAssignment(cla: JsonObject, path: string): void {
  const localities = Array.isArray(cla.endpoints) ? (cla.endpoints as unknown[]) : [];
  let localityTotal = 0;
  localities.forEach((loc, i) => {
    if (!isObject(loc)) return;
    const at = `${path}.endpoints[${i}]`;
    if (typeof loc.load_balancing_weight === 'number') localityTotal += loc.load_balancing_weight;
    let total = 0;
    const lbes = Array.isArray(loc.lb_endpoints) ? (loc.lb_endpoints as unknown[]) : [];
    lbes.forEach((lbe, j) => {
      if (!isObject(lbe)) return;
      const e = `${at}.lb_endpoints[${j}]`;
      const address = isObject(lbe.endpoint) ? lbe.endpoint.address : undefined;
      if (isObject(address)) checkSocketAddress(address, `${e}.endpoint.address`, 1);
      const w = lbe.load_balancing_weight ?? 1;
      if (typeof w === 'number') total += w;
    });
    if (total > UINT32_MAX) fail(`${at}.lb_endpoints`, `the endpoint weights sum to ${total}, more than ${UINT32_MAX}`);
  });
  if (localityTotal > UINT32_MAX) fail(`${path}.endpoints`, `the locality weights sum to ${localityTotal}, more than ${UINT32_MAX}`);
}

function checkRoutes(rc: JsonObject, path: string): void {
  const routes = Array.isArray(rc.routes) ? (rc.routes as unknown[]) : [];
  routes.forEach((r, i) => {
    if (!isObject(r) || !isObject(r.route) || !isObject(r.route.weighted_clusters)) return;
    const at = `${path}.routes[${i}].route.weighted_clusters`;
    const clusters = Array.isArray(r.route.weighted_clusters.clusters) ? (r.route.weighted_clusters.clusters as unknown[]) : [];
    let total = 0;
    for (const c of clusters) if (isObject(c) && typeof c.weight === 'number') total += c.weight;
    if (clusters.length > 0 && total <= 0) fail(`${at}.clusters`, 'the weights sum to 0');
    if (total > UINT32_MAX) fail(`${at}.clusters`, `the weights sum to ${total}, more than ${UINT32_MAX}`);
  });
}

// ---- helpers ------------------------------------------------------------------------------------------------------

/** A field's `(validate.rules)`, merged from its parsed options. */
function rulesOf(field: protobuf.Field): Rules | undefined {
  const parsed = (field as unknown as { parsedOptions?: Array<Record<string, unknown>> }).parsedOptions;
  let out: Rules | undefined;
  for (const o of parsed ?? []) {
    const r = o['(validate.rules)'];
    if (isObject(r)) out = merge(out ?? {}, r);
  }
  return out;
}

function merge(a: Rules, b: Rules): Rules {
  const out: Rules = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = isObject(v) && isObject(out[k]) ? merge(out[k] as Rules, v) : v;
  return out;
}

function sub(r: Rules | undefined, key: string): Rules | undefined {
  const v = r?.[key];
  return isObject(v) ? v : undefined;
}

const WRAPPER_SCALAR: Record<string, string> = {
  '.google.protobuf.DoubleValue': 'double',
  '.google.protobuf.FloatValue': 'float',
  '.google.protobuf.Int64Value': 'int64',
  '.google.protobuf.UInt64Value': 'uint64',
  '.google.protobuf.Int32Value': 'int32',
  '.google.protobuf.UInt32Value': 'uint32',
};

function wrapperScalar(t: protobuf.Type): string | undefined {
  return WRAPPER_SCALAR[t.fullName];
}

function isObject(v: unknown): v is JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function has(o: object, k: string): boolean {
  return Object.prototype.hasOwnProperty.call(o, k);
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}
