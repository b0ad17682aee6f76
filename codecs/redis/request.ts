/**
 * Requests: a command as an array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), or an inline command (a line
 * of space-separated words, as telnet users type). The decoder records where each argument's bytes are; the
 * frame is a view of the bytes received (an inline command is re-encoded as an array once, so that upstreams only
 * ever see arrays). Metadata (`command`, `key`) is read on demand.
 */
import { CodecError, type Frame, type Metadata, type MessageType } from '../../src/codec.js';
import { commandSpec, UNKNOWN, type CommandSpec } from './commands.js';
import { ARRAY, BULK, CR, encodeCommand, findCrlf, INCOMPLETE, LF, MAX_LINE, parseInteger } from './resp.js';

/** How many recent command names {@link RedisRequest.spec} matches bytes against before it makes a string. */
const RECENT_NAMES = 8;
const recentNames: Array<{ name: string; spec: CommandSpec | undefined } | undefined> = new Array(RECENT_NAMES);
let recentNext = 0;

/** Most arguments a command may have (Redis accepts more; a proxy has no use for such commands). */
export const MAX_ARGS = 1024 * 1024;

/** Why a command's keys cannot be found. */
export const KEY_ERROR_ARITY = -2;
export const KEY_ERROR_NUMKEYS = -3;
export const NO_KEY = -1;

/**
 * One command. `offs` holds, per argument, the offset of its first byte in `raw` and its length
 * (`[start0, len0, start1, len1, …]`). It is its own {@link Metadata}.
 */
export class RedisRequest implements Frame, Metadata {
  readonly type: MessageType = 'request';
  readonly requestId = 0;
  private nameCache: string | undefined;
  private specCache: CommandSpec | undefined;

  constructor(
    readonly raw: Buffer,
    readonly offs: readonly number[],
  ) {}

  get metadata(): Metadata {
    return this;
  }

  get argc(): number {
    return this.offs.length >> 1;
  }

  argStart(i: number): number {
    return this.offs[i * 2]!;
  }

  argLength(i: number): number {
    return this.offs[i * 2 + 1]!;
  }

  argEnd(i: number): number {
    return this.offs[i * 2]! + this.offs[i * 2 + 1]!;
  }

  /** Argument `i` as a view of `raw`. */
  arg(i: number): Buffer {
    const s = this.offs[i * 2]!;
    return this.raw.subarray(s, s + this.offs[i * 2 + 1]!);
  }

  /** Argument `i` as text (UTF-8). */
  argString(i: number): string {
    const s = this.offs[i * 2]!;
    return this.raw.toString('utf8', s, s + this.offs[i * 2 + 1]!);
  }

  /** Argument `i` lower-cased (ASCII), for names and options. */
  argLower(i: number): string {
    const s = this.offs[i * 2]!;
    const e = s + this.offs[i * 2 + 1]!;
    const raw = this.raw;
    for (let j = s; j < e; j++) {
      const b = raw[j]!;
      if (b >= 0x41 && b <= 0x5a) return raw.toString('latin1', s, e).toLowerCase();
    }
    return raw.toString('latin1', s, e);
  }

  /** Whether argument `i` equals `word` (lower-case ASCII), ignoring case. */
  argIs(i: number, word: string): boolean {
    const s = this.offs[i * 2]!;
    if (this.offs[i * 2 + 1] !== word.length) return false;
    const raw = this.raw;
    for (let j = 0; j < word.length; j++) {
      if ((raw[s + j]! | 0x20) !== word.charCodeAt(j)) return false;
    }
    return true;
  }

  /** The lower-case command name. */
  get command(): string {
    return (this.nameCache ??= this.argLower(0));
  }

  /** The command's spec (subcommand-specific for containers such as OBJECT, XINFO, CLIENT). */
  get spec(): CommandSpec {
    if (this.specCache !== undefined) return this.specCache;
    let spec: CommandSpec | undefined;
    let known = false;
    if (this.nameCache === undefined && this.argc > 0) {
      // The names seen last, compared as bytes: a pipeline of GETs makes no name string and no table lookup each.
      for (let i = 0; i < RECENT_NAMES; i++) {
        const r = recentNames[i];
        if (r !== undefined && this.argIs(0, r.name)) {
          this.nameCache = r.name;
          spec = r.spec;
          known = true;
          break;
        }
      }
    }
    if (!known) {
      spec = commandSpec(this.command);
      recentNames[recentNext] = { name: this.command, spec };
      recentNext = (recentNext + 1) % RECENT_NAMES;
    }
    if (spec === undefined) spec = UNKNOWN;
    else if (spec.sub !== undefined && this.argc >= 2) spec = spec.sub.get(this.argLower(1)) ?? spec;
    return (this.specCache = spec);
  }

