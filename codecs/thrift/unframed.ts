/**
 * Finds where an unframed message ends while its bytes arrive in pieces, without going back over them.
 *
 * An unframed message carries no length: its struct has to be walked to find its end. Walking it again from the
 * start whenever a piece arrives costs O(n²) for a message that grows by small pieces (a large struct, never
 * finished, fed one field at a time). This scanner keeps its place between pieces instead: the offset reached, the
 * read it was waiting on, the nesting it is in (an explicit stack of structs, lists/sets with the elements left,
 * maps with the pairs left) and a partly read varint; every call continues from there, so each byte is read once
 * and a call costs O(bytes it was given).
 *
 * It gives the answers of the one-shot skippers of wire.ts (`readHead` then `skipBinaryStruct` /
 * `skipCompactStruct`) read for read: the same end, the same {@link ScanError} messages at the same byte, the same
 * depth limits, and on a truncation the same `needAt` (the offset the pending read must reach), which the codec
 * compares with its frame size limit. The fuzz suite holds the two to that.
 */
import {
  CType,
  MAX_DEPTH,
  MAX_VALUES,
  ScanError,
  Scanner,
  TRUNCATED,
  TType,
  binaryWidth,
  compactWidth,
  isCompactInteger,
  readHead,
  scanVarints,
  tooManyValues,
  varintScan,
} from './wire.js';

/** `scan` result: the message is not complete yet. */
export const NEED_MORE = -1;

// What the scanner reads next (`op`).
/** Binary: a field type byte (STOP ends the struct). Compact: a field header byte. */
const FIELD = 0;
/** Binary: the i16 field id. */
const FIELD_ID = 1;
/** The start of a value of `vtype` whose skipper runs at depth `vdepth`. */
const VALUE = 2;
/** `skipLen` bytes, then the value is done. */
const SKIP = 3;
/** Binary: a string's i32 length. */
const STR_LEN = 4;
/** Binary map header: key type, value type, i32 size. */
const MAP_KT = 5;
const MAP_VT = 6;
const MAP_N = 7;
/** Binary list/set header: element type, i32 size. */
const LIST_ET = 8;
const LIST_N = 9;
/** Compact: a varint, read a byte at a time; `vfor` says what it is. */
const VARINT = 10;
/** Compact map: the key/value types byte (after the size). */
const MAP_TYPES = 11;
/** Compact list/set: the size/element type byte. */
const LIST_HEAD = 12;
/** Compact list/set: its size is known (no byte is read). */
const LIST_SIZE = 13;
/** Compact: the field header, and its id varint if any, are read: what follows depends on the type (no byte read). */
const FIELD_TYPE = 14;
/** Compact: `skipLen` integer list elements (varints) left, `vcount` bytes read of the current one. */
const VARINTS = 15;

// What a compact varint is (`vfor`): skipped (field id, integer value) or read as a 32-bit size.
const V_FIELD_ID = 0;
const V_VALUE = 1;
const V_STR_LEN = 2;
const V_MAP_N = 3;
const V_LIST_N = 4;

// Kinds of nesting on the stack.
const K_STRUCT = 0;
const K_LIST = 1;
const K_MAP = 2;

/**
 * Every stack entry is one level deeper than the one below it, and the skippers refuse depth MAX_DEPTH: at most
 * MAX_DEPTH entries.
 */
const STACK = MAX_DEPTH + 1;

/** One per session; holds no reference to the bytes between calls, only offsets relative to the message start. */
export class UnframedScanner {
  /** After {@link NEED_MORE}: the offset, from the message start, that must be available before it can get further. */
  needAt = 0;
  /** Steps taken since creation (one per read attempted, head reads included): what tests bound to prove linearity. */
  work = 0;
  /** Fields and elements the message may still walk, charged where the one-shot skippers charge them. */
  private budget = MAX_VALUES;

  private readonly head = new Scanner();
  /** The message head has been read: the struct is being walked. */
  private inBody = false;
  private compact = false;
  /** Offset reached, from the message start. */
  private rel = 0;
  private op = FIELD;
  /** The value being read: its type, and the depth its skipper runs at. */
  private vtype = 0;
  private vdepth = 0;
  private skipLen = 0;
  /** Binary map header being read: key type (or a list's element type), value type. Compact: a list's element type. */
  private kt = 0;
  private vt = 0;
  /** A compact varint in progress: what it is, bytes read, value so far. */
  private vfor = 0;
  private vcount = 0;
  private vacc = 0;

