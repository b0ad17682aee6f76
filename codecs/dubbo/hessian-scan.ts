/**
 * A hand-written hessian2 scanner: skips values without building them, and reads the few strings routing needs.
 *
 * Why not hessian.js: its decoder can only decode whole values, so reaching a Dubbo request's attachments (which
 * come after every argument) would allocate every argument — strings, lists, maps, objects with their class
 * definitions — just to throw them away. Routing reads a handful of strings; this scanner walks the argument bytes
 * by grammar, remembering only what the grammar needs to keep walking (the field count of each class definition)
 * and allocates nothing but the strings it is asked to read.
 *
 * Grammar (http://hessian.caucho.com/doc/hessian-serialization.html):
 *
 *   value   ::= null | binary | boolean | class-def value | date | double | int | list | long | map | object
 *             | ref | string
 *   binary  ::= x41 b1 b0 <data> binary | x42 b1 b0 <data> | [x20-x2f] <data> | [x34-x37] b0 <data>
 *   boolean ::= 'T' | 'F'
 *   class-def ::= 'C' string int string*
 *   date    ::= x4a b7..b0 | x4b b3..b0
 *   double  ::= 'D' b7..b0 | x5b | x5c | x5d b0 | x5e b1 b0 | x5f b3..b0
 *   int     ::= 'I' b3..b0 | [x80-xbf] | [xc0-xcf] b0 | [xd0-xd7] b1 b0
 *   list    ::= x55 type value* 'Z' | 'V' type int value* | x57 value* 'Z' | x58 int value*
 *             | [x70-x77] type value* | [x78-x7f] value*
 *   long    ::= 'L' b7..b0 | [xd8-xef] | [xf0-xff] b0 | [x38-x3f] b1 b0 | x59 b3..b0
 *   map     ::= 'M' type (value value)* 'Z' | 'H' (value value)* 'Z'
 *   null    ::= 'N'
 *   object  ::= 'O' int value* | [x60-x6f] value*
 *   ref     ::= x51 int
 *   string  ::= x52 b1 b0 <utf8> string | 'S' b1 b0 <utf8> | [x00-x1f] <utf8> | [x30-x33] b0 <utf8>
 *   type    ::= string | int
 *
 * String lengths count UTF-16 units, not bytes: Java (and hessian.js) write each unit as 1-3 bytes, so a
 * surrogate pair is two 3-byte sequences (CESU-8).
 *
 * Strings the proxy reads (routing and authorization see them) must decode to the same text in every provider.
 * Java's Hessian2Input and hessian.js decode leniently: they look at the lead byte only, so an overlong `C1 A1`
 * is `a` to them, and ignore the top bits of continuation bytes; Node's UTF-8 decoder would make both U+FFFD. So a
 * read string must be the one form Java writes: shortest sequences, real continuation bytes, surrogates only in
 * high-low pairs, no 4-byte sequences (Java and hessian.js refuse them; other decoders count them as one unit or
 * two, so the bytes after them would be read differently). Anything else is a ScanError (the request's
 * `bad_body`). Skipped strings are walked by lead byte, as those providers walk them; 4-byte leads are refused.
 */

/** Malformed or truncated hessian2; the codec turns it into a `bad_body` CodecError. */
export class ScanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScanError';
  }
}

/**
 * Nesting limit for containers. The scanner recurses per level; a hostile body of nested one-element lists would
 * otherwise exhaust the stack. Real payloads stay far below it.
 */
const MAX_DEPTH = 1000;

const EMPTY = Buffer.alloc(0);

export function isStringTag(tag: number): boolean {
  return tag < 0x20 || (tag >= 0x30 && tag <= 0x33) || tag === 0x52 || tag === 0x53;
}

export function isIntTag(tag: number): boolean {
  return (tag >= 0x80 && tag <= 0xd7) || tag === 0x49;
}

/**
 * A cursor over one hessian2 stream (a Dubbo body). Reuse it with {@link reset}: class definitions are scoped to
 * the stream, so resetting forgets them.
 */
export class HessianScanner {
  buf: Buffer = EMPTY;
  pos = 0;
  end = 0;
  /** Field count of each class definition seen so far, by definition index (instances name only the index). */
  private readonly classes: number[] = [];
  private depth = 0;

  reset(buf: Buffer, pos: number, end: number): this {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
    this.classes.length = 0;
    this.depth = 0;
    return this;
  }

  /** The tag at the cursor, or -1 at the end of the stream. */
  peek(): number {
    return this.pos < this.end ? this.buf[this.pos] : -1;
  }

