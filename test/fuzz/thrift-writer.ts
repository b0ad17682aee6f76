/**
 * A small Thrift writer for the fuzz suite, written from the Apache Thrift specs (binary strict and lax, compact,
 * framed/unframed, THeader) independently of the codec: random messages of every TType, nested, with random field
 * ids, in every transport the codec detects. The python3-thrift frames of test/fixtures/thrift anchor it to a real
 * peer (the suite mixes both).
 */
import fc from 'fast-check';

export type Wire = 'framed' | 'unframed' | 'header';
export type Proto = 'binary' | 'lax' | 'compact';

/** A Thrift type tree (element types of containers included), then values of that type. */
export type TType =
  | { k: 'bool' | 'byte' | 'i16' | 'i32' | 'i64' | 'double' | 'string' | 'uuid' }
  | { k: 'struct'; fields: Array<{ id: number; type: TType }> }
  | { k: 'list' | 'set'; elem: TType }
  | { k: 'map'; key: TType; value: TType };

export type TValue =
  | { k: 'bool'; v: boolean }
  | { k: 'byte' | 'i16' | 'i32'; v: number }
  | { k: 'i64'; v: bigint }
  | { k: 'double'; v: number }
  | { k: 'string' | 'uuid'; v: Buffer }
  | { k: 'struct'; fields: Array<{ id: number; value: TValue }> }
  | { k: 'list' | 'set'; elem: TType; items: TValue[] }
  | { k: 'map'; key: TType; value: TType; pairs: Array<[TValue, TValue]> };

const BINARY: Record<string, number> = { bool: 2, byte: 3, double: 4, i16: 6, i32: 8, i64: 10, string: 11, struct: 12, map: 13, set: 14, list: 15, uuid: 16 };
const COMPACT: Record<string, number> = { byte: 3, i16: 4, i32: 5, i64: 6, double: 7, string: 8, list: 9, set: 10, map: 11, struct: 12, uuid: 13 };

export const MessageType = { CALL: 1, REPLY: 2, EXCEPTION: 3, ONEWAY: 4 } as const;

// ---- generators ---------------------------------------------------------------------------------------------------

const fieldId = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 20 }) }, fc.integer({ min: -32768, max: 32767 }));

const typeArb: fc.Arbitrary<TType> = fc.letrec<{ t: TType }>((tie) => ({
  t: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom<TType>({ k: 'bool' }, { k: 'byte' }, { k: 'i16' }, { k: 'i32' }, { k: 'i64' }, { k: 'double' }, { k: 'string' }, { k: 'uuid' }),
    fc.uniqueArray(fc.record({ id: fieldId, type: tie('t') }), { maxLength: 4, selector: (f) => f.id }).map((fields): TType => ({ k: 'struct', fields })),
    fc.record({ k: fc.constantFrom('list' as const, 'set' as const), elem: tie('t') }),
    fc.record({ k: fc.constant('map' as const), key: tie('t'), value: tie('t') }),
  ),
})).t;

export function valueOf(t: TType, depth = 0): fc.Arbitrary<TValue> {
  const n = depth > 3 ? 1 : 4;
  switch (t.k) {
    case 'bool':
      return fc.boolean().map((v) => ({ k: 'bool', v }));
    case 'byte':
      return fc.integer({ min: -128, max: 127 }).map((v) => ({ k: 'byte', v }));
    case 'i16':
      return fc.integer({ min: -32768, max: 32767 }).map((v) => ({ k: 'i16', v }));
    case 'i32':
      return fc.integer().map((v) => ({ k: 'i32', v }));
    case 'i64':
      return fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }).map((v) => ({ k: 'i64', v }));
    case 'double':
      return fc.double().map((v) => ({ k: 'double', v }));
    case 'string':
      return fc.oneof(fc.string({ unit: 'grapheme', maxLength: 20 }).map((s) => Buffer.from(s)), fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b))).map((v) => ({ k: 'string', v }));
    case 'uuid':
      return fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => ({ k: 'uuid', v: Buffer.from(b) }));
    case 'struct':
      return fc
        .tuple(...t.fields.map((f) => fc.option(valueOf(f.type, depth + 1), { nil: undefined })))
        .map((vals) => ({ k: 'struct', fields: t.fields.flatMap((f, i) => (vals[i] === undefined ? [] : [{ id: f.id, value: vals[i]! }])) }));
    case 'list':
    case 'set':
      return fc.array(valueOf(t.elem, depth + 1), { maxLength: n }).map((items) => ({ k: t.k, elem: t.elem, items }));
    case 'map':
      return fc.array(fc.tuple(valueOf(t.key, depth + 1), valueOf(t.value, depth + 1)), { maxLength: n }).map((pairs) => ({ k: 'map', key: t.key, value: t.value, pairs }));
  }
}

