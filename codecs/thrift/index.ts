/**
 * The Thrift codec: binary (strict and old/lax) and compact protocols over framed, unframed (buffered) and THeader
 * transports. Frames the byte stream, exposes the method, the TMultiplexedProtocol service and THeader key/value
 * headers lazily, rewrites seqids, writes THeader headers, and answers with TApplicationExceptions.
 *
 * Hot path: framed and THeader frames are cut by their length prefix and the message head (name offsets, type,
 * seqid) is read in place; for replies one field header of the result struct is peeked for the status. Arguments
 * are never decoded, only skipped (wire.ts, no allocation): unframed messages carry no length, so their struct is
 * skipped to find the end; a framed or THeader message must end exactly where its frame does (`bad_message`
 * otherwise), since the framed readers of Thrift servers read a short struct on into the next frames, which would
 * desynchronise an upstream connection shared by many clients.
 * A frame that lies in one chunk is a subarray of it.
 *
 * Transport detection, once per connection, from its first bytes (as Envoy's `AUTO_TRANSPORT`/`AUTO_PROTOCOL`):
 *
 *   1. byte 0 is 0x80 (binary version, must be followed by 0x01) or 0x82 (compact protocol id): an unframed message.
 *   2. any other byte 0 >= 0x80: not Thrift (`bad_protocol`) — a frame length is a positive i32.
 *   3. bytes 4-5 are 0x0FFF: THeader, bytes 0-3 its length.
 *   4. byte 4 is 0x80 (then 0x01) or 0x82: framed, binary or compact, bytes 0-3 its length.
 *   5. otherwise the old (lax) binary form, without version word: framed when bytes 4-7 are a name length (at
 *      most 64 KiB) that fits, with type, seqid and at least an empty struct, in the frame bytes 0-3 announce;
 *      else unframed when bytes 0-3 are such a name length; else not Thrift (`bad_protocol`).
 *   A frame length above the limit is `frame_too_large` as soon as rules 3-5 have identified it as a length.
 *
 * The transport then holds for the connection (a frame of another transport is `bad_frame`/`bad_protocol`);
 * the protocol is read per message from its first byte, so a lax binary client may get strict binary replies.
 *
 * Mutations are carried in THeader key/value headers only: Thrift framed and unframed transports have nowhere
 * to put them, and converting a connection to THeader would break a peer that did not choose it. `encode` leaves
 * such frames unchanged apart from the seqid.
 */
import { PREALLOCATE_LIMIT } from '../../src/partial-frame.js';
import {
  CodecError,
  type CodecFactory,
  type CodecOptions,
  type CodecSession,
  type Frame,
  type FrameEdit,
  type LocalReply,
} from '../../src/codec.js';
import { ThriftFrame, type ThriftTransport } from './frame.js';
import { FIXED_AFTER_LENGTH, HEADER_MAGIC } from './theader.js';
import {
  BINARY_VERSION_HIGH,
  BINARY_VERSION_LOW,
  COMPACT_PROTOCOL_ID,
  COMPACT_TYPE_SHIFT,
  COMPACT_VERSION,
  COMPACT_VERSION_MASK,
  ScanError,
  scanRefusal,
} from './wire.js';
import { NEED_MORE, UnframedScanner } from './unframed.js';

export { ThriftFrame, AppExceptionType, type ThriftProtocol, type ThriftTransport } from './frame.js';

/** Smallest lax binary message: name length, empty name, type, seqid, STOP. */
const MIN_LAX_MESSAGE = 10;
/** Longest method name detection believes in for the old (lax) binary form, which has no version word. */
const MAX_LAX_NAME = 0xffff;
/** The smallest buffer kept for a message of unknown length (unframed, or a length not yet whole). */
const MIN_PENDING = 256;

class ThriftSession implements CodecSession {
  private readonly max: number;
  private transport: ThriftTransport | undefined;
  private readonly unframed = new UnframedScanner();
  /** The start of an incomplete frame, gathered across chunks. */
  private pending: Buffer | null = null;
  private fill = 0;
  /** The pending frame's whole length once known (framed, THeader): `pending` is then exactly that big. */
  private expect = 0;
  /** Length unknown: the frame cannot get further before this many bytes are pending. */
  private needAt = 0;

  constructor(options: CodecOptions) {
    this.max = options.maxFrameSize;
  }

  get buffered(): number {
    return this.fill;
  }

  decode(chunk: Buffer, sink: (frame: Frame) => void): void {
    let data = chunk;
    let end = chunk.length;
    let off = 0;
    /** `data` is the former pending buffer: when nothing was cut from it, it can keep gathering. */
    let reusable = false;
    if (this.pending !== null) {
      if (this.expect > 0) {
        const n = Math.min(this.expect - this.fill, end);
        if (this.fill + n > this.pending.length) this.grow(Math.min(this.expect, Math.max(this.fill + n, this.pending.length * 2)));
        chunk.copy(this.pending, this.fill, 0, n);
        this.fill += n;
        if (this.fill < this.expect) return;
        const raw = this.pending;
        this.clear();
        off = n;
        sink(new ThriftFrame(raw, this.transport!));
      } else {
        this.append(chunk);
        if (this.fill < this.needAt) return;
        data = this.pending;
        end = this.fill;
        reusable = true;
        this.clear();
      }
    }
    while (off < end) {
      const total = this.measure(data, off, end);
      if (total > 0 && total <= end - off) {
        const raw = data.subarray(off, off + total);
        off += total;
        reusable = false;
        sink(new ThriftFrame(raw, this.transport!));
        continue;
      }
      this.keep(data, off, end, total, reusable);
      return;
    }
  }

