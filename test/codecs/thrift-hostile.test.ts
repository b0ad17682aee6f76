/**
 * Hostile Thrift requests: bytes a server reads otherwise than a naive proxy would. Built by hand; where a real
 * python3-thrift server shows the difference, it is asked (its Greeter.headers() returns the THeader headers it
 * read; its TMultiplexedProcessor has Greeter as default processor and Admin registered). The codec refuses these
 * requests as `bad_body` when routing or authorization reads their metadata.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CodecError, type Frame } from '../../src/codec.js';
import { badBody } from '../helpers/codec.js';
import { thriftCodec, type ThriftFrame } from '../../codecs/thrift/index.js';
import { generate, startPythonServer, type Generated, type PythonServer } from '../fixtures/thrift/peers.js';

let gen: Generated;
let server: PythonServer;

beforeAll(async () => {
  gen = await generate();
  server = await startPythonServer(gen, 'header', 'binary');
});

afterAll(() => {
  server?.stop();
  gen?.cleanup();
});

// ---------------------------------------------------------------------------------------------------------------
// Hand-built frames

function i32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v | 0);
  return b;
}

/** A strict binary CALL named by raw bytes, with `args` (the struct, STOP included). */
function call(name: Buffer | string, args: Buffer = Buffer.from([0])): Buffer {
  const n = Buffer.isBuffer(name) ? name : Buffer.from(name);
  return Buffer.concat([i32(0x80010001), i32(n.length), n, i32(1), args]);
}

function framed(message: Buffer): Buffer {
  return Buffer.concat([i32(message.length), message]);
}

/** A THeader frame (binary protocol, no transforms) with raw key/value headers. */
function theader(payload: Buffer, headers: Array<[Buffer | string, Buffer | string]>): Buffer {
  const parts: Buffer[] = [Buffer.from([0, 0])];
  if (headers.length > 0) {
    parts.push(Buffer.from([1, headers.length]));
    for (const [k, v] of headers) {
      const kb = Buffer.isBuffer(k) ? k : Buffer.from(k);
      const vb = Buffer.isBuffer(v) ? v : Buffer.from(v);
      parts.push(Buffer.from([kb.length]), kb, Buffer.from([vb.length]), vb);
    }
  }
  let header = Buffer.concat(parts);
  header = Buffer.concat([header, Buffer.alloc((4 - (header.length % 4)) % 4)]);
  const fixed = Buffer.alloc(14);
  fixed.writeInt32BE(10 + header.length + payload.length, 0);
  fixed.writeUInt16BE(0x0fff, 4);
  fixed.writeInt32BE(1, 8);
  fixed.writeUInt16BE(header.length / 4, 12);
  return Buffer.concat([fixed, header, payload]);
}

/** hello(1: string name) arguments. */
function helloArgs(name: string): Buffer {
  const n = Buffer.from(name);
  return Buffer.concat([Buffer.from([11, 0, 1]), i32(n.length), n, Buffer.from([0])]);
}

function frame(bytes: Buffer): ThriftFrame {
  const frames: Frame[] = [];
  thriftCodec.create({ maxFrameSize: 1 << 20, side: 'downstream' }).decode(bytes, (f) => frames.push(f));
  expect(frames).toHaveLength(1);
  return frames[0] as ThriftFrame;
}


/** Sends one THeader frame to the python server and returns the reply's payload (the message). */
function exchange(bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(server.port, '127.0.0.1', () => socket.write(bytes));
    let got = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 4 && got.length >= 4 + got.readUInt32BE(0)) {
        socket.end();
        resolve(got.subarray(14 + got.readUInt16BE(12) * 4, 4 + got.readUInt32BE(0)));
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`connection closed after ${got.length} bytes`)));
  });
}

