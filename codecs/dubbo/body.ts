/**
 * The layout of Dubbo2 bodies (hessian2), read by scanning and rewritten by splicing.
 *
 * Request (DubboCodec.encodeRequestData): dubbo version, service path, service version, method name, parameter
 * types descriptor, one value per argument, attachments map.
 * OK response: response type int, then the value or exception (none for the null-value types), then for types
 * 3-5 the attachments map.
 *
 * Mutations never re-encode what they do not change: the bytes before the attachments, the map's own header and
 * every entry that is not replaced are copied verbatim, so arguments, class definitions, type and object
 * references keep their meaning; only the new entries are written.
 */
import type { KeyValue } from '../../src/codec.js';
import { HEADER_LENGTH, ResponseType } from './frame.js';
import { HessianScanner, ScanError, isIntTag, isStringTag } from './hessian-scan.js';
import { encodeHessianString } from './hessian-write.js';

/**
 * One scanner for the process: scans are synchronous and never nest, so sharing it costs nothing and saves an
 * allocation per frame.
 */
const scanner = new HessianScanner();

const TAG_NULL = 0x4e;
const TAG_UNTYPED_MAP = 0x48;
const TAG_TYPED_MAP = 0x4d;
const TAG_END = 0x5a;
const MAP_START = Buffer.from([TAG_UNTYPED_MAP]);
const MAP_END = Buffer.from([TAG_END]);

/** The routable fields at the head of a request body. */
export interface RequestHead {
  /** Service path (the interface name); undefined when null or empty. */
  readonly service: string | undefined;
  readonly version: string | undefined;
  readonly method: string | undefined;
  /** Offset of the parameter types descriptor: where a later scan for the attachments resumes. */
  readonly descriptorAt: number;
}

/** Reads the leading strings of a request body. Throws ScanError. */
export function readRequestHead(raw: Buffer): RequestHead {
  const sc = scanner.reset(raw, HEADER_LENGTH, raw.length);
  sc.skipValue(); // dubbo version: not routable
  const service = nonEmpty(sc.readStringOrNull());
  const version = nonEmpty(sc.readStringOrNull());
  const method = nonEmpty(sc.readStringOrNull());
  return { service, version, method, descriptorAt: sc.pos };
}

/**
 * Reads a request's attachments into `into` (lower-cased keys, string values), refusing with ScanError what a
 * provider could read otherwise than the proxy:
 *
 * - a key that is not a string, null included (hessian.js stores map entries under `String(key)`: a list
 *   `["user"]` would be `user` to it and not to the proxy);
 * - two keys equal ignoring case (Java's HashMap and hessian.js keep both, case-sensitively, and the provider's
 *   code reads the one it names; the proxy, whose keys ignore case, could only pick one);
 * - a key the provider dispatches on (see {@link DISPATCH_KEYS}) spelled in other than lower case, or whose value
 *   is not a string;
 * - a `path` that is not the body's service path, or a `version` that is not the body's version: Dubbo's
 *   DecodeableRpcInvocation puts the attachments over the body's fields, and DubboProtocol finds the exported
 *   service by the attachments' `path`, `version` and `group`, so those, not the body, say what is invoked. Where
 *   the body leaves a field empty, metadata exposes the attachment, as the provider uses it.
 */
export function readRequestAttachments(raw: Buffer, head: RequestHead, into: Map<string, string>): void {
  readAttachments(seekRequestAttachments(raw, head.descriptorAt), into, true);
  // Metadata exposes the body's field, or the attachment when the body's is empty (DubboFrame.get).
  const path = into.get('path');
  const service = head.service ?? into.get('interface') ?? '';
  if (path !== undefined && path !== service) {
    throw new ScanError(`attachment path "${path}" is not the service path "${service}" of the body`);
  }
  const version = into.get('version');
  if (version !== undefined && head.version !== undefined && !sameVersion(version, head.version)) {
    throw new ScanError(`attachment version "${version}" is not the version "${head.version}" of the body`);
  }
}

/** Reads an OK response's attachments (types 3-5) into `into`. Throws ScanError. */
export function readResponseAttachments(raw: Buffer, into: Map<string, string>): void {
  const type = seekResponseAttachments(raw);
  if (type >= ResponseType.WITH_EXCEPTION_WITH_ATTACHMENTS) readAttachments(scanner, into, false);
}

/**
 * Attachment keys Dubbo's provider reads itself, case-sensitively, to pick the exported service (`path`, `version`,
 * `group`; `interface` in some versions): they must be written exactly so, with a string value.
 */
const DISPATCH_KEYS: ReadonlySet<string> = new Set(['path', 'version', 'group', 'interface']);

/** Dubbo's service key leaves out an empty version and 0.0.0: both mean "no version". */
function sameVersion(a: string, b: string): boolean {
  return a === b || ((a === '' || a === '0.0.0') && (b === '' || b === '0.0.0'));
}

