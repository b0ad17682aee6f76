/**
 * The KV-RPC codec: a complete Waypost codec for the protocol described in wire.ts, written the way a user adds a
 * protocol — a module loaded with `waypost proxy --codec dist/examples/custom-codec/codec.js`, using nothing but the
 * public API. Inside this repository that is `../../src/index.js`; a codec outside it imports the package:
 *
 *     import { CodecError, type CodecFactory } from 'waypost';
 *
 * What it does, and why (each point is something the data plane relies on):
 *
 * - Framing without copies: a frame that lies whole in one chunk is a `subarray` of it; only a frame split across
 *   chunks is gathered in Waypost's `PartialFrame`, which grows with what arrives rather than reserving the size the
 *   header announces (a peer that announces 8 MiB and sends 10 bytes costs 10 bytes).
 * - Early rejection: bytes that cannot be KV-RPC are refused as soon as they are seen (the magic is checked byte by
 *   byte), and an oversize frame from its header alone, before any of its body is buffered.
 * - Lazy metadata: decode reads only the fixed header; the header section is parsed on the first `metadata.get`.
 * - Request ids patched in place; `copy` edits leave `frame.raw` alone; a mutation rebuilds only the header section.
 * - Local replies and heartbeat answers in the protocol's own format, with the id the client sent.
 *
 * The constants are repeated here rather than imported from wire.ts: a codec module should stand alone (the peers'
 * implementation in wire.ts is a separate, independent reading of the same spec).
 */
import {
  CodecError,
  PartialFrame,
  type CodecFactory,
  type CodecOptions,
  type CodecSession,
  type Frame,
  type FrameEdit,
  type KeyValue,
  type LocalReply,
  type MessageType,
  type Metadata,
  type RequestId,
  type ResponseStatus,
} from '../../src/index.js';

// ---- the wire format (see wire.ts for the full description) -----------------------------------------------------

const HEADER_LENGTH = 16;
const MAGIC_0 = 0x4b; // 'K'
const MAGIC_1 = 0x56; // 'V'
const VERSION = 1;
const FLAG_RESPONSE = 0x01;
const FLAG_ONEWAY = 0x02;
const FLAG_HEARTBEAT = 0x04;
const KNOWN_FLAGS = FLAG_RESPONSE | FLAG_ONEWAY | FLAG_HEARTBEAT;
const ID_AT = 4;
const STATUS_AT = 8;
const RESERVED_AT = 9;
const SECTION_LENGTH_AT = 10;
const BODY_LENGTH_AT = 12;
const MAX_SECTION = 0xffff;
const MAX_U32 = 0xffff_ffff;

/** Response status codes (wire.ts `Status`). */
export const KvStatus = {
  OK: 0,
  APP_ERROR: 1,
  BAD_REQUEST: 2,
  NOT_FOUND: 3,
  UNAVAILABLE: 4,
  TIMEOUT: 5,
  OVERLOADED: 6,
  ABORTED: 7,
  BAD_RESPONSE: 8,
  FORBIDDEN: 9,
} as const;

/** The status each kind of local reply answers with (a fault abort's own `code` wins when it fits in a byte). */
export function localReplyStatus(reply: LocalReply): number {
  switch (reply.kind) {
    case 'no_route':
      return KvStatus.NOT_FOUND;
    case 'no_healthy_upstream':
    case 'upstream_reset':
      return KvStatus.UNAVAILABLE;
    case 'timeout':
      return KvStatus.TIMEOUT;
    case 'over_limit':
      return KvStatus.OVERLOADED;
    case 'bad_response':
      return KvStatus.BAD_RESPONSE;
    case 'permission_denied':
      return KvStatus.FORBIDDEN;
    case 'bad_request':
      return KvStatus.BAD_REQUEST;
    case 'fault_abort': {
      const code = reply.code;
      // 0 would say "success": an abort must not look like one.
      return code !== undefined && Number.isInteger(code) && code > 0 && code <= 0xff ? code : KvStatus.ABORTED;
    }
    default:
      return KvStatus.UNAVAILABLE;
  }
}

/**
 * Checks the fixed header at `off` (16 bytes available) and returns the whole frame's length. Everything a frame
 * can be refused for is decided here, before a byte of its body is buffered.
 */
