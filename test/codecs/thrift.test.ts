import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodecError, type CodecSession, type Frame, type LocalReplyKind } from '../../src/codec.js';
import thriftCodecDefault, {
  AppExceptionType,
  ThriftFrame,
  thriftCodec,
  type ThriftProtocol,
  type ThriftTransport,
} from '../../codecs/thrift/index.js';
import {
  Relay,
  generate,
  npmClient,
  pythonCall,
  pythonFrames,
  pythonRead,
  startPythonServer,
  type Generated,
  type PyProtocol,
  type PyTransport,
} from '../fixtures/thrift/peers.js';

// ---------------------------------------------------------------------------------------------------------------
// Real frames: written by python3-thrift clients and processors from test/fixtures/thrift/greeter.thrift

let gen: Generated;
let frames: Map<string, Buffer>;

beforeAll(async () => {
  // Never skipped: without thrift-compiler and python3-thrift these tests fail.
  gen = await generate();
  frames = await pythonFrames(gen);
});

afterAll(() => gen?.cleanup());

/** A fresh copy of a python frame (encode patches frames in place). */
function py(name: string): Buffer {
  const b = frames.get(name);
  if (b === undefined) throw new Error(`no python frame ${name}`);
  return Buffer.from(b);
}

interface Config {
  key: string;
  transport: PyTransport;
  proto: PyProtocol;
  wire: ThriftTransport;
  protocol: ThriftProtocol;
  strict: boolean;
}
const CONFIGS: Config[] = [
  { key: 'framed-binary', transport: 'framed', proto: 'binary', wire: 'framed', protocol: 'binary', strict: true },
  { key: 'framed-compact', transport: 'framed', proto: 'compact', wire: 'framed', protocol: 'compact', strict: true },
  { key: 'framed-lax', transport: 'framed', proto: 'lax', wire: 'framed', protocol: 'binary', strict: false },
  { key: 'buffered-binary', transport: 'buffered', proto: 'binary', wire: 'unframed', protocol: 'binary', strict: true },
  { key: 'buffered-compact', transport: 'buffered', proto: 'compact', wire: 'unframed', protocol: 'compact', strict: true },
  { key: 'buffered-lax', transport: 'buffered', proto: 'lax', wire: 'unframed', protocol: 'binary', strict: false },
  { key: 'header-binary', transport: 'header', proto: 'binary', wire: 'header', protocol: 'binary', strict: true },
  { key: 'header-compact', transport: 'header', proto: 'compact', wire: 'header', protocol: 'compact', strict: true },
];

/** Requests and replies peer.py writes per configuration, in stream order. */
const CALLS = ['hello', 'fail', 'greet', 'ping', 'nothing', 'mux', 'admin', 'unknown', 'big-seqid'] as const;
function configStream(key: string): Buffer[] {
  const out: Buffer[] = [];
  for (const c of CALLS) {
    out.push(py(`${key}/req/${c}`));
    if (c !== 'ping') out.push(py(`${key}/rep/${c}`));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers

const MAX = 1 << 20;

function session(maxFrameSize = MAX): CodecSession {
  return thriftCodec.create({ maxFrameSize, side: 'downstream' });
}

function decodeAll(chunks: Buffer[], s: CodecSession = session()): ThriftFrame[] {
  const out: ThriftFrame[] = [];
  for (const c of chunks) s.decode(c, (f) => out.push(f as ThriftFrame));
  return out;
}

function one(bytes: Buffer, s: CodecSession = session()): ThriftFrame {
  const out = decodeAll([bytes], s);
  expect(out).toHaveLength(1);
  expect(s.buffered).toBe(0);
  return out[0]!;
}

function codecError(f: () => unknown): CodecError {
  try {
    f();
  } catch (err) {
    if (err instanceof CodecError) return err;
    throw err;
  }
  throw new Error('expected a CodecError');
}

function snapshot(f: Frame): unknown {
  return {
    type: f.type,
    requestId: f.requestId,
    status: f.status,
    raw: f.raw.toString('hex'),
    metadata: Object.fromEntries([...f.metadata.entries()].sort()),
  };
}

/** A small deterministic PRNG (mulberry32) for reproducible splits. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Hand-built wire bytes for cases no peer writes.

function i32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
}
function i16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeInt16BE(v);
  return b;
}
function varint(v: number): Buffer {
  const out: number[] = [];
  let x = v >>> 0;
  while (x >= 0x80) {
    out.push((x & 0x7f) | 0x80);
    x >>>= 7;
  }
  out.push(x);
  return Buffer.from(out);
}
function zigzag(v: number): Buffer {
  return varint(((v << 1) ^ (v >> 31)) >>> 0);
}
/** A strict binary message: head + `body` (the struct, STOP included). */
function binMessage(name: string, type: number, seqid: number, body: Buffer): Buffer {
  const n = Buffer.from(name);
  return Buffer.concat([i32((0x80010000 | type) | 0), i32(n.length), n, i32(seqid), body]);
}
function laxMessage(name: string, type: number, seqid: number, body: Buffer): Buffer {
  const n = Buffer.from(name);
  return Buffer.concat([i32(n.length), n, Buffer.from([type]), i32(seqid), body]);
}
function compactMessage(name: string, type: number, seqid: number, body: Buffer): Buffer {
  const n = Buffer.from(name);
  return Buffer.concat([Buffer.from([0x82, (type << 5) | 1]), varint(seqid), varint(n.length), n, body]);
}
function framed(message: Buffer): Buffer {
  return Buffer.concat([i32(message.length), message]);
}
interface HeaderOptions {
  protocolId?: number;
  seqid?: number;
  flags?: number;
  headers?: Array<[string, string]>;
  transforms?: number[];
  /** Raw info bytes written after the key/value block (e.g. an unknown info id). */
  extraInfo?: Buffer;
}
function theader(payload: Buffer, o: HeaderOptions = {}): Buffer {
  const parts: Buffer[] = [varint(o.protocolId ?? 0), varint(o.transforms?.length ?? 0)];
  for (const t of o.transforms ?? []) parts.push(varint(t));
  if (o.headers && o.headers.length > 0) {
    parts.push(varint(1), varint(o.headers.length));
    for (const [k, v] of o.headers) {
      const kb = Buffer.from(k);
      const vb = Buffer.from(v);
      parts.push(varint(kb.length), kb, varint(vb.length), vb);
    }
  }
  if (o.extraInfo) parts.push(o.extraInfo);
  let header = Buffer.concat(parts);
  header = Buffer.concat([header, Buffer.alloc((4 - (header.length % 4)) % 4)]);
  const fixed = Buffer.alloc(14);
  fixed.writeInt32BE(10 + header.length + payload.length, 0);
  fixed.writeUInt16BE(0x0fff, 4);
  fixed.writeUInt16BE(o.flags ?? 0, 6);
  fixed.writeInt32BE(o.seqid ?? 0, 8);
  fixed.writeUInt16BE(header.length / 4, 12);
  return Buffer.concat([fixed, header, payload]);
}
/** Binary field header + value. */
function bfield(type: number, id: number, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([type]), i16(id), value]);
}
function bstr(s: string): Buffer {
  const b = Buffer.from(s);
  return Buffer.concat([i32(b.length), b]);
}
const STOP = Buffer.from([0]);