  /** Moves past one whole value (including a class definition that precedes it). */
  skipValue(): void {
    if (this.pos >= this.end) throw truncated();
    const tag = this.buf[this.pos];
    if (isStringTag(tag)) {
      this.skipString();
      return;
    }
    if (tag >= 0x80) {
      // compact int: 1, 2, 3 bytes; compact long: 1, 2 bytes
      this.advance(tag < 0xc0 ? 1 : tag < 0xd0 ? 2 : tag < 0xd8 ? 3 : tag < 0xf0 ? 1 : 2);
      return;
    }
    if (tag < 0x40) {
      // 0x20-0x2f and 0x34-0x37 are binary, 0x38-0x3f a 3-byte long (strings were handled above)
      if (tag >= 0x38) this.advance(3);
      else this.skipBinary();
      return;
    }
    if (tag >= 0x60) {
      this.enter();
      this.pos++;
      if (tag < 0x70) {
        this.skipFields(tag - 0x60);
      } else if (tag < 0x78) {
        this.skipType();
        this.skipValues(tag - 0x70);
      } else {
        this.skipValues(tag - 0x78);
      }
      this.depth--;
      return;
    }
    switch (tag) {
      case 0x41: // 'A' binary, non-final chunk
      case 0x42: // 'B' binary, final chunk
        this.skipBinary();
        return;
      case 0x43: // 'C' class definition, then the value (an object) it describes
        this.enter();
        this.skipClassDefinition();
        this.skipValue();
        this.depth--;
        return;
      case 0x44: // 'D' double
      case 0x4a: // 'J' date, ms
      case 0x4c: // 'L' long
        this.advance(9);
        return;
      case 0x46: // 'F'
      case 0x54: // 'T'
      case 0x4e: // 'N'
      case 0x5b: // double 0.0
      case 0x5c: // double 1.0
        this.advance(1);
        return;
      case 0x49: // 'I' int
      case 0x4b: // 'K' date, minutes
      case 0x59: // 'Y' long as int32
      case 0x5f: // double as int32 millis
        this.advance(5);
        return;
      case 0x5d: // double as byte
        this.advance(2);
        return;
      case 0x5e: // double as short
        this.advance(3);
        return;
      case 0x48: // 'H' untyped map
        this.enter();
        this.pos++;
        this.skipUntilEnd(2);
        this.depth--;
        return;
      case 0x4d: // 'M' typed map
        this.enter();
        this.pos++;
        this.skipType();
        this.skipUntilEnd(2);
        this.depth--;
        return;
      case 0x4f: // 'O' object, definition index as int
        this.enter();
        this.pos++;
        this.skipFields(this.readInt());
        this.depth--;
        return;
      case 0x51: // 'Q' ref
        this.pos++;
        this.readInt();
        return;
      case 0x55: // typed variable-length list
        this.enter();
        this.pos++;
        this.skipType();
        this.skipUntilEnd(1);
        this.depth--;
        return;
      case 0x56: // 'V' typed fixed-length list
        this.enter();
        this.pos++;
        this.skipType();
        this.skipValues(this.readLength());
        this.depth--;
        return;
      case 0x57: // untyped variable-length list
        this.enter();
        this.pos++;
        this.skipUntilEnd(1);
        this.depth--;
        return;
      case 0x58: // 'X' untyped fixed-length list
        this.enter();
        this.pos++;
        this.skipValues(this.readLength());
        this.depth--;
        return;
      default:
        // 0x40, 0x45, 0x47, 0x50 are reserved; 'Z' only ends a list or map
        throw new ScanError(`unexpected hessian tag 0x${tag.toString(16)} at ${this.pos}`);
    }
  }

  /** A list/map type: a string (added to the type table) or an int reference into it. */
  skipType(): void {
    if (isStringTag(this.peek())) this.skipString();
    else this.readInt();
  }

  /** Reads an int (any of its four forms). */
  readInt(): number {
    const buf = this.buf;
    const p = this.pos;
    if (p >= this.end) throw truncated();
    const tag = buf[p];
    if (tag >= 0x80 && tag <= 0xbf) {
      this.pos = p + 1;
      return tag - 0x90;
    }
    if (tag >= 0xc0 && tag <= 0xcf) {
      this.need(2);
      this.pos = p + 2;
      return ((tag - 0xc8) << 8) + buf[p + 1];
    }
    if (tag >= 0xd0 && tag <= 0xd7) {
      this.need(3);
      this.pos = p + 3;
      return ((tag - 0xd4) << 16) + (buf[p + 1] << 8) + buf[p + 2];
    }
    if (tag === 0x49) {
      this.need(5);
      this.pos = p + 5;
      return buf.readInt32BE(p + 1);
    }
    throw new ScanError(`expected an int, got tag 0x${tag.toString(16)} at ${p}`);
  }

