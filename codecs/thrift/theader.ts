/**
 * THeader (Apache Thrift doc/specs/HeaderFormat.md): a framed transport with out-of-band key/value headers.
 *
 *   0-3    frame length (bytes after this field), i32
 *   4-5    magic 0x0FFF
 *   6-7    flags, u16
 *   8-11   sequence number, u32 (clients copy the message seqid here; some write 0)
 *   12-13  header size in 4-byte words, u16
 *   14..   header: varint protocol id (0 binary, 2 compact), varint transform count, transform ids,
 *          info blocks (varint info id; id 1 = key/value: varint count, then varint-length key and value bytes),
 *          zero padding up to the header size
 *   ...    payload: one binary or compact message
 *
 * Transforms (zlib, snappy…) would hide the message from the proxy; frames that use them are refused.
 */
import { CodecError, type KeyValue } from '../../src/codec.js';
import { ScanError, Scanner, TRUNCATED, varintLength, writeVarint } from './wire.js';
import { strictUtf8 } from './utf8.js';

export const HEADER_MAGIC = 0x0fff;
export const MAGIC_AT = 4;
export const FLAGS_AT = 6;
export const HEADER_SEQID_AT = 8;
export const HEADER_WORDS_AT = 12;
export const HEADER_AT = 14;
/** Bytes of a THeader frame after the length field and before the header: magic, flags, seqid, size. */
export const FIXED_AFTER_LENGTH = 10;
export const MAX_HEADER_BYTES = 0xffff * 4;
/**
 * Key/value headers a frame may carry, all info blocks together (the proxy's limit: Thrift's readers are bounded
 * only by the 256 KiB header section, room for ~130,000 empty headers). Real clients send a handful; past this the
 * frame is refused as `bad_body` when the count is read, before any header is.
 */
export const MAX_HEADERS = 1024;

export const PROTOCOL_BINARY = 0;
export const PROTOCOL_COMPACT = 2;
const INFO_PADDING = 0;
const INFO_KEY_VALUE = 1;

const TRANSFORM_NAMES: Record<number, string> = { 1: 'zlib', 2: 'hmac', 3: 'snappy' };
/** Reused by every read here (none nests in another); reset after use so that it holds no frame. */
const scanner = new Scanner();
const EMPTY = Buffer.alloc(0);

/** What decode reads of a THeader frame's header section (positions absolute in the frame). */
export interface HeaderLayout {
  readonly protocolId: number;
  /** Where the info blocks start (after the protocol id and transforms). */
  readonly infoAt: number;
  /** Where the payload (the message) starts: the end of the header section. */
  readonly payloadAt: number;
}

/**
 * Checks the fixed part and the header section of a whole THeader frame (`raw` is the frame, length field
 * included). Throws CodecError for anything the proxy cannot pass on with understanding.
 */
export function readHeaderLayout(raw: Buffer): HeaderLayout {
  if (raw.length < HEADER_AT) throw new CodecError('bad_frame', `THeader frame of ${raw.length - 4} bytes is too short`);
  if (raw.readUInt16BE(MAGIC_AT) !== HEADER_MAGIC) throw new CodecError('bad_frame', 'THeader magic 0x0FFF missing');
  const payloadAt = HEADER_AT + raw.readUInt16BE(HEADER_WORDS_AT) * 4;
  if (payloadAt > raw.length) {
    throw new CodecError('bad_frame', `THeader header of ${payloadAt - HEADER_AT} bytes exceeds its frame`);
  }
  const s = scanner.reset(raw, HEADER_AT, payloadAt);
  try {
    const protocolId = s.varint32();
    if (protocolId !== PROTOCOL_BINARY && protocolId !== PROTOCOL_COMPACT) {
      throw new CodecError(
        'unsupported_protocol',
        `THeader protocol id ${protocolId} is not supported (0 binary and 2 compact are)`,
      );
    }
    const transforms = s.varint32();
    if (transforms !== 0) {
      const first = s.pos < payloadAt ? s.varint32() : -1;
      const name = TRANSFORM_NAMES[first] ?? `id ${first}`;
      throw new CodecError(
        'unsupported_transform',
        `THeader transform ${name} is not supported: the proxy must read the message (send without transforms)`,
      );
    }
    return { protocolId, infoAt: s.pos, payloadAt };
  } catch (err) {
    if (err === TRUNCATED || err instanceof ScanError) {
      throw new CodecError('bad_frame', 'THeader header section ends inside its protocol id or transforms');
    }
    throw err;
  } finally {
    s.reset(EMPTY, 0, 0);
  }
}

