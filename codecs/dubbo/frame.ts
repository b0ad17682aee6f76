/**
 * The Dubbo2 frame header: constants, header checks, request ids, and the fixed-shape replies the proxy writes
 * itself (local replies, heartbeat answers).
 *
 *   0-1   magic 0xda 0xbb
 *   2     flags: 0x80 request, 0x40 two-way, 0x20 event, low 5 bits serialization id (2 = hessian2)
 *   3     status (responses)
 *   4-11  request id, uint64 big-endian
 *   12-15 body length, uint32 big-endian
 */
import { CodecError, type LocalReply, type RequestId } from '../../src/codec.js';
import { encodeHessianString } from './hessian-write.js';

export const HEADER_LENGTH = 16;
export const MAGIC_HIGH = 0xda;
export const MAGIC_LOW = 0xbb;

export const FLAG_REQUEST = 0x80;
export const FLAG_TWOWAY = 0x40;
export const FLAG_EVENT = 0x20;
export const SERIALIZATION_MASK = 0x1f;
export const SERIALIZATION_HESSIAN2 = 2;

/** Response status byte (org.apache.dubbo.remoting.exchange.Response). */
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

/** The hessian int leading an OK response body (org.apache.dubbo.rpc.protocol.dubbo.DubboCodec). */
export const ResponseType = {
  WITH_EXCEPTION: 0,
  VALUE: 1,
  NULL_VALUE: 2,
  WITH_EXCEPTION_WITH_ATTACHMENTS: 3,
  VALUE_WITH_ATTACHMENTS: 4,
  NULL_VALUE_WITH_ATTACHMENTS: 5,
} as const;

/** hessian2 `N`: the body of a heartbeat and of its answer. */
export const HESSIAN_NULL = 0x4e;

const TWO_POW_32 = 0x1_0000_0000;
/** Largest high word for which `high * 2^32 + low` stays a safe integer (below 2^53). */
const SAFE_HIGH_LIMIT = 0x20_0000;

/**
 * Checks the header at `off` (16 bytes available) and returns the body length. Everything a frame can be rejected
 * for is decided here, before a byte of the body is buffered.
 */
export function checkHeader(buf: Buffer, off: number, maxBody: number): number {
  if (buf[off] !== MAGIC_HIGH || buf[off + 1] !== MAGIC_LOW) {
    throw new CodecError('bad_magic', `not a dubbo frame: magic 0x${hex2(buf[off])}${hex2(buf[off + 1])}`);
  }
  const serialization = buf[off + 2] & SERIALIZATION_MASK;
  if (serialization !== SERIALIZATION_HESSIAN2) {
    throw new CodecError(
      'unsupported_serialization',
      `dubbo serialization id ${serialization} is not supported (only hessian2 = 2)`,
    );
  }
  const bodyLength = buf.readUInt32BE(off + 12);
  if (bodyLength > maxBody) {
    throw new CodecError('frame_too_large', `dubbo body of ${bodyLength} bytes exceeds the limit of ${maxBody}`);
  }
  return bodyLength;
}

/**
 * Rejects garbage before a whole header has arrived: a peer that sends a few bytes of junk is closed at once rather
 * than being waited on.
 */
export function checkMagicPrefix(buf: Buffer, off: number, len: number): void {
  if (len > 0 && buf[off] !== MAGIC_HIGH) {
    throw new CodecError('bad_magic', `not a dubbo frame: first byte 0x${hex2(buf[off])}`);
  }
  if (len > 1 && buf[off + 1] !== MAGIC_LOW) {
    throw new CodecError('bad_magic', `not a dubbo frame: magic 0x${hex2(buf[off])}${hex2(buf[off + 1])}`);
  }
}

/** Reads the uint64 id at `off + 4`: a number when it is a safe integer, else a bigint. */
export function readRequestId(buf: Buffer, off: number): RequestId {
  const high = buf.readUInt32BE(off + 4);
  const low = buf.readUInt32BE(off + 8);
  if (high < SAFE_HIGH_LIMIT) return high * TWO_POW_32 + low;
  return buf.readBigUInt64BE(off + 4);
}

/** Writes `id` as a uint64 at bytes 4-11 of the frame starting at `off` (in place). */
export function writeRequestId(buf: Buffer, off: number, id: RequestId): void {
  if (typeof id === 'bigint') {
    // Java ids are signed longs: a negative bigint is written as its two's complement, as Java would.
    buf.writeBigUInt64BE(BigInt.asUintN(64, id), off + 4);
    return;
  }
  if (!Number.isSafeInteger(id) || id < 0) throw new RangeError(`invalid dubbo request id ${id}`);
  buf.writeUInt32BE(Math.floor(id / TWO_POW_32), off + 4);
  buf.writeUInt32BE(id % TWO_POW_32, off + 8);
}

/** The dubbo status a local reply of each kind carries. */
export function localReplyStatus(reply: LocalReply): number {
  switch (reply.kind) {
    case 'no_route':
      return Status.SERVICE_NOT_FOUND;
    case 'no_healthy_upstream':
    case 'upstream_reset':
      return Status.SERVICE_ERROR;
    case 'timeout':
      return Status.SERVER_TIMEOUT;
    case 'over_limit':
      return Status.SERVER_THREADPOOL_EXHAUSTED_ERROR;
    case 'bad_response':
      return Status.BAD_RESPONSE;
    case 'permission_denied':
      // As Envoy's generic_proxy Dubbo codec answers a PermissionDenied status (its RBAC filter's denial).
      return Status.SERVER_ERROR;
    case 'bad_request':
      return Status.BAD_REQUEST;
    case 'internal_error':
      return Status.SERVER_ERROR;
    case 'fault_abort': {
      // The code goes in one byte; 20 would announce a result body, which a message is not.
      const code = reply.code;
      if (code !== undefined && Number.isInteger(code) && code > 0 && code <= 0xff && code !== Status.OK) return code;
      return Status.SERVICE_ERROR;
    }
  }
}

/**
 * A response header + body: flags = hessian2 (plus `extraFlags`), `status`, the request's id as decoded (not read
 * back from its bytes, which the proxy may have patched with an upstream id), and `body`.
 */
export function buildResponse(id: RequestId, extraFlags: number, status: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HEADER_LENGTH + body.length);
  out[0] = MAGIC_HIGH;
  out[1] = MAGIC_LOW;
  out[2] = SERIALIZATION_HESSIAN2 | extraFlags;
  out[3] = status;
  writeRequestId(out, 0, id);
  out.writeUInt32BE(body.length, 12);
  body.copy(out, HEADER_LENGTH);
  return out;
}

/** A non-OK response whose body is the message as a hessian2 string (what Java providers send). */
export function buildErrorResponse(id: RequestId, status: number, message: string): Buffer {
  return buildResponse(id, 0, status, encodeHessianString(message));
}

const NULL_BODY = Buffer.from([HESSIAN_NULL]);

/** The answer to a two-way heartbeat: an OK event response with the same id and a null body. */
export function buildHeartbeatReply(id: RequestId): Buffer {
  return buildResponse(id, FLAG_EVENT, Status.OK, NULL_BODY);
}

function hex2(b: number | undefined): string {
  return (b ?? 0).toString(16).padStart(2, '0');
}
