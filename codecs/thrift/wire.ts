/**
 * Thrift wire primitives: message heads of the binary (strict and lax) and compact protocols, and hand-written
 * skippers that find where a message struct ends without decoding it (for unframed transports, which carry no
 * length).
 *
 * Binary, strict:  i32 version (0x8001_00TT, TT = message type), i32 name length, name, i32 seqid, struct
 * Binary, lax:     i32 name length (>= 0), name, i8 message type, i32 seqid, struct
 * Compact:         0x82, (type << 5) | version 1, varint seqid, varint name length, name, struct
 *
 * Every read is bounds-checked by hand. Running out of bytes throws the shared {@link TRUNCATED} marker (with the
 * offset that must be reachable before trying again in `Scanner.needAt`), so the caller can tell "wait for more"
 * from {@link ScanError}, "this is not Thrift".
 */
import { CodecError } from '../../src/codec.js';

export const MessageType = { CALL: 1, REPLY: 2, EXCEPTION: 3, ONEWAY: 4 } as const;

export const BINARY_VERSION_HIGH = 0x80;
export const BINARY_VERSION_LOW = 0x01;
export const COMPACT_PROTOCOL_ID = 0x82;
export const COMPACT_VERSION = 1;
export const COMPACT_VERSION_MASK = 0x1f;
export const COMPACT_TYPE_SHIFT = 5;

/** Binary protocol TTypes. */
export const TType = {
  STOP: 0,
  BOOL: 2,
  BYTE: 3,
  DOUBLE: 4,
  I16: 6,
  I32: 8,
  I64: 10,
  STRING: 11,
  STRUCT: 12,
  MAP: 13,
  SET: 14,
  LIST: 15,
  UUID: 16,
} as const;

/** Compact protocol types (low nibble of a field header, element types of containers). */
export const CType = {
  STOP: 0,
  BOOL_TRUE: 1,
  BOOL_FALSE: 2,
  BYTE: 3,
  I16: 4,
  I32: 5,
  I64: 6,
  DOUBLE: 7,
  BINARY: 8,
  LIST: 9,
  SET: 10,
  MAP: 11,
  STRUCT: 12,
  UUID: 13,
} as const;

/** Thrift's own default recursion limit: deeper nesting is refused rather than followed. */
export const MAX_DEPTH = 64;

/**
 * Struct fields and container elements (a map pair counts two) one message may hold that are walked one by one.
 * Finding a message's end walks them, and one 8 MiB message of 1-byte values would otherwise hold the event loop
 * for ~170 ms; at this limit the slowest kind (a binary list of empty lists, unframed) costs ~15-20 ms
 * (bench/thrift/scan-limits.ts). Containers of fixed-width elements are skipped by arithmetic and compact lists of
 * integers (varints) four bytes at a time: neither counts.
 */
export const MAX_VALUES = 500_000;

/** Malformed input: these bytes are not a Thrift message. */
export class ScanError extends Error {
  override readonly name = 'ScanError';
}

/** A message over a limit of the proxy's ({@link MAX_VALUES}): Thrift perhaps, but more than the proxy walks. */
export class ScanLimitError extends ScanError {}

export function tooManyValues(): ScanLimitError {
  return new ScanLimitError(`thrift message holds more than ${MAX_VALUES} fields and container elements`);
}

/** The codec's refusal of a message the skippers refused: `bad_message`, naming a limit as such. */
export function scanRefusal(err: ScanError): CodecError {
  return new CodecError('bad_message', err instanceof ScanLimitError ? err.message : `not a thrift message: ${err.message}`);
}

/** Thrown (never allocated per throw: no stack capture) when the bytes end before the value does. */
export const TRUNCATED: { readonly truncated: true } = Object.freeze({ truncated: true });

export function isTruncated(err: unknown): boolean {
  return err === TRUNCATED;
}