// ---------------------------------------------------------------------------------------------------------------

describe('thrift codec factory', () => {
  it('registers under the Aeraki codec name with id multiplexing', () => {
    expect(thriftCodec.name).toBe('aeraki.meta_protocol.codec.thrift');
    expect(thriftCodec.protocol).toBe('thrift');
    expect(thriftCodec.multiplexing).toBe('id');
    expect(thriftCodecDefault).toBe(thriftCodec);
    const s = session();
    expect(s.buffered).toBe(0);
  });
});

describe('frames written by python3-thrift', () => {
  for (const c of CONFIGS) {
    it(`${c.key}: requests carry type, seqid, method and the multiplexed service`, () => {
      const expected: Array<[string, Frame['type'], number, string, string | undefined]> = [
        ['hello', 'request', 7, 'hello', undefined],
        ['fail', 'request', 8, 'hello', undefined],
        ['greet', 'request', 300, 'greet', undefined],
        ['ping', 'oneway', 9, 'ping', undefined],
        ['nothing', 'request', 70000, 'nothing', undefined],
        ['mux', 'request', 11, 'hello', 'Greeter'],
        ['admin', 'request', 12, 'whoami', 'Admin'],
        ['unknown', 'request', 13, 'whoami', undefined],
        ['big-seqid', 'request', 2 ** 31 - 1, 'hello', undefined],
      ];
      for (const [name, type, seqid, method, service] of expected) {
        const bytes = py(`${c.key}/req/${name}`);
        const f = one(bytes);
        expect(f.raw.equals(bytes), name).toBe(true);
        expect(f.type, name).toBe(type);
        expect(f.requestId, name).toBe(seqid);
        expect(f.status, name).toBeUndefined();
        expect(f.transport, name).toBe(c.wire);
        expect(f.protocol, name).toBe(c.protocol);
        expect(f.strict, name).toBe(c.strict);
        expect(f.metadata.get('method'), name).toBe(method);
        expect(f.metadata.get('service'), name).toBe(service);
        const entries = Object.fromEntries(f.metadata.entries());
        expect(entries.method).toBe(method);
        expect('service' in entries, name).toBe(service !== undefined);
      }
    });

    it(`${c.key}: replies are classified from the result struct's first field`, () => {
      const expected: Array<[string, number, Frame['status'], string]> = [
        ['hello', 7, 'ok', 'hello'], // field 0: the return value
        ['fail', 8, 'business_exception', 'hello'], // field 1: the declared GreetError
        ['greet', 300, 'ok', 'greet'],
        ['nothing', 70000, 'ok', 'nothing'], // void: an empty result struct
        ['mux', 11, 'ok', 'hello'], // TMultiplexedProcessor answers with the bare method name
        ['admin', 12, 'ok', 'whoami'],
        ['unknown', 13, 'error', 'whoami'], // EXCEPTION: TApplicationException UNKNOWN_METHOD
        ['big-seqid', 2 ** 31 - 1, 'ok', 'hello'],
      ];
      for (const [name, seqid, status, method] of expected) {
        const f = one(py(`${c.key}/rep/${name}`));
        expect(f.type, name).toBe('response');
        expect(f.requestId, name).toBe(seqid);
        expect(f.status, name).toBe(status);
        expect(f.messageType, name).toBe(name === 'unknown' ? 3 : 2);
        expect(f.metadata.get('method'), name).toBe(method);
        expect(f.metadata.get('service'), name).toBeUndefined();
        expect(f.transport).toBe(c.wire);
      }
    });
  }

  it('exposes THeader key/value headers under lower-case names, case-insensitively', () => {
    for (const key of ['header-binary', 'header-compact']) {
      const f = one(py(`${key}/req/hello`));
      expect(f.metadata.get('x-user')).toBe('alice');
      expect(f.metadata.get('X-User')).toBe('alice');
      expect(f.metadata.get('trace-id')).toBe('t-1');
      expect(f.metadata.get('absent')).toBeUndefined();
      expect(Object.fromEntries(f.metadata.entries())).toEqual({ 'x-user': 'alice', 'trace-id': 't-1', method: 'hello' });
      // a frame without headers has none
      expect(Object.fromEntries(one(py(`${key}/req/fail`)).metadata.entries())).toEqual({ method: 'hello' });
    }
  });

  it('refuses a THeader frame with the zlib transform, saying why', () => {
    const err = codecError(() => session().decode(py('header-zlib/req/hello'), () => {}));
    expect(err.reason).toBe('unsupported_transform');
    expect(err.message).toContain('zlib');
  });
});

