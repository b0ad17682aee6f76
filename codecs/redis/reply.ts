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

/** Why the decoder replaced a reply by an error of its own (the reply itself was skipped). */
export type RefusedReply = 'too_large' | 'too_deep';

export class RedisReply implements Frame {
  readonly requestId = 0;
  readonly expectsReply = false;

  constructor(
    readonly raw: Buffer,
    readonly type: MessageType,
    readonly status: ResponseStatus,
    /** Set when this frame stands in for a reply over the limits, which was skipped. */
    readonly refused?: RefusedReply,
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

/**
 * Cuts an upstream byte stream into replies (resumable, one copy per byte of an incomplete reply).
 *
 * A reply over the frame limit or nested deeper than MAX_DEPTH is not a reason to drop the connection that every
 * client shares: the decoder emits an error reply in its place (so that its command, and only it, fails) and then
 * skips the reply's bytes as they arrive, holding none of them, so that the stream keeps its place. Only bytes that
 * are not RESP at all end the connection.
 */
export class ReplyDecoder {
  private readonly scanner: ReplyScanner;
  private pending: Buffer | null = null;
  private pendingLen = 0;
  /** Set while the rest of a refused reply is being skipped. */
  private skipper: ReplySkipper | undefined;

  constructor(private readonly maxFrameSize: number) {
    this.scanner = new ReplyScanner(maxFrameSize);
  }

  get buffered(): number {
    return this.pendingLen;
  }

  decode(chunk: Buffer, sink: (frame: Frame) => void): void {
    let off = 0;
    if (this.skipper !== undefined) {
      const end = this.skipper.feed(chunk, 0);
      if (end === INCOMPLETE) return;
      this.skipper = undefined;
      off = end;
    } else if (this.pending !== null) {
      const before = this.pendingLen;
      this.append(chunk);
      let end: number;
      try {
        end = this.scanner.scan(this.pending, 0, this.pendingLen);
      } catch (err) {
        const refused = refusal(err);
        const held = this.pending.subarray(0, this.pendingLen);
        this.pending = null;
        this.pendingLen = 0;
        const skipped = this.refuse(held, 0, refused, sink);
        if (skipped === INCOMPLETE) return;
        end = skipped;
        off = end - before;
        this.decodeRest(chunk, off, sink);
        return;
      }
      if (end === INCOMPLETE) return;
      const raw = this.pending.subarray(0, end);
      this.pending = null;
      this.pendingLen = 0;
      off = end - before;
      sink(replyFrame(raw));
    }
    this.decodeRest(chunk, off, sink);
  }

  private decodeRest(chunk: Buffer, from: number, sink: (frame: Frame) => void): void {
    let off = from;
    const len = chunk.length;
    while (off < len) {
      let end: number;
      try {
        end = this.scanner.scan(chunk, off, len);
      } catch (err) {
        end = this.refuse(chunk, off, refusal(err), sink);
        if (end === INCOMPLETE) return;
        off = end;
        continue;
      }
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

  /**
   * The value at `buf[start]` is over a limit: its command gets an error instead (a push gets nothing, it answers
   * no command), and the value is skipped from its start. Returns where it ends in `buf`, or INCOMPLETE when the
   * skipper goes on with the next chunks.
   */
  private refuse(buf: Buffer, start: number, why: RefusedReply, sink: (frame: Frame) => void): number {
    this.scanner.reset();
    const skipper = new ReplySkipper();
    const end = skipper.feed(buf, start);
    if (end === INCOMPLETE) this.skipper = skipper;
    if (buf[start] !== PUSH) {
      const text =
        why === 'too_large'
          ? `ERR upstream reply too large: over the proxy's limit of ${this.maxFrameSize} bytes`
          : `ERR upstream reply too deep: nested deeper than the proxy's limit of ${MAX_DEPTH}`;
      sink(new RedisReply(Buffer.from(`-${text}\r\n`, 'latin1'), 'response', 'business_exception', why));
    }
    return end;
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

/** Over a limit (a reply to skip), or malformed (rethrown: the connection cannot keep its place). */
function refusal(err: unknown): RefusedReply {
  if (err instanceof CodecError && err.reason === 'frame_too_large') return 'too_large';
  if (err instanceof CodecError && err.reason === 'too_deep') return 'too_deep';
  throw err;
}

/**
 * Lengths the skipper accepts: Redis' own largest bulk string is 512 MB by default (`proto-max-bulk-len`); anything
 * beyond 4 GiB is not a reply but a broken or hostile peer, and ends the connection rather than stall it forever.
 */
const MAX_SKIP_LENGTH = 2 ** 32;
/** Aggregates open at once while skipping (8 bytes each): a peer nesting deeper ends the connection. */
export const MAX_SKIP_DEPTH = 65_536;

const S_TYPE = 0;
const S_LINE = 1;
const S_TEXT = 2;
const S_BULK = 3;

/**
 * Finds where one RESP value ends without keeping its bytes: a state machine fed chunk by chunk, whose memory is a
 * header line (at most MAX_LINE) and one count per open aggregate. Used for replies the proxy will not pass on.
 */
export class ReplySkipper {
  private state = S_TYPE;
  private type = 0;
  private readonly line: Buffer = Buffer.allocUnsafe(MAX_LINE + 2);
  private lineLen = 0;
  private bulkLeft = 0;
  private readonly stack: number[] = [];

  /** Consumes `buf` from `from`; the offset just after the value, or INCOMPLETE when all of `buf` was taken. */
  feed(buf: Buffer, from: number): number {
    let pos = from;
    const end = buf.length;
    while (pos < end) {
      switch (this.state) {
        case S_TYPE: {
          const t = buf[pos++]!;
          this.type = t;
          if (t === SIMPLE || t === ERROR || t === DOUBLE || t === BIG_NUMBER) this.state = S_TEXT;
          else if (t === INTEGER || t === NULL3 || t === BOOLEAN || t === BULK || t === BLOB_ERROR || t === VERBATIM || t === ARRAY || t === SET || t === PUSH || t === MAP || t === ATTRIBUTE) {
            this.state = S_LINE;
            this.lineLen = 0;
          } else throw new CodecError('bad_type', `unknown RESP type byte 0x${t.toString(16).padStart(2, '0')}`);
          break;
        }
        case S_TEXT: {
          // The content of a text line does not matter: only where it ends.
          const lf = buf.indexOf(LF, pos);
          if (lf < 0) return INCOMPLETE;
          pos = lf + 1;
          if (this.complete()) return pos;
          break;
        }
        case S_LINE: {
          const lf = buf.indexOf(LF, pos);
          const stop = lf < 0 ? end : lf + 1;
          if (this.lineLen + (stop - pos) > this.line.length) throw new CodecError('bad_line', 'RESP header line too long');
          buf.copy(this.line, this.lineLen, pos, stop);
          this.lineLen += stop - pos;
          pos = stop;
          if (lf < 0) return INCOMPLETE;
          if (this.header()) return pos;
          break;
        }
        case S_BULK: {
          const take = Math.min(this.bulkLeft, end - pos);
          this.bulkLeft -= take;
          pos += take;
          if (this.bulkLeft > 0) return INCOMPLETE;
          if (this.complete()) return pos;
          break;
        }
      }
    }
    return INCOMPLETE;
  }

  /** A complete header line (`<digits>\r\n` after the type byte): true when it completes the whole value. */
  private header(): boolean {
    const line = this.line;
    const cr = this.lineLen - 2;
    if (cr < 0 || line[cr] !== CR) throw new CodecError('bad_line', 'a LF not preceded by CR');
    const t = this.type;
    if (t === INTEGER || t === NULL3 || t === BOOLEAN) return this.complete();
    const n = parseInteger(line, 0, cr);
    if (Number.isNaN(n) || n < -1 || n > MAX_SKIP_LENGTH) throw new CodecError('bad_length', 'invalid RESP length');
    if (t === BULK || t === BLOB_ERROR || t === VERBATIM) {
      if (n < 0) return this.complete();
      this.bulkLeft = n + 2;
      this.state = S_BULK;
      return false;
    }
    const children = t === MAP ? n * 2 : t === ATTRIBUTE ? n * 2 + 1 : n;
    if (children <= 0) return this.complete();
    if (this.stack.length >= MAX_SKIP_DEPTH) throw new CodecError('too_deep', `RESP value nested deeper than ${MAX_SKIP_DEPTH}`);
    this.stack.push(children);
    this.state = S_TYPE;
    return false;
  }

  /** One element ended: closes the aggregates it completes; true when the whole value has ended. */
  private complete(): boolean {
    this.state = S_TYPE;
    const stack = this.stack;
    while (stack.length > 0) {
      const top = stack.length - 1;
      if (--stack[top]! > 0) return false;
      stack.pop();
    }
    return true;
  }
}

function replyFrame(raw: Buffer): RedisReply {
  const t = raw[0];
  if (t === PUSH) return new RedisReply(raw, 'heartbeat', 'ok');
  const start = t === ATTRIBUTE ? valueStart(raw) : 0;
  return new RedisReply(raw, 'response', statusOf(raw, start, raw.length));
}