/** A random struct (arguments, or a result/exception body). */
export const structArb: fc.Arbitrary<Extract<TValue, { k: 'struct' }>> = fc
  .uniqueArray(fc.record({ id: fieldId, type: typeArb }), { maxLength: 5, selector: (f) => f.id })
  .chain((fields) => valueOf({ k: 'struct', fields }) as fc.Arbitrary<Extract<TValue, { k: 'struct' }>>);

// ---- binary ---------------------------------------------------------------------------------------------------------

class Out {
  private readonly parts: Buffer[] = [];
  u8(v: number): void {
    this.parts.push(Buffer.from([v & 0xff]));
  }
  i16(v: number): void {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    this.parts.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v | 0);
    this.parts.push(b);
  }
  i64(v: bigint): void {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(v);
    this.parts.push(b);
  }
  bytes(b: Buffer): void {
    this.parts.push(b);
  }
  varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    while (x >= 0x80n) {
      out.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    out.push(Number(x));
    this.parts.push(Buffer.from(out));
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function writeBinary(o: Out, v: TValue): void {
  switch (v.k) {
    case 'bool':
      return o.u8(v.v ? 1 : 0);
    case 'byte':
      return o.u8(v.v);
    case 'i16':
      return o.i16(v.v);
    case 'i32':
      return o.i32(v.v);
    case 'i64':
      return o.i64(v.v);
    case 'double': {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(v.v);
      return o.bytes(b);
    }
    case 'string':
      o.i32(v.v.length);
      return o.bytes(v.v);
    case 'uuid':
      return o.bytes(v.v);
    case 'struct':
      for (const f of v.fields) {
        o.u8(BINARY[f.value.k]!);
        o.i16(f.id);
        writeBinary(o, f.value);
      }
      return o.u8(0);
    case 'list':
    case 'set':
      o.u8(BINARY[v.elem.k]!);
      o.i32(v.items.length);
      for (const i of v.items) writeBinary(o, i);
      return;
    case 'map':
      o.u8(BINARY[v.key.k]!);
      o.u8(BINARY[v.value.k]!);
      o.i32(v.pairs.length);
      for (const [k, x] of v.pairs) {
        writeBinary(o, k);
        writeBinary(o, x);
      }
  }
}

// ---- compact --------------------------------------------------------------------------------------------------------

const zigzag = (v: number | bigint, bits: 32 | 64): bigint => {
  const x = BigInt(v);
  return BigInt.asUintN(bits, (x << 1n) ^ (x >> BigInt(bits - 1)));
};

function compactType(v: TValue | TType): number {
  if (v.k === 'bool') return 1;
  return COMPACT[v.k]!;
}

function writeCompact(o: Out, v: TValue): void {
  switch (v.k) {
    case 'bool':
      return o.u8(v.v ? 1 : 2); // in containers a bool is a byte: 1 true, 2 false
    case 'byte':
      return o.u8(v.v);
    case 'i16':
    case 'i32':
      return o.varint(zigzag(v.v, 32));
    case 'i64':
      return o.varint(zigzag(v.v, 64));
    case 'double': {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(v.v);
      return o.bytes(b);
    }
    case 'string':
      o.varint(v.v.length);
      return o.bytes(v.v);
    case 'uuid':
      return o.bytes(v.v);
    case 'struct': {
      let last = 0;
      for (const f of v.fields) {
        const type = f.value.k === 'bool' ? (f.value.v ? 1 : 2) : compactType(f.value);
        const delta = f.id - last;
        if (delta > 0 && delta <= 15) o.u8((delta << 4) | type);
        else {
          o.u8(type);
          o.varint(zigzag(f.id, 32));
        }
        last = f.id;
        if (f.value.k !== 'bool') writeCompact(o, f.value);
      }
      return o.u8(0);
    }
    case 'list':
    case 'set': {
      const et = compactType(v.elem);
      if (v.items.length < 15) o.u8((v.items.length << 4) | et);
      else {
        o.u8(0xf0 | et);
        o.varint(v.items.length);
      }
      for (const i of v.items) writeCompact(o, i);
      return;
    }
    case 'map':
      o.varint(v.pairs.length);
      if (v.pairs.length > 0) o.u8((compactType(v.key) << 4) | compactType(v.value));
      for (const [k, x] of v.pairs) {
        writeCompact(o, k);
        writeCompact(o, x);
      }
  }
}

// ---- messages and transports ----------------------------------------------------------------------------------------

export interface Message {
  name: string;
  type: number;
  seqid: number;
  body: Extract<TValue, { k: 'struct' }>;
}

export function encodeMessage(proto: Proto, m: Message): Buffer {
  const o = new Out();
  const name = Buffer.from(m.name, 'utf8');
  if (proto === 'compact') {
    o.u8(0x82);
    o.u8((m.type << 5) | 1);
    o.varint(m.seqid >>> 0);
    o.varint(name.length);
    o.bytes(name);
    writeCompact(o, m.body);
  } else {
    if (proto === 'binary') {
      o.i32((0x8001_0000 | m.type) | 0);
      o.i32(name.length);
      o.bytes(name);
    } else {
      o.i32(name.length);
      o.bytes(name);
      o.u8(m.type);
    }
    o.i32(m.seqid);
    writeBinary(o, m.body);
  }
  return o.done();
}

export function frame(wire: Wire, proto: Proto, message: Buffer, header?: { flags: number; seqid: number; headers: Array<[string, string]> }): Buffer {
  if (wire === 'unframed') return message;
  const len = Buffer.alloc(4);
  if (wire === 'framed') {
    len.writeInt32BE(message.length);
    return Buffer.concat([len, message]);
  }
  const h = new Out();
  h.varint(proto === 'compact' ? 2 : 0);
  h.varint(0); // no transforms
  const kv = header?.headers ?? [];
  if (kv.length > 0) {
    h.varint(1);
    h.varint(kv.length);
    for (const [k, v] of kv) {
      const kb = Buffer.from(k);
      const vb = Buffer.from(v);
      h.varint(kb.length);
      h.bytes(kb);
      h.varint(vb.length);
      h.bytes(vb);
    }
  }
  let section = h.done();
  section = Buffer.concat([section, Buffer.alloc((4 - (section.length % 4)) % 4)]);
  const fixed = Buffer.alloc(14);
  fixed.writeInt32BE(10 + section.length + message.length, 0);
  fixed.writeUInt16BE(0x0fff, 4);
  fixed.writeUInt16BE(header?.flags ?? 0, 6);
  fixed.writeInt32BE(header?.seqid ?? 0, 8);
  fixed.writeUInt16BE(section.length / 4, 12);
  return Buffer.concat([fixed, section, message]);
}

/** Where the message starts in a frame of `wire` (THeader: after its header section). */
export function messageAt(wire: Wire, f: Buffer): number {
  if (wire === 'unframed') return 0;
  if (wire === 'framed') return 4;
  return f.length >= 14 ? 14 + f.readUInt16BE(12) * 4 : 14;
}