  encode(frame: Frame, edit?: FrameEdit): Buffer {
    if (edit === undefined) return frame.raw;
    const mutation = edit.mutation !== undefined && edit.mutation.length > 0 ? edit.mutation : undefined;
    if (edit.requestId === undefined && mutation === undefined) return edit.copy === true ? Buffer.from(frame.raw) : frame.raw;
    return asThriftFrame(frame).encode(edit.requestId, mutation, edit.copy === true);
  }

  localReply(request: Frame, reply: LocalReply): Buffer | undefined {
    return asThriftFrame(request).localReply(reply);
  }

  heartbeatReply(): Buffer | undefined {
    return undefined; // Thrift has no heartbeats
  }

  /**
   * The length of the frame at `off` when it is known (it may not all be there yet), or 0 when more bytes are
   * needed to know it (`needAt` then says how many, counted from `off`).
   */
  private measure(data: Buffer, off: number, end: number): number {
    if (this.transport === undefined) {
      const detected = this.detect(data, off, end);
      if (detected === undefined) return 0;
      this.transport = detected;
    }
    if (this.transport === 'unframed') return this.measureUnframed(data, off, end);
    const avail = end - off;
    if (avail < 4) {
      if (data[off]! >= 0x80) throw badLength(data[off]!);
      this.needAt = 4;
      return 0;
    }
    const length = data.readUInt32BE(off);
    if (length >= 0x8000_0000) throw badLength(data[off]!);
    if (length > this.max) throw tooLarge(length, this.max);
    if (this.transport === 'header') {
      if (length < FIXED_AFTER_LENGTH) throw new CodecError('bad_frame', `THeader frame length ${length} is too short`);
      if (avail >= 6 && data.readUInt16BE(off + 4) !== HEADER_MAGIC) {
        throw new CodecError('bad_frame', 'frame without the THeader magic on a THeader connection');
      }
    } else if (avail > 4) {
      checkMessageStart(data, off + 4, end);
    }
    return 4 + length;
  }

  /** Detection (see the file comment); undefined when more bytes are needed (`needAt`). */
  private detect(data: Buffer, off: number, end: number): ThriftTransport | undefined {
    const avail = end - off;
    const b0 = data[off]!;
    if (b0 === BINARY_VERSION_HIGH || b0 === COMPACT_PROTOCOL_ID) {
      checkMessageStart(data, off, end);
      return 'unframed';
    }
    if (b0 > 0x7f) {
      throw new CodecError('bad_protocol', `not thrift: first byte 0x${hex2(b0)} is neither a frame length nor a message`);
    }
    if (avail < 6) {
      this.needAt = 6;
      return undefined;
    }
    const length = data.readUInt32BE(off);
    const b4 = data[off + 4]!;
    if (data.readUInt16BE(off + 4) === HEADER_MAGIC) {
      if (length > this.max) throw tooLarge(length, this.max);
      return 'header';
    }
    if (b4 === BINARY_VERSION_HIGH || b4 === COMPACT_PROTOCOL_ID) {
      if (length > this.max) throw tooLarge(length, this.max);
      checkMessageStart(data, off + 4, end);
      return 'framed';
    }
    if (avail < 8) {
      this.needAt = 8;
      return undefined;
    }
    // Old (lax) binary. Method names are short: a "name length" beyond MAX_LAX_NAME means these bytes are not
    // Thrift at all (an HTTP request reads as a huge length), which is worth telling apart from a big frame.
    const nameLength = data.readUInt32BE(off + 4);
    if (nameLength <= MAX_LAX_NAME && length >= MIN_LAX_MESSAGE && nameLength <= length - MIN_LAX_MESSAGE) {
      if (length > this.max) throw tooLarge(length, this.max);
      return 'framed';
    }
    if (length <= MAX_LAX_NAME) return 'unframed';
    throw new CodecError(
      'bad_protocol',
      `not thrift: first bytes 0x${data.toString('hex', off, off + 8)} are neither a frame nor a message head`,
    );
  }