/**
 * Leaves the shared scanner at the request's attachments map (or at the end of the body when there is none),
 * having skipped every argument. The scanner keeps the class definitions met in the arguments, which the map's
 * values may refer to. Returns the scanner. Throws ScanError.
 */
function seekRequestAttachments(raw: Buffer, descriptorAt: number): HessianScanner {
  const sc = scanner.reset(raw, descriptorAt, raw.length);
  // Dubbox writes an int (-1) between the method name and the descriptor.
  if (isIntTag(sc.peek())) sc.readInt();
  const args = countParameters(sc.readStringOrNull() ?? '');
  for (let i = 0; i < args; i++) sc.skipValue();
  return sc;
}

/**
 * Leaves the shared scanner where an OK response's attachments map is (types 3-5) or would be appended (types
 * 0-2: after the value or exception). Returns the response type, or -1 when it is not one of 0-5. Throws ScanError.
 */
function seekResponseAttachments(raw: Buffer): number {
  const sc = scanner.reset(raw, HEADER_LENGTH, raw.length);
  const type = sc.readInt();
  return skipResult(sc, type) ? type : -1;
}

/** Moves past the value or exception of a response of `type`; false when the type is not one of 0-5. */
function skipResult(sc: HessianScanner, type: number): boolean {
  switch (type) {
    case ResponseType.WITH_EXCEPTION:
    case ResponseType.VALUE:
    case ResponseType.WITH_EXCEPTION_WITH_ATTACHMENTS:
    case ResponseType.VALUE_WITH_ATTACHMENTS:
      sc.skipValue();
      return true;
    case ResponseType.NULL_VALUE:
    case ResponseType.NULL_VALUE_WITH_ATTACHMENTS:
      return true;
    default:
      return false;
  }
}

/**
 * Attachments a map may hold. Real calls carry a handful; reading is linear in the count, so a frame of a million
 * tiny entries would hold the event loop for a second at every read. More is refused (`bad_body`).
 */
export const MAX_ATTACHMENTS = 1024;

/**
 * Reads the attachments map at the scanner into `into`: string keys (lower-cased) to string values; entries of
 * any other kind are left out. A null or absent map reads as empty. `strict` (requests) refuses the keys
 * {@link readRequestAttachments} lists; responses keep the last of keys equal ignoring case. Throws ScanError.
 */
function readAttachments(sc: HessianScanner, into: Map<string, string>, strict: boolean): void {
  const tag = sc.peek();
  if (tag === -1 || tag === TAG_NULL) return;
  enterMap(sc, tag);
  /** Lower-cased keys whose value is not a string (not in `into`), for the duplicate check. */
  let others: Set<string> | undefined;
  for (let entries = 0; ; entries++) {
    const next = sc.peek();
    if (next === -1) throw new ScanError('attachments map is not terminated');
    if (next === TAG_END) {
      sc.pos++;
      return;
    }
    if (entries === MAX_ATTACHMENTS) throw new ScanError(`more than ${MAX_ATTACHMENTS} attachments`);
    let key: string | null;
    if (isStringTag(next)) {
      key = sc.readStringOrNull();
    } else if (strict) {
      throw new ScanError(`attachment key is not a string (tag 0x${next.toString(16)})`);
    } else {
      key = skipped(sc);
    }
    const value = isStringTag(sc.peek()) ? sc.readStringOrNull() : skipped(sc);
    if (key === null) continue;
    const lower = key.toLowerCase();
    if (strict) {
      if (into.has(lower) || others?.has(lower)) {
        throw new ScanError(`attachment key "${key}" appears twice (keys are compared ignoring case)`);
      }
      if (DISPATCH_KEYS.has(lower) && (key !== lower || value === null)) {
        throw new ScanError(`attachment "${key}" must be spelled "${lower}" and have a string value`);
      }
      if (value === null) (others ??= new Set()).add(lower);
    }
    if (value !== null) into.set(lower, value);
  }
}

/** The request with `mutation` applied to its attachments and the body length fixed. Throws ScanError. */
export function mutateRequest(raw: Buffer, descriptorAt: number, mutation: readonly KeyValue[]): Buffer {
  const sc = seekRequestAttachments(raw, descriptorAt);
  const at = sc.pos;
  const parts: Buffer[] = [raw.subarray(0, at)];
  const after = spliceMap(sc, mutation, parts, true);
  if (after < raw.length) parts.push(raw.subarray(after));
  return finish(parts);
}

/**
 * The OK response with `mutation` added to its attachments: a map of types 3-5 is updated; types 0-2 become 3-5
 * with a map appended after the value. Undefined when the response type is unknown. Throws ScanError.
 */
