/**
 * Dubbo2 wire helpers for the demo peers (provider, raw client, load generator). This is deliberately a small,
 * self-contained implementation built on hessian.js; it is NOT the proxy's codec (codecs/dubbo/), so the example
 * peers can check the proxy against an independent reading of the protocol.
 *
 * Frame layout (com.alibaba.dubbo.remoting.exchange.codec.ExchangeCodec):
 *   bytes 0-1   magic 0xdabb
 *   byte  2     flags: 0x80 request, 0x40 two-way, 0x20 event, low 5 bits serialization id (2 = hessian2)
 *   byte  3     status (responses only; 20 = OK)
 *   bytes 4-11  request id (unsigned 64-bit big-endian)
 *   bytes 12-15 body length (unsigned 32-bit big-endian)
 *
 * Request body (hessian2 values, one after the other): dubbo protocol version, path (interface), service version,
 * method name, parameter-type descriptor (JVM style: `Ljava/lang/String;I`), each argument, attachments map.
 * Response body (status 20): int response type, then value / exception / nothing, then attachments for types 3-5.
 * Response body (other statuses): one hessian2 string, the error message.
 */
import hessian from 'hessian.js';
import java from 'js-to-java';

export const MAGIC_HIGH = 0xda;
export const MAGIC_LOW = 0xbb;
export const HEADER_LENGTH = 16;
export const FLAG_REQUEST = 0x80;
export const FLAG_TWOWAY = 0x40;
export const FLAG_EVENT = 0x20;
export const SERIALIZATION_MASK = 0x1f;
export const HESSIAN2 = 2;
/** Dubbo's default payload limit (8 MiB). */
export const DEFAULT_MAX_FRAME_SIZE = 8 * 1024 * 1024;
/** Body of a heartbeat event: hessian2 null. */
export const HEARTBEAT_BODY = Buffer.from([0x4e]);

/** Response status codes (org.apache.dubbo.remoting.exchange.Response). */
export const Status = {
  OK: 20,
  CLIENT_TIMEOUT: 30,
  SERVER_TIMEOUT: 31,
  BAD_REQUEST: 40,
  BAD_RESPONSE: 50,
  SERVICE_NOT_FOUND: 60,
  SERVICE_ERROR: 70,
  SERVER_ERROR: 80,
  CLIENT_ERROR: 90,
  SERVER_THREADPOOL_EXHAUSTED_ERROR: 100,
} as const;

export function statusName(status: number): string {
  for (const [name, code] of Object.entries(Status)) if (code === status) return name;
  return `UNKNOWN_${status}`;
}

/** The int that starts an OK response body (org.apache.dubbo.rpc.protocol.dubbo.DubboCodec). */
export const ResponseType = {
  WITH_EXCEPTION: 0,
  VALUE: 1,
  NULL_VALUE: 2,
  WITH_EXCEPTION_WITH_ATTACHMENTS: 3,
  VALUE_WITH_ATTACHMENTS: 4,
  NULL_VALUE_WITH_ATTACHMENTS: 5,
} as const;

/** A Dubbo request id: a number while it fits in 53 bits, otherwise a bigint. */
export type DubboId = number | bigint;

/** One frame as cut from the byte stream. `body` and `raw` are views of the received bytes. */
export interface RawFrame {
  readonly flags: number;
  readonly status: number;
  readonly id: DubboId;
  readonly isRequest: boolean;
  readonly twoWay: boolean;
  readonly event: boolean;
  readonly serialization: number;
  readonly body: Buffer;
  readonly raw: Buffer;
}

export class FrameError extends Error {}

export function writeId(buf: Buffer, offset: number, id: DubboId): void {
  if (typeof id === 'bigint') {
    buf.writeBigUInt64BE(BigInt.asUintN(64, id), offset);
  } else {
    if (!Number.isSafeInteger(id) || id < 0) throw new RangeError(`bad Dubbo request id ${id}`);
    buf.writeUInt32BE(Math.floor(id / 0x1_0000_0000), offset);
    buf.writeUInt32BE(id >>> 0, offset + 4);
  }
}

export function readId(buf: Buffer, offset: number): DubboId {
  const high = buf.readUInt32BE(offset);
  const low = buf.readUInt32BE(offset + 4);
  if (high < 0x20_0000) return high * 0x1_0000_0000 + low;
  return buf.readBigUInt64BE(offset);
}

/** Key usable in a Map for an id, whatever its JS type. */
export function idKey(id: DubboId): string {
  return typeof id === 'bigint' ? id.toString() : String(id);
}