  /**
   * Finds the end of an unframed message by skipping its struct. The scanner keeps its place between calls (the
   * message at `off` is the one it stopped in, its bytes moved but not changed), so a message that arrives in
   * small pieces is walked once, not once per piece.
   */
  private measureUnframed(data: Buffer, off: number, end: number): number {
    checkMessageStart(data, off, end);
    const s = this.unframed;
    let total: number;
    try {
      total = s.scan(data, off, end);
    } catch (err) {
      s.reset();
      if (err instanceof ScanError) throw scanRefusal(err);
      throw err;
    }
    if (total === NEED_MORE) {
      const need = s.needAt;
      // The message will be larger than the limit, or already is without being complete.
      if (need > this.max || end - off > this.max) {
        s.reset();
        throw need > this.max ? tooLarge(need, this.max) : tooLarge(end - off, this.max);
      }
      this.needAt = need;
      return 0;
    }
    if (total > this.max) throw tooLarge(total, this.max); // the scanner is already reset for the next message
    return total;
  }

  /** Steps the unframed scanner has taken on this connection (tests bound it to show it is linear). */
  get unframedWork(): number {
    return this.unframed.work;
  }

  /** Keeps `data[off, end)`, the start of a frame of `total` bytes (0: unknown yet), for the next chunk. */
  private keep(data: Buffer, off: number, end: number, total: number, reusable: boolean): void {
    const left = end - off;
    if (total > 0) {
      // A frame announced large grows as its bytes come: a header is not an allocation of the size it claims.
      this.pending = Buffer.allocUnsafe(total <= PREALLOCATE_LIMIT ? total : Math.min(total, Math.max(MIN_PENDING, left * 2)));
      data.copy(this.pending, 0, off, end);
      this.expect = total;
    } else if (reusable) {
      this.pending = data; // nothing was cut from it (off is 0): nobody else holds a view of it
    } else {
      this.pending = Buffer.allocUnsafe(Math.max(MIN_PENDING, left * 2));
      data.copy(this.pending, 0, off, end);
    }
    this.fill = left;
  }

  /** Appends to a frame of unknown length, growing the buffer geometrically (each byte is copied O(1) times). */
  private append(chunk: Buffer): void {
    const pending = this.pending!;
    const need = this.fill + chunk.length;
    if (need > pending.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, pending.length * 2));
      pending.copy(grown, 0, 0, this.fill);
      this.pending = grown;
    }
    chunk.copy(this.pending!, this.fill);
    this.fill = need;
  }

  /** Moves the gathered bytes into a buffer of `size` bytes. */
  private grow(size: number): void {
    const grown = Buffer.allocUnsafe(size);
    this.pending!.copy(grown, 0, 0, this.fill);
    this.pending = grown;
  }

  private clear(): void {
    this.pending = null;
    this.fill = 0;
    this.expect = 0;
    this.needAt = 0;
  }
}


/**
 * Rejects a message start that cannot be Thrift from its first two bytes, before waiting for the rest: the
 * binary version must be 0x80 0x01, compact 0x82 then version 1 with a known type; any other byte >= 0x80
 * cannot start a message (lax binary starts with a non-negative name length).
 */
function checkMessageStart(data: Buffer, at: number, end: number): void {
  const b0 = data[at]!;
  const b1 = at + 1 < end ? data[at + 1]! : -1;
  if (b0 === BINARY_VERSION_HIGH) {
    if (b1 >= 0 && b1 !== BINARY_VERSION_LOW) {
      throw new CodecError('bad_protocol', `unsupported thrift binary version 0x80${hex2(b1)}`);
    }
  } else if (b0 === COMPACT_PROTOCOL_ID) {
    if (b1 >= 0) {
      if ((b1 & COMPACT_VERSION_MASK) !== COMPACT_VERSION) {
        throw new CodecError('bad_protocol', `unsupported thrift compact version ${b1 & COMPACT_VERSION_MASK}`);
      }
      const type = b1 >>> COMPACT_TYPE_SHIFT;
      if (type < 1 || type > 4) throw new CodecError('bad_message', `unknown thrift message type ${type}`);
    }
  } else if (b0 > 0x7f) {
    throw new CodecError('bad_protocol', `not a thrift message: first byte 0x${hex2(b0)}`);
  }
}

function badLength(b0: number): CodecError {
  return new CodecError('bad_frame', `negative thrift frame length (first byte 0x${hex2(b0)})`);
}

function tooLarge(size: number, max: number): CodecError {
  return new CodecError('frame_too_large', `thrift frame of ${size} bytes exceeds the limit of ${max}`);
}

function hex2(b: number): string {
  return b.toString(16).padStart(2, '0');
}

/** Frames built elsewhere (tests, other tools) are re-read from their bytes, their transport guessed from them. */
function asThriftFrame(frame: Frame): ThriftFrame {
  if (frame instanceof ThriftFrame) return frame;
  const raw = frame.raw;
  let transport: ThriftTransport = 'unframed';
  if (raw.length >= 6 && raw[0]! < 0x80 && raw.readUInt32BE(0) === raw.length - 4) {
    transport = raw.readUInt16BE(4) === HEADER_MAGIC ? 'header' : 'framed';
  }
  return new ThriftFrame(raw, transport);
}

export const thriftCodec: CodecFactory = {
  name: 'aeraki.meta_protocol.codec.thrift',
  protocol: 'thrift',
  multiplexing: 'id',
  create(options: CodecOptions): CodecSession {
    return new ThriftSession(options);
  },
};

export default thriftCodec;
