/**
 * The Dubbo2 codec (hessian2 serialization): frames the byte stream, exposes routing metadata lazily, rewrites
 * request ids and attachments, and writes local replies and heartbeat answers.
 *
 * Hot path: decode reads the 16-byte header and, for responses, one byte of body; the frame is a subarray of the
 * chunk it arrived in. Metadata is read only when asked: the leading strings first, the attachments (behind every
 * argument, see hessian-scan.ts) only when a key other than method is needed — interface and version too, since
 * the provider dispatches on the attachments' path and version (body.ts).
 *
 * What routing reads must be what the provider reads: strings, keys and dispatch fields a provider could read
 * otherwise are refused as `bad_body` (hessian-scan.ts, body.ts), which the data plane answers as a bad request.
 */
import { PartialFrame } from '../../src/partial-frame.js';
import {
  CodecError,
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
} from '../../src/codec.js';
import {
  mutateRequest,
  mutateResponse,
  readRequestAttachments,
  readRequestHead,
  readResponseAttachments,
  type RequestHead,
} from './body.js';
import {
  FLAG_EVENT,
  FLAG_REQUEST,
  FLAG_TWOWAY,
  HEADER_LENGTH,
  ResponseType,
  Status,
  buildErrorResponse,
  buildHeartbeatReply,
  checkHeader,
  checkMagicPrefix,
  localReplyStatus,
  readRequestId,
  writeRequestId,
} from './frame.js';
import { ScanError, isStringTag } from './hessian-scan.js';

/** Which metadata a frame has. */
const Kind = {
  /** Heartbeats, non-OK responses, responses without attachments: none. */
  None: 0,
  /** Leading strings and attachments. */
  Request: 1,
  /** Attachments (response types 3-5). */
  ResponseWithAttachments: 2,
} as const;
type Kind = (typeof Kind)[keyof typeof Kind];

const NO_ENTRIES: ReadonlyMap<string, string> = new Map();

/**
 * A decoded frame. It is its own {@link Metadata} (one allocation per frame); what it reads lazily is cached.
 */
export class DubboFrame implements Frame, Metadata {
  readonly type: MessageType;
  readonly requestId: RequestId;
  readonly raw: Buffer;
  readonly status: ResponseStatus | undefined;
  readonly expectsReply: boolean | undefined;
  private readonly kind: Kind;
  private head: RequestHead | undefined;
  private attachments: Map<string, string> | undefined;
  /** A request whose body could not be scanned: every later read throws this again. */
  private failure: CodecError | undefined;

  /** `raw` is one whole frame (header checked). Throws `bad_body` for a request whose body is not hessian2. */
  constructor(raw: Buffer) {
    this.raw = raw;
    this.requestId = readRequestId(raw, 0);
    const flags = raw[2];
    const event = (flags & FLAG_EVENT) !== 0;
    if ((flags & FLAG_REQUEST) !== 0) {
      const twoWay = (flags & FLAG_TWOWAY) !== 0;
      this.status = undefined;
      if (event) {
        this.type = 'heartbeat';
        this.expectsReply = twoWay;
        this.kind = Kind.None;
      } else {
        // Cheap early check so garbage is refused at decode; the rest is scanned when metadata is read.
        if (raw.length === HEADER_LENGTH || !isStringTag(raw[HEADER_LENGTH])) {
          throw new CodecError('bad_body', 'dubbo request body does not start with a hessian2 string');
        }
        this.type = twoWay ? 'request' : 'oneway';
        this.expectsReply = undefined;
        this.kind = Kind.Request;
      }
      return;
    }
    this.expectsReply = event ? false : undefined;
    this.type = event ? 'heartbeat' : 'response';
    if (raw[3] !== Status.OK) {
      this.status = 'error';
      this.kind = Kind.None;
      return;
    }
    if (event) {
      this.status = 'ok';
      this.kind = Kind.None;
      return;
    }
    const responseType = peekResponseType(raw);
    switch (responseType) {
      case ResponseType.VALUE:
      case ResponseType.NULL_VALUE:
        this.status = 'ok';
        this.kind = Kind.None;
        break;
      case ResponseType.VALUE_WITH_ATTACHMENTS:
      case ResponseType.NULL_VALUE_WITH_ATTACHMENTS:
        this.status = 'ok';
        this.kind = Kind.ResponseWithAttachments;
        break;
      case ResponseType.WITH_EXCEPTION:
        this.status = 'business_exception';
        this.kind = Kind.None;
        break;
      case ResponseType.WITH_EXCEPTION_WITH_ATTACHMENTS:
        this.status = 'business_exception';
        this.kind = Kind.ResponseWithAttachments;
        break;
      default:
        // Unclassifiable, but still a response: it goes back to whoever waits for its id.
        this.status = 'error';
        this.kind = Kind.None;
    }
  }