  /** Reads a string (any form, chunked or not); `N` reads as null. */
  readStringOrNull(): string | null {
    const buf = this.buf;
    if (this.peek() === 0x4e) {
      this.pos++;
      return null;
    }
    let out: string | undefined;
    for (;;) {
      if (this.pos >= this.end) throw truncated();
      const tag = buf[this.pos];
      let units: number;
      let final = true;
      if (tag < 0x20) {
        units = tag;
        this.pos++;
      } else if (tag >= 0x30 && tag <= 0x33) {
        this.need(2);
        units = ((tag - 0x30) << 8) | buf[this.pos + 1];
        this.pos += 2;
      } else if (tag === 0x53 || tag === 0x52) {
        this.need(3);
        units = buf.readUInt16BE(this.pos + 1);
        this.pos += 3;
        final = tag === 0x53;
      } else {
        throw new ScanError(`expected a string, got tag 0x${tag.toString(16)} at ${this.pos}`);
      }
      const chunk = this.decodeUnits(units);
      out = out === undefined ? chunk : out + chunk;
      if (final) return out;
    }
  }

  private skipString(): void {
    const buf = this.buf;
    for (;;) {
      if (this.pos >= this.end) throw truncated();
      const tag = buf[this.pos];
      if (tag < 0x20) {
        this.pos++;
        this.skipUnits(tag);
        return;
      }
      if (tag >= 0x30 && tag <= 0x33) {
        this.need(2);
        const units = ((tag - 0x30) << 8) | buf[this.pos + 1];
        this.pos += 2;
        this.skipUnits(units);
        return;
      }
      if (tag === 0x53 || tag === 0x52) {
        this.need(3);
        const units = buf.readUInt16BE(this.pos + 1);
        this.pos += 3;
        this.skipUnits(units);
        if (tag === 0x53) return;
        continue; // 'R' is followed by the rest of the string
      }
      throw new ScanError(`expected a string, got tag 0x${tag.toString(16)} at ${this.pos}`);
    }
  }

  private skipBinary(): void {
    const buf = this.buf;
    for (;;) {
      if (this.pos >= this.end) throw truncated();
      const tag = buf[this.pos];
      if (tag >= 0x20 && tag <= 0x2f) {
        this.advance(1 + tag - 0x20);
        return;
      }
      if (tag >= 0x34 && tag <= 0x37) {
        this.need(2);
        this.advance(2 + (((tag - 0x34) << 8) | buf[this.pos + 1]));
        return;
      }
      if (tag === 0x41 || tag === 0x42) {
        this.need(3);
        this.advance(3 + buf.readUInt16BE(this.pos + 1));
        if (tag === 0x42) return;
        continue; // 'A' is followed by the rest of the binary
      }
      throw new ScanError(`expected binary data, got tag 0x${tag.toString(16)} at ${this.pos}`);
    }
  }

  /** 'C' type-name field-count field-name*: only the count matters to skip the instances. */
  private skipClassDefinition(): void {
    this.pos++;
    this.skipString();
    const fields = this.readLength();
    for (let i = 0; i < fields; i++) this.skipString();
    this.classes.push(fields);
  }

  private skipFields(definition: number): void {
    const fields = this.classes[definition];
    if (fields === undefined) throw new ScanError(`object refers to undefined class definition #${definition}`);
    this.skipValues(fields);
  }

  private skipValues(n: number): void {
    for (let i = 0; i < n; i++) this.skipValue();
  }

  /** Values (`perEntry` at a time: 1 for lists, 2 for maps) up to and including the 'Z' terminator. */
  private skipUntilEnd(perEntry: 1 | 2): void {
    for (;;) {
      if (this.pos >= this.end) throw truncated();
      if (this.buf[this.pos] === 0x5a) {
        this.pos++;
        return;
      }
      this.skipValue();
      if (perEntry === 2) this.skipValue();
    }
  }

  private readLength(): number {
    const n = this.readInt();
    if (n < 0) throw new ScanError(`negative length ${n}`);
    return n;
  }

  /** Moves past `units` UTF-16 units of UTF-8/CESU-8 data. */
  private skipUnits(units: number): void {
    const buf = this.buf;
    const end = this.end;
    let p = this.pos;
    let n = units;
    while (n > 0) {
      if (p >= end) throw truncated();
      const b = buf[p];
      if (b < 0x80) {
        p++;
        n--;
      } else if (b < 0xc0) {
        throw badUtf8(p);
      } else if (b < 0xe0) {
        p += 2;
        n--;
      } else if (b < 0xf0) {
        p += 3;
        n--;
      } else {
        throw badUtf8(p);
      }
    }
    if (p > end) throw truncated();
    this.pos = p;
  }

