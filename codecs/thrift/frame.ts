/**
 * A decoded Thrift frame: where its message head is, what kind of message it is, lazily its metadata; and the
 * bytes the proxy writes for it (rewritten seqid, mutated THeader headers, local replies).
 */
import {
  CodecError,
  type Frame,
  type KeyValue,
  type LocalReply,
  type MessageType as FrameType,
  type Metadata,
  type RequestId,
  type ResponseStatus,
} from '../../src/codec.js';
import {
  HEADER_SEQID_AT,
  FLAGS_AT,
  buildHeaderFrame,
  mutateHeaders,
  readHeaderLayout,
  readHeaders,
  type HeaderLayout,
} from './theader.js';
import { strictUtf8 } from './utf8.js';
import {
  COMPACT_PROTOCOL_ID,
  COMPACT_TYPE_SHIFT,
  COMPACT_VERSION,
  CType,
  MessageType,
  ScanError,
  scanRefusal,
  Scanner,
  TRUNCATED,
  TType,
  firstFieldId,
  readHead,
  skipBinaryStruct,
  skipCompactStruct,
  varintLength,
  writeVarint,
  zigzag32,
  type MessageHead,
} from './wire.js';

/** How messages are delimited on a connection. */
export type ThriftTransport = 'framed' | 'unframed' | 'header';
/** How a message is encoded (binary covers both the strict and the old lax form). */
export type ThriftProtocol = 'binary' | 'compact';

/** TApplicationException types (lib/*: TApplicationException). */
export const AppExceptionType = {
  UNKNOWN: 0,
  UNKNOWN_METHOD: 1,
  INVALID_MESSAGE_TYPE: 2,
  WRONG_METHOD_NAME: 3,
  BAD_SEQUENCE_ID: 4,
  MISSING_RESULT: 5,
  INTERNAL_ERROR: 6,
  PROTOCOL_ERROR: 7,
} as const;

/** The separator TMultiplexedProtocol puts between service and method name. */
const MULTIPLEX_SEPARATOR = ':';

const NO_ENTRIES: ReadonlyMap<string, string> = new Map();
const scratch = new Scanner();

/**
 * One message with its transport framing. `raw` is the whole frame (length prefix and THeader header included).
 * It is its own {@link Metadata}; the method name and the THeader key/value headers are read on first use.
 */
export class ThriftFrame implements Frame, Metadata {
  readonly raw: Buffer;
  readonly type: FrameType;
  /** The seqid the peer sent (kept even after encode patched another id into `raw`). */
  readonly requestId: number;
  readonly status: ResponseStatus | undefined;
  readonly transport: ThriftTransport;
  readonly protocol: ThriftProtocol;
  /** The Thrift message type: 1 CALL, 2 REPLY, 3 EXCEPTION, 4 ONEWAY. */
  readonly messageType: number;
  /** Binary only: false for the old (lax) form without a version word. */
  readonly strict: boolean;
  /** Offsets in `raw`: the method name, the seqid. */
  private readonly nameStart: number;
  private readonly nameEnd: number;
  private readonly seqidAt: number;
  private readonly seqidLength: number;
  /** THeader only: the header section, and the header seqid as received. */
  private readonly header: HeaderLayout | undefined;
  private readonly headerSeqid: number;
  private names: { method: string; service: string | undefined } | undefined;
  private headers: Map<string, string> | undefined;

  /**
   * `raw` is one whole frame of `transport`. A frame whose message head does not fit in it, or whose head is not
   * Thrift, throws CodecError (`bad_frame`, `bad_message`).
   */
  constructor(raw: Buffer, transport: ThriftTransport) {
    this.raw = raw;
    this.transport = transport;
    let messageAt = 0;
    if (transport === 'header') {
      this.header = readHeaderLayout(raw);
      this.headerSeqid = raw.readInt32BE(HEADER_SEQID_AT);
      messageAt = this.header.payloadAt;
    } else {
      this.header = undefined;
      this.headerSeqid = 0;
      if (transport === 'framed') messageAt = 4;
    }
    const head = readWholeHead(raw, messageAt);
    // Unframed messages were measured by skipping their struct; a length prefix must be checked to match it.
    if (transport !== 'unframed') checkWholeStruct(raw, head);
    if (this.header !== undefined && head.compact !== (this.header.protocolId === 2)) {
      throw new CodecError('bad_frame', 'THeader protocol id does not match its payload');
    }
    this.protocol = head.compact ? 'compact' : 'binary';
    this.strict = head.strict;
    this.messageType = head.type;
    this.requestId = head.seqid;
    this.nameStart = head.nameStart;
    this.nameEnd = head.nameEnd;
    this.seqidAt = head.seqidAt;
    this.seqidLength = head.seqidLength;
    switch (head.type) {
      case MessageType.CALL:
        this.type = 'request';
        this.status = undefined;
        break;
      case MessageType.ONEWAY:
        this.type = 'oneway';
        this.status = undefined;
        break;
      case MessageType.EXCEPTION:
        this.type = 'response';
        this.status = 'error';
        break;
      default: {
        this.type = 'response';
        // Result struct: field 0 is the return value, fields 1.. the declared exceptions; empty for a void return.
        const id = firstFieldId(raw, head.bodyAt, raw.length, head.compact);
        this.status = id === 0 || id === -1 ? 'ok' : id > 0 ? 'business_exception' : 'error';
      }
    }
  }