describe('metadata', () => {
  it('is case-insensitive on keys', () => {
    const f = one(py('framed-binary/req/mux'));
    expect(f.metadata.get('METHOD')).toBe('hello');
    expect(f.metadata.get('Service')).toBe('Greeter');
  });

  it('lets the message name win over headers named method/service; a request\'s service is its name\'s only', () => {
    const payload = binMessage('hello', 1, 1, STOP);
    const plain = one(theader(payload, { headers: [['method', 'evil'], ['service', 'from-header']] }));
    expect(plain.metadata.get('method')).toBe('hello');
    expect(plain.metadata.get('service')).toBeUndefined(); // a multiplexed server's default processor answers it
    expect(Object.fromEntries(plain.metadata.entries())).toEqual({ method: 'hello' });
    const mux = one(theader(binMessage('Svc:hello', 1, 1, STOP), { headers: [['service', 'from-header']] }));
    expect(mux.metadata.get('service')).toBe('Svc');
    expect(Object.fromEntries(mux.metadata.entries())).toEqual({ method: 'hello', service: 'Svc' });
  });

  it('splits Service:method at the colon and reads UTF-8 names; more colons are bad_body (thrift-hostile.test.ts)', () => {
    const f = one(framed(binMessage('Sv€:hellö', 1, 1, STOP)));
    expect(f.metadata.get('service')).toBe('Sv€');
    expect(f.metadata.get('method')).toBe('hellö');
    const g = one(framed(binMessage('Sv€:a:b', 1, 1, STOP)));
    expect(codecError(() => g.metadata.get('method')).reason).toBe('bad_body');
  });

  it('is lazy: arguments are never read, headers only when asked', () => {
    // Arguments are skipped, not read, but must fill the frame: a framed frame whose arguments are not Thrift is
    // refused (a server's framed reader would read on into the next frames of a shared upstream connection).
    const bad = framed(Buffer.concat([binMessage('hello', 1, 5, Buffer.alloc(0)), Buffer.from([0xff, 0xfe, 0xfd])]));
    expect(codecError(() => decodeAll([bad])).reason).toBe('bad_message');
    // A key/value block that runs past its header section: decode succeeds, the first header read fails.
    const frame = theader(binMessage('hello', 1, 5, STOP), { headers: [['a', 'b']] });
    frame[14 + 3] = 9; // the header count: 9 headers where there is 1
    const g = one(frame);
    expect(g.metadata.get('method')).toBe('hello');
    expect(codecError(() => g.metadata.get('a')).reason).toBe('bad_frame');
  });

  it('refuses duplicate header keys in a request, keeps the last in a reply, and skips unknown info blocks', () => {
    const o = {
      headers: [['K', '1'], ['k', '2']] as Array<[string, string]>,
      extraInfo: Buffer.from([7, 0xaa, 0xbb]), // unknown info id 7: readers stop there
    };
    const request = one(theader(binMessage('m', 1, 1, STOP), o));
    expect(codecError(() => request.metadata.get('k')).reason).toBe('bad_body');
    const reply = one(theader(binMessage('m', 2, 1, STOP), o));
    expect(reply.metadata.get('k')).toBe('2');
    const unknownBlock = one(theader(binMessage('m', 1, 1, STOP), { headers: [['k', '1']], extraInfo: o.extraInfo }));
    expect(unknownBlock.metadata.get('k')).toBe('1');
  });
});

describe('finding the end of unframed messages', () => {
  for (const proto of ['binary', 'compact', 'lax'] as const) {
    it(`ends every random python ${proto} message exactly where python ended it`, () => {
      const messages: Buffer[] = [];
      for (let i = 0; frames.has(`random-${proto}/${i}`); i++) messages.push(py(`random-${proto}/${i}`));
      expect(messages.length).toBe(40);
      const stream = Buffer.concat(messages);
      const check = (out: ThriftFrame[]) => {
        expect(out.map((f) => f.raw.toString('hex'))).toEqual(messages.map((m) => m.toString('hex')));
        for (const f of out) {
          expect(f.type).toBe('request');
          expect(f.metadata.get('method')).toBe('greet');
          expect(f.transport).toBe('unframed');
        }
      };
      check(decodeAll([stream]));
      const rnd = prng(proto.length);
      for (let round = 0; round < 5; round++) {
        const pieces: Buffer[] = [];
        for (let at = 0; at < stream.length; ) {
          const n = 1 + Math.floor(rnd() * (round === 0 ? 16 : 4000));
          pieces.push(stream.subarray(at, at + n));
          at += n;
        }
        const s = session();
        check(decodeAll(pieces, s));
        expect(s.buffered).toBe(0);
      }
    });
  }

  it('skips every binary type, uuid included, and empty maps with unset types', () => {
    const args = Buffer.concat([
      bfield(16, 1, Buffer.alloc(16, 0xab)), // uuid
      bfield(2, 2, Buffer.from([1])), // bool
      bfield(3, 3, Buffer.from([0x80])), // byte
      bfield(4, 4, Buffer.alloc(8, 0xff)), // double
      bfield(6, 5, i16(-1)),
      bfield(10, 6, Buffer.alloc(8)),
      bfield(13, 7, Buffer.concat([Buffer.from([0, 0]), i32(0)])), // empty map, types 0
      bfield(13, 8, Buffer.concat([Buffer.from([11, 15]), i32(1), bstr('k'), Buffer.from([8]), i32(2), i32(1), i32(2)])),
      bfield(14, 9, Buffer.concat([Buffer.from([4]), i32(2), Buffer.alloc(16)])), // set<double>
      bfield(15, 10, Buffer.concat([Buffer.from([12]), i32(2), bfield(11, 1, bstr('x')), STOP, STOP])), // list<struct>
      bfield(12, 11, Buffer.concat([bfield(12, 1, STOP), STOP])), // nested structs
      bfield(11, -3, bstr('negative field id')),
      STOP,
    ]);
    const m1 = binMessage('all', 1, 1, args);
    const m2 = laxMessage('next', 4, 2, args);
    const out = decodeAll([Buffer.concat([m1, m2])]);
    expect(out.map((f) => [f.raw.length, f.type, f.requestId])).toEqual([
      [m1.length, 'request', 1],
      [m2.length, 'oneway', 2],
    ]);
  });

  it('skips compact long field ids, packed bools, short and long lists, maps and uuids', () => {
    const args = Buffer.concat([
      Buffer.from([0x11]), // field 1, bool true packed in the type nibble
      Buffer.from([0x12]), // field 2, bool false
      Buffer.from([0x08]), zigzag(1000), varint(3), Buffer.from('abc'), // field 1000 (long form), binary
      Buffer.from([0x05]), zigzag(-7), zigzag(-123456), // field -7, i32
      Buffer.from([0x06]), zigzag(2000), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // i64, 10 bytes
      Buffer.from([0x07]), zigzag(2001), Buffer.alloc(8), // double
      Buffer.from([0x0d]), zigzag(2002), Buffer.alloc(16), // uuid
      Buffer.from([0x19, 0x38]), varint(1), Buffer.from('a'), varint(0), Buffer.from('') , varint(2), Buffer.from('bc'), // list<binary>, 3 short
      Buffer.from([0x19, 0xf5]), varint(20), ...Array.from({ length: 20 }, (_, i) => zigzag(i * 1000)), // list<i32>, long form
      Buffer.from([0x19, 0x21, 0x01, 0x02]), // list<bool> of 2: one byte each
      Buffer.from([0x1b]), varint(0), // empty map: no type byte
      Buffer.from([0x1b]), varint(2), Buffer.from([0x8c]), varint(1), Buffer.from('k'), Buffer.from([0x11, 0x00]), varint(1), Buffer.from('j'), Buffer.from([0x00]), // map<binary, struct>
      Buffer.from([0x1a, 0x23, 0x05, 0x06]), // set<byte> of 2
      Buffer.from([0x1c, 0x1c, 0x00, 0x00]), // nested structs
      STOP,
    ]);
    const m1 = compactMessage('all', 1, 300, args);
    const m2 = compactMessage('next', 2, 5, Buffer.from([0x08, 0x00, 0x01, 0x61, 0x00]));
    const out = decodeAll([Buffer.concat([m1, m2])]);
    expect(out.map((f) => [f.raw.length, f.type, f.requestId, f.status])).toEqual([
      [m1.length, 'request', 300, undefined],
      [m2.length, 'response', 5, 'ok'],
    ]);
  });

  it('waits at every cut of a hand-built message, then emits it whole', () => {
    const m = binMessage('x', 1, 1, Buffer.concat([bfield(15, 1, Buffer.concat([Buffer.from([11]), i32(2), bstr('ab'), bstr('')])), STOP]));
    for (let i = 1; i < m.length; i++) {
      const s = session();
      const out = decodeAll([m.subarray(0, i)], s);
      expect(out, `cut at ${i}`).toHaveLength(0);
      expect(s.buffered).toBe(i);
      s.decode(m.subarray(i), (f) => out.push(f as ThriftFrame));
      expect(out).toHaveLength(1);
      expect(out[0]!.raw.equals(m)).toBe(true);
    }
  });

  it('rejects malformed structs as bad_message', () => {
    const cases: Array<[string, Buffer]> = [
      ['unknown binary type', binMessage('x', 1, 1, Buffer.concat([bfield(7, 1, i32(0)), STOP]))],
      ['negative string length', binMessage('x', 1, 1, Buffer.concat([bfield(11, 1, i32(-1)), STOP]))],
      ['negative list size', binMessage('x', 1, 1, Buffer.concat([bfield(15, 1, Buffer.concat([Buffer.from([8]), i32(-2)])), STOP]))],
      ['bad list element type', binMessage('x', 1, 1, Buffer.concat([bfield(15, 1, Buffer.concat([Buffer.from([1]), i32(2)])), STOP]))],
      ['compact field of type 0', compactMessage('x', 1, 1, Buffer.from([0x10, 0x00]))],
      ['unknown compact type', compactMessage('x', 1, 1, Buffer.from([0x1e, 0x00]))],
      ['compact varint of 11 bytes', compactMessage('x', 1, 1, Buffer.concat([Buffer.from([0x16]), Buffer.alloc(10, 0xff), Buffer.from([1, 0])]))],
      ['nesting beyond 64', binMessage('x', 1, 1, Buffer.concat([...Array.from({ length: 100 }, () => Buffer.from([12, 0, 1])), Buffer.alloc(101)]))],
    ];
    for (const [name, bytes] of cases) {
      expect(codecError(() => session().decode(bytes, () => {})).reason, name).toBe('bad_message');
    }
    // nesting within the limit is fine
    const deep = binMessage('x', 1, 1, Buffer.concat([...Array.from({ length: 40 }, () => Buffer.from([12, 0, 1])), Buffer.alloc(41)]));
    expect(one(deep).raw.length).toBe(deep.length);
  });
});