/** Where a message's head lies (absolute offsets in the buffer it was read from). */
export interface MessageHead {
  readonly compact: boolean;
  /** Binary only: version word present (false for the old/lax form). */
  readonly strict: boolean;
  readonly type: number;
  readonly nameStart: number;
  readonly nameEnd: number;
  /** The seqid's offset and width (4 for binary; 1-5 bytes of varint for compact). */
  readonly seqidAt: number;
  readonly seqidLength: number;
  /** The seqid as an i32. */
  readonly seqid: number;
  /** Where the message struct (arguments, result or exception) starts. */
  readonly bodyAt: number;
}

/**
 * A cursor over `buf[pos, end)`. One per session, reused for every scan: scans allocate nothing but their result.
 */
export class Scanner {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;
  /** After {@link TRUNCATED}: the offset that must be available before the scan can get further. */
  needAt = 0;
  /** Fields and elements the skippers may still walk ({@link MAX_VALUES} per reset). */
  budget = MAX_VALUES;

  reset(buf: Buffer, pos: number, end: number): this {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
    this.needAt = 0;
    this.budget = MAX_VALUES;
    return this;
  }

  /** Takes `n` from the budget of values to walk. */
  charge(n: number): void {
    if ((this.budget -= n) < 0) throw tooManyValues();
  }

  /** Advances over `n` bytes that must be present. */
  take(n: number): number {
    const at = this.pos;
    const next = at + n;
    if (next > this.end) {
      this.needAt = next;
      throw TRUNCATED;
    }
    this.pos = next;
    return at;
  }

  u8(): number {
    if (this.pos >= this.end) {
      this.needAt = this.pos + 1;
      throw TRUNCATED;
    }
    return this.buf[this.pos++]!;
  }

  i32(): number {
    const at = this.take(4);
    const b = this.buf;
    return (b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!;
  }

  i16(): number {
    const at = this.take(2);
    return ((this.buf[at]! << 24) | (this.buf[at + 1]! << 16)) >> 16;
  }

  /** An unsigned varint of at most 5 bytes, returned as the i32 with the same low 32 bits (as Java reads it). */
  varint32(): number {
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      const b = this.u8();
      result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result | 0;
      shift += 7;
    }
    throw new ScanError('varint32 longer than 5 bytes');
  }

  /** Skips a varint of at most 10 bytes (compact i16/i32/i64 values). */
  skipVarint(): void {
    for (let i = 0; i < 10; i++) {
      if ((this.u8() & 0x80) === 0) return;
    }
    throw new ScanError('varint longer than 10 bytes');
  }

  /** Skips `n` varints as `n` calls of {@link skipVarint} would (compact integer lists), with {@link scanVarints}. */
  skipVarints(n: number): void {
    scanVarints(this.buf, this.pos, this.end, n, 0);
    this.pos = varintScan.pos;
    if (varintScan.left > 0) {
      this.needAt = this.pos + 1;
      throw TRUNCATED;
    }
  }

  /** A non-negative size (string length, element count). */
  size(value: number, what: string): number {
    if (value < 0) throw new ScanError(`negative ${what} ${value}`);
    return value;
  }
}

/** Where {@link scanVarints} stopped: the offset, the varints left, continuation bytes read of the current one. */
export const varintScan = { pos: 0, left: 0, run: 0 };

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const HIGH_BITS = 0x80808080 | 0;

/**
 * Skips `n` varints at `buf[p, end)`, the first with `run` continuation bytes already read, as many calls of
 * `Scanner.skipVarint` would: throws {@link ScanError} at the 10th continuation byte of one, and stops when the
 * varints are done or the bytes run out (result in {@link varintScan}). A compact integer list of 8 MiB costs ~25 ms
 * byte by byte; four bytes at a time it is ~5-10 ms: a word whose high bits are all clear holds four whole varints,
 * and any other word is counted from its terminator bits. The last word, and a word where a varint grows too long,
 * are left to the byte loop, which finds the exact byte.
 */