function frameLength(buf: Buffer, off: number, max: number): number {
  checkPrefix(buf, off, HEADER_LENGTH);
  if (buf[off + RESERVED_AT] !== 0) {
    throw new CodecError('bad_header', `kvrpc reserved byte is 0x${hex2(buf[off + RESERVED_AT]!)}, not 0`);
  }
  const total = HEADER_LENGTH + buf.readUInt16BE(off + SECTION_LENGTH_AT) + buf.readUInt32BE(off + BODY_LENGTH_AT);
  if (total > max) throw new CodecError('frame_too_large', `kvrpc frame of ${total} bytes exceeds the limit of ${max}`);
  return total;
}

/**
 * Rejects what cannot start a KV-RPC frame from the first bytes that arrived (`len` of them at `off`): a peer that
 * sends junk is closed at once instead of being waited on.
 */
function checkPrefix(buf: Buffer, off: number, len: number): void {
  if (len > 0 && buf[off] !== MAGIC_0) throw new CodecError('bad_magic', `not kvrpc: first byte 0x${hex2(buf[off]!)}`);
  if (len > 1 && buf[off + 1] !== MAGIC_1) {
    throw new CodecError('bad_magic', `not kvrpc: magic 0x${hex2(buf[off]!)}${hex2(buf[off + 1]!)}`);
  }
  if (len > 2 && buf[off + 2] !== VERSION) {
    throw new CodecError('unsupported_version', `kvrpc version ${buf[off + 2]} is not supported (only ${VERSION})`);
  }
  if (len > 3) {
    const flags = buf[off + 3]!;
    if ((flags & ~KNOWN_FLAGS) !== 0) throw new CodecError('bad_flags', `kvrpc flags 0x${hex2(flags)} has unknown bits`);
    if ((flags & FLAG_RESPONSE) !== 0 && (flags & FLAG_ONEWAY) !== 0) {
      throw new CodecError('bad_flags', 'kvrpc flags say both response and oneway');
    }
  }
}

// ---- frames ---------------------------------------------------------------------------------------------------------

/**
 * A decoded frame. It is its own {@link Metadata} (one allocation per frame); the header section is parsed on first
 * use and kept.
 */
export class KvFrame implements Frame, Metadata {
  readonly raw: Buffer;
  readonly type: MessageType;
  /** The id as received (kept after `encode` patched another one into `raw`). */
  readonly requestId: number;
  readonly status: ResponseStatus | undefined;
  readonly expectsReply: boolean | undefined;
  /** Where the header section ends and the body starts. */
  private readonly sectionEnd: number;
  private headers: Map<string, string> | undefined;
  private failure: CodecError | undefined;

  /** `raw` is exactly one frame whose fixed header has been checked. */
  constructor(raw: Buffer) {
    this.raw = raw;
    this.requestId = raw.readUInt32BE(ID_AT);
    this.sectionEnd = HEADER_LENGTH + raw.readUInt16BE(SECTION_LENGTH_AT);
    const flags = raw[3]!;
    if ((flags & FLAG_HEARTBEAT) !== 0) {
      this.type = 'heartbeat';
      this.expectsReply = (flags & (FLAG_RESPONSE | FLAG_ONEWAY)) === 0;
      this.status = (flags & FLAG_RESPONSE) !== 0 ? 'ok' : undefined;
    } else if ((flags & FLAG_RESPONSE) !== 0) {
      this.type = 'response';
      this.expectsReply = undefined;
      const status = raw[STATUS_AT]!;
      this.status = status === KvStatus.OK ? 'ok' : status === KvStatus.APP_ERROR ? 'business_exception' : 'error';
    } else {
      this.type = (flags & FLAG_ONEWAY) !== 0 ? 'oneway' : 'request';
      this.expectsReply = undefined;
      this.status = undefined;
    }
  }

  get metadata(): Metadata {
    return this;
  }

  get(key: string): string | undefined {
    const map = this.headerMap();
    const value = map.get(key);
    if (value !== undefined) return value;
    // Callers pass lower-case keys; tolerate others at the cost of a second lookup on a miss.
    const lower = key.toLowerCase();
    return lower === key ? undefined : map.get(lower);
  }

  entries(): Iterable<[string, string]> {
    return new Map(this.headerMap()).entries();
  }