  /**
   * The index of the argument that routes the command (its first key): NO_KEY for keyless commands,
   * KEY_ERROR_ARITY when the command is too short to have its key, KEY_ERROR_NUMKEYS when a key count is not a
   * number that fits.
   */
  firstKeyIndex(): number {
    const spec = this.spec;
    const argc = this.argc;
    switch (spec.kind) {
      case 'keys':
      case 'mget':
      case 'mset':
      case 'sum':
        return spec.first < argc ? spec.first : KEY_ERROR_ARITY;
      case 'numkeys': {
        if (spec.first >= argc) return KEY_ERROR_ARITY;
        const n = this.integerArg(spec.first);
        if (!(n >= 0) || spec.first + n >= argc) return Number.isNaN(n) || n < 0 ? KEY_ERROR_NUMKEYS : KEY_ERROR_ARITY;
        if (spec.last > 0) return spec.last;
        return n === 0 ? NO_KEY : spec.first + 1;
      }
      case 'streams': {
        const s = this.streamsIndex();
        return s < 0 ? KEY_ERROR_ARITY : s + 1;
      }
      default:
        return NO_KEY;
    }
  }

  /** Every key's argument index, in order (assumes `firstKeyIndex()` found a key). */
  keyIndices(): number[] {
    const spec = this.spec;
    const argc = this.argc;
    const out: number[] = [];
    switch (spec.kind) {
      case 'keys':
      case 'mget':
      case 'mset':
      case 'sum': {
        const last = spec.last < 0 ? argc + spec.last : Math.min(spec.last, argc - 1);
        for (let i = spec.first; i <= last; i += spec.step) out.push(i);
        if (spec.storeOption) {
          for (let i = spec.first + 1; i + 1 < argc; i++) {
            if (this.argIs(i, 'store') || this.argIs(i, 'storedist')) out.push(++i);
          }
        }
        return out;
      }
      case 'numkeys': {
        if (spec.last > 0) out.push(spec.last);
        const n = this.integerArg(spec.first);
        for (let i = 0; i < n; i++) out.push(spec.first + 1 + i);
        return out;
      }
      case 'streams': {
        const s = this.streamsIndex();
        const n = (argc - s - 1) >> 1;
        for (let i = 0; i < n; i++) out.push(s + 1 + i);
        return out;
      }
      default:
        return out;
    }
  }

  /** For XREAD/XREADGROUP: whether a BLOCK option comes before STREAMS. */
  hasBlockOption(): boolean {
    const s = this.streamsIndex();
    const end = s < 0 ? this.argc : s;
    for (let i = 1; i < end; i++) if (this.argIs(i, 'block')) return true;
    return false;
  }

  /** The index of `STREAMS` when it is followed by an even, non-zero number of arguments; else -1. */
  private streamsIndex(): number {
    const argc = this.argc;
    for (let i = 1; i < argc; i++) {
      if (this.argIs(i, 'streams')) {
        const rest = argc - i - 1;
        return rest > 0 && rest % 2 === 0 ? i : -1;
      }
    }
    return -1;
  }

  /** Argument `i` as a non-negative integer, NaN when it is not one. */
  integerArg(i: number): number {
    const s = this.offs[i * 2]!;
    return parseInteger(this.raw, s, s + this.offs[i * 2 + 1]!);
  }

  // Metadata

  get(key: string): string | undefined {
    switch (key) {
      case 'command':
        return this.argc > 0 ? this.command : undefined;
      case 'key': {
        const i = this.firstKeyIndex();
        return i > 0 ? this.argString(i) : undefined;
      }
      default: {
        // Keys are case-insensitive: callers pass lower case, and anything else is looked up again lower-cased.
        const lower = key.toLowerCase();
        return lower !== key ? this.get(lower) : undefined;
      }
    }
  }

  entries(): Iterable<[string, string]> {
    const out: Array<[string, string]> = [];
    for (const k of ['command', 'key']) {
      const v = this.get(k);
      if (v !== undefined) out.push([k, v]);
    }
    return out;
  }
}

/**
 * Cuts a downstream byte stream into commands. Resumable: an incomplete command keeps its bytes in one growing
 * buffer and scanning resumes at the first argument not yet complete, so a large command arriving in many chunks
 * costs one copy per byte and no rescans.
 */
export class RequestDecoder {
  /** Bytes of an incomplete command (a copy), valid up to `pendingLen`. */
  private pending: Buffer | null = null;
  private pendingLen = 0;
  /** Resume state within `pending`: where the next item starts, how many arguments are still missing. */
  private resumeAt = 0;
  private argsLeft = -1;
  private offs: number[] = [];
  /** The words of the inline command just scanned. */
  private inlineWords: Buffer[] = [];

  constructor(private readonly maxFrameSize: number) {}

  get buffered(): number {
    return this.pendingLen;
  }