  get metadata(): Metadata {
    return this;
  }

  /** Only THeader messages have headers to carry a mutation in. */
  get mutable(): boolean {
    return this.header !== undefined;
  }

  /** The method name without a `Service:` prefix. */
  get method(): string {
    return this.nameParts().method;
  }

  /** The TMultiplexedProtocol service name, if the method name has one. */
  get service(): string | undefined {
    return this.nameParts().service;
  }

  get(key: string): string | undefined {
    // The message's own name wins over a header of the same name. A request's service is its name's only: a
    // server never dispatches on a header, and its default processor answers names without one.
    switch (key) {
      case 'method':
        return this.method;
      case 'service': {
        const service = this.service;
        if (service !== undefined || this.type !== 'response') return service;
      }
    }
    if (this.header !== undefined) {
      const value = this.headerMap().get(key);
      if (value !== undefined) return value;
    }
    // Callers pass lower-case keys; tolerate others at the cost of a second lookup on a miss.
    const lower = key.toLowerCase();
    return lower === key ? undefined : this.get(lower);
  }

  entries(): Iterable<[string, string]> {
    const headers = this.header === undefined ? NO_ENTRIES : this.headerMap();
    const all = new Map(headers);
    const { method, service } = this.nameParts();
    all.set('method', method);
    if (service !== undefined) all.set('service', service);
    else if (this.type !== 'response') all.delete('service');
    return all.entries();
  }

  /**
   * The bytes to send with `requestId` as the seqid (and THeader seqid), `mutation` in the THeader headers.
   * Binary seqids and same-width compact seqids are patched into `raw` in place; otherwise a new buffer is built.
   * Mutations on frames without THeader cannot be carried and are dropped (see index.ts).
   */
  /** Upstream connections are kept apart by transport and protocol: a Thrift server speaks what it was first sent. */
  get upstreamKey(): string {
    return UPSTREAM_KEYS[this.transport][this.protocol];
  }

  encode(requestId: RequestId | undefined, mutation: readonly KeyValue[] | undefined, copy = false): Buffer {
    let out = copy ? Buffer.from(this.raw) : this.raw;
    let shift = 0;
    if (mutation !== undefined && mutation.length > 0 && this.header !== undefined) {
      const m = mutateHeaders(this.raw, this.header, mutation);
      out = m.frame;
      shift = m.shift;
    }
    if (requestId !== undefined) out = this.withSeqid(out, shift, toSeqid(requestId));
    return out;
  }

  /**
   * A TApplicationException for this request, in its protocol and transport; undefined for a oneway call (no one
   * waits for it) and for anything that is not a request.
   */
  localReply(reply: LocalReply): Buffer | undefined {
    if (this.type !== 'request') return undefined;
    const message = buildAppException(
      this.protocol,
      this.strict,
      this.replyName(),
      this.requestId,
      appExceptionType(reply),
      reply.message,
    );
    switch (this.transport) {
      case 'unframed':
        return message;
      case 'framed': {
        const out = Buffer.allocUnsafe(4 + message.length);
        out.writeInt32BE(message.length, 0);
        message.copy(out, 4);
        return out;
      }
      case 'header':
        return buildHeaderFrame(
          this.raw.readUInt16BE(FLAGS_AT),
          this.headerSeqid,
          this.header!.protocolId,
          message,
        );
    }
  }

