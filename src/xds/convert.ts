/**
 * Protobuf messages ↔ the JSON shape of src/xds/resources.ts: the protos' own (snake_case) field names, `@type` on
 * an Any with the packed message's fields beside it, durations as `"1.5s"`, enums by name, 64-bit integers as
 * numbers, Struct as plain JSON, wrappers (`UInt32Value` …) as their plain value, bytes as base64.
 *
 * - Decoding reports a field when it was on the wire (proto3 default values a peer did not send are left out, as
 *   proto3 JSON does), and unpacks an Any by its type URL. An Any holding a `udpa.type.v1.TypedStruct` or
 *   `xds.type.v3.TypedStruct` (how Aeraki-style control planes send filter configs) is read as the message it names:
 *   its Struct is parsed against that message (proto or lowerCamelCase JSON names; unknown fields are skipped, as
 *   Envoy does for dynamic config) and comes out in the same canonical shape a binary Any would. An Any of a type
 *   this build does not know comes out as `{'@type': url}` alone.
 * - Encoding is strict: an unknown field, a wrong JSON type or two members of one oneof is an error naming the field
 *   path. An `@type` this build has no message for is sent as an `xds.type.v3.TypedStruct`.
 */
import protobuf from 'protobufjs';
import { lookupTypeUrl, messageType, TYPE_UDPA_TYPED_STRUCT, TYPE_XDS_TYPED_STRUCT, TYPE_URL_PREFIX } from './protos.js';
import { TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER, TYPE_META_ROUTE } from './resources.js';

/** A resource or field that cannot be converted; `path` names it (`Listener "x".filter_chains[0]…`). */
export class XdsConversionError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(`${path}: ${problem}`);
    this.name = 'XdsConversionError';
  }
}

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: unknown };

/** A packed Any as protobufjs encodes and decodes it. */
export interface AnyMessage {
  type_url: string;
  value: Uint8Array;
}

interface ConvertOptions {
  /** Skip unknown fields instead of failing (TypedStruct contents). */
  lenient?: boolean;
}

const INT64_TYPES = new Set(['int64', 'uint64', 'sint64', 'fixed64', 'sfixed64']);
const INT32_TYPES = new Set(['int32', 'uint32', 'sint32', 'fixed32', 'sfixed32']);
const WRAPPERS = new Set(
  ['Double', 'Float', 'Int64', 'UInt64', 'Int32', 'UInt32', 'Bool', 'String', 'Bytes'].map((n) => `.google.protobuf.${n}Value`),
);
const TYPED_STRUCTS = new Set([TYPE_UDPA_TYPED_STRUCT, TYPE_XDS_TYPED_STRUCT]);
const NS_PER_S = 1_000_000_000n;

const has = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

// ---- decode: message → JSON ---------------------------------------------------------------------------------------

/** A decoded message (or a plain object of the same shape) as resource JSON. */
export function messageToJson(type: protobuf.Type, msg: object, path: string): unknown {
  const special = wellKnownToJson(type, msg as Record<string, unknown>, path);
  if (special !== NOT_SPECIAL) return special;
  const out: JsonObject = {};
  const m = msg as Record<string, unknown>;
  for (const field of type.fieldsArray) {
    if (!has(m, field.name)) continue;
    const v = m[field.name];
    if (v === null || v === undefined) continue;
    const at = `${path}.${field.name}`;
    if (field.map) {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length === 0) continue;
      const obj: JsonObject = {};
      for (const [k, item] of entries) obj[k] = fieldValueToJson(field, item, `${at}[${JSON.stringify(k)}]`);
      out[field.name] = obj;
    } else if (field.repeated) {
      const arr = v as unknown[];
      if (arr.length === 0) continue;
      out[field.name] = arr.map((item, i) => fieldValueToJson(field, item, `${at}[${i}]`));
    } else {
      out[field.name] = fieldValueToJson(field, v, at);
    }
  }
  return out;
}

function fieldValueToJson(field: protobuf.Field, v: unknown, path: string): unknown {
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Type) return messageToJson(rt, v as object, path);
  if (rt instanceof protobuf.Enum) return rt.valuesById[v as number] ?? v;
  return scalarToJson(field.type, v);
}

function scalarToJson(type: string, v: unknown): unknown {
  if (INT64_TYPES.has(type)) return longToNumber(v);
  if (type === 'bytes') return Buffer.from(v as Uint8Array).toString('base64');
  return v;
}

function longToNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return Number(v);
  if (v && typeof (v as { toNumber?: unknown }).toNumber === 'function') return (v as { toNumber(): number }).toNumber();
  return Number(v);
}

const NOT_SPECIAL = Symbol('not special');

function wellKnownToJson(type: protobuf.Type, m: Record<string, unknown>, path: string): unknown {
  const name = type.fullName;
  if (!name.startsWith('.google.protobuf.')) return NOT_SPECIAL;
  switch (name) {
    case '.google.protobuf.Any':
      return anyToJson({ type_url: String(m.type_url ?? ''), value: (m.value as Uint8Array) ?? new Uint8Array() }, path);
    case '.google.protobuf.Duration':
      return formatDurationParts(BigInt(longToNumber(m.seconds ?? 0)), Number(m.nanos ?? 0));
    case '.google.protobuf.Timestamp': {
      const ms = longToNumber(m.seconds ?? 0) * 1000 + Math.floor(Number(m.nanos ?? 0) / 1e6);
      return new Date(ms).toISOString();
    }
    case '.google.protobuf.Struct':
      return structToJson(m);
    case '.google.protobuf.Value':
      return valueToJson(m);
    case '.google.protobuf.ListValue':
      return ((m.values as Record<string, unknown>[] | undefined) ?? []).map(valueToJson);
    case '.google.protobuf.Empty':
      return {};
    case '.google.protobuf.FieldMask':
      return ((m.paths as string[] | undefined) ?? []).join(',');
    default:
      if (WRAPPERS.has(name)) {
        const field = type.fields.value!;
        const v = has(m, 'value') ? m.value : field.defaultValue;
        return scalarToJson(field.type, v ?? (field.type === 'string' ? '' : field.type === 'bool' ? false : 0));
      }
      return NOT_SPECIAL;
  }
}

function structToJson(m: Record<string, unknown>): JsonObject {
  const out: JsonObject = {};
  for (const [k, v] of Object.entries((m.fields as Record<string, Record<string, unknown>> | undefined) ?? {})) out[k] = valueToJson(v);
  return out;
}

function valueToJson(v: Record<string, unknown>): unknown {
  if (v == null) return null;
  if (has(v, 'structValue') && v.structValue != null) return structToJson(v.structValue as Record<string, unknown>);
  if (has(v, 'listValue') && v.listValue != null) return ((v.listValue as { values?: Record<string, unknown>[] }).values ?? []).map(valueToJson);
  if (has(v, 'stringValue') && v.stringValue != null) return v.stringValue;
  if (has(v, 'numberValue') && v.numberValue != null) return v.numberValue;
  if (has(v, 'boolValue') && v.boolValue != null) return v.boolValue;
  return null;
}

/** An Any as `{'@type': url, ...fields}` (TypedStructs read as the message they name). */
export function anyToJson(any: AnyMessage, path: string): JsonObject {
  const url = any.type_url;
  if (!url) throw new XdsConversionError(path, 'Any without a type_url');
  const type = lookupTypeUrl(url);
  if (!type) return { '@type': url };
  let decoded: protobuf.Message;
  try {
    decoded = type.decode(any.value ?? new Uint8Array());
  } catch (err) {
    throw new XdsConversionError(path, `cannot decode ${url}: ${(err as Error).message}`);
  }
  if (TYPED_STRUCTS.has(url)) {
    const ts = decoded as unknown as { type_url?: string; value?: Record<string, unknown> };
    const fields = ts.value ? structToJson(ts.value) : {};
    return typedStructToJson(ts.type_url ?? '', fields, path);
  }
  return { '@type': url, ...(messageToJson(type, decoded, path) as JsonObject) };
}

/** A TypedStruct's content, normalised through the message it names (when this build has it). */
export function typedStructToJson(typeUrl: string, fields: JsonObject, path: string): JsonObject {
  if (!typeUrl) throw new XdsConversionError(path, 'TypedStruct without a type_url');
  const inner = lookupTypeUrl(typeUrl);
  if (!inner) return { '@type': typeUrl, ...fields };
  const plain = jsonToMessage(inner, fields, `${path}(TypedStruct ${typeUrl})`, { lenient: true });
  const msg = inner.decode(inner.encode(plain as protobuf.Message).finish());
  return { '@type': typeUrl, ...(messageToJson(inner, msg, path) as JsonObject) };
}

