/**
 * Replies: any RESP2 or RESP3 value. The scanner only finds where a value ends (nested aggregates are walked with
 * an explicit stack of remaining element counts, never by recursion); the frame is a view of the bytes received.
 *
 * RESP3 attributes (`|`) are part of the value that follows them. RESP3 pushes (`>`) are out-of-band data, not
 * answers: they are surfaced as frames of type `heartbeat` that expect no reply, which the FIFO matcher of an
 * upstream connection skips. Streamed strings and aggregates (`$?`, `*?`) are not supported (`unsupported_type`):
 * Redis never sends them.
 */
import { CodecError, EMPTY_METADATA, type Frame, type MessageType, type Metadata, type ResponseStatus } from '../../src/codec.js';
import {
  ARRAY,
  ATTRIBUTE,
  BIG_NUMBER,
  BLOB_ERROR,
  BOOLEAN,
  BULK,
  CR,
  DOUBLE,
  ERROR,
  findCrlf,
  INCOMPLETE,
  INTEGER,
  LF,
  MAP,
  MAX_LINE,
  NULL3,
  parseInteger,
  PUSH,
  SET,
  SIMPLE,
  VERBATIM,
} from './resp.js';

/** Deepest nesting accepted (Redis replies nest a few levels; anything deeper is garbage or an attack). */
export const MAX_DEPTH = 128;

/** Error codes that say the server cannot serve now (a failure of the upstream, not of the command). */
const SERVER_ERRORS = new Set(['LOADING', 'BUSY', 'MASTERDOWN', 'TRYAGAIN', 'CLUSTERDOWN', 'MOVED', 'ASK', 'NOREPLICAS', 'READONLY', 'OOM']);

export class RedisReply implements Frame {
  readonly requestId = 0;
  readonly expectsReply = false;

  constructor(
    readonly raw: Buffer,
    readonly type: MessageType,
    readonly status: ResponseStatus,
  ) {}

  get metadata(): Metadata {
    return EMPTY_METADATA;
  }

  /** The RESP type byte of the value (after any attribute). */
  get valueType(): number {
    return this.raw[valueStart(this.raw)]!;
  }

  /** For an error reply, its text without the leading `-` (or the blob of a `!` error). */
  get errorText(): string | undefined {
    return errorTextOf(this.raw);
  }
}

/** Where the value itself starts in a complete frame (skips RESP3 attributes). */
export function valueStart(raw: Buffer): number {
  let at = 0;
  while (raw[at] === ATTRIBUTE) {
    const cr = raw.indexOf(CR, at);
    const pairs = parseInteger(raw, at + 1, cr);
    at = cr + 2;
    for (let i = 0; i < pairs * 2; i++) at = skipValue(raw, at);
  }
  return at;
}

/** The text of an error value (`-ERR x` → `ERR x`, `!5\r\nERR x` → `ERR x`); undefined if not an error. */
export function errorTextOf(raw: Buffer, start = 0): string | undefined {
  const at = start === 0 ? valueStart(raw) : start;
  const t = raw[at];
  if (t === ERROR) return raw.toString('utf8', at + 1, raw.indexOf(CR, at));
  if (t === BLOB_ERROR) {
    const cr = raw.indexOf(CR, at);
    const len = parseInteger(raw, at + 1, cr);
    return raw.toString('utf8', cr + 2, cr + 2 + len);
  }
  return undefined;
}

function statusOf(raw: Buffer, start: number, end: number): ResponseStatus {
  const t = raw[start];
  if (t !== ERROR && t !== BLOB_ERROR) return 'ok';
  const text = errorTextOf(raw.subarray(start, end)) ?? '';
  const space = text.indexOf(' ');
  return SERVER_ERRORS.has(space < 0 ? text : text.slice(0, space)) ? 'error' : 'business_exception';
}

/**
 * The end of the complete value at `pos` in `raw` (which must hold all of it). Throws on malformed input, like the
 * resumable scanner.
 */
export function skipValue(raw: Buffer, pos: number): number {
  const s = new ReplyScanner(Number.MAX_SAFE_INTEGER);
  const end = s.scan(raw, pos, raw.length);
  if (end === INCOMPLETE) throw new CodecError('truncated', 'truncated RESP value');
  return end;
}

/**
 * Finds where one value ends, resumably: `scan` returns the end offset, or INCOMPLETE with its state kept so that
 * the next call (with more bytes appended, same start) continues at the first item not yet complete.
 */
export class ReplyScanner {
  /** Remaining element counts of the aggregates open at `resumeAt`. */
  private readonly stack: number[] = [];
  /** Where to continue after INCOMPLETE. */
  resumeAt = -1;

  constructor(private readonly maxFrameSize: number) {}

  reset(): void {
    this.stack.length = 0;
    this.resumeAt = -1;
  }