export function scanVarints(buf: Buffer, p: number, end: number, n: number, run: number): void {
  if (LITTLE_ENDIAN && n > 4 && end - p >= 16) {
    const base = buf.byteOffset;
    while (((base + p) & 3) !== 0) {
      if ((buf[p++]! & 0x80) === 0) {
        n--;
        run = 0;
      } else if (++run === 10) {
        throw new ScanError('varint longer than 10 bytes');
      }
    }
    const words = new Int32Array(buf.buffer, base + p, (end - p) >>> 2);
    const count = words.length;
    let i = 0;
    while (i < count) {
      const t = ~words[i]! & HIGH_BITS; // the high bit of each byte that ends a varint
      if (t === 0) {
        if (run + 4 >= 10) break;
        run += 4;
        i++;
        continue;
      }
      const ends = Math.imul(t >>> 7, 0x01010101) >>> 24;
      if (ends >= n) break;
      if (run + ((31 - Math.clz32(t & -t)) >>> 3) >= 10) break; // continuation bytes before the first end
      run = 3 - ((31 - Math.clz32(t)) >>> 3); // after the last end
      n -= ends;
      i++;
    }
    p += i * 4;
  }
  while (n > 0 && p < end) {
    if ((buf[p++]! & 0x80) === 0) {
      n--;
      run = 0;
    } else if (++run === 10) {
      throw new ScanError('varint longer than 10 bytes');
    }
  }
  varintScan.pos = p;
  varintScan.left = n;
  varintScan.run = run;
}

// ---------------------------------------------------------------------------------------------------------------
// Message heads

/**
 * Reads a binary message head at `s.pos`: strict when it starts with the version byte 0x80, lax otherwise.
 * Throws {@link TRUNCATED} or {@link ScanError}.
 */
export function readBinaryHead(s: Scanner): MessageHead {
  const first = s.i32();
  let type: number;
  let nameLength: number;
  let strict: boolean;
  if (first < 0) {
    // Version word: 0x80 0x01 <unused> <type>.
    if (first >>> 16 !== ((BINARY_VERSION_HIGH << 8) | BINARY_VERSION_LOW)) {
      throw new ScanError(`bad binary protocol version 0x${(first >>> 16).toString(16)}`);
    }
    strict = true;
    type = first & 0xff;
    checkType(type);
    nameLength = s.size(s.i32(), 'method name length');
  } else {
    strict = false;
    nameLength = first;
    type = -1;
  }
  const nameStart = s.take(nameLength);
  const nameEnd = s.pos;
  if (!strict) {
    type = s.u8();
    checkType(type);
  }
  const seqidAt = s.pos;
  const seqid = s.i32();
  return { compact: false, strict, type, nameStart, nameEnd, seqidAt, seqidLength: 4, seqid, bodyAt: s.pos };
}

/** Reads a compact message head at `s.pos`. Throws {@link TRUNCATED} or {@link ScanError}. */
export function readCompactHead(s: Scanner): MessageHead {
  if (s.u8() !== COMPACT_PROTOCOL_ID) throw new ScanError('compact message does not start with 0x82');
  const vt = s.u8();
  if ((vt & COMPACT_VERSION_MASK) !== COMPACT_VERSION) {
    throw new ScanError(`unsupported compact protocol version ${vt & COMPACT_VERSION_MASK}`);
  }
  const type = vt >>> COMPACT_TYPE_SHIFT;
  checkType(type);
  const seqidAt = s.pos;
  const seqid = s.varint32();
  const seqidLength = s.pos - seqidAt;
  const nameLength = s.size(s.varint32(), 'method name length');
  const nameStart = s.take(nameLength);
  return {
    compact: true,
    strict: true,
    type,
    nameStart,
    nameEnd: s.pos,
    seqidAt,
    seqidLength,
    seqid,
    bodyAt: s.pos,
  };
}

export function readHead(s: Scanner): MessageHead {
  if (s.pos < s.end && s.buf[s.pos] === COMPACT_PROTOCOL_ID) return readCompactHead(s);
  return readBinaryHead(s);
}