  /**
   * The name a reply carries: the method without its `Service:` prefix, as TMultiplexedProcessor answers, taken
   * from the bytes as received so that a name that does not decode can still be answered.
   */
  private replyName(): Buffer {
    const name = this.raw.subarray(this.nameStart, this.nameEnd);
    const sep = name.indexOf(0x3a); // ':' is one byte in UTF-8 and never part of another character
    return sep < 0 ? name : name.subarray(sep + 1);
  }

  /** `buf` is this frame's bytes, possibly with the message moved by `shift` (a mutated THeader). */
  private withSeqid(buf: Buffer, shift: number, seqid: number): Buffer {
    const at = this.seqidAt + shift;
    if (this.protocol === 'binary') {
      buf.writeInt32BE(seqid, at);
      if (this.transport === 'header') buf.writeInt32BE(seqid, HEADER_SEQID_AT);
      return buf;
    }
    const width = varintLength(seqid);
    if (width === this.seqidLength) {
      writeVarint(buf, at, seqid);
      if (this.transport === 'header') buf.writeInt32BE(seqid, HEADER_SEQID_AT);
      return buf;
    }
    // A compact seqid of another width: rebuild the frame around it and correct the length prefix.
    const delta = width - this.seqidLength;
    const out = Buffer.allocUnsafe(buf.length + delta);
    buf.copy(out, 0, 0, at);
    const after = writeVarint(out, at, seqid);
    buf.copy(out, after, at + this.seqidLength);
    if (this.transport !== 'unframed') out.writeInt32BE(out.length - 4, 0);
    if (this.transport === 'header') out.writeInt32BE(seqid, HEADER_SEQID_AT);
    return out;
  }

  /**
   * The message name, split as TMultiplexedProcessor splits it. A request's name must read the same in every
   * server: valid UTF-8 (Java and Node replace what is not, python refuses it, C++ compares raw bytes), and at
   * most one ':' between two non-empty parts (Java, python and Go split at the first ':', C++ tokenizes on every
   * ':' and drops empty tokens, so `Svc::m` is `m` to one and `:m` to the others). Anything else is `bad_body`.
   * Replies are the upstream's own and read as they are.
   */
  private nameParts(): { method: string; service: string | undefined } {
    if (this.names !== undefined) return this.names;
    const request = this.type !== 'response';
    const name = request
      ? strictUtf8(this.raw, this.nameStart, this.nameEnd, 'method name')
      : this.raw.toString('utf8', this.nameStart, this.nameEnd);
    const sep = name.indexOf(MULTIPLEX_SEPARATOR);
    if (sep < 0) {
      this.names = { method: name, service: undefined };
      return this.names;
    }
    const service = name.slice(0, sep);
    const method = name.slice(sep + 1);
    if (request && (service === '' || method === '' || method.includes(MULTIPLEX_SEPARATOR))) {
      throw new CodecError(
        'bad_body',
        `thrift message name "${name}" is not Service:method (one ':' between two non-empty names): servers split it differently`,
      );
    }
    this.names = { method, service };
    return this.names;
  }

  /** THeader headers; a request's are checked (theader.ts `readHeaders`), a reply's read as they are. */
  private headerMap(): Map<string, string> {
    if (this.headers !== undefined) return this.headers;
    const map = new Map<string, string>();
    readHeaders(this.raw, this.header!, map, this.type !== 'response');
    this.headers = map;
    return map;
  }
}

/** Reads the message head of a whole frame: running out of bytes is a malformed frame, not a wait. */
function readWholeHead(raw: Buffer, messageAt: number): MessageHead {
  try {
    return readHead(scratch.reset(raw, messageAt, raw.length));
  } catch (err) {
    if (err === TRUNCATED) throw new CodecError('bad_frame', 'thrift message head runs past the end of its frame');
    if (err instanceof ScanError) throw new CodecError('bad_message', `not a thrift message: ${err.message}`);
    throw err;
  } finally {
    scratch.reset(EMPTY, 0, 0); // drop the reference to the frame
  }
}

/**
 * Checks that the message struct ends exactly where its frame does. Thrift framed readers (python, Java) read a
 * struct that runs past its frame on into the next frames, and leave bytes after it to the next message: one such
 * frame forwarded on an upstream connection shared by many clients would desynchronise it for all of them.
 */