  decode(chunk: Buffer, sink: (frame: Frame) => void): void {
    let off = 0;
    if (this.pending !== null) {
      const before = this.pendingLen;
      this.append(chunk);
      const end = this.scan(this.pending, 0, this.resumeAt, this.pendingLen);
      if (end === INCOMPLETE) {
        this.checkSize(this.pendingLen);
        return;
      }
      const frame = this.take(this.pending, 0, end);
      this.pending = null;
      this.pendingLen = 0;
      off = end - before;
      if (frame !== undefined) sink(frame);
    }
    const len = chunk.length;
    while (off < len) {
      this.argsLeft = -1;
      this.offs = [];
      const end = this.scan(chunk, off, off, len);
      if (end === INCOMPLETE) {
        this.checkSize(len - off);
        // Keep the tail; offsets recorded so far are relative to the command's start, so they stay valid.
        this.resumeAt -= off;
        this.pending = null;
        this.pendingLen = 0;
        this.append(chunk.subarray(off));
        return;
      }
      const frame = this.take(chunk, off, end);
      off = end;
      if (frame !== undefined) sink(frame);
    }
  }

  /** A frame of `buf[start, end)`; undefined for an empty command (Redis ignores those). */
  private take(buf: Buffer, start: number, end: number): RedisRequest | undefined {
    const offs = this.offs;
    this.offs = [];
    this.argsLeft = -1;
    this.resumeAt = 0;
    if (offs.length === 0) return undefined;
    if (buf[start] !== ARRAY) {
      const words = this.inlineWords;
      this.inlineWords = [];
      return inlineFrame(words);
    }
    return new RedisRequest(buf.subarray(start, end), offs);
  }

  /**
   * Scans the command starting at `start`, resuming at `pos`; returns its end or INCOMPLETE (then `resumeAt` is
   * where to resume). Argument offsets go to `this.offs`, relative to `start`.
   */
  private scan(buf: Buffer, start: number, pos: number, end: number): number {
    if (this.argsLeft < 0) {
      if (pos >= end) return this.incomplete(pos);
      if (buf[start] !== ARRAY) return this.scanInline(buf, start, end);
      const cr = findLine(buf, pos + 1, end, 'mbulk count');
      if (cr === INCOMPLETE) return this.incomplete(pos);
      const n = parseInteger(buf, pos + 1, cr);
      if (Number.isNaN(n) || n > MAX_ARGS) throw new CodecError('bad_multibulk', 'invalid multibulk length');
      pos = cr + 2;
      if (n <= 0) return pos; // `*0` and `*-1` are empty commands: no reply, as Redis does
      if (n * 6 > this.maxFrameSize) {
        throw new CodecError('frame_too_large', `a command of ${n} arguments exceeds the frame limit of ${this.maxFrameSize} bytes`);
      }
      this.argsLeft = n;
    }
    const offs = this.offs;
    while (this.argsLeft > 0) {
      if (pos >= end) return this.incomplete(pos);
      if (buf[pos] !== BULK) throw new CodecError('bad_bulk', `expected '$', got '${printable(buf[pos]!)}'`);
      const cr = findLine(buf, pos + 1, end, 'bulk count');
      if (cr === INCOMPLETE) return this.incomplete(pos);
      const len = parseInteger(buf, pos + 1, cr);
      if (Number.isNaN(len) || len < 0) throw new CodecError('bad_bulk', 'invalid bulk length');
      if (len > this.maxFrameSize) {
        throw new CodecError('frame_too_large', `a bulk string of ${len} bytes exceeds the frame limit of ${this.maxFrameSize} bytes`);
      }
      const data = cr + 2;
      if (data + len + 2 > end) return this.incomplete(pos);
      if (buf[data + len] !== CR || buf[data + len + 1] !== LF) throw new CodecError('bad_bulk', 'bulk string not followed by CRLF');
      offs.push(data - start, len);
      pos = data + len + 2;
      this.argsLeft--;
    }
    // Each part was within the limit; the whole command must be too, whether it came in one chunk or many.
    if (pos - start > this.maxFrameSize) {
      throw new CodecError('frame_too_large', `a command of ${pos - start} bytes exceeds the frame limit of ${this.maxFrameSize} bytes`);
    }
    return pos;
  }