function checkType(type: number): void {
  if (type < MessageType.CALL || type > MessageType.ONEWAY) throw new ScanError(`unknown message type ${type}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Reply classification

/**
 * The id of the first field of the struct at `at`: -1 for an empty struct (STOP), -2 when it cannot be read.
 * A result struct has field 0 for the return value and fields 1.. for declared exceptions.
 */
export function firstFieldId(buf: Buffer, at: number, end: number, compact: boolean): number {
  if (at >= end) return -2;
  const b = buf[at]!;
  if (b === 0) return -1;
  if (!compact) {
    if (at + 3 > end) return -2;
    return ((buf[at + 1]! << 24) | (buf[at + 2]! << 16)) >> 16;
  }
  // Compact: the high nibble is the delta from the previous field id (0 here); 0 means a zigzag varint id follows.
  const delta = b >>> 4;
  if (delta !== 0) return delta;
  let v = 0;
  let shift = 0;
  for (let p = at + 1; p < end && shift < 21; p++, shift += 7) {
    const x = buf[p]!;
    v |= (x & 0x7f) << shift;
    if ((x & 0x80) === 0) return (v >>> 1) ^ -(v & 1);
  }
  return -2;
}

// ---------------------------------------------------------------------------------------------------------------
// Struct skippers (unframed transports)

/** Bytes per element of fixed-width binary types, 0 for variable width, -1 for no such type. */
export function binaryWidth(type: number): number {
  switch (type) {
    case TType.BOOL:
    case TType.BYTE:
      return 1;
    case TType.I16:
      return 2;
    case TType.I32:
      return 4;
    case TType.DOUBLE:
    case TType.I64:
      return 8;
    case TType.UUID:
      return 16;
    case TType.STRING:
    case TType.STRUCT:
    case TType.MAP:
    case TType.SET:
    case TType.LIST:
      return 0;
    default:
      return -1;
  }
}

/** Skips a binary struct at `s.pos` up to and including its STOP. */
export function skipBinaryStruct(s: Scanner, depth = 0): void {
  if (depth >= MAX_DEPTH) throw new ScanError(`struct nesting deeper than ${MAX_DEPTH}`);
  for (;;) {
    const type = s.u8();
    if (type === TType.STOP) return;
    s.charge(1);
    s.take(2); // field id
    skipBinaryValue(s, type, depth);
  }
}

function skipBinaryValue(s: Scanner, type: number, depth: number): void {
  const width = binaryWidth(type);
  if (width > 0) {
    s.take(width);
    return;
  }
  switch (type) {
    case TType.STRING:
      s.take(s.size(s.i32(), 'string length'));
      return;
    case TType.STRUCT:
      skipBinaryStruct(s, depth + 1);
      return;
    case TType.MAP: {
      const kt = s.u8();
      const vt = s.u8();
      const n = s.size(s.i32(), 'map size');
      if (n === 0) return; // some writers leave the types of an empty map unset
      checkDepth(depth);
      const kw = binaryWidth(kt);
      const vw = binaryWidth(vt);
      if (kw < 0 || vw < 0) throw new ScanError(`bad map types ${kt}/${vt}`);
      if (kw > 0 && vw > 0) {
        s.take(n * (kw + vw));
        return;
      }
      s.charge(2 * n);
      for (let i = 0; i < n; i++) {
        skipBinaryValue(s, kt, depth + 1);
        skipBinaryValue(s, vt, depth + 1);
      }
      return;
    }
    case TType.SET:
    case TType.LIST: {
      const et = s.u8();
      const n = s.size(s.i32(), 'list size');
      if (n === 0) return;
      checkDepth(depth);
      const ew = binaryWidth(et);
      if (ew < 0) throw new ScanError(`bad element type ${et}`);
      if (ew > 0) {
        s.take(n * ew);
        return;
      }
      s.charge(n);
      for (let i = 0; i < n; i++) skipBinaryValue(s, et, depth + 1);
      return;
    }
    default:
      throw new ScanError(`unknown binary type ${type}`);
  }
}

/** Bytes per element of fixed-width compact element types, 0 for variable width, -1 for no such type. */
export function compactWidth(type: number): number {
  switch (type) {
    case CType.BOOL_TRUE: // in containers a bool is a whole byte
    case CType.BOOL_FALSE:
    case CType.BYTE:
      return 1;
    case CType.DOUBLE:
      return 8;
    case CType.UUID:
      return 16;
    case CType.I16:
    case CType.I32:
    case CType.I64:
    case CType.BINARY:
    case CType.LIST:
    case CType.SET:
    case CType.MAP:
    case CType.STRUCT:
      return 0;
    default:
      return -1;
  }
}

/** Skips a compact struct at `s.pos` up to and including its STOP. */
export function skipCompactStruct(s: Scanner, depth = 0): void {
  if (depth >= MAX_DEPTH) throw new ScanError(`struct nesting deeper than ${MAX_DEPTH}`);
  for (;;) {
    const header = s.u8();
    if (header === CType.STOP) return;
    s.charge(1);
    const type = header & 0x0f;
    // A zero delta means the field id follows as a zigzag varint (ids that do not fit a 1-15 delta).
    if (header >>> 4 === 0) s.skipVarint();
    // A bool field carries its value in the type nibble: no payload.
    if (type === CType.BOOL_TRUE || type === CType.BOOL_FALSE) continue;
    if (type === CType.STOP) throw new ScanError('field header with type 0');
    skipCompactValue(s, type, depth);
  }
}

function skipCompactValue(s: Scanner, type: number, depth: number): void {
  const width = compactWidth(type);
  if (width > 0) {
    s.take(width);
    return;
  }
  switch (type) {
    case CType.I16:
    case CType.I32:
    case CType.I64:
      s.skipVarint();
      return;
    case CType.BINARY:
      s.take(s.size(s.varint32(), 'string length'));
      return;
    case CType.STRUCT:
      skipCompactStruct(s, depth + 1);
      return;
    case CType.MAP: {
      const n = s.size(s.varint32(), 'map size');
      if (n === 0) return; // an empty map has no type byte
      checkDepth(depth);
      const types = s.u8();
      const kt = types >>> 4;
      const vt = types & 0x0f;
      const kw = compactWidth(kt);
      const vw = compactWidth(vt);
      if (kw < 0 || vw < 0) throw new ScanError(`bad map types ${kt}/${vt}`);
      if (kw > 0 && vw > 0) {
        s.take(n * (kw + vw));
        return;
      }
      s.charge(2 * n);
      for (let i = 0; i < n; i++) {
        skipCompactValue(s, kt, depth + 1);
        skipCompactValue(s, vt, depth + 1);
      }
      return;
    }
    case CType.SET:
    case CType.LIST: {
      // Short form: size in the high nibble; 15 there means the size follows as a varint.
      const header = s.u8();
      const et = header & 0x0f;
      let n = header >>> 4;
      if (n === 15) n = s.size(s.varint32(), 'list size');
      if (n === 0) return;
      checkDepth(depth);
      const ew = compactWidth(et);
      if (ew < 0) throw new ScanError(`bad element type ${et}`);
      if (ew > 0) {
        s.take(n * ew);
        return;
      }
      if (isCompactInteger(et)) {
        s.skipVarints(n);
        return;
      }
      s.charge(n);
      for (let i = 0; i < n; i++) skipCompactValue(s, et, depth + 1);
      return;
    }
    default:
      throw new ScanError(`unknown compact type ${type}`);
  }
}

/** Compact i16, i32, i64: zigzag varints, whose lists are skipped by a byte loop. */
export function isCompactInteger(type: number): boolean {
  return type === CType.I16 || type === CType.I32 || type === CType.I64;
}

function checkDepth(depth: number): void {
  if (depth + 1 >= MAX_DEPTH) throw new ScanError(`container nesting deeper than ${MAX_DEPTH}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Writing

/** Bytes of `value` (an i32 or u32) as an unsigned 32-bit varint (compact seqids, THeader varints). */
export function varintLength(value: number): number {
  let v = value >>> 0;
  let n = 1;
  while (v >= 0x80) {
    v >>>= 7;
    n++;
  }
  return n;
}

/** Writes `value` as an unsigned 32-bit varint at `at`; returns the offset after it. */
export function writeVarint(buf: Buffer, at: number, value: number): number {
  let v = value >>> 0;
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[at++] = v;
  return at;
}

export function zigzag32(value: number): number {
  return ((value << 1) ^ (value >> 31)) >>> 0;
}