describe('framing', () => {
  for (const c of CONFIGS) {
    it(`${c.key}: gives identical frames when the stream is cut at every byte boundary`, () => {
      const parts = configStream(c.key);
      const stream = Buffer.concat(parts);
      const expected = decodeAll([stream]).map(snapshot);
      expect(expected).toHaveLength(parts.length);
      expect(expected.map((f) => (f as { raw: string }).raw)).toEqual(parts.map((p) => p.toString('hex')));
      for (let i = 1; i < stream.length; i++) {
        const s = session();
        const got: Frame[] = [];
        s.decode(stream.subarray(0, i), (f) => got.push(f));
        const consumed = got.reduce((n, f) => n + f.raw.length, 0);
        expect(s.buffered, `cut at ${i}`).toBe(i - consumed);
        s.decode(stream.subarray(i), (f) => got.push(f));
        expect(got.map(snapshot), `cut at ${i}`).toEqual(expected);
        expect(s.buffered).toBe(0);
      }
      const bytes = [...stream].map((b) => Buffer.from([b]));
      expect(decodeAll(bytes).map(snapshot)).toEqual(expected);
    });
  }

  for (const key of ['framed-binary', 'buffered-compact', 'header-compact', 'buffered-lax']) {
    it(`${key}: emits 100 frames from one chunk, in order, as views of that chunk (no copy)`, () => {
      const s0 = session();
      const template = one(py(`${key}/req/hello`), s0);
      const messages: Buffer[] = [];
      for (let i = 0; i < 100; i++) {
        messages.push(Buffer.from(s0.encode(one(Buffer.from(template.raw)), { requestId: i * 1000 })));
      }
      const chunk = Buffer.concat(messages);
      const s = session();
      const out = decodeAll([chunk], s);
      expect(out.map((f) => f.requestId)).toEqual(Array.from({ length: 100 }, (_, i) => i * 1000));
      let offset = 0;
      for (let i = 0; i < 100; i++) {
        const f = out[i]!;
        expect(f.raw.buffer).toBe(chunk.buffer);
        expect(f.raw.byteOffset).toBe(chunk.byteOffset + offset);
        expect(f.raw.equals(messages[i]!)).toBe(true);
        expect(f.metadata.get('method')).toBe('hello');
        offset += messages[i]!.length;
      }
      expect(s.buffered).toBe(0);
    });
  }

  it('waits on truncated input and reports what it holds', () => {
    for (const name of ['framed-compact/req/greet', 'buffered-binary/req/greet', 'header-binary/req/hello']) {
      const bytes = py(name);
      const s = session();
      const out = decodeAll([bytes.subarray(0, bytes.length - 1)], s);
      expect(out, name).toHaveLength(0);
      expect(s.buffered, name).toBe(bytes.length - 1);
      s.decode(bytes.subarray(bytes.length - 1), (f) => out.push(f as ThriftFrame));
      expect(out).toHaveLength(1);
      expect(s.buffered).toBe(0);
    }
  });

  it('rejects garbage with a stable reason, as early as the bytes allow', () => {
    const cases: Array<[string, Buffer, string]> = [
      ['high byte', Buffer.from([0xff]), 'bad_protocol'],
      ['binary version 0x8002', Buffer.from([0x80, 0x02]), 'bad_protocol'],
      ['compact version 5', Buffer.from([0x82, 0x25]), 'bad_protocol'],
      ['compact message type 0', Buffer.from([0x82, 0x01]), 'bad_message'],
      ['compact message type 5', Buffer.from([0x82, 0xa1]), 'bad_message'],
      ['framed binary version 0x8003', Buffer.from([0, 0, 0, 20, 0x80, 0x03]), 'bad_protocol'],
      ['HTTP', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'bad_protocol'],
      ['TLS hello', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), 'bad_protocol'],
      ['binary message type 9', binMessage('x', 9, 1, STOP), 'bad_message'],
      ['lax message type 0', laxMessage('x', 0, 1, STOP), 'bad_message'],
      ['framed head past its frame', Buffer.concat([i32(10), binMessage('hello', 1, 1, STOP)]).subarray(0, 14), 'bad_frame'],
      ['THeader size past its frame', (() => { const b = theader(binMessage('m', 1, 1, STOP)); b.writeUInt16BE(100, 12); return b; })(), 'bad_frame'],
      ['THeader JSON protocol', theader(binMessage('m', 1, 1, STOP), { protocolId: 1 }), 'unsupported_protocol'],
      ['THeader snappy transform', theader(binMessage('m', 1, 1, STOP), { transforms: [3] }), 'unsupported_transform'],
      ['THeader id binary, payload compact', theader(compactMessage('m', 1, 1, STOP), { protocolId: 0 }), 'bad_frame'],
      ['THeader id compact, payload binary', theader(binMessage('m', 1, 1, STOP), { protocolId: 2 }), 'bad_frame'],
    ];
    for (const [name, bytes, reason] of cases) {
      const err = codecError(() => session().decode(bytes, () => {}));
      expect(err.reason, name).toBe(reason);
    }
  });

  it('holds the transport for the connection: a frame of another transport is refused', () => {
    const s = session();
    one(py('header-binary/req/hello'), s);
    expect(codecError(() => s.decode(py('framed-binary/req/hello'), () => {})).reason).toBe('bad_frame');
    const f = session();
    one(py('framed-binary/req/hello'), f);
    expect(codecError(() => f.decode(py('buffered-binary/req/hello'), () => {})).reason).toBe('bad_frame');
    // the next frame's message start is checked before its body is waited for
    const g = session();
    one(py('framed-compact/req/hello'), g);
    expect(codecError(() => g.decode(Buffer.from([0, 0, 0, 100, 0x80, 0x05]), () => {})).reason).toBe('bad_protocol');
    const u = session();
    one(py('buffered-compact/req/hello'), u);
    expect(codecError(() => u.decode(Buffer.from([0xc0, 0]), () => {})).reason).toBe('bad_protocol');
  });

  it('reads the protocol per message: binary replies to a lax client, compact and binary in one THeader stream', () => {
    const out = decodeAll([py('framed-lax/req/hello'), framed(binMessage('hello', 2, 7, STOP))]);
    expect(out.map((f) => [f.strict, f.type])).toEqual([[false, 'request'], [true, 'response']]);
    const h = decodeAll([py('header-binary/req/hello'), py('header-compact/req/hello')]);
    expect(h.map((f) => f.protocol)).toEqual(['binary', 'compact']);
  });

  it('rejects an oversize framed or THeader frame from its length, before buffering it', () => {
    for (const key of ['framed-binary', 'framed-compact', 'framed-lax', 'header-binary']) {
      const big = py(`${key}/req/greet`);
      const limit = big.readUInt32BE(0) - 1;
      // detection needs bytes 4-7 (lax) or 4-5; after that, the length decides
      const s = session(limit);
      expect(codecError(() => s.decode(big.subarray(0, 8), () => {})).reason, key).toBe('frame_too_large');
      // on an established connection, 4 bytes are enough
      const t = session(limit);
      one(py(`${key}/req/hello`), t);
      expect(codecError(() => t.decode(big.subarray(0, 4), () => {})).reason, key).toBe('frame_too_large');
      // the limit itself is fine
      const ok = session(limit + 1);
      expect(one(big, ok).raw.length).toBe(big.length);
    }
  });

  it('rejects an oversize unframed message once it is known to exceed the limit', () => {
    // A string whose length alone takes the message past the limit: refused before its bytes arrive.
    const m = binMessage('x', 1, 1, Buffer.concat([bfield(11, 1, bstr('y'.repeat(5000))), STOP]));
    expect(codecError(() => session(1000).decode(m.subarray(0, 40), () => {})).reason).toBe('frame_too_large');
    // Many small fields and no STOP yet: refused once more than the limit is buffered.
    const fields = Buffer.concat(Array.from({ length: 300 }, (_, i) => bfield(11, i, bstr(''))));
    const open = Buffer.concat([binMessage('x', 1, 1, Buffer.alloc(0)), fields]);
    const s = session(1000);
    let at = 0;
    let held = 0;
    const err = codecError(() => {
      for (;;) {
        s.decode(open.subarray(at, at + 100), () => {});
        at += 100;
        held = s.buffered;
      }
    });
    expect(err.reason).toBe('frame_too_large');
    expect(held).toBeLessThanOrEqual(1000); // never held more than the limit
    expect(at).toBeGreaterThanOrEqual(900); // and waited while the message could still fit
    // A complete message above the limit is refused too; at the limit it passes.
    const whole = binMessage('x', 1, 1, Buffer.concat([bfield(11, 1, bstr('y'.repeat(100))), STOP]));
    expect(codecError(() => session(whole.length - 1).decode(whole, () => {})).reason).toBe('frame_too_large');
    expect(one(whole, session(whole.length)).raw.length).toBe(whole.length);
  });
});