  /**
   * Reads `units` UTF-16 units of CESU-8 as a JS string, accepting only the canonical form (see the file comment).
   * The ASCII loop is the hot path; validation costs only on the bytes of other characters.
   */
  private decodeUnits(units: number): string {
    const start = this.pos;
    const buf = this.buf;
    const end = this.end;
    let p = start;
    let n = units;
    let ascii = true;
    let surrogates = false;
    while (n > 0) {
      if (p >= end) throw truncated();
      const b = buf[p];
      if (b < 0x80) {
        p++;
        n--;
        continue;
      }
      ascii = false;
      if (b < 0xc2) {
        throw new ScanError(b < 0xc0 ? `invalid UTF-8 lead byte at ${p}` : `overlong UTF-8 sequence at ${p}`);
      }
      if (b < 0xe0) {
        if (p + 2 > end) throw truncated();
        if (!isContinuation(buf[p + 1])) throw badContinuation(p);
        p += 2;
        n--;
        continue;
      }
      if (b >= 0xf0) throw new ScanError(`4-byte UTF-8 sequence at ${p} (hessian writes surrogate pairs)`);
      if (p + 3 > end) throw truncated();
      const b1 = buf[p + 1];
      if (!isContinuation(b1) || !isContinuation(buf[p + 2])) throw badContinuation(p);
      if (b === 0xe0 && b1 < 0xa0) throw new ScanError(`overlong UTF-8 sequence at ${p}`);
      if (b === 0xed && b1 >= 0xa0) {
        // A surrogate: only a high one (ED A0-AF) directly followed by a low one (ED B0-BF), both in this chunk.
        if (
          b1 >= 0xb0 ||
          n < 2 ||
          p + 6 > end ||
          buf[p + 3] !== 0xed ||
          (buf[p + 4] & 0xf0) !== 0xb0 ||
          !isContinuation(buf[p + 5])
        ) {
          throw new ScanError(`unpaired UTF-16 surrogate at ${p}`);
        }
        surrogates = true;
        p += 6;
        n -= 2;
        continue;
      }
      p += 3;
      n--;
    }
    this.pos = p;
    if (ascii) return latin1(buf, start, p);
    // Valid UTF-8 without surrogates decodes exactly; pairs need the unit-by-unit path.
    if (!surrogates) return buf.toString('utf8', start, p);
    return decodeCesu8(buf, start, p);
  }

  private enter(): void {
    if (++this.depth > MAX_DEPTH) throw new ScanError(`values nested deeper than ${MAX_DEPTH}`);
  }

  private need(n: number): void {
    if (this.pos + n > this.end) throw truncated();
  }

  private advance(n: number): void {
    this.pos += n;
    if (this.pos > this.end) throw truncated();
  }
}

/**
 * ASCII bytes as a string. Buffer's own latin1Slice skips toString's encoding dispatch, which profiling showed as a
 * sixth of the time spent reading attachments; toString is the fallback should a runtime lack it.
 */
const latin1: (buf: Buffer, start: number, end: number) => string =
  typeof (Buffer.prototype as Partial<Latin1Slicer>).latin1Slice === 'function'
    ? (buf, start, end) => (buf as Buffer & Latin1Slicer).latin1Slice(start, end)
    : (buf, start, end) => buf.toString('latin1', start, end);

interface Latin1Slicer {
  latin1Slice(start: number, end: number): string;
}

/** The slow path: unit-by-unit decoding for strings that carry CESU-8 surrogate pairs (already validated). */
function decodeCesu8(buf: Buffer, start: number, end: number): string {
  const units: number[] = [];
  let p = start;
  while (p < end) {
    const b = buf[p];
    if (b < 0x80) {
      units.push(b);
      p++;
    } else if (b < 0xe0) {
      units.push(((b & 0x1f) << 6) | (buf[p + 1] & 0x3f));
      p += 2;
    } else {
      units.push(((b & 0x0f) << 12) | ((buf[p + 1] & 0x3f) << 6) | (buf[p + 2] & 0x3f));
      p += 3;
    }
  }
  let out = '';
  // fromCharCode.apply takes its arguments on the stack: stay well under any engine limit
  for (let i = 0; i < units.length; i += 8192) out += String.fromCharCode.apply(null, units.slice(i, i + 8192));
  return out;
}

function truncated(): ScanError {
  return new ScanError('hessian value runs past the end of the body');
}

function badUtf8(at: number): ScanError {
  return new ScanError(`invalid UTF-8 lead byte at ${at}`);
}

function isContinuation(b: number): boolean {
  return (b & 0xc0) === 0x80;
}

function badContinuation(at: number): ScanError {
  return new ScanError(`invalid UTF-8 continuation byte in the sequence at ${at}`);
}