// ---- encode: JSON → message ---------------------------------------------------------------------------------------

/** Resource JSON → a plain object protobufjs can `encode` as `type`. */
export function jsonToMessage(type: protobuf.Type, json: unknown, path: string, opts: ConvertOptions = {}): unknown {
  const special = wellKnownFromJson(type, json, path, opts);
  if (special !== NOT_SPECIAL) return special;
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new XdsConversionError(path, `expected an object for ${type.fullName.slice(1)}, got ${describe(json)}`);
  }
  const out: Record<string, unknown> = {};
  const oneofSet = new Map<string, string>();
  for (const [key, value] of Object.entries(json as JsonObject)) {
    const field = type.fields[key] ?? fieldByJsonName(type, key);
    const at = `${path}.${key}`;
    if (!field) {
      if (opts.lenient) continue;
      throw new XdsConversionError(at, `unknown field of ${type.fullName.slice(1)}`);
    }
    if (value === null || value === undefined) continue;
    if (field.partOf) {
      const other = oneofSet.get(field.partOf.name);
      if (other !== undefined && other !== field.name) {
        throw new XdsConversionError(at, `${field.name} and ${other} are both set, but only one of oneof ${field.partOf.name} may be`);
      }
      oneofSet.set(field.partOf.name, field.name);
    }
    if (field.map) {
      if (typeof value !== 'object' || Array.isArray(value)) throw new XdsConversionError(at, `expected a map (object), got ${describe(value)}`);
      const obj: Record<string, unknown> = {};
      for (const [k, item] of Object.entries(value as JsonObject)) obj[k] = fieldValueFromJson(field, item, `${at}[${JSON.stringify(k)}]`, opts);
      out[field.name] = obj;
    } else if (field.repeated) {
      if (!Array.isArray(value)) throw new XdsConversionError(at, `expected a list, got ${describe(value)}`);
      out[field.name] = value.map((item, i) => fieldValueFromJson(field, item, `${at}[${i}]`, opts));
    } else {
      out[field.name] = fieldValueFromJson(field, value, at, opts);
    }
  }
  return out;
}

function fieldByJsonName(type: protobuf.Type, key: string): protobuf.Field | undefined {
  for (const f of type.fieldsArray) if (camel(f.name) === key) return f;
  return undefined;
}

function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function fieldValueFromJson(field: protobuf.Field, v: unknown, path: string, opts: ConvertOptions): unknown {
  const rt = field.resolvedType;
  if (rt instanceof protobuf.Type) return jsonToMessage(rt, v, path, opts);
  if (rt instanceof protobuf.Enum) {
    if (typeof v === 'number' && Number.isInteger(v)) return v;
    if (typeof v === 'string' && has(rt.values, v)) return rt.values[v];
    throw new XdsConversionError(path, `expected one of ${Object.keys(rt.values).join(', ')}, got ${describe(v)}`);
  }
  return scalarFromJson(field.type, v, path);
}

function scalarFromJson(type: string, v: unknown, path: string): unknown {
  if (type === 'string') {
    if (typeof v !== 'string') throw new XdsConversionError(path, `expected a string, got ${describe(v)}`);
    return v;
  }
  if (type === 'bool') {
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    throw new XdsConversionError(path, `expected true or false, got ${describe(v)}`);
  }
  if (INT32_TYPES.has(type) || INT64_TYPES.has(type)) {
    const n = typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n)) throw new XdsConversionError(path, `expected an integer, got ${describe(v)}`);
    if (type.startsWith('u') || type.startsWith('fixed')) {
      if (n < 0) throw new XdsConversionError(path, `expected a non-negative integer, got ${n}`);
    }
    if (INT32_TYPES.has(type) && (n > 0xffffffff || n < -0x80000000)) throw new XdsConversionError(path, `${n} does not fit in ${type}`);
    return n;
  }
  if (type === 'double' || type === 'float') {
    if (typeof v === 'number') return v;
    if (v === 'NaN' || v === 'Infinity' || v === '-Infinity') return Number(v);
    if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
    throw new XdsConversionError(path, `expected a number, got ${describe(v)}`);
  }
  if (type === 'bytes') {
    if (typeof v === 'string') return Buffer.from(v, 'base64');
    if (v instanceof Uint8Array) return v;
    throw new XdsConversionError(path, `expected base64 bytes, got ${describe(v)}`);
  }
  throw new XdsConversionError(path, `unsupported field type ${type}`);
}