  /**
   * The frame's bytes with `mutation` set in its header section: entries of other keys keep their bytes and order,
   * entries of a mutated key (whatever their case) are dropped, the mutation is appended with lower-case keys. The
   * fixed header is copied (section length updated), the body copied after the new section.
   */
  mutated(mutation: readonly KeyValue[]): Buffer {
    this.headerMap(); // validates the section before it is copied entry by entry
    const raw = this.raw;
    const replaced = new Set(mutation.map((m) => m.key.toLowerCase()));
    const kept: Buffer[] = [];
    let size = 0;
    for (let at = HEADER_LENGTH; at < this.sectionEnd; ) {
      const keyLength = raw[at]!;
      const entryEnd = at + 1 + keyLength + 2 + raw.readUInt16BE(at + 1 + keyLength);
      const key = raw.toString('utf8', at + 1, at + 1 + keyLength).toLowerCase();
      if (!replaced.has(key)) {
        kept.push(raw.subarray(at, entryEnd));
        size += entryEnd - at;
      }
      at = entryEnd;
    }
    const added: Buffer[] = [];
    const seen = new Set<string>();
    // The last value of a key given twice wins, as on the wire.
    for (let i = mutation.length - 1; i >= 0; i--) {
      const key = mutation[i]!.key.toLowerCase();
      if (seen.has(key)) continue;
      seen.add(key);
      const k = Buffer.from(key, 'utf8');
      const v = Buffer.from(mutation[i]!.value, 'utf8');
      if (k.length === 0 || k.length > 0xff || v.length > 0xffff) {
        throw new CodecError('bad_mutation', `kvrpc header "${key}" cannot be written: key 1-255 bytes, value up to 65535`);
      }
      const entry = Buffer.allocUnsafe(1 + k.length + 2 + v.length);
      entry[0] = k.length;
      k.copy(entry, 1);
      entry.writeUInt16BE(v.length, 1 + k.length);
      v.copy(entry, 3 + k.length);
      added.unshift(entry);
      size += entry.length;
    }
    if (size > MAX_SECTION) {
      throw new CodecError('header_too_large', `kvrpc header section of ${size} bytes after mutation exceeds ${MAX_SECTION}`);
    }
    const bodyLength = raw.length - this.sectionEnd;
    const out = Buffer.allocUnsafe(HEADER_LENGTH + size + bodyLength);
    raw.copy(out, 0, 0, HEADER_LENGTH);
    out.writeUInt16BE(size, SECTION_LENGTH_AT);
    let at = HEADER_LENGTH;
    for (const b of kept) at += b.copy(out, at);
    for (const b of added) at += b.copy(out, at);
    raw.copy(out, at, this.sectionEnd);
    return out;
  }

  private headerMap(): Map<string, string> {
    if (this.headers !== undefined) return this.headers;
    if (this.failure !== undefined) throw this.failure;
    const raw = this.raw;
    const end = this.sectionEnd;
    const map = new Map<string, string>();
    for (let at = HEADER_LENGTH; at < end; ) {
      const keyLength = raw[at]!;
      if (keyLength === 0 || at + 1 + keyLength + 2 > end) throw this.fail('kvrpc header entry runs past its section');
      const key = raw.toString('utf8', at + 1, at + 1 + keyLength).toLowerCase();
      at += 1 + keyLength;
      const valueLength = raw.readUInt16BE(at);
      at += 2;
      if (at + valueLength > end) throw this.fail(`kvrpc header "${key}" runs past its section`);
      map.delete(key); // a repeated key keeps its last value (and its place among entries)
      map.set(key, raw.toString('utf8', at, at + valueLength));
      at += valueLength;
    }
    this.headers = map;
    return map;
  }

  /** A malformed header section: this read and every later one throw the same `bad_header`. */
  private fail(message: string): CodecError {
    this.failure = new CodecError('bad_header', message);
    return this.failure;
  }
}

/** Frames built elsewhere (tests, other tools) are re-read from their bytes. */
function asKvFrame(frame: Frame): KvFrame {
  if (frame instanceof KvFrame) return frame;
  const raw = frame.raw;
  if (raw.length < HEADER_LENGTH || frameLength(raw, 0, Number.MAX_SAFE_INTEGER) !== raw.length) {
    throw new CodecError('bad_frame', 'not a whole kvrpc frame');
  }
  return new KvFrame(raw);
}

/** Writes `id` as the u32 at bytes 4-7. */
function writeId(buf: Buffer, id: RequestId): void {
  const n = typeof id === 'bigint' && id >= 0n && id <= BigInt(MAX_U32) ? Number(id) : id;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > MAX_U32) {
    throw new RangeError(`kvrpc request id ${String(id)} is not a u32`);
  }
  buf.writeUInt32BE(n, ID_AT);
}