  /** An inline command: one line, ended by LF (an optional CR before it is dropped). */
  private scanInline(buf: Buffer, start: number, end: number): number {
    const lf = buf.indexOf(LF, start);
    if (lf < 0 || lf >= end) {
      if (end - start > MAX_LINE) throw new CodecError('bad_inline', 'too big inline request');
      return this.incomplete(start);
    }
    if (lf - start > MAX_LINE) throw new CodecError('bad_inline', 'too big inline request');
    const lineEnd = lf > start && buf[lf - 1] === CR ? lf - 1 : lf;
    if (lf + 1 - start > this.maxFrameSize) {
      throw new CodecError('frame_too_large', `an inline command of ${lf + 1 - start} bytes exceeds the frame limit of ${this.maxFrameSize} bytes`);
    }
    const words = splitArgs(buf, start, lineEnd);
    if (words === undefined) throw new CodecError('bad_inline', 'unbalanced quotes in request');
    // The frame forwarded is the command re-encoded as an array: that must fit the limit too.
    if (encodedLength(words) > this.maxFrameSize) {
      throw new CodecError('frame_too_large', `inline command re-encoded as ${encodedLength(words)} bytes exceeds the frame limit of ${this.maxFrameSize} bytes`);
    }
    // The words are re-encoded as an array by take(); `offs` only says whether there was a command.
    this.inlineWords = words;
    if (words.length > 0) this.offs.push(0, 0);
    return lf + 1;
  }

  private incomplete(pos: number): number {
    this.resumeAt = pos;
    return INCOMPLETE;
  }

  private checkSize(n: number): void {
    if (n > this.maxFrameSize) {
      throw new CodecError('frame_too_large', `a command of more than ${this.maxFrameSize} bytes exceeds the frame limit`);
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

/** The length of `words` encoded as an array of bulk strings (what {@link inlineFrame} builds). */
function encodedLength(words: readonly Buffer[]): number {
  let n = 1 + String(words.length).length + 2;
  for (const w of words) n += 1 + String(w.length).length + 2 + w.length + 2;
  return n;
}

/** An inline command re-encoded as an array of bulk strings. */
function inlineFrame(words: readonly Buffer[]): RedisRequest {
  const raw = encodeCommand(words);
  const offs: number[] = [];
  let at = 1 + String(words.length).length + 2;
  for (const w of words) {
    at += 1 + String(w.length).length + 2;
    offs.push(at, w.length);
    at += w.length + 2;
  }
  return new RedisRequest(raw, offs);
}

/** The CR of the line starting at `from`; INCOMPLETE if it has not all arrived; too long lines are errors. */
function findLine(buf: Buffer, from: number, end: number, what: string): number {
  const cr = findCrlf(buf, from, Math.min(end, from + MAX_LINE + 2));
  if (cr === INCOMPLETE && end - from > MAX_LINE) throw new CodecError('bad_line', `too big ${what} string`);
  return cr;
}

function printable(b: number): string {
  return b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
}

const HEX = /^[0-9a-fA-F]$/;

/**
 * Splits an inline command as Redis' sdssplitargs does: words separated by spaces; "double quotes" with \n \r \t
 * \b \a \\ \" and \xHH escapes; 'single quotes' with \' only. A closing quote must be followed by a space or the
 * end. Undefined for unbalanced quotes.
 */
export function splitArgs(buf: Buffer, start: number, end: number): Buffer[] | undefined {
  const out: Buffer[] = [];
  let i = start;
  const isSpace = (b: number) => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0x0b || b === 0x0c;
  for (;;) {
    while (i < end && isSpace(buf[i]!)) i++;
    if (i >= end) return out;
    const bytes: number[] = [];
    let inDouble = false;
    let inSingle = false;
    for (;;) {
      if (inDouble) {
        if (i >= end) return undefined;
        const b = buf[i]!;
        if (b === 0x5c && i + 3 < end && buf[i + 1] === 0x78 && HEX.test(String.fromCharCode(buf[i + 2]!)) && HEX.test(String.fromCharCode(buf[i + 3]!))) {
          bytes.push(parseInt(String.fromCharCode(buf[i + 2]!, buf[i + 3]!), 16));
          i += 4;
          continue;
        }
        if (b === 0x5c && i + 1 < end) {
          const e = buf[i + 1]!;
          bytes.push(e === 0x6e ? 0x0a : e === 0x72 ? 0x0d : e === 0x74 ? 0x09 : e === 0x62 ? 0x08 : e === 0x61 ? 0x07 : e);
          i += 2;
          continue;
        }
        if (b === 0x22) {
          if (i + 1 < end && !isSpace(buf[i + 1]!)) return undefined;
          i++;
          break;
        }
        bytes.push(b);
        i++;
      } else if (inSingle) {
        if (i >= end) return undefined;
        const b = buf[i]!;
        if (b === 0x5c && i + 1 < end && buf[i + 1] === 0x27) {
          bytes.push(0x27);
          i += 2;
          continue;
        }
        if (b === 0x27) {
          if (i + 1 < end && !isSpace(buf[i + 1]!)) return undefined;
          i++;
          break;
        }
        bytes.push(b);
        i++;
      } else {
        if (i >= end) break;
        const b = buf[i]!;
        if (isSpace(b)) break;
        if (b === 0x22) inDouble = true;
        else if (b === 0x27) inSingle = true;
        else bytes.push(b);
        i++;
      }
    }
    out.push(Buffer.from(bytes));
  }
}
