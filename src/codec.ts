/**
 * The codec API: the only thing the data plane knows about a protocol.
 *
 * A codec factory is registered by name (`aeraki.meta_protocol.codec.dubbo`, …). For every connection — downstream
 * or upstream — the data plane creates one stateful {@link CodecSession} that cuts the byte stream into frames and
 * exposes the routable metadata of each frame without decoding what routing does not read. Frames keep their
 * original bytes: forwarding an unchanged frame writes exactly what arrived; only the request id and mutated
 * headers are rewritten.
 */

/** What a frame is, in protocol-neutral terms. */
export type MessageType = 'request' | 'oneway' | 'response' | 'heartbeat' | 'error';

/**
 * A protocol's request id. Dubbo ids are 64-bit, so an id that does not fit in 53 bits is a bigint; the proxy
 * assigns upstream ids itself and only ever assigns numbers. Protocols without ids (Redis) use 0.
 */
export type RequestId = number | bigint;

/** How a response ended, as the codec reads it from the frame (drives the `outcome` metric label and retries). */
export type ResponseStatus = 'ok' | 'error' | 'business_exception';

/** Routable metadata. Keys are case-insensitive: callers pass lower-case keys; values are case-sensitive. */
export interface Metadata {
  get(key: string): string | undefined;
  /** Every routable key/value (lower-case keys); used by admin, logs and tests, not by the hot path. */
  entries(): Iterable<[string, string]>;
}

/** One mutation entry, as Aeraki's `KeyValue`: sets (adds or replaces) the header/attachment `key`. */
export interface KeyValue {
  readonly key: string;
  readonly value: string;
}

/** One decoded frame. `raw` is a view of the bytes received; the data plane owns them once the frame is emitted. */
export interface Frame {
  readonly type: MessageType;
  /** The id as it is on the wire (0 where the protocol has none). */
  readonly requestId: RequestId;
  /** The whole frame's original bytes. */
  readonly raw: Buffer;
  /** Routable string metadata, extracted lazily by the codec. */
  readonly metadata: Metadata;
  /** For responses: how the call ended. */
  readonly status?: ResponseStatus;
  /** For heartbeats: true when this heartbeat expects an answer (Dubbo two-way event). */
  readonly expectsReply?: boolean;
  /**
   * Requests whose keys differ never share an upstream connection: for protocols whose servers speak, per
   * connection, the variant its first bytes used (Thrift's transport and protocol). Undefined: one kind.
   */
  readonly upstreamKey?: string;
  /**
   * False when this frame has nowhere to carry a mutation (Thrift framed and unframed messages have no headers):
   * the proxy then forwards it without the mutation, and counts and logs that, rather than dropping it silently.
   * Undefined: mutations are carried.
   */
  readonly mutable?: boolean;
}

/** The generic causes of a local reply (docs/configuration.md, "Local replies"); each codec maps them to its own native error. */
export type LocalReplyKind =
  | 'no_route'
  | 'no_healthy_upstream'
  | 'upstream_reset'
  | 'timeout'
  | 'over_limit'
  | 'fault_abort'
  | 'bad_response'
  /**
   * Denied by an authorization policy (docs/security.md). A codec written before this kind existed may not know it:
   * the data plane then answers with the codec's `fault_abort` error instead (as for the two kinds below).
   */
  | 'permission_denied'
  /** The request's head framed fine but a part the proxy reads (arguments, attachments, headers) did not decode. */
  | 'bad_request'
  /** A bug in the proxy, a filter or a codec while handling this request: answered, counted, never fatal. */
  | 'internal_error';

/** Kinds a codec written before they existed may not know: answered with its `fault_abort` reply instead. */
export const NEWER_LOCAL_REPLY_KINDS: ReadonlySet<LocalReplyKind> = new Set(['permission_denied', 'bad_request', 'internal_error']);

export interface LocalReply {
  readonly kind: LocalReplyKind;
  /** Human-readable: says what happened and, where known, which route or cluster. */
  readonly message: string;
  /** A protocol-native code to use instead of the default for `kind` (fault abort `errorCode`). */
  readonly code?: number;
}

/** What {@link CodecSession.encode} may change on the way out. */
export interface FrameEdit {
  /** Write this request id instead of the frame's own. */
  readonly requestId?: RequestId;
  /** Set these headers/attachments (requests and responses alike). */
  readonly mutation?: readonly KeyValue[];
  /**
   * Leave `frame.raw` untouched and return new bytes. The proxy asks for this when it sends a frame a second time
   * (a retry, a mirror): the first bytes may still sit in a socket's write queue.
   */
  readonly copy?: boolean;
}

