/**
 * KV-RPC: the small binary RPC protocol of this example, and a plain reference implementation of it for the demo
 * peers (server.ts, client.ts) and the tests. This is NOT the proxy's codec (codec.ts): the peers read and write
 * whole messages eagerly, the codec frames a stream lazily and without copying. Keeping the two apart lets the
 * tests check the codec against an independent reading of the protocol.
 *
 * A frame (all integers big-endian):
 *
 *   0-1    magic 0x4B 0x56 ("KV")
 *   2      version: 1
 *   3      flags: 0x01 RESPONSE, 0x02 ONEWAY, 0x04 HEARTBEAT; other bits are 0; RESPONSE and ONEWAY exclude each other
 *   4-7    request id, u32 (a response carries its request's id; the proxy rewrites ids, the client never sees it)
 *   8      status (responses; 0 in requests): see {@link Status}
 *   9      reserved, 0
 *   10-11  header-section length in bytes, u16
 *   12-15  body length in bytes, u32
 *   16..   header section: entries, each u8 key length (1-255), key (UTF-8, case-insensitive: write it lower-case),
 *          u16 value length, value (UTF-8); when a key repeats, the last entry wins
 *   ...    body: opaque bytes (the application's payload)
 *
 * Message kinds: a request (flags 0) is answered by a response (RESPONSE) with the same id; a oneway request
 * (ONEWAY) is not answered; a heartbeat (HEARTBEAT) is answered by HEARTBEAT|RESPONSE with the same id, status 0 and
 * nothing else, unless it is also ONEWAY. Conventional headers: `service`, `method`, and anything the application
 * wants to route on (`user`, `lane`…). A response from a proxy (not from the server) carries `error-kind`.
 */

export const MAGIC_0 = 0x4b; // 'K'
export const MAGIC_1 = 0x56; // 'V'
export const VERSION = 1;
export const HEADER_LENGTH = 16;

export const FLAG_RESPONSE = 0x01;
export const FLAG_ONEWAY = 0x02;
export const FLAG_HEARTBEAT = 0x04;
export const KNOWN_FLAGS = FLAG_RESPONSE | FLAG_ONEWAY | FLAG_HEARTBEAT;

export const MAX_HEADER_SECTION = 0xffff;
export const MAX_KEY_LENGTH = 0xff;
export const MAX_VALUE_LENGTH = 0xffff;
export const MAX_ID = 0xffff_ffff;

/** Response status codes. 0 is success, 1 an error the service itself raised; the rest are failures. */
export const Status = {
  OK: 0,
  /** The service raised an application error (a "business exception"). */
  APP_ERROR: 1,
  BAD_REQUEST: 2,
  /** No such service or method (a server), or no route (a proxy). */
  NOT_FOUND: 3,
  /** No healthy upstream, connect failure, upstream reset. */
  UNAVAILABLE: 4,
  TIMEOUT: 5,
  /** Rate limited, or over a circuit breaker. */
  OVERLOADED: 6,
  /** A fault injection abort without a code of its own. */
  ABORTED: 7,
  /** The upstream sent something that is not KV-RPC. */
  BAD_RESPONSE: 8,
  /** Denied by an authorization policy. */
  FORBIDDEN: 9,
} as const;
export type StatusCode = (typeof Status)[keyof typeof Status];

export function statusName(status: number): string {
  for (const [name, code] of Object.entries(Status)) if (code === status) return name;
  return `STATUS_${status}`;
}

/** One whole message as the peers see it. */
export interface KvMessage {
  flags: number;
  id: number;
  status: number;
  /** Lower-case keys, in wire order (a repeated key keeps its last value). */
  headers: Record<string, string>;
  body: Buffer;
}

export interface KvMessageInit {
  flags?: number;
  id: number;
  status?: number;
  /** Written in this order, keys as given (the protocol says lower-case; tests may send others). */
  headers?: Record<string, string> | ReadonlyArray<readonly [string, string]>;
  body?: Buffer | string;
}

export class WireError extends Error {}

export function isResponse(m: { flags: number }): boolean {
  return (m.flags & FLAG_RESPONSE) !== 0;
}
export function isHeartbeat(m: { flags: number }): boolean {
  return (m.flags & FLAG_HEARTBEAT) !== 0;
}
export function isOneway(m: { flags: number }): boolean {
  return (m.flags & FLAG_ONEWAY) !== 0;
}

/** The header section bytes of `headers`. */
export function encodeHeaders(headers: KvMessageInit['headers']): Buffer {
  const list = headers === undefined ? [] : Array.isArray(headers) ? headers : Object.entries(headers);
  const parts: Buffer[] = [];
  for (const [k, v] of list as ReadonlyArray<readonly [string, string]>) {
    const key = Buffer.from(k, 'utf8');
    const value = Buffer.from(v, 'utf8');
    if (key.length === 0 || key.length > MAX_KEY_LENGTH) throw new WireError(`header key "${k}" must be 1-255 bytes`);
    if (value.length > MAX_VALUE_LENGTH) throw new WireError(`header ${k}: value over 65535 bytes`);
    const head = Buffer.allocUnsafe(3);
    head[0] = key.length;
    head.writeUInt16BE(value.length, 1);
    parts.push(head.subarray(0, 1), key, head.subarray(1, 3), value);
  }
  const section = Buffer.concat(parts);
  if (section.length > MAX_HEADER_SECTION) throw new WireError(`header section of ${section.length} bytes exceeds 65535`);
  return section;
}