export function encodeHeader(flags: number, status: number, id: DubboId, bodyLength: number): Buffer {
  const header = Buffer.alloc(HEADER_LENGTH);
  header[0] = MAGIC_HIGH;
  header[1] = MAGIC_LOW;
  header[2] = flags;
  header[3] = status;
  writeId(header, 4, id);
  header.writeUInt32BE(bodyLength, 12);
  return header;
}

export function encodeFrame(flags: number, status: number, id: DubboId, body: Buffer): Buffer {
  return Buffer.concat([encodeHeader(flags, status, id, body.length), body]);
}

/**
 * Cuts a byte stream into frames: handles frames split across reads and many frames per read. Throws
 * {@link FrameError} on a bad magic or an oversize frame; the caller should then close the connection.
 */
export class FrameParser {
  private pending: Buffer | null = null;

  constructor(
    private readonly onFrame: (frame: RawFrame) => void,
    private readonly maxFrameSize: number = DEFAULT_MAX_FRAME_SIZE,
  ) {}

  /** Bytes received but not yet part of a whole frame. */
  get buffered(): number {
    return this.pending?.length ?? 0;
  }

  push(chunk: Buffer): void {
    let buf = this.pending && this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    let offset = 0;
    while (buf.length - offset >= HEADER_LENGTH) {
      if (buf[offset] !== MAGIC_HIGH || buf[offset + 1] !== MAGIC_LOW) {
        throw new FrameError(
          `bad magic 0x${buf.subarray(offset, offset + 2).toString('hex')} at stream offset ${offset}`,
        );
      }
      const bodyLength = buf.readUInt32BE(offset + 12);
      if (bodyLength > this.maxFrameSize) {
        throw new FrameError(`frame body of ${bodyLength} bytes exceeds the limit of ${this.maxFrameSize}`);
      }
      const end = offset + HEADER_LENGTH + bodyLength;
      if (end > buf.length) break;
      const raw = buf.subarray(offset, end);
      const flags = raw[2]!;
      this.onFrame({
        flags,
        status: raw[3]!,
        id: readId(raw, 4),
        isRequest: (flags & FLAG_REQUEST) !== 0,
        twoWay: (flags & FLAG_TWOWAY) !== 0,
        event: (flags & FLAG_EVENT) !== 0,
        serialization: flags & SERIALIZATION_MASK,
        body: raw.subarray(HEADER_LENGTH),
        raw,
      });
      offset = end;
    }
    if (offset < buf.length) {
      // Copy so that a retained tail does not pin a large chunk.
      this.pending = Buffer.from(buf.subarray(offset));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Requests

/** A hessian value tagged with its Java class, as js-to-java builds it. */
export interface JavaValue {
  $class: string;
  $: unknown;
}

export function isJavaValue(v: unknown): v is JavaValue {
  return typeof v === 'object' && v !== null && typeof (v as JavaValue).$class === 'string' && '$' in v;
}

const PRIMITIVE_DESC: Record<string, string> = {
  void: 'V',
  boolean: 'Z',
  byte: 'B',
  char: 'C',
  double: 'D',
  float: 'F',
  int: 'I',
  long: 'J',
  short: 'S',
};

/** JVM descriptor of one Java type name (`int` → `I`, `java.lang.String` → `Ljava/lang/String;`, `[int` → `[I`). */
export function typeDescriptor(className: string): string {
  let dims = '';
  let t = className;
  while (t.startsWith('[')) {
    dims += '[';
    t = t.slice(1);
  }
  if (t.endsWith('[]')) {
    while (t.endsWith('[]')) {
      dims += '[';
      t = t.slice(0, -2);
    }
  }
  const prim = PRIMITIVE_DESC[t];
  return dims + (prim ?? `L${t.replace(/\./g, '/')};`);
}

/** Parameter-type descriptor for arguments: typed values use their `$class`, plain JS values a natural guess. */
export function describeArgs(args: readonly unknown[]): string {
  return args
    .map((a) => {
      if (isJavaValue(a)) return typeDescriptor(a.$class);
      switch (typeof a) {
        case 'string':
          return 'Ljava/lang/String;';
        case 'number':
          return Number.isInteger(a) ? 'I' : 'D';
        case 'boolean':
          return 'Z';
        case 'object':
          if (a === null) return 'Ljava/lang/Object;';
          return Array.isArray(a) ? 'Ljava/util/List;' : 'Ljava/util/Map;';
        default:
          return 'Ljava/lang/Object;';
      }
    })
    .join('');
}

/** Splits a parameter-type descriptor into one descriptor per parameter (`Ljava/lang/String;I` → 2 entries). */
export function splitDescriptor(desc: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < desc.length) {
    const start = i;
    while (desc[i] === '[') i++;
    const c = desc[i];
    if (c === undefined) throw new FrameError(`truncated parameter descriptor "${desc}"`);
    if (c === 'L') {
      const semi = desc.indexOf(';', i);
      if (semi < 0) throw new FrameError(`unterminated class in parameter descriptor "${desc}"`);
      i = semi + 1;
    } else if ('VZBCDFIJS'.includes(c)) {
      i++;
    } else {
      throw new FrameError(`bad parameter descriptor "${desc}" at ${i}`);
    }
    out.push(desc.slice(start, i));
  }
  return out;
}

export interface RequestSpec {
  /** Dubbo protocol version written first in the body; Dubbo 2.7 sends '2.0.2'. */
  dubboVersion?: string;
  /** Interface name (the Dubbo path). */
  path: string;
  /** Service version; real Dubbo consumers send '0.0.0' when none is configured. */
  version?: string | null;
  method: string;
  /** Arguments: js-to-java typed values or plain JS values (see {@link describeArgs}). */
  args?: readonly unknown[];
  /** Overrides the descriptor derived from `args`. */
  paramTypes?: string;
  /** Attachments; `path`, `interface` and `version` are added unless given. */
  attachments?: Record<string, unknown>;
}

export function encodeRequestBody(spec: RequestSpec): Buffer {
  const args = spec.args ?? [];
  const version = spec.version === undefined ? '0.0.0' : spec.version;
  const enc = new hessian.EncoderV2();
  enc.write(spec.dubboVersion ?? '2.0.2');
  enc.write(spec.path);
  enc.write(version);
  enc.write(spec.method);
  enc.write(spec.paramTypes ?? describeArgs(args));
  for (const a of args) enc.write(a);
  const attachments: Record<string, unknown> = {
    path: spec.path,
    interface: spec.path,
    ...(version !== null ? { version } : {}),
    ...spec.attachments,
  };
  enc.write({ $class: 'java.util.HashMap', $: attachments });
  return enc.get();
}

export function requestFlags(twoWay: boolean): number {
  return FLAG_REQUEST | HESSIAN2 | (twoWay ? FLAG_TWOWAY : 0);
}

export function encodeRequest(id: DubboId, spec: RequestSpec, opts: { twoWay?: boolean } = {}): Buffer {
  return encodeFrame(requestFlags(opts.twoWay ?? true), 0, id, encodeRequestBody(spec));
}

/** A heartbeat request (flags 0xe2, or 0xa2 one-way) or, with `response`, a heartbeat reply (0x22, status 20). */
export function encodeHeartbeat(id: DubboId, opts: { response?: boolean; twoWay?: boolean } = {}): Buffer {
  const flags = opts.response
    ? FLAG_EVENT | HESSIAN2
    : FLAG_REQUEST | FLAG_EVENT | HESSIAN2 | ((opts.twoWay ?? true) ? FLAG_TWOWAY : 0);
  return encodeFrame(flags, opts.response ? Status.OK : 0, id, HEARTBEAT_BODY);
}

export interface DecodedRequest {
  dubboVersion: string;
  path: string;
  version: string | null;
  method: string;
  paramTypes: string;
  args: unknown[];
  attachments: Record<string, unknown>;
}

export function decodeRequestBody(body: Buffer): DecodedRequest {
  const dec = new hessian.DecoderV2(body);
  const dubboVersion = dec.read() as string;
  const path = dec.read() as string;
  const version = dec.read() as string | null;
  const method = dec.read() as string;
  const paramTypes = (dec.read() as string | null) ?? '';
  if (typeof path !== 'string' || typeof method !== 'string') {
    throw new FrameError('request body does not start with dubbo version, path, version, method');
  }
  const n = splitDescriptor(paramTypes).length;
  const args: unknown[] = [];
  for (let i = 0; i < n; i++) args.push(dec.read());
  let attachments: Record<string, unknown> = {};
  if (dec.position() < body.length) {
    const m = dec.read();
    if (m && typeof m === 'object') attachments = m as Record<string, unknown>;
  }
  return { dubboVersion, path, version, method, paramTypes, args, attachments };
}

// ---------------------------------------------------------------------------------------------------------------
// Responses

/**
 * Whether a request's Dubbo protocol version makes the provider answer with response types 3-5 (with attachments):
 * org.apache.dubbo.common.Version.isSupportResponseAttachment — 2.0.2 ≤ version ≤ 2.0.99.
 */
export function supportsResponseAttachments(dubboVersion: string | null | undefined): boolean {
  if (!dubboVersion) return false;
  const parts = dubboVersion.split('.').map((p) => parseInt(p, 10));
  if (parts.some((p) => Number.isNaN(p))) return false;
  while (parts.length < 4) parts.push(0);
  const v = parts.slice(0, 4).reduce((acc, p) => acc * 100 + p, 0);
  return v >= 2_00_02_00 && v <= 2_00_99_00;
}

/** A java.lang.Throwable-like object (detailMessage, stackTrace, cause) as Java's hessian2 serializer writes it. */
export function javaException(className: string, message: string, where = 'org.apache.dubbo.samples.basic.impl.DemoServiceImpl'): JavaValue {
  return {
    $class: className,
    $: {
      detailMessage: java.String(message),
      stackTrace: java('[java.lang.StackTraceElement', [
        {
          $class: 'java.lang.StackTraceElement',
          $: {
            declaringClass: java.String(where),
            methodName: java.String('invoke'),
            fileName: java.String('DemoServiceImpl.java'),
            lineNumber: java('int', 1),
          },
        },
      ]),
      cause: { $class: 'java.lang.Throwable', $: null },
    },
  };
}

export type ResponseBody =
  | { kind: 'value'; value: unknown; attachments?: Record<string, unknown> | undefined }
  | { kind: 'exception'; exception: JavaValue; attachments?: Record<string, unknown> | undefined };

/** An OK (status 20) response; response types 3-5 are used when `attachments` is given. */
export function encodeOkResponse(id: DubboId, result: ResponseBody): Buffer {
  const enc = new hessian.EncoderV2();
  const withAtt = result.attachments !== undefined;
  if (result.kind === 'exception') {
    enc.write(withAtt ? ResponseType.WITH_EXCEPTION_WITH_ATTACHMENTS : ResponseType.WITH_EXCEPTION);
    enc.write(result.exception);
  } else if (result.value === null || result.value === undefined) {
    enc.write(withAtt ? ResponseType.NULL_VALUE_WITH_ATTACHMENTS : ResponseType.NULL_VALUE);
  } else {
    enc.write(withAtt ? ResponseType.VALUE_WITH_ATTACHMENTS : ResponseType.VALUE);
    enc.write(result.value);
  }
  if (withAtt) enc.write({ $class: 'java.util.HashMap', $: result.attachments });
  return encodeFrame(HESSIAN2, Status.OK, id, enc.get());
}

/** A non-OK response: the body is the error message as one hessian2 string (ExchangeCodec.encodeResponse). */
export function encodeErrorResponse(id: DubboId, status: number, message: string, opts: { event?: boolean } = {}): Buffer {
  const body = new hessian.EncoderV2().write(message).get();
  return encodeFrame(HESSIAN2 | (opts.event ? FLAG_EVENT : 0), status, id, body);
}

export interface DecodedResponse {
  status: number;
  /** Response type int (status 20 only). */
  responseType?: number;
  /** The returned value (types 1/4; null for 2/5). */
  value?: unknown;
  /** Business exception (types 0/3) or the error message of a non-OK status. */
  error?: { className: string; message: string; raw?: unknown };
  /** Response attachments (types 3-5). */
  attachments?: Record<string, unknown>;
}

export function decodeResponseBody(status: number, body: Buffer): DecodedResponse {
  if (status !== Status.OK) {
    let message: string;
    try {
      const v = new hessian.DecoderV2(body).read();
      message = typeof v === 'string' ? v : JSON.stringify(v);
    } catch {
      message = body.toString('utf8');
    }
    return { status, error: { className: statusName(status), message } };
  }
  const dec = new hessian.DecoderV2(body);
  const responseType = dec.read() as number;
  const out: DecodedResponse = { status, responseType };
  switch (responseType) {
    case ResponseType.VALUE:
    case ResponseType.VALUE_WITH_ATTACHMENTS:
      out.value = dec.read();
      break;
    case ResponseType.NULL_VALUE:
    case ResponseType.NULL_VALUE_WITH_ATTACHMENTS:
      out.value = null;
      break;
    case ResponseType.WITH_EXCEPTION:
    case ResponseType.WITH_EXCEPTION_WITH_ATTACHMENTS: {
      const e = dec.read();
      if (e instanceof Error) out.error = { className: e.name, message: e.message, raw: e };
      else out.error = { className: 'unknown', message: String(e), raw: e };
      break;
    }
    default:
      throw new FrameError(`unknown response type ${responseType}`);
  }
  if (responseType >= 3) {
    const a = dec.read();
    out.attachments = a && typeof a === 'object' ? (a as Record<string, unknown>) : {};
  }
  return out;
}
