/**
 * Thrift framed + strict binary on raw buffers, for `Bench.hello(1: string name) → string` only (bench.thrift):
 * the load generator's requests and the fast server's replies. The bytes are what npm `thrift`'s
 * TFramedTransport + TBinaryProtocol write (frame length, version word | message type, name, seqid, struct).
 */
import type { WireProtocol } from '../lib/load.js';

export const MessageType = { CALL: 1, REPLY: 2, EXCEPTION: 3, ONEWAY: 4 } as const;
const VERSION_1 = 0x8001_0000;
const T_STRING = 11;
const T_I32 = 8;
const T_STOP = 0;
/** TApplicationException.UNKNOWN_METHOD */
export const UNKNOWN_METHOD = 1;

/** A framed message with a struct holding one string field `fieldId` (or none when `value` is undefined). */
export function encodeMessage(type: number, name: string, seqid: number, fieldId: number, value: string | undefined): Buffer {
  const nameLen = Buffer.byteLength(name);
  const valueLen = value === undefined ? 0 : Buffer.byteLength(value);
  const structLen = value === undefined ? 1 : 1 + 2 + 4 + valueLen + 1;
  const msgLen = 4 + 4 + nameLen + 4 + structLen;
  const b = Buffer.allocUnsafe(4 + msgLen);
  let o = b.writeInt32BE(msgLen, 0);
  o = b.writeUInt32BE((VERSION_1 | type) >>> 0, o);
  o = b.writeInt32BE(nameLen, o);
  o += b.write(name, o);
  o = b.writeInt32BE(seqid, o);
  if (value !== undefined) {
    o = b.writeUInt8(T_STRING, o);
    o = b.writeInt16BE(fieldId, o);
    o = b.writeInt32BE(valueLen, o);
    o += b.write(value, o);
  }
  b.writeUInt8(T_STOP, o);
  return b;
}

/** A TApplicationException reply (message field 1, type field 2). */
export function encodeAppException(name: string, seqid: number, message: string, type: number): Buffer {
  const nameLen = Buffer.byteLength(name);
  const msg = Buffer.from(message);
  const structLen = 1 + 2 + 4 + msg.length + 1 + 2 + 4 + 1;
  const msgLen = 4 + 4 + nameLen + 4 + structLen;
  const b = Buffer.allocUnsafe(4 + msgLen);
  let o = b.writeInt32BE(msgLen, 0);
  o = b.writeUInt32BE((VERSION_1 | MessageType.EXCEPTION) >>> 0, o);
  o = b.writeInt32BE(nameLen, o);
  o += b.write(name, o);
  o = b.writeInt32BE(seqid, o);
  o = b.writeUInt8(T_STRING, o);
  o = b.writeInt16BE(1, o);
  o = b.writeInt32BE(msg.length, o);
  o += msg.copy(b, o);
  o = b.writeUInt8(T_I32, o);
  o = b.writeInt16BE(2, o);
  o = b.writeInt32BE(type, o);
  b.writeUInt8(T_STOP, o);
  return b;
}

export interface Message {
  type: number;
  name: string;
  seqid: number;
  /** The struct after the message head. */
  body: Buffer;
}

/** Cuts framed strict-binary messages out of a byte stream. Throws on a message that is not strict binary. */
export class MessageParser {
  private pending: Buffer | null = null;
  constructor(
    private readonly onMessage: (m: Message) => void,
    private readonly maxFrame = 16 << 20,
  ) {}

  push(chunk: Buffer): void {
    let buf = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readInt32BE(off);
      if (len < 12 || len > this.maxFrame) throw new Error(`bad Thrift frame length ${len}`);
      if (buf.length - off - 4 < len) break;
      const start = off + 4;
      const word = buf.readUInt32BE(start);
      if ((word & 0xffff_0000) >>> 0 !== VERSION_1) throw new Error(`not strict binary: 0x${word.toString(16)}`);
      const nameLen = buf.readInt32BE(start + 4);
      const name = buf.toString('utf8', start + 8, start + 8 + nameLen);
      const seqid = buf.readInt32BE(start + 8 + nameLen);
      this.onMessage({ type: word & 0xff, name, seqid, body: buf.subarray(start + 12 + nameLen, start + len) });
      off = start + len;
    }
    if (off < buf.length) this.pending = Buffer.from(buf.subarray(off));
  }
}

/** The first string field of a struct with id `fieldId` (args and results here hold only strings), if any. */
export function readStringField(body: Buffer, fieldId: number): string | undefined {
  if (body.length < 3 || body[0] !== T_STRING || body.readInt16BE(1) !== fieldId) return undefined;
  const len = body.readInt32BE(3);
  return body.toString('utf8', 7, 7 + len);
}

/** Load-generator protocol: `hello(name)` calls; success = a REPLY whose result struct holds field 0. */
export function thriftHelloProtocol(name = 'bench'): WireProtocol {
  const template = encodeMessage(MessageType.CALL, 'hello', 0, 1, name);
  const seqidAt = 4 + 4 + 4 + Buffer.byteLength('hello');
  return {
    request(id: number): Buffer {
      const b = Buffer.allocUnsafe(template.length);
      template.copy(b);
      b.writeInt32BE(id, seqidAt);
      return b;
    },
    parser(onResponse) {
      return new MessageParser((m) => {
        const ok = m.type === MessageType.REPLY && m.body.length > 2 && m.body[0] === T_STRING && m.body.readInt16BE(1) === 0;
        onResponse(m.seqid, ok, m.type === MessageType.EXCEPTION ? 'exception' : ok ? 'ok' : `type ${m.type}`);
      });
    },
  };
}