  private sp = 0;
  private readonly kind = new Uint8Array(STACK);
  /** Struct: its depth; list/map: the depth its elements' skippers run at. */
  private readonly depth = new Uint8Array(STACK);
  /** List: element type; map: key type. */
  private readonly t1 = new Uint8Array(STACK);
  /** Map: value type. */
  private readonly t2 = new Uint8Array(STACK);
  /** Elements (list) or pairs (map) still to come after the current one. */
  private readonly left = new Int32Array(STACK);
  /** Map: 0 while the current pair's key is read, 1 for its value. */
  private readonly half = new Uint8Array(STACK);

  /** Forgets the message in progress: the next {@link scan} starts a new one. */
  reset(): void {
    this.inBody = false;
    this.rel = 0;
    this.sp = 0;
    this.needAt = 0;
    this.budget = MAX_VALUES;
  }

  /**
   * Continues the message that starts at `buf[start]`, whose bytes up to `end` are available (the same bytes as
   * before, and more). Returns its length once complete (and is then ready for the next message), or
   * {@link NEED_MORE} with `needAt` set. Throws {@link ScanError} for bytes that are not Thrift.
   */
  scan(buf: Buffer, start: number, end: number): number {
    if (!this.inBody && !this.readHead(buf, start, end)) return NEED_MORE;
    return this.compact ? this.compactBody(buf, start, end) : this.binaryBody(buf, start, end);
  }

  /** The head is short (the name is skipped, not read): it is read whole, again from the start until it fits. */
  private readHead(buf: Buffer, start: number, end: number): boolean {
    this.work++;
    const s = this.head.reset(buf, start, end);
    try {
      const head = readHead(s);
      this.inBody = true;
      this.compact = head.compact;
      this.rel = head.bodyAt - start;
      this.kind[0] = K_STRUCT;
      this.depth[0] = 0;
      this.sp = 1;
      this.op = FIELD;
      return true;
    } catch (err) {
      if (err !== TRUNCATED) throw err;
      this.needAt = s.needAt - start;
      return false;
    } finally {
      s.reset(EMPTY, 0, 0);
    }
  }

  /** The message struct is complete at `p`: returns its length and gets ready for the next message. */
  private finish(p: number, start: number, steps: number): number {
    this.work += steps;
    const total = p - start;
    this.reset();
    return total;
  }

  /** Keeps the place at `p`, waiting for `need` more bytes from there. */
  private stop(p: number, start: number, need: number, steps: number): number {
    this.work += steps;
    this.rel = p - start;
    this.needAt = this.rel + need;
    return NEED_MORE;
  }

  // The two walkers below keep their state in locals while they run (this is the hot path of every unframed
  // message) and store it back when the bytes run out. A value that is done climbs the stack: a struct reads its
  // next field, a list its next element, a map the value of its pair or its next key; a list or map that is done
  // is a value done for what holds it.