  /** Scans the value at `start` in `buf[.., end)`; resumes where the previous INCOMPLETE stopped, if any. */
  scan(buf: Buffer, start: number, end: number): number {
    let pos = this.resumeAt >= 0 ? this.resumeAt : start;
    const stack = this.stack;
    for (;;) {
      if (pos >= end) {
        // Between items of an aggregate: what it holds so far counts against the limit too.
        if (end - start > this.maxFrameSize) throw this.tooLarge(end - start);
        return this.incomplete(pos);
      }
      const type = buf[pos]!;
      const lineStart = pos + 1;
      // Text lines (simple strings, errors, numbers) may be long; length lines may not.
      const text = type === SIMPLE || type === ERROR || type === DOUBLE || type === BIG_NUMBER;
      const cr = findCrlf(buf, lineStart, text ? end : Math.min(end, lineStart + MAX_LINE + 2));
      if (cr === INCOMPLETE) {
        if (!text && end - lineStart > MAX_LINE) throw new CodecError('bad_line', 'RESP header line too long');
        if (end - start > this.maxFrameSize) throw this.tooLarge(end - start);
        return this.incomplete(pos);
      }
      let next = cr + 2;
      let children = 0;
      switch (type) {
        case SIMPLE:
        case ERROR:
        case DOUBLE:
        case BIG_NUMBER:
          break;
        case INTEGER:
          if (Number.isNaN(parseInteger(buf, lineStart, cr))) throw new CodecError('bad_integer', 'invalid RESP integer');
          break;
        case NULL3:
          if (cr !== lineStart) throw new CodecError('bad_null', 'RESP3 null with content');
          break;
        case BOOLEAN:
          if (cr !== lineStart + 1 || (buf[lineStart] !== 0x74 && buf[lineStart] !== 0x66)) throw new CodecError('bad_boolean', 'invalid RESP3 boolean');
          break;
        case BULK:
        case BLOB_ERROR:
        case VERBATIM: {
          const len = this.length(buf, lineStart, cr, type === BULK);
          if (len >= 0) {
            if (len > this.maxFrameSize) throw this.tooLarge(len);
            if (next + len + 2 > end) {
              if (next + len + 2 - start > this.maxFrameSize) throw this.tooLarge(next + len + 2 - start);
              return this.incomplete(pos);
            }
            if (buf[next + len] !== CR || buf[next + len + 1] !== LF) throw new CodecError('bad_bulk', 'bulk string not followed by CRLF');
            next += len + 2;
          }
          break;
        }
        case ARRAY:
        case SET:
        case PUSH:
          children = this.length(buf, lineStart, cr, type === ARRAY);
          break;
        case MAP:
          children = this.length(buf, lineStart, cr, false) * 2;
          break;
        case ATTRIBUTE:
          // The attribute's pairs, then the value it annotates.
          children = this.length(buf, lineStart, cr, false) * 2 + 1;
          break;
        default:
          throw new CodecError('bad_type', `unknown RESP type byte 0x${type.toString(16).padStart(2, '0')}`);
      }
      pos = next;
      if (children > 0) {
        if (children * 3 > this.maxFrameSize) throw this.tooLarge(children * 3);
        if (stack.length >= MAX_DEPTH) throw new CodecError('too_deep', `RESP value nested deeper than ${MAX_DEPTH}`);
        stack.push(children);
        continue;
      }
      // One element complete: close every aggregate it completes.
      for (;;) {
        if (stack.length === 0) {
          this.resumeAt = -1;
          // Each item was within the limit; the whole value must be too, whether it came in one chunk or many.
          if (pos - start > this.maxFrameSize) throw this.tooLarge(pos - start);
          return pos;
        }
        const top = stack.length - 1;
        if (--stack[top]! > 0) break;
        stack.pop();
      }
    }
  }

  /** A length/count line: -1 (null) where allowed, else >= 0. */
  private length(buf: Buffer, start: number, cr: number, nullable: boolean): number {
    if (buf[start] === 0x3f) throw new CodecError('unsupported_type', 'streamed RESP3 values are not supported');
    const n = parseInteger(buf, start, cr);
    if (Number.isNaN(n) || n < -1 || (n === -1 && !nullable)) throw new CodecError('bad_length', 'invalid RESP length');
    return n;
  }

  private incomplete(pos: number): number {
    this.resumeAt = pos;
    return INCOMPLETE;
  }

  private tooLarge(n: number): CodecError {
    return new CodecError('frame_too_large', `a reply of ${n} bytes exceeds the frame limit of ${this.maxFrameSize} bytes`);
  }
}

/** Cuts an upstream byte stream into replies (resumable, one copy per byte of an incomplete reply). */
export class ReplyDecoder {
  private readonly scanner: ReplyScanner;
  private pending: Buffer | null = null;
  private pendingLen = 0;

  constructor(maxFrameSize: number) {
    this.scanner = new ReplyScanner(maxFrameSize);
  }

  get buffered(): number {
    return this.pendingLen;
  }

  decode(chunk: Buffer, sink: (frame: Frame) => void): void {
    let off = 0;
    if (this.pending !== null) {
      const before = this.pendingLen;
      this.append(chunk);
      const end = this.scanner.scan(this.pending, 0, this.pendingLen);
      if (end === INCOMPLETE) return;
      const raw = this.pending.subarray(0, end);
      this.pending = null;
      this.pendingLen = 0;
      off = end - before;
      sink(replyFrame(raw));
    }
    const len = chunk.length;
    while (off < len) {
      const end = this.scanner.scan(chunk, off, len);
      if (end === INCOMPLETE) {
        // Resume offsets become relative to the copy.
        this.scanner.resumeAt -= off;
        this.append(chunk.subarray(off));
        return;
      }
      const raw = chunk.subarray(off, end);
      off = end;
      sink(replyFrame(raw));
    }
  }

  private append(bytes: Buffer): void {
    const need = this.pendingLen + bytes.length;
    if (this.pending === null || this.pending.length < need) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.pending === null ? 256 : this.pending.length * 2));
      if (this.pending !== null) this.pending.copy(grown, 0, 0, this.pendingLen);
      this.pending = grown;
    }
    bytes.copy(this.pending, this.pendingLen);
    this.pendingLen = need;
  }
}

function replyFrame(raw: Buffer): RedisReply {
  const t = raw[0];
  if (t === PUSH) return new RedisReply(raw, 'heartbeat', 'ok');
  const start = t === ATTRIBUTE ? valueStart(raw) : 0;
  return new RedisReply(raw, 'response', statusOf(raw, start, raw.length));
}