  get metadata(): Metadata {
    return this;
  }

  get(key: string): string | undefined {
    if (this.kind === Kind.None) return undefined;
    if (this.kind === Kind.Request) {
      // Body fields win over attachments of the same name; attachments are the fallback. The provider picks the
      // service by the attachments' path and version, so reading interface or version reads (and checks) them too.
      switch (key) {
        case 'interface': {
          const head = this.requestHead();
          const attachments = this.attachmentMap();
          return head.service ?? attachments.get(key);
        }
        case 'method':
          return this.requestHead().method ?? this.attachmentMap().get(key);
        case 'version': {
          const head = this.requestHead();
          const attachments = this.attachmentMap();
          return head.version ?? attachments.get(key);
        }
      }
    }
    const value = this.attachmentMap().get(key);
    if (value !== undefined) return value;
    // Callers pass lower-case keys; tolerate others at the cost of a second lookup on a miss.
    const lower = key.toLowerCase();
    return lower === key ? undefined : this.get(lower);
  }

  entries(): Iterable<[string, string]> {
    if (this.kind === Kind.None) return NO_ENTRIES.entries();
    const attachments = this.attachmentMap();
    if (this.kind !== Kind.Request) return new Map(attachments).entries();
    const all = new Map(attachments);
    const head = this.requestHead();
    if (head.service !== undefined) all.set('interface', head.service);
    if (head.method !== undefined) all.set('method', head.method);
    if (head.version !== undefined) all.set('version', head.version);
    return all.entries();
  }

  /** The frame's bytes with `mutation` applied to its attachments (requests and OK responses). */
  mutated(mutation: readonly KeyValue[]): Buffer {
    if (this.kind === Kind.Request) {
      const head = this.requestHead();
      try {
        return mutateRequest(this.raw, head.descriptorAt, mutation);
      } catch (err) {
        throw this.fail(err);
      }
    }
    if (this.type !== 'response' || this.raw[3] !== Status.OK) return this.raw;
    try {
      return mutateResponse(this.raw, mutation) ?? this.raw;
    } catch (err) {
      if (err instanceof ScanError) return this.raw; // not ours to judge: forward the provider's bytes as they are
      throw err;
    }
  }

  private requestHead(): RequestHead {
    if (this.head !== undefined) return this.head;
    if (this.failure !== undefined) throw this.failure;
    try {
      this.head = readRequestHead(this.raw);
    } catch (err) {
      throw this.fail(err);
    }
    return this.head;
  }

  private attachmentMap(): Map<string, string> {
    if (this.attachments !== undefined) return this.attachments;
    const map = new Map<string, string>();
    if (this.kind === Kind.Request) {
      const head = this.requestHead();
      try {
        readRequestAttachments(this.raw, head, map);
      } catch (err) {
        throw this.fail(err);
      }
    } else {
      try {
        readResponseAttachments(this.raw, map);
      } catch (err) {
        if (!(err instanceof ScanError)) throw err;
        map.clear(); // a response we cannot scan simply has no routable attachments
      }
    }
    this.attachments = map;
    return map;
  }

  /** Records a request scan failure as the `bad_body` CodecError every later read rethrows. */
  private fail(err: unknown): unknown {
    if (!(err instanceof ScanError)) return err;
    this.failure = new CodecError('bad_body', `malformed dubbo request body: ${err.message}`);
    return this.failure;
  }
}

/**
 * The response type, read without the scanner for the one-byte form every Java/JS provider writes; -1 when the
 * body does not start with an int.
 */