  /** Reads as `skipBinaryStruct` (wire.ts) does. */
  private binaryBody(buf: Buffer, start: number, end: number): number {
    const { kind, depth, t1, t2, left, half } = this;
    let p = start + this.rel;
    let op = this.op;
    let vtype = this.vtype;
    let vdepth = this.vdepth;
    let skipLen = this.skipLen;
    let kt = this.kt; // a map's key type, or a list's element type
    let vt = this.vt;
    let sp = this.sp;
    let budget = this.budget;
    let steps = 0;
    let need = 0;
    walk: for (;;) {
      steps++;
      let valueDone = false;
      switch (op) {
        case FIELD: {
          if (p >= end) {
            need = 1;
            break walk;
          }
          const type = buf[p++]!;
          if (type === TType.STOP) {
            if (--sp === 0) return this.finish(p, start, steps);
            valueDone = true;
            break;
          }
          if (--budget < 0) throw tooManyValues();
          // Fast path: a fixed-width or string field whose bytes are all there is skipped in one step.
          const width = binaryWidth(type);
          if (width > 0 && p + 2 + width <= end) {
            p += 2 + width;
            break;
          }
          if (type === TType.STRING && p + 6 <= end) {
            const length = readI32(buf, p + 2);
            if (length >= 0 && p + 6 + length <= end) {
              p += 6 + length;
              break;
            }
          }
          vtype = type;
          vdepth = depth[sp - 1]!;
          op = FIELD_ID;
          break;
        }
        case FIELD_ID:
          if (p + 2 > end) {
            need = 2;
            break walk;
          }
          p += 2;
          op = VALUE;
          break;
        case VALUE: {
          const width = binaryWidth(vtype);
          if (width > 0) {
            if (p + width > end) {
              need = width;
              break walk;
            }
            p += width;
            valueDone = true;
            break;
          }
          switch (vtype) {
            case TType.STRING:
              op = STR_LEN;
              break;
            case TType.STRUCT:
              if (vdepth + 1 >= MAX_DEPTH) throw new ScanError(`struct nesting deeper than ${MAX_DEPTH}`);
              kind[sp] = K_STRUCT;
              depth[sp++] = vdepth + 1;
              op = FIELD;
              break;
            case TType.MAP:
              op = MAP_KT;
              break;
            case TType.SET:
            case TType.LIST:
              op = LIST_ET;
              break;
            default:
              throw new ScanError(`unknown binary type ${vtype}`);
          }
          break;
        }
        case SKIP:
          if (p + skipLen > end) {
            need = skipLen;
            break walk;
          }
          p += skipLen;
          valueDone = true;
          break;
        case STR_LEN:
          if (p + 4 > end) {
            need = 4;
            break walk;
          }
          skipLen = size(readI32(buf, p), 'string length');
          p += 4;
          op = SKIP;
          break;
        case MAP_KT:
        case LIST_ET:
          if (p >= end) {
            need = 1;
            break walk;
          }
          kt = buf[p++]!;
          op = op === MAP_KT ? MAP_VT : LIST_N;
          break;
        case MAP_VT:
          if (p >= end) {
            need = 1;
            break walk;
          }
          vt = buf[p++]!;
          op = MAP_N;
          break;
        case MAP_N: {
          if (p + 4 > end) {
            need = 4;
            break walk;
          }
          const n = size(readI32(buf, p), 'map size');
          p += 4;
          if (n === 0) {
            valueDone = true; // some writers leave the types of an empty map unset
            break;
          }
          checkDepth(vdepth);
          const kw = binaryWidth(kt);
          const vw = binaryWidth(vt);
          if (kw < 0 || vw < 0) throw new ScanError(`bad map types ${kt}/${vt}`);
          if (kw > 0 && vw > 0) {
            skipLen = n * (kw + vw);
            op = SKIP;
            break;
          }
          if ((budget -= 2 * n) < 0) throw tooManyValues();
          kind[sp] = K_MAP;
          depth[sp] = ++vdepth;
          t1[sp] = vtype = kt;
          t2[sp] = vt;
          left[sp] = n - 1;
          half[sp++] = 0;
          op = VALUE;
          break;
        }
        case LIST_N: {
          if (p + 4 > end) {
            need = 4;
            break walk;
          }
          const n = size(readI32(buf, p), 'list size');
          p += 4;
          if (n === 0) {
            valueDone = true;
            break;
          }
          checkDepth(vdepth);
          const ew = binaryWidth(kt);
          if (ew < 0) throw new ScanError(`bad element type ${kt}`);
          if (ew > 0) {
            skipLen = n * ew;
            op = SKIP;
            break;
          }
          if ((budget -= n) < 0) throw tooManyValues();
          kind[sp] = K_LIST;
          depth[sp] = ++vdepth;
          t1[sp] = vtype = kt;
          left[sp++] = n - 1;
          op = VALUE;
          break;
        }
        default:
          throw new Error(`thrift binary scanner in state ${op}`);
      }
      while (valueDone) {
        const i = sp - 1;
        const k = kind[i];
        if (k === K_STRUCT) {
          op = FIELD;
          break;
        }
        if (k === K_MAP && half[i] === 0) {
          half[i] = 1;
          vtype = t2[i]!;
        } else if (left[i]! > 0) {
          left[i]!--;
          half[i] = 0;
          vtype = t1[i]!;
        } else {
          sp--; // the list or map is done
          continue;
        }
        vdepth = depth[i]!;
        op = VALUE;
        break;
      }
    }
    this.op = op;
    this.vtype = vtype;
    this.vdepth = vdepth;
    this.skipLen = skipLen;
    this.kt = kt;
    this.vt = vt;
    this.sp = sp;
    this.budget = budget;
    return this.stop(p, start, need, steps);
  }