/** The result struct's field 0 of a strict binary REPLY: a string, or a map<string, string>. */
function replyValue(message: Buffer): string | Record<string, string> {
  let at = 8 + message.readInt32BE(4) + 4; // version, name, seqid
  const type = message[at]!;
  at += 3;
  const str = (): string => {
    const n = message.readInt32BE(at);
    at += 4 + n;
    return message.toString('utf8', at - n, at);
  };
  if (type === 11) return str();
  expect(type).toBe(13);
  const size = message.readInt32BE(at + 2);
  at += 6;
  const out: Record<string, string> = {};
  for (let i = 0; i < size; i++) {
    const k = str();
    out[k] = str();
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

describe('THeader headers', () => {
  it('refuses keys equal ignoring case: the server reads its own spelling, the proxy kept the last', async () => {
    const bytes = theader(call('headers'), [['user', 'admin'], ['USER', 'guest']]);
    // python3-thrift keeps both, case-sensitively: code asking for "user" gets admin; a proxy that lower-cased
    // and kept the last saw user=guest.
    expect(replyValue(await exchange(bytes))).toEqual({ user: 'admin', USER: 'guest' });
    expect(badBody(() => frame(bytes).metadata.get('user'))).toContain('appears twice');
    // Exact duplicates too: nothing a real client writes, and one less thing to reason about.
    expect(badBody(() => frame(theader(call('headers'), [['k', '1'], ['k', '2']])).metadata.get('k'))).toContain('twice');
  });

  it('refuses keys and values that are not valid UTF-8 (overlong, surrogate, stray bytes)', () => {
    for (const bad of [[0xc1, 0xa1], [0xe0, 0x81, 0xa1], [0xed, 0xa0, 0x80], [0xff], [0x80]]) {
      const b = Buffer.from([0x75, ...bad]); // "u" + bad bytes
      // Node (and Java) replace such bytes, so different byte strings would look alike to a proxy.
      expect(b.toString('utf8')).toContain('\ufffd');
      expect(badBody(() => frame(theader(call('m'), [[b, 'v']])).metadata.get('x'))).toContain('UTF-8');
      expect(badBody(() => frame(theader(call('m'), [['user', b]])).metadata.get('user'))).toContain('UTF-8');
    }
  });

  it('reads valid UTF-8 headers, and a header named service never names the service', async () => {
    const bytes = theader(call('hello', helloArgs('x')), [['service', 'Admin'], ['tag', 'hé 😀']]);
    // No ':' in the name: the multiplexed server's default processor (Greeter) answers, whatever the header says.
    expect(replyValue(await exchange(bytes))).toBe('hello x');
    const f = frame(bytes);
    expect(f.metadata.get('service')).toBeUndefined();
    expect(f.metadata.get('tag')).toBe('hé 😀');
  });
});

describe('message names', () => {
  it('refuses a name that is not valid UTF-8', () => {
    for (const bad of [[0xc1, 0xa1], [0xff], [0xed, 0xa0, 0x80]]) {
      const name = Buffer.concat([Buffer.from('hello'), Buffer.from(bad)]);
      expect(badBody(() => frame(framed(call(name))).metadata.get('method'))).toContain('UTF-8');
    }
  });

  it('refuses names servers split differently: more than one colon, or an empty part', () => {
    // Java, python and Go split at the first ':' (Greeter / ":hello"); C++ tokenizes on every ':' and drops empty
    // tokens (Greeter / "hello"). Empty parts go to a default processor in some and fail in others.
    for (const name of ['Greeter::hello', 'Greeter:a:b', ':hello', 'Greeter:', ':']) {
      expect(badBody(() => frame(framed(call(name))).metadata.get('method')), name).toContain('Service:method');
    }
    const ok = frame(framed(call('Admin:whoami'))).metadata;
    expect([ok.get('service'), ok.get('method')]).toEqual(['Admin', 'whoami']);
  });

  it('still answers a request whose name it refused, echoing the name bytes without the service', () => {
    const f = frame(framed(call(Buffer.from([0x53, 0x3a, 0x61, 0xff]))));
    expect(() => f.metadata.get('method')).toThrow(CodecError);
    const reply = thriftCodec.create({ maxFrameSize: 1 << 20, side: 'downstream' }).localReply(f, {
      kind: 'bad_request',
      message: 'bad',
    })!;
    expect(reply.subarray(12, 14).equals(Buffer.from([0x61, 0xff]))).toBe(true); // name "a\xff", after "S:"
  });
});