export interface CodecOptions {
  /** Frames larger than this are a decode error that closes the connection. */
  readonly maxFrameSize: number;
  /** Which side of the proxy the session serves (some protocols detect or answer differently). */
  readonly side: 'downstream' | 'upstream';
}

const CODEC_ERROR = Symbol.for('waypost.CodecError');

/** A decode failure: the connection it happened on is closed, the reason counted and logged. */
export class CodecError extends Error {
  /** A brand, so that a codec built against another copy of this package is still recognised. */
  readonly [CODEC_ERROR] = true;

  constructor(
    /** A short stable reason, used as a log field (e.g. `bad_magic`, `frame_too_large`). */
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'CodecError';
  }

  /** Branded, or shaped like one (`name` CodecError and a string `reason`): codecs need not share our class. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (typeof value !== 'object' || value === null) return false;
    const v = value as Record<string | symbol, unknown>;
    return v[CODEC_ERROR] === true || (v.name === 'CodecError' && typeof v.reason === 'string');
  }
}

/**
 * What the data plane does with anything thrown while it decodes a connection's bytes: a CodecError as it is; any
 * other error (a bug in a codec or a filter) becomes a `codec_failure` that closes that connection only — it never
 * takes the process down. `unexpected` tells the caller to log the stack.
 */
export function toCodecError(err: unknown): { error: CodecError; unexpected: boolean } {
  if (err instanceof CodecError) return { error: err, unexpected: false };
  return { error: new CodecError('codec_failure', `unexpected error while handling a frame: ${messageOf(err)}`), unexpected: true };
}

/** What was thrown, as text: a codec may throw anything (a string, null), not only an Error. */
export function messageOf(thrown: unknown): string {
  return thrown instanceof Error ? thrown.message : String(thrown);
}

/** Its stack when it is an Error, else what it was. */
export function stackOf(thrown: unknown): string {
  return thrown instanceof Error ? (thrown.stack ?? thrown.message) : `thrown: ${String(thrown)}`;
}

/** Per-connection codec state. */
export interface CodecSession {
  /**
   * Feeds bytes as they arrive; calls `sink` once per complete frame, in order. Keeps any incomplete tail for the
   * next call. Throws {@link CodecError} on input that cannot be framed.
   */
  decode(chunk: Buffer, sink: (frame: Frame) => void): void;
  /**
   * The bytes to send for `frame`. Without an edit this is `frame.raw` itself; a request id may be patched into
   * `frame.raw` in place (so `raw` no longer holds the original id afterwards — `frame.requestId` does); a mutation
   * re-encodes only the headers/attachments section.
   */
  encode(frame: Frame, edit?: FrameEdit): Buffer;
  /**
   * The protocol-native error reply to `request`, or undefined where the protocol sends none (a oneway call). It
   * answers with `request.requestId`, never with id bytes read back from `request.raw` (see `encode`).
   */
  localReply(request: Frame, reply: LocalReply): Buffer | undefined;
  /** The answer to a heartbeat that expects one (answered by the proxy itself, never forwarded). */
  heartbeatReply(heartbeat: Frame): Buffer | undefined;
  /** Bytes held for an incomplete frame (for limits and diagnostics). */
  readonly buffered: number;
  /**
   * Upstream sessions, optional: bytes to write first on a new connection (a login or protocol switch, e.g. Redis
   * `AUTH` or `HELLO 3`) and how many answers to them precede the first request's. An answer with status `error`
   * or `business_exception` closes the connection, failing what waits on it.
   */
  handshake?(): { readonly bytes: Buffer; readonly replies: number } | undefined;
}

export interface CodecFactory {
  /** Registered name, as in ApplicationProtocol `codec` (`aeraki.meta_protocol.codec.dubbo`). */
  readonly name: string;
  /** Protocol name as used in port names (`tcp-metaprotocol-<protocol>`) and metric labels. */
  readonly protocol: string;
  /**
   * `id`: responses carry the request id, so many downstream connections share an upstream connection by
   * rewriting ids. `fifo`: responses come back in request order (pipelining).
   */
  readonly multiplexing: 'id' | 'fifo';
  create(options: CodecOptions): CodecSession;
}

/** A metadata view over a plain map (codecs with eager metadata, and tests). */
export class MapMetadata implements Metadata {
  constructor(private readonly map: Map<string, string> = new Map()) {}
  get(key: string): string | undefined {
    return this.map.get(key);
  }
  set(key: string, value: string): void {
    this.map.set(key.toLowerCase(), value);
  }
  entries(): Iterable<[string, string]> {
    return this.map.entries();
  }
}

export const EMPTY_METADATA: Metadata = new MapMetadata();