describe('encode', () => {
  it('returns the frame bytes themselves without an edit', () => {
    const s = session();
    for (const c of CONFIGS) {
      const f = one(py(`${c.key}/req/hello`));
      expect(s.encode(f)).toBe(f.raw);
      expect(s.encode(f, {})).toBe(f.raw);
      expect(s.encode(f, { mutation: [] })).toBe(f.raw);
    }
  });

  it('patches a binary seqid in place (and the THeader seqid), keeping every other byte', () => {
    const s = session();
    for (const key of ['framed-binary', 'framed-lax', 'buffered-binary', 'buffered-lax', 'header-binary']) {
      const original = py(`${key}/req/greet`);
      const f = one(Buffer.from(original));
      const out = s.encode(f, { requestId: 123456789 });
      expect(out, key).toBe(f.raw);
      const back = one(Buffer.from(out));
      expect(back.requestId).toBe(123456789);
      expect(f.requestId).toBe(300); // the frame still reports what the peer sent
      let differing = 0;
      for (let i = 0; i < out.length; i++) if (out[i] !== original[i]) differing++;
      expect(differing, key).toBeLessThanOrEqual(key.startsWith('header') ? 8 : 4);
      if (key.startsWith('header')) expect(out.readInt32BE(8)).toBe(123456789);
    }
  });

  it('rewrites compact varint seqids of every width, rebuilding the frame when the width changes', () => {
    const s = session();
    const ids = [0, 1, 127, 128, 16383, 16384, 2 ** 21, 2 ** 28, 2 ** 31 - 1, -1, -(2 ** 31)];
    for (const key of ['framed-compact', 'buffered-compact', 'header-compact']) {
      for (const name of ['hello', 'greet', 'nothing']) {
        const original = py(`${key}/req/${name}`);
        for (const id of ids) {
          const f = one(Buffer.from(original));
          const out = s.encode(f, { requestId: id });
          const back = one(Buffer.from(out));
          expect(back.requestId, `${key} ${name} ${id}`).toBe(id);
          expect(back.metadata.get('method')).toBe(name === 'hello' ? 'hello' : name);
          expect(snapshot(back)).toMatchObject({ type: 'request' });
          if (key !== 'buffered-compact') expect(out.readUInt32BE(0)).toBe(out.length - 4);
          if (key === 'header-compact') expect(out.readInt32BE(8)).toBe(id);
          // back to the peer's own id: the original bytes exactly
          const restored = s.encode(back, { requestId: f.requestId });
          expect(restored.equals(original), `${key} ${name} ${id}`).toBe(true);
        }
      }
    }
    // same width: in place
    const f = one(py('framed-compact/req/hello'));
    expect(s.encode(f, { requestId: 100 })).toBe(f.raw);
    expect(s.encode(f, { requestId: 100000 })).not.toBe(f.raw);
  });

  it('writes ids as i32: u32 values wrap, bigints are accepted, anything else is refused', () => {
    const s = session();
    const f = one(py('framed-binary/req/hello'));
    expect(one(Buffer.from(s.encode(f, { requestId: 0xffffffff }))).requestId).toBe(-1);
    expect(one(Buffer.from(s.encode(f, { requestId: 5n }))).requestId).toBe(5);
    expect(one(Buffer.from(s.encode(f, { requestId: -(2 ** 31) }))).requestId).toBe(-(2 ** 31));
    for (const bad of [2 ** 32, -(2 ** 31) - 1, 1.5, Number.NaN]) {
      expect(() => s.encode(f, { requestId: bad }), String(bad)).toThrow(RangeError);
    }
  });

  it('sets THeader headers: replaces keys ignoring case, appends new ones, re-pads, keeps the payload', async () => {
    const s = session();
    const items: Array<{ transport: PyTransport; proto: PyProtocol; bytes: Buffer }> = [];
    for (const proto of ['binary', 'compact'] as const) {
      const original = py(`header-${proto}/req/hello`);
      const f = one(Buffer.from(original));
      const out = s.encode(f, {
        mutation: [
          { key: 'x-user', value: 'bob' },
          { key: 'Tenant', value: 'ünï 😀' },
        ],
      });
      expect(f.raw.equals(original)).toBe(true); // the frame itself is untouched
      const words = out.readUInt16BE(12);
      expect(out.readUInt32BE(0)).toBe(out.length - 4);
      const payloadAt = 14 + words * 4;
      const originalPayloadAt = 14 + original.readUInt16BE(12) * 4;
      expect(out.subarray(payloadAt).equals(original.subarray(originalPayloadAt))).toBe(true);
      expect(out.subarray(4, 12).equals(original.subarray(4, 12))).toBe(true); // magic, flags, seqid
      const back = one(Buffer.from(out));
      expect(Object.fromEntries(back.metadata.entries())).toEqual({
        'x-user': 'bob',
        'trace-id': 't-1',
        tenant: 'ünï 😀',
        method: 'hello',
      });
      items.push({ transport: 'header', proto, bytes: out });
    }
    // python reads them as the headers of the call
    const read = await pythonRead(gen, items);
    for (const r of read) {
      expect(r.error).toBeUndefined();
      expect(r.name).toBe('hello');
      expect(r.seqid).toBe(7);
      expect(r.headers).toEqual({ 'x-user': 'bob', 'trace-id': 't-1', Tenant: 'ünï 😀' });
      expect(r.left).toBe(0);
    }
  });

  it('adds headers to frames without any, with a new seqid at the same time, requests and replies alike', () => {
    const s = session();
    for (const name of ['header-compact/req/fail', 'header-binary/rep/hello', 'header-compact/rep/fail']) {
      const f = one(py(name));
      const out = s.encode(f, { requestId: 1_000_000, mutation: [{ key: 'k', value: 'v' }] });
      const back = one(Buffer.from(out));
      expect(back.metadata.get('k'), name).toBe('v');
      expect(back.requestId).toBe(1_000_000);
      expect(out.readInt32BE(8)).toBe(1_000_000);
      expect(back.type).toBe(f.type);
      expect(back.status).toBe(f.status);
    }
  });

  it('keeps an unknown info block after the rebuilt key/value block', () => {
    const s = session();
    const extra = Buffer.from([7, 0xaa, 0xbb, 0xcc]);
    const f = one(theader(binMessage('m', 1, 3, STOP), { headers: [['a', '1']], extraInfo: extra }));
    const out = s.encode(f, { mutation: [{ key: 'b', value: '2' }] });
    expect(out.indexOf(extra)).toBeGreaterThan(14);
    expect(Object.fromEntries(one(Buffer.from(out)).metadata.entries())).toEqual({ a: '1', b: '2', method: 'm' });
  });

  it('cannot carry a mutation on framed or unframed frames: bytes unchanged but for the seqid', () => {
    const s = session();
    for (const key of ['framed-binary', 'buffered-compact', 'framed-lax']) {
      const original = py(`${key}/req/hello`);
      const f = one(Buffer.from(original));
      expect(s.encode(f, { mutation: [{ key: 'x', value: 'y' }] })).toBe(f.raw);
      expect(f.raw.equals(original)).toBe(true);
      const out = s.encode(f, { requestId: 9, mutation: [{ key: 'x', value: 'y' }] });
      expect(out.length).toBe(original.length);
      expect(one(Buffer.from(out)).requestId).toBe(9);
    }
  });

  it('accepts frames that were not produced by this session', () => {
    const s = session();
    for (const key of ['framed-compact', 'buffered-lax', 'header-binary']) {
      const raw = py(`${key}/req/hello`);
      const foreign: Frame = { type: 'request', requestId: 7, raw, metadata: one(Buffer.from(raw)).metadata };
      expect(one(Buffer.from(s.encode(foreign, { requestId: 4242 }))).requestId).toBe(4242);
      expect(one(s.localReply(foreign, { kind: 'timeout', message: 'timeout' })!).type).toBe('response');
    }
  });
});