/** One key/value header as the bytes on the wire. */
interface RawHeader {
  key: Buffer;
  value: Buffer;
}

/**
 * Reads the key/value info blocks of `raw[infoAt, payloadAt)`. Padding (id 0) ends them; an unknown info id
 * does too (its length is unknown): `tailAt` is where that unknown block starts, or -1.
 */
function readInfoBlocks(raw: Buffer, infoAt: number, payloadAt: number): { headers: RawHeader[]; tailAt: number } {
  const headers: RawHeader[] = [];
  const s = scanner.reset(raw, infoAt, payloadAt);
  try {
    while (s.pos < payloadAt) {
      const at = s.pos;
      const id = s.varint32();
      if (id === INFO_PADDING) break;
      if (id !== INFO_KEY_VALUE) return { headers, tailAt: at };
      const count = s.size(s.varint32(), 'header count');
      if (count > MAX_HEADERS - headers.length) {
        throw new CodecError('bad_body', `THeader frame carries more than ${MAX_HEADERS} key/value headers`);
      }
      for (let i = 0; i < count; i++) {
        const kl = s.size(s.varint32(), 'header key length');
        const k = s.take(kl);
        const vl = s.size(s.varint32(), 'header value length');
        const v = s.take(vl);
        headers.push({ key: raw.subarray(k, k + kl), value: raw.subarray(v, v + vl) });
      }
    }
  } catch (err) {
    if (err === TRUNCATED || err instanceof ScanError) {
      throw new CodecError('bad_frame', 'THeader key/value headers run past the header section');
    }
    throw err;
  } finally {
    s.reset(EMPTY, 0, 0);
  }
  return { headers, tailAt: -1 };
}

/**
 * The key/value headers, keys lower-cased. Every THeader reader (Java, C++, python) keeps the last of duplicate
 * keys, case-sensitively, while the proxy's keys ignore case: so a request (`strict`) with two keys equal ignoring
 * case, or with a key or value that is not valid UTF-8 (Java replaces, python refuses, C++ keeps raw bytes), is
 * `bad_body`. A reply's headers are read as they are, the last duplicate winning.
 */
export function readHeaders(raw: Buffer, layout: HeaderLayout, into: Map<string, string>, strict = false): void {
  for (const h of readInfoBlocks(raw, layout.infoAt, layout.payloadAt).headers) {
    if (!strict) {
      into.set(h.key.toString('utf8').toLowerCase(), h.value.toString('utf8'));
      continue;
    }
    const key = strictUtf8(h.key, 0, h.key.length, 'THeader header key').toLowerCase();
    if (into.has(key)) {
      throw new CodecError('bad_body', `THeader header "${key}" appears twice (keys are compared ignoring case)`);
    }
    into.set(key, strictUtf8(h.value, 0, h.value.length, 'THeader header value'));
  }
}

/**
 * The frame with `mutation` set in its key/value headers: a header whose key equals a mutation key (ignoring
 * case) is replaced in place, the others are appended; the header section is rebuilt as one key/value block
 * (plus any unknown info block, kept verbatim after it) and padded; the frame length and header size follow.
 * Everything else, the payload included, is copied as it is. Returns the new frame and how far the payload moved.
 */