/** A response frame: flags, id, status, header entries, body. */
function buildResponse(flags: number, id: number, status: number, headers: ReadonlyArray<[string, string]>, body: Buffer): Buffer {
  const entries = headers.map(([k, v]) => [Buffer.from(k), Buffer.from(v)] as const);
  let sectionLength = 0;
  for (const [k, v] of entries) sectionLength += 3 + k.length + Math.min(v.length, 0xffff);
  const out = Buffer.allocUnsafe(HEADER_LENGTH + sectionLength + body.length);
  out[0] = MAGIC_0;
  out[1] = MAGIC_1;
  out[2] = VERSION;
  out[3] = flags;
  out.writeUInt32BE(id, ID_AT);
  out[STATUS_AT] = status;
  out[RESERVED_AT] = 0;
  out.writeUInt16BE(sectionLength, SECTION_LENGTH_AT);
  out.writeUInt32BE(body.length, BODY_LENGTH_AT);
  let at = HEADER_LENGTH;
  for (const [k, v] of entries) {
    const valueLength = Math.min(v.length, 0xffff);
    out[at++] = k.length;
    at += k.copy(out, at);
    out.writeUInt16BE(valueLength, at);
    at += 2;
    at += v.copy(out, at, 0, valueLength);
  }
  body.copy(out, at);
  return out;
}

// ---- the session ----------------------------------------------------------------------------------------------------

class KvSession implements CodecSession {
  private readonly max: number;
  /** A fixed header split across chunks, gathered here until whole. */
  private readonly head = Buffer.allocUnsafe(HEADER_LENGTH);
  private headFill = 0;
  /** A frame split across chunks, allocated at its full size once its header is known (each byte copied once). */
  /** A frame split across reads: Waypost's PartialFrame holds what arrived, not what the header announced. */
  private partial: PartialFrame | null = null;

  constructor(options: CodecOptions) {
    this.max = options.maxFrameSize;
  }

  get buffered(): number {
    return this.partial !== null ? this.partial.length : this.headFill;
  }

  decode(chunk: Buffer, sink: (frame: Frame) => void): void {
    const len = chunk.length;
    let off = 0;
    if (this.headFill > 0) {
      const n = Math.min(HEADER_LENGTH - this.headFill, len);
      chunk.copy(this.head, this.headFill, 0, n);
      this.headFill += n;
      off = n;
      if (this.headFill < HEADER_LENGTH) {
        checkPrefix(this.head, 0, this.headFill);
        return;
      }
      const total = frameLength(this.head, 0, this.max);
      this.headFill = 0;
      this.partial = new PartialFrame(Buffer.from(this.head), total);
    }
    if (this.partial !== null) {
      const partial = this.partial;
      off += partial.take(chunk, off);
      if (!partial.complete) return;
      this.partial = null;
      sink(new KvFrame(partial.bytes()));
    }
    while (off < len) {
      const left = len - off;
      if (left < HEADER_LENGTH) {
        checkPrefix(chunk, off, left);
        chunk.copy(this.head, 0, off, len);
        this.headFill = left;
        return;
      }
      const total = frameLength(chunk, off, this.max);
      if (left < total) {
        this.partial = new PartialFrame(chunk.subarray(off, len), total);
        return;
      }
      const raw = chunk.subarray(off, off + total);
      off += total;
      sink(new KvFrame(raw));
    }
  }

  encode(frame: Frame, edit?: FrameEdit): Buffer {
    if (edit === undefined) return frame.raw;
    let out = frame.raw;
    if (edit.mutation !== undefined && edit.mutation.length > 0 && frame.type !== 'heartbeat') {
      out = asKvFrame(frame).mutated(edit.mutation);
    } else if (edit.copy === true) {
      out = Buffer.from(out);
    }
    if (edit.requestId !== undefined) writeId(out, edit.requestId);
    return out;
  }

  localReply(request: Frame, reply: LocalReply): Buffer | undefined {
    if (request.type !== 'request') return undefined; // a oneway call has nobody waiting
    return buildResponse(
      FLAG_RESPONSE,
      Number(request.requestId),
      localReplyStatus(reply),
      [['error-kind', reply.kind]],
      Buffer.from(reply.message, 'utf8'),
    );
  }

  heartbeatReply(heartbeat: Frame): Buffer | undefined {
    if (heartbeat.type !== 'heartbeat' || heartbeat.expectsReply !== true) return undefined;
    return buildResponse(FLAG_HEARTBEAT | FLAG_RESPONSE, Number(heartbeat.requestId), KvStatus.OK, [], EMPTY);
  }
}

const EMPTY = Buffer.alloc(0);

function hex2(b: number): string {
  return b.toString(16).padStart(2, '0');
}

export const kvrpcCodec: CodecFactory = {
  name: 'example.codec.kvrpc',
  protocol: 'kvrpc',
  multiplexing: 'id',
  create(options: CodecOptions): CodecSession {
    return new KvSession(options);
  },
};

export default kvrpcCodec;