describe('local replies', () => {
  const KINDS: Array<[LocalReplyKind, number]> = [
    ['no_route', AppExceptionType.UNKNOWN_METHOD],
    ['no_healthy_upstream', AppExceptionType.INTERNAL_ERROR],
    ['upstream_reset', AppExceptionType.INTERNAL_ERROR],
    ['timeout', AppExceptionType.INTERNAL_ERROR],
    ['over_limit', AppExceptionType.INTERNAL_ERROR],
    ['fault_abort', AppExceptionType.INTERNAL_ERROR],
    ['bad_response', AppExceptionType.INTERNAL_ERROR],
  ];

  it('answers every kind in the request\'s own protocol and transport, read back by python3-thrift', async () => {
    const s = session();
    const items: Array<{ transport: PyTransport; proto: PyProtocol; bytes: Buffer }> = [];
    const expected: Array<{ type: number; message: string; name: string }> = [];
    for (const c of CONFIGS) {
      for (const name of ['hello', 'mux']) {
        const f = one(py(`${c.key}/req/${name}`));
        s.encode(f, { requestId: 99 }); // an upstream id patched in: the reply still uses the client's
        for (const [kind, type] of KINDS) {
          const message = `${kind}: route "r1" → cluster outbound|9090||greeter 🚧`;
          const reply = s.localReply(f, { kind, message })!;
          const back = one(Buffer.from(reply));
          expect(back.type).toBe('response');
          expect(back.status).toBe('error');
          expect(back.messageType).toBe(3);
          expect(back.requestId).toBe(name === 'hello' ? 7 : 11);
          expect(back.transport).toBe(c.wire);
          expect(back.protocol).toBe(c.protocol);
          expect(back.strict).toBe(c.strict);
          expect(back.metadata.get('method')).toBe('hello');
          items.push({ transport: c.transport, proto: c.proto, bytes: reply });
          expected.push({ type, message, name: 'hello' });
        }
      }
    }
    const read = await pythonRead(gen, items);
    expect(read).toHaveLength(expected.length);
    read.forEach((r, i) => {
      expect(r.error, String(i)).toBeUndefined();
      expect(r.type).toBe(3);
      expect(r.name).toBe(expected[i]!.name);
      expect(r.exception).toEqual({ type: expected[i]!.type, message: expected[i]!.message });
      expect(r.left).toBe(0);
    });
  });

  it('keeps the THeader flags, header seqid and protocol of the request', async () => {
    const s = session();
    const f = one(theader(compactMessage('hello', 1, 21, STOP), { protocolId: 2, flags: 1, seqid: 21, headers: [['a', 'b']] }));
    const reply = s.localReply(f, { kind: 'timeout', message: 'upstream request timeout' })!;
    expect(reply.readUInt16BE(4)).toBe(0x0fff);
    expect(reply.readUInt16BE(6)).toBe(1);
    expect(reply.readInt32BE(8)).toBe(21);
    const [r] = await pythonRead(gen, [{ transport: 'header', proto: 'compact', bytes: reply }]);
    expect(r).toMatchObject({ seqid: 21, headerSeqid: 21, flags: 1, exception: { type: 6, message: 'upstream request timeout' } });
  });

  it('uses the fault abort code when given, any i32', () => {
    const s = session();
    const f = one(py('framed-binary/req/hello'));
    const typeOf = (code?: number) => {
      const reply = s.localReply(f, code === undefined ? { kind: 'fault_abort', message: 'abort' } : { kind: 'fault_abort', message: 'abort', code })!;
      return reply.readInt32BE(reply.length - 5); // field 2 (i32) is the last value before STOP
    };
    expect(typeOf()).toBe(6);
    expect(typeOf(42)).toBe(42);
    expect(typeOf(1)).toBe(1);
    expect(typeOf(-5)).toBe(-5);
  });

  it('sends nothing for a oneway call or a response', () => {
    const s = session();
    for (const c of CONFIGS) {
      expect(s.localReply(one(py(`${c.key}/req/ping`)), { kind: 'no_route', message: 'x' })).toBeUndefined();
      expect(s.localReply(one(py(`${c.key}/rep/hello`)), { kind: 'no_route', message: 'x' })).toBeUndefined();
    }
  });

  it('has no heartbeats to answer', () => {
    expect(session().heartbeatReply(one(py('framed-binary/req/hello')))).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Over TCP, through a relay that drives the codec as the data plane does

describe('local replies seen by real clients', () => {
  for (const c of CONFIGS) {
    it(`${c.key}: a python3-thrift client gets TApplicationExceptions of the right type and message`, async () => {
      const relay = await new Relay({
        localReply: (req) => {
          switch (req.metadata.get('service')) {
            case 'Admin':
              return { kind: 'fault_abort', message: 'injected abort', code: 503 };
            case 'Greeter':
              return { kind: 'timeout', message: 'timeout: upstream request timeout' };
            default:
              return { kind: 'no_route', message: 'no_route: no route for you' };
          }
        },
      }).start();
      try {
        const results = await pythonCall(gen, c.transport, c.proto, relay.port, [
          { method: 'hello', args: ['a'], seqid: 3 },
          { method: 'ping', args: ['oneway: no answer'], seqid: 4 },
          { method: 'hello', args: ['b'], service: 'Greeter', seqid: 300 },
          { method: 'whoami', service: 'Admin', seqid: 2 ** 31 - 1 },
        ]);
        expect(results).toEqual([
          { app: { type: 1, message: 'no_route: no route for you' } },
          { ok: null },
          { app: { type: 6, message: 'timeout: upstream request timeout' } },
          { app: { type: 503, message: 'injected abort' } },
        ]);
        expect(relay.errors).toEqual([]);
        expect(relay.requests.map((f) => [f.type, f.requestId, f.metadata.get('service') ?? ''])).toEqual([
          ['request', 3, ''],
          ['oneway', 4, ''],
          ['request', 300, 'Greeter'],
          ['request', 2 ** 31 - 1, 'Admin'],
        ]);
        expect(relay.sentDown).toHaveLength(3); // none for the oneway call
      } finally {
        relay.stop();
      }
    });
  }

  for (const [transport, protocol] of [
    ['framed', 'binary'],
    ['framed', 'compact'],
    ['buffered', 'binary'],
    ['buffered', 'compact'],
  ] as const) {
    it(`npm thrift ${transport}/${protocol}: the client rejects with the TApplicationException`, async () => {
      const relay = await new Relay({
        localReply: (req) =>
          req.metadata.get('service') === 'Admin'
            ? { kind: 'no_route', message: 'no route to Admin' }
            : { kind: 'timeout', message: 'upstream request timeout' },
      }).start();
      const client = npmClient(gen, relay.port, transport, protocol);
      try {
        // One at a time: npm's plain and multiplexed clients would give both calls seqid 1.
        const errors = [
          await client.greeter.hello('x').then(
            () => undefined,
            (e: unknown) => e,
          ),
          await client.admin.whoami().then(
            () => undefined,
            (e: unknown) => e,
          ),
        ];
        expect(errors[0]).toBeInstanceOf(client.thrift.Thrift.TApplicationException);
        expect(errors[0]).toMatchObject({ type: 6, message: 'upstream request timeout' });
        expect(errors[1]).toBeInstanceOf(client.thrift.Thrift.TApplicationException);
        expect(errors[1]).toMatchObject({ type: 1, message: 'no route to Admin' });
        expect(relay.requests.map((f) => (f as ThriftFrame).transport)).toEqual([
          transport === 'framed' ? 'framed' : 'unframed',
          transport === 'framed' ? 'framed' : 'unframed',
        ]);
      } finally {
        client.close();
        relay.stop();
      }
    });
  }
});

describe('through a real python3-thrift server', () => {
  for (const c of CONFIGS) {
    it(`${c.key}: rewritten seqids reach the server, its replies come back with the client's ids`, async () => {
      const server = await startPythonServer(gen, c.transport, c.proto);
      // Upstream ids far from the client's: compact seqids change varint width both ways.
      const mutation = [
        { key: 'x-user', value: 'bob' },
        { key: 'x-route', value: 'blue' },
      ];
      const relay = await new Relay({ upstreamPort: server.port, firstId: 1_000_000, mutation }).start();
      try {
        const seqids = [0, 5, 6, 300, 70000, 2 ** 31 - 1, 1, 2];
        const results = await pythonCall(gen, c.transport, c.proto, relay.port, [
          { method: 'hello', args: ['world'], seqid: seqids[0] },
          { method: 'hello', args: ['fail'], seqid: seqids[1] },
          { method: 'ping', args: [`through ${c.key}`], seqid: seqids[2] },
          { method: 'nothing', seqid: seqids[3] },
          { method: 'hello', args: ['mux'], service: 'Greeter', seqid: seqids[4] },
          { method: 'whoami', service: 'Admin', seqid: seqids[5] },
          { method: 'whoami', seqid: seqids[6] }, // Greeter has no whoami
          { method: 'headers', seqid: seqids[7], headers: { 'X-User': 'alice', keep: '1' } },
        ]);
        const isHeader = c.transport === 'header';
        expect(results).toEqual([
          { ok: 'hello world' },
          { greet: { reason: 'no greeting for you', code: 42 } },
          { ok: null },
          { ok: null },
          { ok: 'hello mux' },
          { ok: 'admin' },
          { app: { type: 1, message: 'Unknown function whoami' } },
          // THeader carries the mutation (x-user replaced, whatever its case; x-route added); nothing else can
          { ok: isHeader ? { keep: '1', 'x-route': 'blue', 'x-user': 'bob' } : {} },
        ]);
        expect(relay.errors).toEqual([]);
        // what the codec read on the way
        expect(relay.requests.map((f) => [f.type, f.requestId])).toEqual(
          seqids.map((id, i) => [i === 2 ? 'oneway' : 'request', id]),
        );
        expect(relay.replies.map((f) => [f.requestId, f.status])).toEqual([
          [1_000_000, 'ok'],
          [1_000_001, 'business_exception'],
          [1_000_002, 'ok'],
          [1_000_003, 'ok'],
          [1_000_004, 'ok'],
          [1_000_005, 'error'],
          [1_000_006, 'ok'],
        ]);
        for (const f of relay.replies) expect((f as ThriftFrame).transport).toBe(c.wire);
        // what the client got: its own seqids (python clients do not check them, so check the bytes)
        const down = decodeAll(relay.sentDown);
        expect(down.map((f) => f.requestId)).toEqual(seqids.filter((_, i) => i !== 2));
        if (isHeader) {
          // python copies the message seqid into the THeader seqid; the relay's rewrite keeps them equal
          for (const f of down) expect(f.raw.readInt32BE(8)).toBe(f.requestId);
          for (const b of relay.sentUp) expect(b.readInt32BE(8)).toBe(one(Buffer.from(b)).requestId);
        }
        await waitFor(() => server.stderr().includes(`PING through ${c.key}`));
      } finally {
        relay.stop();
        server.stop();
      }
    });
  }

  for (const [transport, protocol, serverTransport, serverProto] of [
    ['framed', 'binary', 'framed', 'binary'],
    ['framed', 'compact', 'framed', 'compact'],
    ['buffered', 'binary', 'buffered', 'binary'],
    ['buffered', 'compact', 'header', 'compact'], // THeader servers take unframed clients too
    ['framed', 'header', 'header', 'binary'], // npm's THeader client writes no header: framed binary
    ['buffered', 'header', 'header', 'binary'],
  ] as const) {
    it(`npm thrift ${transport}/${protocol} client, python ${serverTransport} server: concurrent calls matched by seqid`, async () => {
      const server = await startPythonServer(gen, serverTransport, serverProto);
      const relay = await new Relay({ upstreamPort: server.port, firstId: 5000 }).start();
      const client = npmClient(gen, relay.port, transport, protocol);
      try {
        const names = Array.from({ length: 20 }, (_, i) => `n${i}`);
        const hellos = await Promise.all(names.map((n) => client.greeter.hello(n)));
        expect(hellos).toEqual(names.map((n) => `hello ${n}`));
        await expect(client.greeter.hello('fail')).rejects.toMatchObject({ reason: 'no greeting for you', code: 42 });
        await expect(client.admin.whoami()).resolves.toBe('admin');
        await expect(client.greeter.nothing()).resolves.toBeUndefined();
        expect(relay.errors).toEqual([]);
        expect(client.errors).toEqual([]);
        // npm numbers its calls from 1; the server saw the relay's ids
        expect(relay.requests.slice(0, 20).map((f) => f.requestId)).toEqual(names.map((_, i) => i + 1));
        expect(relay.replies.map((f) => f.requestId)).toEqual(Array.from({ length: 23 }, (_, i) => 5000 + i));
        expect(relay.replies[20]!.status).toBe('business_exception');
        const admin = relay.requests[21]!;
        expect([admin.metadata.get('service'), admin.metadata.get('method')]).toEqual(['Admin', 'whoami']);
        expect((admin as ThriftFrame).transport).toBe(transport === 'framed' ? 'framed' : 'unframed');
        expect((admin as ThriftFrame).protocol).toBe(protocol === 'compact' ? 'compact' : 'binary');
      } finally {
        client.close();
        relay.stop();
        server.stop();
      }
    });
  }
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