export function mutateResponse(raw: Buffer, mutation: readonly KeyValue[]): Buffer | undefined {
  const sc = scanner.reset(raw, HEADER_LENGTH, raw.length);
  const type = sc.readInt();
  const typeEnd = sc.pos;
  if (!skipResult(sc, type)) return undefined;
  const at = sc.pos;
  const parts: Buffer[] = [];
  let after: number;
  if (type >= ResponseType.WITH_EXCEPTION_WITH_ATTACHMENTS) {
    parts.push(raw.subarray(0, at));
    after = spliceMap(sc, mutation, parts, true);
  } else {
    // 0/1/2 -> 3/4/5 (the compact one-byte int Java writes), then the value as it was, then a new map.
    parts.push(raw.subarray(0, HEADER_LENGTH), Buffer.from([0x90 + type + 3]), raw.subarray(typeEnd, at));
    after = spliceMap(sc, mutation, parts, false);
  }
  if (after < raw.length) parts.push(raw.subarray(after));
  return finish(parts);
}

/**
 * Pushes onto `parts` the attachments map at the scanner with `mutation` applied (replacing entries whose string
 * key matches case-insensitively) and returns the offset just past the original map. With `existing` false, or
 * when the map is absent (end of body) or null, a new map is written and nothing of the original is consumed
 * except a null.
 */
function spliceMap(sc: HessianScanner, mutation: readonly KeyValue[], parts: Buffer[], existing: boolean): number {
  const raw = sc.buf;
  const updates = new Map<string, KeyValue>();
  for (const kv of mutation) updates.set(kv.key.toLowerCase(), kv);

  const at = sc.pos;
  const tag = existing ? sc.peek() : -1;
  let after: number;
  if (tag === -1 || tag === TAG_NULL) {
    parts.push(MAP_START);
    after = tag === -1 ? at : at + 1;
  } else {
    enterMap(sc, tag);
    // The map's header is kept as is: a typed map's type string has a slot in the stream's type table.
    parts.push(raw.subarray(at, sc.pos));
    let run = sc.pos; // start of the entries copied verbatim
    for (let entries = 0; ; entries++) {
      const next = sc.peek();
      if (next === -1) throw new ScanError('attachments map is not terminated');
      if (next === TAG_END) break;
      if (entries === MAX_ATTACHMENTS) throw new ScanError(`more than ${MAX_ATTACHMENTS} attachments`);
      const entry = sc.pos;
      const key = isStringTag(next) ? sc.readStringOrNull() : skipped(sc);
      sc.skipValue();
      if (key !== null && updates.has(key.toLowerCase())) {
        if (entry > run) parts.push(raw.subarray(run, entry));
        run = sc.pos;
      }
    }
    if (sc.pos > run) parts.push(raw.subarray(run, sc.pos));
    after = sc.pos + 1;
  }
  for (const kv of updates.values()) parts.push(encodeHessianString(kv.key), encodeHessianString(kv.value));
  parts.push(MAP_END);
  return after;
}

function finish(parts: Buffer[]): Buffer {
  const out = Buffer.concat(parts);
  out.writeUInt32BE(out.length - HEADER_LENGTH, 12);
  return out;
}

/** Moves the scanner past a map's header ('H', or 'M' and its type). */
function enterMap(sc: HessianScanner, tag: number): void {
  if (tag === TAG_UNTYPED_MAP) {
    sc.pos++;
  } else if (tag === TAG_TYPED_MAP) {
    sc.pos++;
    sc.skipType();
  } else {
    throw new ScanError(`attachments are not a map (tag 0x${tag.toString(16)})`);
  }
}

function skipped(sc: HessianScanner): null {
  sc.skipValue();
  return null;
}

/**
 * The number of parameters a JVM descriptor lists (`Ljava/lang/String;[IJ` is 3), as Dubbo's
 * ReflectUtils.desc2classArray reads it. Throws ScanError on anything else.
 */
export function countParameters(descriptor: string): number {
  let count = 0;
  for (let i = 0; i < descriptor.length; i++) {
    const c = descriptor.charCodeAt(i);
    switch (c) {
      case 0x5b: // '[' array prefix
        continue;
      case 0x4c: {
        // 'L' class name ';'
        const semi = descriptor.indexOf(';', i + 1);
        if (semi < 0) throw new ScanError(`unterminated class in parameter types "${descriptor}"`);
        i = semi;
        count++;
        continue;
      }
      case 0x56: // V
      case 0x5a: // Z
      case 0x42: // B
      case 0x43: // C
      case 0x44: // D
      case 0x46: // F
      case 0x49: // I
      case 0x4a: // J
      case 0x53: // S
        count++;
        continue;
      default:
        throw new ScanError(`invalid parameter types "${descriptor}"`);
    }
  }
  return count;
}

function nonEmpty(s: string | null): string | undefined {
  return s === null || s === '' ? undefined : s;
}
