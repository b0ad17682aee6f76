/**
 * RESP (REdis Serialization Protocol) primitives shared by the request and reply decoders and by the proxy: line and
 * integer scanning, the type bytes of RESP2 and RESP3, and writers for the few values the proxy composes itself
 * (errors, simple strings, integers, bulk strings, array headers, nulls).
 *
 * Everything works on byte offsets into a Buffer; nothing is converted to strings unless a caller asks.
 */
import { CodecError } from '../../src/codec.js';

export const CR = 13;
export const LF = 10;

/** RESP2 type bytes. */
export const SIMPLE = 0x2b; // +
export const ERROR = 0x2d; // -
export const INTEGER = 0x3a; // :
export const BULK = 0x24; // $
export const ARRAY = 0x2a; // *
/** RESP3 type bytes. */
export const NULL3 = 0x5f; // _
export const DOUBLE = 0x2c; // ,
export const BOOLEAN = 0x23; // #
export const BLOB_ERROR = 0x21; // !
export const VERBATIM = 0x3d; // =
export const BIG_NUMBER = 0x28; // (
export const MAP = 0x25; // %
export const SET = 0x7e; // ~
export const ATTRIBUTE = 0x7c; // |
export const PUSH = 0x3e; // >

/** Redis' own limit for an inline command or a multibulk/bulk length line (PROTO_INLINE_MAX_SIZE). */
export const MAX_LINE = 64 * 1024;

/** Marks "not enough bytes yet" in scanner results. */
export const INCOMPLETE = -1;

/**
 * The offset of the CR of the first CRLF at or after `from` (before `end`), INCOMPLETE when no CRLF has arrived
 * yet. A CR followed by anything but LF is `bad_line`: RESP lines never hold a bare CR.
 */
export function findCrlf(buf: Buffer, from: number, end: number): number {
  const cr = buf.indexOf(CR, from);
  if (cr < 0 || cr >= end) return INCOMPLETE;
  if (cr + 1 >= end) return INCOMPLETE;
  if (buf[cr + 1] !== LF) throw new CodecError('bad_line', 'a CR not followed by LF');
  return cr;
}

/**
 * The signed decimal integer in `buf[start, end)`; NaN when it is empty, has a sign but no digits, anything but
 * digits, or more than 18 digits (RESP lengths and Redis integers fit in a signed 64-bit value; anything longer
 * is never a length the proxy can honour).
 */
export function parseInteger(buf: Buffer, start: number, end: number): number {
  let i = start;
  let negative = false;
  if (i < end && buf[i] === 0x2d) {
    negative = true;
    i++;
  }
  if (i >= end || end - i > 18) return Number.NaN;
  let n = 0;
  for (; i < end; i++) {
    const d = buf[i]! - 0x30;
    if (d < 0 || d > 9) return Number.NaN;
    n = n * 10 + d;
  }
  return negative ? -n : n;
}

// ---------------------------------------------------------------------------------------------------------------
// Writers

const CRLF_BYTES = Buffer.from('\r\n');
export const OK = Buffer.from('+OK\r\n');
export const PONG = Buffer.from('+PONG\r\n');
export const NULL_BULK = Buffer.from('$-1\r\n');
export const NULL_RESP3 = Buffer.from('_\r\n');
export const EMPTY_ARRAY = Buffer.from('*0\r\n');

/** Keeps an error or status text on one line, as RESP requires, and bounded. */
export function oneLine(text: string, max = 512): string {
  const flat = text.replace(/[\r\n]+/g, ' ');
  return flat.length > max ? `${flat.slice(0, max - 3)}...` : flat;
}

/** `-<text>\r\n`; `text` starts with the error code (`ERR …`, `NOAUTH …`). */
export function errorReply(text: string): Buffer {
  return Buffer.from(`-${oneLine(text)}\r\n`, 'utf8');
}

export function simpleReply(text: string): Buffer {
  return Buffer.from(`+${oneLine(text)}\r\n`, 'utf8');
}

export function integerReply(n: number | bigint): Buffer {
  return Buffer.from(`:${n}\r\n`, 'latin1');
}

/** A bulk string of `value` (or of `buf[start, end)` when given a Buffer). */
export function bulkReply(value: string | Buffer, start = 0, end?: number): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value.subarray(start, end ?? value.length);
  const head = Buffer.from(`$${bytes.length}\r\n`, 'latin1');
  return Buffer.concat([head, bytes, CRLF_BYTES], head.length + bytes.length + 2);
}

export function arrayHeader(n: number): Buffer {
  return Buffer.from(`*${n}\r\n`, 'latin1');
}

/** `%n` in RESP3 (a map of n pairs), `*2n` in RESP2 (a flat array of keys and values). */
export function mapHeader(pairs: number, resp3: boolean): Buffer {
  return Buffer.from(resp3 ? `%${pairs}\r\n` : `*${pairs * 2}\r\n`, 'latin1');
}

/** The null reply of the protocol version: `_` in RESP3, `$-1` in RESP2. */
export function nullReply(resp3: boolean): Buffer {
  return resp3 ? NULL_RESP3 : NULL_BULK;
}

/**
 * Writes a command (an array of bulk strings) from pieces: each piece is a Buffer, or a `[buffer, start, end]`
 * slice of one. One allocation for the whole command.
 */
export type Piece = Buffer | readonly [Buffer, number, number];

export function encodeCommand(pieces: readonly Piece[]): Buffer {
  let size = digits(pieces.length) + 3;
  for (const p of pieces) {
    const len = Buffer.isBuffer(p) ? p.length : p[2] - p[1];
    size += 1 + digits(len) + 2 + len + 2;
  }
  const out = Buffer.allocUnsafe(size);
  let at = writeHeader(out, 0, ARRAY, pieces.length);
  for (const p of pieces) {
    if (Buffer.isBuffer(p)) {
      at = writeHeader(out, at, BULK, p.length);
      at += p.copy(out, at);
    } else {
      at = writeHeader(out, at, BULK, p[2] - p[1]);
      at += p[0].copy(out, at, p[1], p[2]);
    }
    out[at++] = CR;
    out[at++] = LF;
  }
  return out;
}

/** Writes `<type><n>\r\n` at `at`; returns the offset after it. */
function writeHeader(out: Buffer, at: number, type: number, n: number): number {
  out[at++] = type;
  at += out.write(String(n), at, 'latin1');
  out[at++] = CR;
  out[at++] = LF;
  return at;
}

function digits(n: number): number {
  let d = 1;
  while (n >= 10) {
    n = Math.floor(n / 10);
    d++;
  }
  return d;
}