function wellKnownFromJson(type: protobuf.Type, json: unknown, path: string, opts: ConvertOptions): unknown {
  const name = type.fullName;
  if (!name.startsWith('.google.protobuf.')) return NOT_SPECIAL;
  switch (name) {
    case '.google.protobuf.Any': {
      if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new XdsConversionError(path, `expected an object with "@type", got ${describe(json)}`);
      return jsonToAny(json as JsonObject, path, opts);
    }
    case '.google.protobuf.Duration':
      return parseDurationJson(json, path);
    case '.google.protobuf.Timestamp': {
      const ms = typeof json === 'string' ? Date.parse(json) : NaN;
      if (!Number.isFinite(ms)) throw new XdsConversionError(path, `expected an RFC 3339 timestamp, got ${describe(json)}`);
      return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
    }
    case '.google.protobuf.Struct':
      if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new XdsConversionError(path, `expected an object, got ${describe(json)}`);
      return structFromJson(json as JsonObject);
    case '.google.protobuf.Value':
      return valueFromJson(json);
    case '.google.protobuf.ListValue':
      if (!Array.isArray(json)) throw new XdsConversionError(path, `expected a list, got ${describe(json)}`);
      return { values: json.map(valueFromJson) };
    case '.google.protobuf.Empty':
      return {};
    case '.google.protobuf.FieldMask':
      if (typeof json !== 'string') throw new XdsConversionError(path, `expected a comma-separated string, got ${describe(json)}`);
      return { paths: json.split(',').filter((p) => p !== '') };
    default:
      if (WRAPPERS.has(name)) {
        // Also accept the message form {value: x}.
        const inner = json !== null && typeof json === 'object' && !Array.isArray(json) && has(json, 'value') ? (json as JsonObject).value : json;
        return { value: scalarFromJson(type.fields.value!.type, inner, path) };
      }
      void opts;
      return NOT_SPECIAL;
  }
}

/** Protobufjs's well-known types use camelCase member names (stringValue …) whatever `keepCase` says. */
export function structFromJson(obj: JsonObject): { fields: Record<string, unknown> } {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) fields[k] = valueFromJson(v);
  return { fields };
}

function valueFromJson(v: unknown): Record<string, unknown> {
  if (v === null || v === undefined) return { nullValue: 0 };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(valueFromJson) } };
  if (typeof v === 'object') return { structValue: structFromJson(v as JsonObject) };
  return { stringValue: String(v) };
}

/** `{'@type': url, ...fields}` → a packed Any; a type this build does not know goes as an xds.type.v3.TypedStruct. */
export function jsonToAny(json: JsonObject, path: string, opts: ConvertOptions = {}): AnyMessage {
  const url = json['@type'];
  if (typeof url !== 'string' || url === '') throw new XdsConversionError(path, 'an Any needs "@type"');
  const { '@type': _drop, ...fields } = json;
  void _drop;
  const type = lookupTypeUrl(url);
  if (!type) {
    const ts = messageType('xds.type.v3.TypedStruct');
    return { type_url: TYPE_XDS_TYPED_STRUCT, value: ts.encode({ type_url: url, value: structFromJson(fields) } as unknown as protobuf.Message).finish() };
  }
  const plain = jsonToMessage(type, fields, path, opts);
  return { type_url: url, value: type.encode(plain as protobuf.Message).finish() };
}

// ---- durations ----------------------------------------------------------------------------------------------------

/** Proto3 JSON duration (`"1.5s"`, `"-0.000000001s"`) → {seconds, nanos}; also Istio-style `"500ms"`, `"1m30s"`. */
export function parseDurationJson(json: unknown, path: string): { seconds: number; nanos: number } {
  if (typeof json !== 'string') throw new XdsConversionError(path, `expected a duration string like "1.5s", got ${describe(json)}`);
  const ns = durationNanos(json);
  if (ns === undefined) throw new XdsConversionError(path, `"${json}" is not a duration (write e.g. "1.5s")`);
  const seconds = ns / NS_PER_S;
  const nanos = ns % NS_PER_S;
  return { seconds: Number(seconds), nanos: Number(nanos) };
}

const UNIT_NS: Record<string, bigint> = { ns: 1n, us: 1_000n, µs: 1_000n, ms: 1_000_000n, s: NS_PER_S, m: 60n * NS_PER_S, h: 3600n * NS_PER_S };