/** A whole frame. */
export function encodeMessage(m: KvMessageInit): Buffer {
  if (!Number.isInteger(m.id) || m.id < 0 || m.id > MAX_ID) throw new WireError(`request id ${m.id} is not a u32`);
  const section = encodeHeaders(m.headers);
  const body = m.body === undefined ? Buffer.alloc(0) : typeof m.body === 'string' ? Buffer.from(m.body, 'utf8') : m.body;
  const out = Buffer.allocUnsafe(HEADER_LENGTH + section.length + body.length);
  out[0] = MAGIC_0;
  out[1] = MAGIC_1;
  out[2] = VERSION;
  out[3] = m.flags ?? 0;
  out.writeUInt32BE(m.id, 4);
  out[8] = m.status ?? 0;
  out[9] = 0;
  out.writeUInt16BE(section.length, 10);
  out.writeUInt32BE(body.length, 12);
  section.copy(out, HEADER_LENGTH);
  body.copy(out, HEADER_LENGTH + section.length);
  return out;
}

export function encodeRequest(id: number, headers: KvMessageInit['headers'], body?: Buffer | string, oneway = false): Buffer {
  return encodeMessage({ flags: oneway ? FLAG_ONEWAY : 0, id, headers, body });
}

export function encodeResponse(id: number, status: number, headers: KvMessageInit['headers'], body?: Buffer | string): Buffer {
  return encodeMessage({ flags: FLAG_RESPONSE, id, status, headers, body });
}

export function encodeHeartbeat(id: number, opts: { response?: boolean; oneway?: boolean } = {}): Buffer {
  return encodeMessage({
    flags: FLAG_HEARTBEAT | (opts.response ? FLAG_RESPONSE : 0) | (opts.oneway ? FLAG_ONEWAY : 0),
    id,
  });
}

/** Reads one whole frame (`bytes` is exactly one frame). */
export function decodeMessage(bytes: Buffer): KvMessage {
  checkFixedHeader(bytes);
  const sectionLength = bytes.readUInt16BE(10);
  const bodyLength = bytes.readUInt32BE(12);
  if (bytes.length !== HEADER_LENGTH + sectionLength + bodyLength) {
    throw new WireError(`frame of ${bytes.length} bytes announces ${HEADER_LENGTH + sectionLength + bodyLength}`);
  }
  const headers: Record<string, string> = {};
  const end = HEADER_LENGTH + sectionLength;
  let at = HEADER_LENGTH;
  while (at < end) {
    const keyLength = bytes[at]!;
    if (keyLength === 0 || at + 1 + keyLength + 2 > end) throw new WireError('header entry runs past its section');
    const key = bytes.toString('utf8', at + 1, at + 1 + keyLength).toLowerCase();
    at += 1 + keyLength;
    const valueLength = bytes.readUInt16BE(at);
    at += 2;
    if (at + valueLength > end) throw new WireError('header value runs past its section');
    delete headers[key]; // a repeated key moves to the end with its last value
    headers[key] = bytes.toString('utf8', at, at + valueLength);
    at += valueLength;
  }
  return {
    flags: bytes[3]!,
    id: bytes.readUInt32BE(4),
    status: bytes[8]!,
    headers,
    body: Buffer.from(bytes.subarray(end)),
  };
}

function checkFixedHeader(bytes: Buffer): void {
  if (bytes.length < HEADER_LENGTH) throw new WireError(`frame of ${bytes.length} bytes is shorter than its header`);
  if (bytes[0] !== MAGIC_0 || bytes[1] !== MAGIC_1) throw new WireError(`bad magic 0x${bytes.toString('hex', 0, 2)}`);
  if (bytes[2] !== VERSION) throw new WireError(`unsupported version ${bytes[2]}`);
  const flags = bytes[3]!;
  if ((flags & ~KNOWN_FLAGS) !== 0 || (flags & (FLAG_RESPONSE | FLAG_ONEWAY)) === (FLAG_RESPONSE | FLAG_ONEWAY)) {
    throw new WireError(`bad flags 0x${flags.toString(16)}`);
  }
}

/** Cuts a byte stream into whole messages (copying; simple rather than fast). */
export class MessageReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxFrameSize = 16 * 1024 * 1024) {}

  push(chunk: Buffer): KvMessage[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: KvMessage[] = [];
    while (this.buf.length >= HEADER_LENGTH) {
      checkFixedHeader(this.buf);
      const total = HEADER_LENGTH + this.buf.readUInt16BE(10) + this.buf.readUInt32BE(12);
      if (total > this.maxFrameSize) throw new WireError(`frame of ${total} bytes is over the limit`);
      if (this.buf.length < total) break;
      out.push(decodeMessage(this.buf.subarray(0, total)));
      this.buf = this.buf.subarray(total);
    }
    return out;
  }
}