  /** Reads as `skipCompactStruct` (wire.ts) does. */
  private compactBody(buf: Buffer, start: number, end: number): number {
    const { kind, depth, t1, t2, left, half } = this;
    let p = start + this.rel;
    let op = this.op;
    let vtype = this.vtype;
    let vdepth = this.vdepth;
    let skipLen = this.skipLen;
    let kt = this.kt; // a list's element type
    let vfor = this.vfor;
    let vcount = this.vcount;
    let vacc = this.vacc;
    let sp = this.sp;
    let budget = this.budget;
    let steps = 0;
    let need = 0;
    walk: for (;;) {
      steps++;
      let valueDone = false;
      switch (op) {
        case FIELD: {
          if (p >= end) {
            need = 1;
            break walk;
          }
          const header = buf[p++]!;
          if (header === CType.STOP) {
            if (--sp === 0) return this.finish(p, start, steps);
            valueDone = true;
            break;
          }
          if (--budget < 0) throw tooManyValues();
          vtype = header & 0x0f;
          vdepth = depth[sp - 1]!;
          if (header >>> 4 === 0) {
            // A zero delta: the field id follows as a zigzag varint.
            vfor = V_FIELD_ID;
            vcount = 0;
            op = VARINT;
          } else if (vtype === CType.I32 || vtype === CType.I16 || vtype === CType.I64) {
            // Fast path: an integer field whose varint is all there is skipped in one step.
            let q = p;
            while (q < end && q - p < 10 && (buf[q]! & 0x80) !== 0) q++;
            if (q < end && q - p < 10) {
              p = q + 1;
            } else {
              vfor = V_VALUE;
              vcount = 0;
              op = VARINT;
            }
          } else if (vtype === CType.BOOL_TRUE || vtype === CType.BOOL_FALSE) {
            op = FIELD; // a bool field carries its value in the type nibble: no payload
          } else if (vtype === CType.STOP) {
            throw new ScanError('field header with type 0');
          } else {
            op = VALUE;
          }
          break;
        }
        case FIELD_TYPE:
          // A bool field carries its value in the type nibble: no payload.
          if (vtype === CType.BOOL_TRUE || vtype === CType.BOOL_FALSE) op = FIELD;
          else if (vtype === CType.STOP) throw new ScanError('field header with type 0');
          else op = VALUE;
          break;
        case VARINT: {
          if (p >= end) {
            need = 1;
            break walk;
          }
          const b = buf[p++]!;
          const i = vcount++;
          if (vfor >= V_STR_LEN) {
            vacc = i === 0 ? b & 0x7f : vacc | ((b & 0x7f) << (7 * i));
            if ((b & 0x80) !== 0) {
              if (i === 4) throw new ScanError('varint32 longer than 5 bytes');
              break;
            }
            const value = vacc | 0;
            if (vfor === V_STR_LEN) {
              skipLen = size(value, 'string length');
              op = SKIP;
            } else if (vfor === V_MAP_N) {
              const n = size(value, 'map size');
              if (n === 0) {
                valueDone = true; // an empty map has no type byte
                break;
              }
              checkDepth(vdepth);
              skipLen = n; // the pair count, until the types byte says how wide a pair is
              op = MAP_TYPES;
            } else {
              skipLen = size(value, 'list size');
              op = LIST_SIZE;
            }
            break;
          }
          if ((b & 0x80) !== 0) {
            if (i === 9) throw new ScanError('varint longer than 10 bytes');
            break;
          }
          if (vfor === V_FIELD_ID) op = FIELD_TYPE;
          else valueDone = true;
          break;
        }
        case VALUE: {
          const width = compactWidth(vtype);
          if (width > 0) {
            if (p + width > end) {
              need = width;
              break walk;
            }
            p += width;
            valueDone = true;
            break;
          }
          switch (vtype) {
            case CType.I16:
            case CType.I32:
            case CType.I64:
              vfor = V_VALUE;
              vcount = 0;
              op = VARINT;
              break;
            case CType.BINARY:
              vfor = V_STR_LEN;
              vcount = 0;
              op = VARINT;
              break;
            case CType.STRUCT:
              if (vdepth + 1 >= MAX_DEPTH) throw new ScanError(`struct nesting deeper than ${MAX_DEPTH}`);
              kind[sp] = K_STRUCT;
              depth[sp++] = vdepth + 1;
              op = FIELD;
              break;
            case CType.MAP:
              vfor = V_MAP_N;
              vcount = 0;
              op = VARINT;
              break;
            case CType.SET:
            case CType.LIST:
              op = LIST_HEAD;
              break;
            default:
              throw new ScanError(`unknown compact type ${vtype}`);
          }
          break;
        }
        case SKIP:
          if (p + skipLen > end) {
            need = skipLen;
            break walk;
          }
          p += skipLen;
          valueDone = true;
          break;
        case MAP_TYPES: {
          if (p >= end) {
            need = 1;
            break walk;
          }
          const types = buf[p++]!;
          const mkt = types >>> 4;
          const mvt = types & 0x0f;
          const kw = compactWidth(mkt);
          const vw = compactWidth(mvt);
          if (kw < 0 || vw < 0) throw new ScanError(`bad map types ${mkt}/${mvt}`);
          if (kw > 0 && vw > 0) {
            skipLen *= kw + vw;
            op = SKIP;
            break;
          }
          if ((budget -= 2 * skipLen) < 0) throw tooManyValues();
          kind[sp] = K_MAP;
          depth[sp] = ++vdepth;
          t1[sp] = vtype = mkt;
          t2[sp] = mvt;
          left[sp] = skipLen - 1;
          half[sp++] = 0;
          op = VALUE;
          break;
        }
        case LIST_HEAD: {
          // Short form: size in the high nibble; 15 there means the size follows as a varint.
          if (p >= end) {
            need = 1;
            break walk;
          }
          const header = buf[p++]!;
          kt = header & 0x0f;
          skipLen = header >>> 4;
          if (skipLen === 15) {
            vfor = V_LIST_N;
            vcount = 0;
            op = VARINT;
          } else {
            op = LIST_SIZE;
          }
          break;
        }
        case LIST_SIZE: {
          // The element count is in skipLen, the element type in kt.
          const n = skipLen;
          if (n === 0) {
            valueDone = true;
            break;
          }
          checkDepth(vdepth);
          const ew = compactWidth(kt);
          if (ew < 0) throw new ScanError(`bad element type ${kt}`);
          if (ew > 0) {
            skipLen = n * ew;
            op = SKIP;
            break;
          }
          if (isCompactInteger(kt)) {
            vcount = 0; // skipLen is the count of varints
            op = VARINTS;
            break;
          }
          if ((budget -= n) < 0) throw tooManyValues();
          kind[sp] = K_LIST;
          depth[sp] = ++vdepth;
          t1[sp] = vtype = kt;
          left[sp++] = n - 1;
          op = VALUE;
          break;
        }
        case VARINTS: {
          // As wire.ts `skipVarints`, resumed inside a varint if the bytes ran out there.
          scanVarints(buf, p, end, skipLen, vcount);
          steps += varintScan.pos - p;
          p = varintScan.pos;
          skipLen = varintScan.left;
          vcount = varintScan.run;
          if (skipLen > 0) {
            need = 1;
            break walk;
          }
          valueDone = true;
          break;
        }
        default:
          throw new Error(`thrift compact scanner in state ${op}`);
      }
      while (valueDone) {
        const i = sp - 1;
        const k = kind[i];
        if (k === K_STRUCT) {
          op = FIELD;
          break;
        }
        if (k === K_MAP && half[i] === 0) {
          half[i] = 1;
          vtype = t2[i]!;
        } else if (left[i]! > 0) {
          left[i]!--;
          half[i] = 0;
          vtype = t1[i]!;
        } else {
          sp--; // the list or map is done
          continue;
        }
        vdepth = depth[i]!;
        op = VALUE;
        break;
      }
    }
    this.op = op;
    this.vtype = vtype;
    this.vdepth = vdepth;
    this.skipLen = skipLen;
    this.kt = kt;
    this.vfor = vfor;
    this.vcount = vcount;
    this.vacc = vacc;
    this.sp = sp;
    this.budget = budget;
    return this.stop(p, start, need, steps);
  }
}

const EMPTY = Buffer.alloc(0);

function size(value: number, what: string): number {
  if (value < 0) throw new ScanError(`negative ${what} ${value}`);
  return value;
}

function checkDepth(depth: number): void {
  if (depth + 1 >= MAX_DEPTH) throw new ScanError(`container nesting deeper than ${MAX_DEPTH}`);
}

function readI32(buf: Buffer, at: number): number {
  return (buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!;
}