function durationNanos(text: string): bigint | undefined {
  const m = /^(-)?((?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+)$/.exec(text.trim());
  if (!m) return undefined;
  let total = 0n;
  for (const seg of m[2]!.matchAll(/(\d+)(?:\.(\d+))?(ns|us|µs|ms|s|m|h)/g)) {
    const unit = UNIT_NS[seg[3]!]!;
    total += BigInt(seg[1]!) * unit;
    if (seg[2]) total += (BigInt(seg[2]) * unit) / 10n ** BigInt(seg[2].length);
  }
  return m[1] ? -total : total;
}

/** {seconds, nanos} → `"1.5s"` (fraction trimmed, as src/duration.ts writes it). */
export function formatDurationParts(seconds: bigint, nanos: number): string {
  const total = seconds * NS_PER_S + BigInt(nanos);
  const sign = total < 0n ? '-' : '';
  const abs = total < 0n ? -total : total;
  const s = abs / NS_PER_S;
  const frac = abs % NS_PER_S;
  if (frac === 0n) return `${sign}${s}s`;
  return `${sign}${s}.${frac.toString().padStart(9, '0').replace(/0+$/, '')}s`;
}

// ---- resources ----------------------------------------------------------------------------------------------------

/** The name a resource is known by: `name`, or `cluster_name` for a ClusterLoadAssignment. */
export function resourceName(typeUrl: string, json: JsonObject): string {
  const v = typeUrl === TYPE_ENDPOINTS ? json.cluster_name : json.name;
  return typeof v === 'string' ? v : '';
}

const KIND: Record<string, string> = {
  [TYPE_LISTENER]: 'Listener',
  [TYPE_CLUSTER]: 'Cluster',
  [TYPE_ENDPOINTS]: 'ClusterLoadAssignment',
  [TYPE_META_ROUTE]: 'RouteConfiguration',
};

/** `Listener "name"` (for error paths). */
export function resourceLabel(typeUrl: string, name: string): string {
  return `${KIND[typeUrl] ?? typeUrl.slice(typeUrl.lastIndexOf('.') + 1)} ${JSON.stringify(name)}`;
}

/** Resource JSON (with or without its `@type`) → a packed Any of `typeUrl`. */
export function encodeResource(typeUrl: string, json: JsonObject): AnyMessage {
  const label = resourceLabel(typeUrl, resourceName(typeUrl, json));
  const declared = json['@type'];
  if (declared !== undefined && declared !== typeUrl) throw new XdsConversionError(label, `"@type" is ${JSON.stringify(declared)}, expected ${typeUrl}`);
  const type = lookupTypeUrl(typeUrl);
  if (!type) throw new XdsConversionError(label, `no message type for ${typeUrl}`);
  const { '@type': _drop, ...fields } = json;
  void _drop;
  const plain = jsonToMessage(type, fields, label);
  return { type_url: typeUrl, value: type.encode(plain as protobuf.Message).finish() };
}

/** A packed resource → its JSON, with `@type` first, as `waypost translate` prints it. */
export function decodeResource(expectedTypeUrl: string, any: AnyMessage, index: number): { name: string; json: JsonObject } {
  const at = `${KIND[expectedTypeUrl] ?? 'resource'} #${index}`;
  if (any.type_url !== expectedTypeUrl) {
    throw new XdsConversionError(at, `has type ${any.type_url || '(none)'}, but the response is for ${expectedTypeUrl}`);
  }
  const type = lookupTypeUrl(expectedTypeUrl);
  if (!type) throw new XdsConversionError(at, `no message type for ${expectedTypeUrl}`);
  let msg: protobuf.Message;
  try {
    msg = type.decode(any.value ?? new Uint8Array());
  } catch (err) {
    throw new XdsConversionError(at, `cannot decode: ${(err as Error).message}`);
  }
  const name = resourceName(expectedTypeUrl, msg as unknown as JsonObject);
  const json = { '@type': expectedTypeUrl, ...(messageToJson(type, msg, resourceLabel(expectedTypeUrl, name)) as JsonObject) };
  return { name, json };
}

/** JSON with object keys sorted (undefined members dropped): equal content, equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  const out: JsonObject = {};
  for (const key of Object.keys(value).sort()) {
    const v = (value as JsonObject)[key];
    if (v !== undefined) out[key] = sortKeys(v);
  }
  return out;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${JSON.stringify(v)}`;
}

export { TYPE_URL_PREFIX };