function checkWholeStruct(raw: Buffer, head: MessageHead): void {
  const s = scratch.reset(raw, head.bodyAt, raw.length);
  try {
    if (head.compact) skipCompactStruct(s);
    else skipBinaryStruct(s);
    if (s.pos !== raw.length) {
      throw new CodecError('bad_message', `${raw.length - s.pos} bytes after the thrift message struct in its frame`);
    }
  } catch (err) {
    if (err === TRUNCATED) throw new CodecError('bad_message', 'thrift message struct runs past the end of its frame');
    if (err instanceof ScanError) throw scanRefusal(err);
    throw err;
  } finally {
    s.reset(EMPTY, 0, 0); // drop the reference to the frame
  }
}

const EMPTY = Buffer.alloc(0);

/** A request id as an i32 seqid: numbers in [-2^31, 2^32) (u32 values wrap, as on the wire). */
export function toSeqid(id: RequestId): number {
  const n = typeof id === 'bigint' ? Number(id) : id;
  if (!Number.isInteger(n) || n < -0x8000_0000 || n > 0xffff_ffff) {
    throw new RangeError(`thrift seqid ${String(id)} is not a 32-bit integer`);
  }
  return n | 0;
}

/** The TApplicationException type of each local reply kind. */
export function appExceptionType(reply: LocalReply): number {
  switch (reply.kind) {
    case 'no_route':
      return AppExceptionType.UNKNOWN_METHOD;
    case 'fault_abort':
      return reply.code !== undefined && Number.isInteger(reply.code) ? reply.code | 0 : AppExceptionType.INTERNAL_ERROR;
    case 'bad_request':
      return AppExceptionType.PROTOCOL_ERROR;
    case 'permission_denied': // Thrift has no permission type: INTERNAL_ERROR, as Envoy's thrift_proxy local errors
    default:
      return AppExceptionType.INTERNAL_ERROR;
  }
}

/**
 * An EXCEPTION message carrying a TApplicationException { 1: string message, 2: i32 type } for `method`/`seqid`,
 * written as `protocol` writes it (binary: strict unless the request was lax). A Buffer `method` is the name's
 * bytes as the request carried them (a local reply echoes them even when they did not decode).
 */
export function buildAppException(
  protocol: ThriftProtocol,
  strict: boolean,
  method: string | Buffer,
  seqid: number,
  type: number,
  message: string,
): Buffer {
  const name = typeof method === 'string' ? Buffer.from(method, 'utf8') : method;
  const text = Buffer.from(message, 'utf8');
  if (protocol === 'compact') {
    const size =
      2 + varintLength(seqid) + varintLength(name.length) + name.length + // head
      1 + varintLength(text.length) + text.length + // field 1: string
      1 + varintLength(zigzag32(type)) + // field 2: i32
      1; // STOP
    const out = Buffer.allocUnsafe(size);
    out[0] = COMPACT_PROTOCOL_ID;
    out[1] = (MessageType.EXCEPTION << COMPACT_TYPE_SHIFT) | COMPACT_VERSION;
    let at = writeVarint(out, 2, seqid);
    at = writeVarint(out, at, name.length);
    at += name.copy(out, at);
    out[at++] = (1 << 4) | CType.BINARY;
    at = writeVarint(out, at, text.length);
    at += text.copy(out, at);
    out[at++] = (1 << 4) | CType.I32;
    at = writeVarint(out, at, zigzag32(type));
    out[at++] = CType.STOP;
    return out;
  }
  const size = (strict ? 4 : 1) + 4 + name.length + 4 + (3 + 4 + text.length) + (3 + 4) + 1;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  if (strict) {
    out.writeUInt32BE((0x8001_0000 | MessageType.EXCEPTION) >>> 0, 0);
    at = 4;
  }
  out.writeInt32BE(name.length, at);
  at += 4;
  at += name.copy(out, at);
  if (!strict) out[at++] = MessageType.EXCEPTION;
  out.writeInt32BE(seqid, at);
  at += 4;
  out[at++] = TType.STRING;
  out.writeInt16BE(1, at);
  out.writeInt32BE(text.length, at + 2);
  at += 6;
  at += text.copy(out, at);
  out[at++] = TType.I32;
  out.writeInt16BE(2, at);
  out.writeInt32BE(type, at + 2);
  at += 6;
  out[at++] = TType.STOP;
  return out;
}

const UPSTREAM_KEYS: Record<ThriftTransport, Record<ThriftProtocol, string>> = {
  framed: { binary: 'framed/binary', compact: 'framed/compact' },
  unframed: { binary: 'unframed/binary', compact: 'unframed/compact' },
  header: { binary: 'header/binary', compact: 'header/compact' },
};