function peekResponseType(raw: Buffer): number {
  if (raw.length <= HEADER_LENGTH) return -1;
  const b = raw[HEADER_LENGTH];
  if (b >= 0x80 && b <= 0xbf) return b - 0x90;
  if (b === 0x49 && raw.length >= HEADER_LENGTH + 5) return raw.readInt32BE(HEADER_LENGTH + 1);
  return -1;
}

class DubboSession implements CodecSession {
  private readonly maxBody: number;
  /** A header split across chunks, gathered here until complete. */
  private readonly header = Buffer.allocUnsafe(HEADER_LENGTH);
  private headerFill = 0;
  /** A frame split across chunks, gathered until complete (src/partial-frame.ts). */
  private partial: PartialFrame | null = null;

  constructor(options: CodecOptions) {
    this.maxBody = options.maxFrameSize;
  }

  get buffered(): number {
    return this.partial !== null ? this.partial.length : this.headerFill;
  }

  decode(chunk: Buffer, sink: (frame: Frame) => void): void {
    const len = chunk.length;
    let off = 0;
    if (this.headerFill > 0) {
      const n = Math.min(HEADER_LENGTH - this.headerFill, len);
      chunk.copy(this.header, this.headerFill, 0, n);
      this.headerFill += n;
      off = n;
      if (this.headerFill < HEADER_LENGTH) {
        checkMagicPrefix(this.header, 0, this.headerFill);
        return;
      }
      const bodyLength = checkHeader(this.header, 0, this.maxBody);
      this.headerFill = 0;
      this.partial = new PartialFrame(Buffer.from(this.header), HEADER_LENGTH + bodyLength);
    }
    if (this.partial !== null) {
      const partial = this.partial;
      off += partial.take(chunk, off);
      if (!partial.complete) return;
      this.partial = null;
      sink(new DubboFrame(partial.bytes()));
    }
    while (off < len) {
      const left = len - off;
      if (left < HEADER_LENGTH) {
        checkMagicPrefix(chunk, off, left);
        chunk.copy(this.header, 0, off, len);
        this.headerFill = left;
        return;
      }
      const total = HEADER_LENGTH + checkHeader(chunk, off, this.maxBody);
      if (left >= total) {
        const raw = chunk.subarray(off, off + total);
        off += total;
        sink(new DubboFrame(raw));
      } else {
        this.partial = new PartialFrame(chunk.subarray(off, len), total);
        return;
      }
    }
  }

  encode(frame: Frame, edit?: FrameEdit): Buffer {
    if (edit === undefined) return frame.raw;
    let out = frame.raw;
    if (edit.mutation !== undefined && edit.mutation.length > 0) out = asDubboFrame(frame).mutated(edit.mutation);
    // `copy` promises never to write into `raw`, also when the mutation could not apply and gave `raw` back.
    if (edit.copy === true && out === frame.raw) out = Buffer.from(out);
    if (edit.requestId !== undefined) writeRequestId(out, 0, edit.requestId);
    return out;
  }

  localReply(request: Frame, reply: LocalReply): Buffer | undefined {
    const flags = request.raw[2];
    // Only a two-way request has someone waiting for an answer.
    if ((flags & FLAG_REQUEST) === 0 || (flags & FLAG_TWOWAY) === 0) return undefined;
    return buildErrorResponse(request.requestId, localReplyStatus(reply), reply.message);
  }

  heartbeatReply(heartbeat: Frame): Buffer | undefined {
    if (heartbeat.type !== 'heartbeat' || heartbeat.expectsReply !== true) return undefined;
    return buildHeartbeatReply(heartbeat.requestId);
  }
}

/** Frames built elsewhere (tests, other tools) are re-read from their bytes. */
function asDubboFrame(frame: Frame): DubboFrame {
  return frame instanceof DubboFrame ? frame : new DubboFrame(frame.raw);
}

export const dubboCodec: CodecFactory = {
  name: 'aeraki.meta_protocol.codec.dubbo',
  protocol: 'dubbo',
  multiplexing: 'id',
  create(options: CodecOptions): CodecSession {
    return new DubboSession(options);
  },
};

export default dubboCodec;