export function mutateHeaders(
  raw: Buffer,
  layout: HeaderLayout,
  mutation: readonly KeyValue[],
): { frame: Buffer; shift: number } {
  const { headers, tailAt } = readInfoBlocks(raw, layout.infoAt, layout.payloadAt);
  // One pass: each mutation key (the last of those equal ignoring case wins) replaces the first header with that
  // key; the keys no header had are appended in the order they were first given.
  const wanted = new Map<string, RawHeader | null>();
  for (const { key, value } of mutation) {
    wanted.set(key.toLowerCase(), { key: Buffer.from(key, 'utf8'), value: Buffer.from(value, 'utf8') });
  }
  for (let i = 0; i < headers.length; i++) {
    const lower = headers[i]!.key.toString('utf8').toLowerCase();
    const entry = wanted.get(lower);
    if (entry) {
      headers[i] = entry;
      wanted.set(lower, null); // placed
    }
  }
  for (const entry of wanted.values()) if (entry) headers.push(entry);

  // Protocol id and transform count (always 0: frames with transforms never get this far).
  let size = varintLength(layout.protocolId) + 1;
  if (headers.length > 0) {
    size += 1 + varintLength(headers.length);
    for (const h of headers) size += varintLength(h.key.length) + h.key.length + varintLength(h.value.length) + h.value.length;
  }
  const tail = tailAt >= 0 ? raw.subarray(tailAt, layout.payloadAt) : undefined;
  if (tail) size += tail.length;
  const headerBytes = (size + 3) & ~3;
  if (headerBytes > MAX_HEADER_BYTES) {
    throw new CodecError('header_too_large', `THeader headers of ${headerBytes} bytes exceed ${MAX_HEADER_BYTES}`);
  }

  const payloadLength = raw.length - layout.payloadAt;
  const out = Buffer.allocUnsafe(HEADER_AT + headerBytes + payloadLength);
  out.writeInt32BE(FIXED_AFTER_LENGTH + headerBytes + payloadLength, 0);
  raw.copy(out, MAGIC_AT, MAGIC_AT, HEADER_WORDS_AT); // magic, flags, seqid
  out.writeUInt16BE(headerBytes / 4, HEADER_WORDS_AT);
  let at = writeVarint(out, HEADER_AT, layout.protocolId);
  out[at++] = 0;
  if (headers.length > 0) {
    out[at++] = INFO_KEY_VALUE;
    at = writeVarint(out, at, headers.length);
    for (const h of headers) {
      at = writeVarint(out, at, h.key.length);
      at += h.key.copy(out, at);
      at = writeVarint(out, at, h.value.length);
      at += h.value.copy(out, at);
    }
  }
  if (tail) at += tail.copy(out, at);
  const payloadAt = HEADER_AT + headerBytes;
  out.fill(0, at, payloadAt);
  raw.copy(out, payloadAt, layout.payloadAt);
  return { frame: out, shift: payloadAt - layout.payloadAt };
}

/**
 * A whole THeader frame around `payload`: the given flags and header seqid, the protocol id, no transforms and no
 * info headers.
 */
export function buildHeaderFrame(flags: number, seqid: number, protocolId: number, payload: Buffer): Buffer {
  const headerBytes = 4; // protocol id (one byte: 0 or 2), transform count 0, two bytes of padding
  const out = Buffer.allocUnsafe(HEADER_AT + headerBytes + payload.length);
  out.writeInt32BE(FIXED_AFTER_LENGTH + headerBytes + payload.length, 0);
  out.writeUInt16BE(HEADER_MAGIC, MAGIC_AT);
  out.writeUInt16BE(flags, FLAGS_AT);
  out.writeInt32BE(seqid | 0, HEADER_SEQID_AT);
  out.writeUInt16BE(1, HEADER_WORDS_AT);
  out[HEADER_AT] = protocolId;
  out.fill(0, HEADER_AT + 1, HEADER_AT + headerBytes);
  payload.copy(out, HEADER_AT + headerBytes);
  return out;
}
