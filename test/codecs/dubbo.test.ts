import hessian from 'hessian.js';
import jsToJava from 'js-to-java';
import { beforeAll, describe, expect, it } from 'vitest';
import { CodecError, type CodecSession, type Frame, type KeyValue, type LocalReplyKind } from '../../src/codec.js';
import { countParameters } from '../../codecs/dubbo/body.js';
import dubboCodecDefault, { dubboCodec } from '../../codecs/dubbo/index.js';
import { HessianScanner, ScanError } from '../../codecs/dubbo/hessian-scan.js';
import { encodeHessianString } from '../../codecs/dubbo/hessian-write.js';
import { DecodeBuffer, DubboContextClass, DubboEncoder, dubboDecode, HeartBeat } from '../helpers/dubbo2js.js';

/** js-to-java, typed for what these tests use (the shared declaration only types a few members). */
interface JavaValue {
  $class: string;
  $: unknown;
}
type JavaWrap = (value: unknown) => JavaValue;
const java = jsToJava as unknown as Record<
  'String' | 'int' | 'Integer' | 'long' | 'Long' | 'double' | 'Double' | 'float' | 'boolean' | 'List' | 'Map' | 'HashMap',
  JavaWrap
> & {
  combine(className: string, value: unknown): JavaValue;
  array: Record<'int' | 'String', (values: unknown[]) => JavaValue>;
};

// ---------------------------------------------------------------------------------------------------------------
// Builders

interface RequestOptions {
  id?: number;
  service?: string;
  method?: string;
  version?: string;
  group?: string;
  timeout?: number;
  args?: unknown[];
  attachments?: Record<string, unknown>;
  dubbox?: boolean;
}

/** A request exactly as dubbo2.js writes it (always two-way; hessian.js 2.5). */
function dubboRequest(o: RequestOptions = {}): Buffer {
  const ctx = DubboContextClass.create();
  ctx.requestId = o.id ?? 1;
  ctx.dubboVersion = '2.0.2';
  ctx.dubboInterface = o.service ?? 'com.demo.HelloService';
  ctx.path = o.service ?? 'com.demo.HelloService';
  ctx.methodName = o.method ?? 'sayHello';
  ctx.methodArgs = o.args ?? [java.String('world')];
  if (o.version !== undefined) ctx.version = o.version;
  if (o.group !== undefined) ctx.group = o.group;
  if (o.timeout !== undefined) ctx.timeout = o.timeout;
  ctx.attachments = o.attachments ?? {};
  ctx.isSupportedDubbox = o.dubbox ?? false;
  return new DubboEncoder(ctx).encode();
}

function header(flags: number, status: number, id: number | bigint, bodyLength: number): Buffer {
  const h = Buffer.alloc(16);
  h[0] = 0xda;
  h[1] = 0xbb;
  h[2] = flags;
  h[3] = status;
  h.writeBigUInt64BE(BigInt(id), 4);
  h.writeUInt32BE(bodyLength, 12);
  return h;
}

function frameOf(flags: number, status: number, id: number | bigint, body: Buffer): Buffer {
  return Buffer.concat([header(flags, status, id, body.length), body]);
}

/** hessian2 bytes of `values` written in one stream (hessian.js 2.11). */
function hessian2(...values: unknown[]): Buffer {
  const enc = new hessian.EncoderV2();
  for (const v of values) enc.write(v);
  return Buffer.from(enc.get());
}

interface HessianRequestOptions {
  id?: number | bigint;
  flags?: number;
  service?: string | null;
  version?: string | null;
  method?: string | null;
  args?: unknown[];
  /** Written as the attachments value; `omit` leaves the body ending after the arguments. */
  attachments?: unknown;
  omitAttachments?: boolean;
}

/** A request built with hessian.js directly: for argument values dubbo2.js cannot describe (buffers, raw maps…). */
function hessianRequest(o: HessianRequestOptions): Buffer {
  const args = o.args ?? [];
  const values: unknown[] = [
    '2.0.2',
    o.service === undefined ? 'com.demo.Svc' : o.service,
    o.version === undefined ? '1.0.0' : o.version,
    o.method === undefined ? 'call' : o.method,
    'Ljava/lang/Object;'.repeat(args.length),
    ...args,
  ];
  if (!o.omitAttachments) values.push(o.attachments === undefined ? { path: 'com.demo.Svc' } : o.attachments);
  return frameOf(o.flags ?? 0xc2, 0, o.id ?? 1, hessian2(...values));
}

/** An OK response: type, then value (unless null-value type), then attachments (types 3-5). */
function response(id: number | bigint, type: number, value?: unknown, attachments?: Record<string, unknown>): Buffer {
  const values: unknown[] = [type];
  if (type !== 2 && type !== 5) values.push(value);
  if (type >= 3) values.push(attachments ?? {});
  return frameOf(0x02, 20, id, hessian2(...values));
}

const exception = { $class: 'java.lang.IllegalStateException', $: { detailMessage: 'boom', cause: null } };

// ---------------------------------------------------------------------------------------------------------------
// Session helpers

function session(maxFrameSize = 16 * 1024 * 1024): CodecSession {
  return dubboCodec.create({ maxFrameSize, side: 'downstream' });
}

function decodeAll(chunks: Buffer[], s: CodecSession = session()): Frame[] {
  const out: Frame[] = [];
  for (const c of chunks) s.decode(c, (f) => out.push(f));
  return out;
}

function one(bytes: Buffer): Frame {
  const frames = decodeAll([bytes]);
  expect(frames).toHaveLength(1);
  return frames[0]!;
}

function entries(f: Frame): Record<string, string> {
  return Object.fromEntries([...f.metadata.entries()].sort(([a], [b]) => a.localeCompare(b)));
}

/** What a frame looks like to the data plane, for comparing frames decoded from different chunkings. */
function snapshot(f: Frame): unknown {
  return {
    type: f.type,
    requestId: f.requestId,
    raw: f.raw.toString('hex'),
    status: f.status,
    expectsReply: f.expectsReply,
    metadata: entries(f),
  };
}

function codecError(fn: () => unknown): CodecError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CodecError);
    return err as CodecError;
  }
  throw new Error('expected a CodecError');
}

/** Decodes a request body with hessian.js: [dubboVersion, service, version, method, desc, ...args, attachments]. */
function hessianDecodeRequest(bytes: Buffer, argCount: number): unknown[] {
  expect(bytes.readUInt32BE(12)).toBe(bytes.length - 16);
  const dec = new hessian.DecoderV2(bytes.subarray(16));
  const out: unknown[] = [];
  for (let i = 0; i < 5 + argCount + 1; i++) out.push(dec.read());
  expect(dec.position()).toBe(bytes.length - 16);
  return out;
}

// Seeded PRNG so failures reproduce.
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// ---------------------------------------------------------------------------------------------------------------

describe('dubbo codec factory', () => {
  it('registers under the Aeraki codec name with id multiplexing', () => {
    expect(dubboCodec.name).toBe('aeraki.meta_protocol.codec.dubbo');
    expect(dubboCodec.protocol).toBe('dubbo');
    expect(dubboCodec.multiplexing).toBe('id');
    expect(dubboCodecDefault).toBe(dubboCodec);
  });
});

describe('frame kinds', () => {
  it('decodes a dubbo2.js two-way request', () => {
    const bytes = dubboRequest({ id: 7 });
    const f = one(bytes);
    expect(f.type).toBe('request');
    expect(f.requestId).toBe(7);
    expect(f.status).toBeUndefined();
    expect(f.raw.equals(bytes)).toBe(true);
  });

  it('decodes a request without the two-way flag as oneway', () => {
    const bytes = dubboRequest({ id: 8 });
    bytes[2] = bytes[2]! & ~0x40;
    const f = one(bytes);
    expect(f.type).toBe('oneway');
    expect(f.metadata.get('method')).toBe('sayHello');
  });

  it('classifies OK responses by response type', () => {
    const cases: Array<[number, unknown, string, Record<string, string>]> = [
      [1, 'hello', 'ok', {}],
      [2, undefined, 'ok', {}],
      [0, exception, 'business_exception', {}],
      [3, exception, 'business_exception', { trace: 't1' }],
      [4, { $class: 'com.demo.User', $: { name: 'ann' } }, 'ok', { trace: 't2' }],
      [5, undefined, 'ok', { trace: 't3' }],
    ];
    for (const [type, value, status, attachments] of cases) {
      const f = one(response(41, type, value, type >= 3 ? attachments : undefined));
      expect(f.type, `type ${type}`).toBe('response');
      expect(f.requestId).toBe(41);
      expect(f.status, `type ${type}`).toBe(status);
      expect(entries(f), `type ${type}`).toEqual(attachments);
    }
  });

  it('reads a response type written in the long int form', () => {
    const body = Buffer.concat([Buffer.from([0x49, 0, 0, 0, 3]), hessian2(exception, { k: 'v' })]);
    const f = one(frameOf(0x02, 20, 2, body));
    expect(f.status).toBe('business_exception');
    expect(f.metadata.get('k')).toBe('v');
  });

  it('marks a non-OK status response as an error with no metadata', () => {
    for (const status of [30, 31, 40, 50, 60, 70, 80, 90, 100]) {
      const f = one(frameOf(0x02, status, 9, hessian2('provider said no')));
      expect(f.type).toBe('response');
      expect(f.status).toBe('error');
      expect(entries(f)).toEqual({});
    }
  });

  it('keeps an unclassifiable OK response a response (so it reaches its caller) with status error', () => {
    const f = one(frameOf(0x02, 20, 10, hessian2(9, 'x')));
    expect(f.type).toBe('response');
    expect(f.status).toBe('error');
    const empty = one(frameOf(0x02, 20, 11, Buffer.alloc(0)));
    expect(empty.status).toBe('error');
  });

  it('decodes the dubbo2.js heartbeat as a heartbeat expecting a reply, and answers it', () => {
    const s = session();
    const hb = HeartBeat.encode();
    const [f] = decodeAll([hb], s);
    expect(f!.type).toBe('heartbeat');
    expect(f!.expectsReply).toBe(true);
    expect(f!.requestId).toBe(0);
    const reply = s.heartbeatReply(f!)!;
    expect(reply.toString('hex')).toBe('dabb2214' + '0000000000000000' + '00000001' + '4e');
    expect(HeartBeat.isHeartBeat(reply)).toBe(true);
    // and it reads back as a heartbeat response that expects nothing
    const back = one(reply);
    expect(back.type).toBe('heartbeat');
    expect(back.expectsReply).toBe(false);
    expect(back.status).toBe('ok');
    expect(s.heartbeatReply(back)).toBeUndefined();
  });

  it('echoes a heartbeat id (including 64-bit ids) in the reply', () => {
    const s = session();
    const id = 0xfedcba9876543210n;
    const [f] = decodeAll([frameOf(0xe2, 0, id, Buffer.from([0x4e]))], s);
    expect(f!.requestId).toBe(id);
    const reply = s.heartbeatReply(f!)!;
    expect(reply.readBigUInt64BE(4)).toBe(id);
    expect(reply[2]).toBe(0x22);
    expect(reply[3]).toBe(20);
  });

  it('does not answer a one-way event or a non-heartbeat', () => {
    const s = session();
    const [oneway] = decodeAll([frameOf(0xa2, 0, 3, Buffer.from([0x4e]))], s);
    expect(oneway!.type).toBe('heartbeat');
    expect(oneway!.expectsReply).toBe(false);
    expect(s.heartbeatReply(oneway!)).toBeUndefined();
    const [req] = decodeAll([dubboRequest()], s);
    expect(s.heartbeatReply(req!)).toBeUndefined();
  });
});

describe('metadata', () => {
  const bytes = dubboRequest({
    service: 'com.demo.UserService',
    method: 'findUser',
    version: '2.1.0',
    group: 'blue',
    timeout: 3000,
    args: [java.String('ann'), java.int(42)],
    attachments: { 'X-Canary': 'yes', traceId: 'abc-123' },
  });

  it('exposes interface, method, version, group and every string attachment', () => {
    const md = one(bytes).metadata;
    expect(md.get('interface')).toBe('com.demo.UserService');
    expect(md.get('method')).toBe('findUser');
    expect(md.get('version')).toBe('2.1.0');
    expect(md.get('group')).toBe('blue');
    expect(md.get('x-canary')).toBe('yes');
    expect(md.get('traceid')).toBe('abc-123');
    expect(md.get('application')).toBe('dubbo2.js');
    expect(md.get('path')).toBe('com.demo.UserService');
    expect(md.get('missing')).toBeUndefined();
  });

  it('lists entries with lower-case keys; non-string attachments (dubbo2.js timeout is an int) are left out', () => {
    expect(entries(one(bytes))).toEqual({
      application: 'dubbo2.js',
      group: 'blue',
      interface: 'com.demo.UserService',
      method: 'findUser',
      path: 'com.demo.UserService',
      traceid: 'abc-123',
      version: '2.1.0',
      'x-canary': 'yes',
    });
  });

  it('is case-insensitive on keys', () => {
    const md = one(bytes).metadata;
    expect(md.get('X-Canary')).toBe('yes');
    expect(md.get('TRACEID')).toBe('abc-123');
    expect(md.get('Interface')).toBe('com.demo.UserService');
  });

  it('prefers body fields over attachments of the same name', () => {
    const md = one(
      dubboRequest({
        service: 'com.demo.Real',
        method: 'realMethod',
        version: '1.2.3',
        attachments: { interface: 'com.demo.Fake', method: 'fake' },
      }),
    ).metadata;
    expect(md.get('interface')).toBe('com.demo.Real');
    expect(md.get('method')).toBe('realMethod');
    expect(md.get('version')).toBe('1.2.3');
  });

  it('falls back to the attachments when the body leaves a field null or empty', () => {
    // dubbo2.js without a version writes null in the body and version=0.0.0 in the attachments
    const noVersion = one(dubboRequest({})).metadata;
    expect(noVersion.get('version')).toBe('0.0.0');
    const md = one(
      hessianRequest({ service: '', version: null, attachments: { interface: 'com.demo.FromAttachment', version: '3.0' } }),
    ).metadata;
    expect(md.get('interface')).toBe('com.demo.FromAttachment');
    expect(md.get('version')).toBe('3.0');
    expect(md.get('group')).toBeUndefined();
  });

  it('reads dubbox requests (an int between the method name and the parameter types)', () => {
    const bytes = dubboRequest({ dubbox: true, args: [java.int(1), java.String('x')], attachments: { tag: 'dx' } });
    expect(bytes.includes(Buffer.from([0x08, ...Buffer.from('sayHello'), 0x8f]))).toBe(true); // -1 after the method
    const md = one(bytes).metadata;
    expect(md.get('method')).toBe('sayHello');
    expect(md.get('tag')).toBe('dx');
  });

  it('refuses keys that differ only in case (the provider keeps both; see dubbo-hostile.test.ts)', () => {
    const md = one(hessianRequest({ attachments: new Map([['Tag', 'first'], ['tag', 'second']]) })).metadata;
    expect(codecError(() => md.get('tag')).reason).toBe('bad_body');
  });

  it('reads a typed (M) attachments map and a null one', () => {
    const typed = new hessian.EncoderV2({ mapTypes: { 'java.util.TreeMap': true } });
    for (const v of ['2.0.2', 'com.demo.Svc', '1.0', 'm', 'I', 5]) typed.write(v);
    typed.write({ $class: 'java.util.TreeMap', $: { color: 'red' } });
    const body = Buffer.from(typed.get());
    expect(body.includes(Buffer.from('java.util.TreeMap'))).toBe(true);
    expect(one(frameOf(0xc2, 0, 1, body)).metadata.get('color')).toBe('red');

    const nullMap = one(hessianRequest({ args: [1], attachments: null }));
    expect(entries(nullMap)).toEqual({ interface: 'com.demo.Svc', method: 'call', version: '1.0.0' });
    const noMap = one(hessianRequest({ args: [1], omitAttachments: true }));
    expect(entries(noMap)).toEqual({ interface: 'com.demo.Svc', method: 'call', version: '1.0.0' });
  });

  it('is lazy: the method is read without scanning the arguments', () => {
    // A body whose arguments are garbage: the method still reads; the attachments do not, nor do interface and
    // version, which the provider takes from the attachments' path and version when they are there.
    const head = hessian2('2.0.2', 'com.demo.Svc', '1.0.0', 'call', 'I');
    const f = one(frameOf(0xc2, 0, 5, Buffer.concat([head, Buffer.from([0x40, 0x40])])));
    expect(f.metadata.get('method')).toBe('call');
    const err = codecError(() => f.metadata.get('interface'));
    expect(err.reason).toBe('bad_body');
    // and the failure sticks
    expect(codecError(() => f.metadata.entries()).reason).toBe('bad_body');
  });

  it('reports bad_body for a request whose head cannot be read, at the first metadata read', () => {
    const f = one(frameOf(0xc2, 0, 5, Buffer.from([0x05, 0x61, 0x62])));
    expect(codecError(() => f.metadata.get('interface')).reason).toBe('bad_body');
  });

  it('rejects at decode a request body that does not start with a string', () => {
    expect(codecError(() => decodeAll([frameOf(0xc2, 0, 5, Buffer.from([0x90, 0x91]))])).reason).toBe('bad_body');
    expect(codecError(() => decodeAll([frameOf(0xc2, 0, 5, Buffer.alloc(0))])).reason).toBe('bad_body');
  });

  it('leaves metadata of an unscannable response empty instead of failing', () => {
    const f = one(frameOf(0x02, 20, 1, Buffer.from([0x94, 0x40])));
    expect(f.status).toBe('ok');
    expect(f.metadata.get('x')).toBeUndefined();
    expect(entries(f)).toEqual({});
  });

  it('has no metadata on heartbeats', () => {
    expect(entries(one(HeartBeat.encode()))).toEqual({});
  });
});

describe('skipping arguments to reach the attachments', () => {
  const typedArgs: Array<[string, unknown]> = [
    ['int', java.int(-262145)],
    ['Integer', java.Integer(47)],
    ['long', java.long(-9)],
    ['Long big', java.Long('9007199254740993')],
    ['double', java.double(Math.PI)],
    ['Double int-valued', java.Double(-32768)],
    ['float millis', java.float(1.25)],
    ['boolean', java.boolean(true)],
    ['String empty', java.String('')],
    ['String multibyte', java.String('héllo wörld ✓ 日本語')],
    ['String emoji', java.String('👍🏽 launch 🚀')],
    ['String 1024', java.String('x'.repeat(1024))],
    ['String chunked', java.String('é🙂'.repeat(40000))],
    ['null String', java.String(null)],
    ['Date minute', { $class: 'java.util.Date', $: new Date(Date.UTC(2024, 0, 1, 12, 30)) }],
    ['Date ms', { $class: 'java.util.Date', $: new Date(1700000000123) }],
    ['List', java.List([1, 'two', 3.5, null, true])],
    ['int[]', java.array.int([1, 2, 3, 4, 5, 6, 7, 8, 9])],
    ['String[]', java.array.String(['a', 'b'])],
    ['Map', java.Map({ a: 1, b: 'x', c: [1, 2] })],
    ['HashMap', java.HashMap({ nested: { deep: { deeper: 'yes' } } })],
    [
      'typed object',
      java.combine('com.demo.User', {
        name: 'ann',
        age: java.int(31),
        tags: java.List(['a', 'b']),
        address: java.combine('com.demo.Address', { city: 'Zürich', zip: '8000' }),
      }),
    ],
    [
      'list of typed objects (class refs)',
      java.List([
        java.combine('com.demo.Point', { x: 1, y: 2 }),
        java.combine('com.demo.Point', { x: 3, y: 4 }),
        java.combine('com.demo.Point', { x: 5, y: 6 }),
      ]),
    ],
  ];

  for (const [name, arg] of typedArgs) {
    it(`skips a ${name} argument (dubbo2.js encoder)`, () => {
      const f = one(dubboRequest({ args: [arg], attachments: { marker: name } }));
      expect(f.metadata.get('marker')).toBe(name);
      expect(f.metadata.get('version')).toBe('0.0.0');
    });
  }

  it('skips all of them in one request', () => {
    const f = one(dubboRequest({ args: typedArgs.map(([, a]) => a), attachments: { marker: 'all' } }));
    expect(f.metadata.get('marker')).toBe('all');
  });

  const rawArgs: Array<[string, unknown]> = [
    ['binary small', Buffer.from([1, 2, 3])],
    ['binary 1000', Buffer.alloc(1000, 7)],
    ['binary chunked', Buffer.alloc(20000, 9)],
    ['nested arrays', [[1, [2, [3, [4, ['deep']]]]]]],
    ['ES map with int keys', new Map<unknown, unknown>([[1, 'a'], [2, { b: 'c' }]])],
    ['repeated object (ref)', ((o: object) => [o, o, o])({ same: 'object' })],
    ['null', null],
  ];
  for (const [name, arg] of rawArgs) {
    it(`skips a ${name} argument (hessian.js encoder)`, () => {
      const f = one(hessianRequest({ args: [arg, 'after'], attachments: { marker: name } }));
      expect(f.metadata.get('marker')).toBe(name);
    });
  }
});

// ---------------------------------------------------------------------------------------------------------------
// The skipper against hessian.js, value by value

/** Random values covering every form hessian.js writes, with shared class definitions, type refs and object refs. */
function randomValues(rng: () => number, count: number): unknown[] {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;
  const intEdges = [0, -16, 47, -17, 48, -2048, 2047, -2049, 2048, -262144, 262143, -262145, 262144, 2 ** 31 - 1, -(2 ** 31)];
  const longEdges = [0, -8, 15, -9, 16, -2048, 2047, -262144, 262143, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 2 ** 40, -(2 ** 52)];
  const doubles = [0, 1, 5, -128, 127, 128, -32768, 32767, 40000, 1.5, 0.001, 12.345, Math.PI, 1e300, -0.25];
  const charPools = ['abcxyz ', 'éüßñ', '日本語中文', '😀🚀👍', '\u0000\u007f\u0080\u07ff\u0800\uffff'];
  const seen: object[] = [];

  const str = (): string => {
    const lens = [0, 1, 5, 31, 32, 100, 1023, 1024, 3000];
    const len = rng() < 0.02 ? pick([32767, 32768, 32769, 70000]) : pick(lens);
    let s = '';
    const pool = pick(charPools);
    const chars = [...pool];
    while (s.length < len) s += pick(chars);
    return s;
  };

  const gen = (depth: number): unknown => {
    const k = Math.floor(rng() * (depth > 2 ? 9 : 16));
    switch (k) {
      case 0:
        return rng() < 0.5 ? pick(intEdges) : Math.floor(rng() * 2 ** 32) - 2 ** 31;
      case 1:
        return { $class: 'long', $: pick(longEdges) };
      case 2:
        return pick(doubles);
      case 3:
        return str();
      case 4:
        return pick([true, false, null]);
      case 5:
        return rng() < 0.5 ? new Date(Math.floor(rng() * 1e9) * 60000) : new Date(Math.floor(rng() * 1e13));
      case 6:
        return Buffer.alloc(pick([0, 1, 15, 16, 255, 1023, 1024, 4093, 4094, 9000]), Math.floor(rng() * 256));
      case 7:
        return { $class: 'java.lang.Long', $: String(2n ** 62n + BigInt(Math.floor(rng() * 1000))) };
      case 8:
        return pick(['', 'a', 'end']);
      case 9:
      case 10: {
        const arr = Array.from({ length: Math.floor(rng() * 11) }, () => gen(depth + 1));
        const typed = rng() < 0.5 ? { $class: pick(['java.util.List', '[java.lang.Object', 'java.util.Set']), $: arr } : arr;
        seen.push(typed);
        return typed;
      }
      case 11: {
        const obj: Record<string, unknown> = {};
        for (let i = Math.floor(rng() * 5); i > 0; i--) obj[`k${Math.floor(rng() * 100)}`] = gen(depth + 1);
        const typed = rng() < 0.3 ? { $class: 'java.util.TreeMap', $: obj } : obj;
        seen.push(typed);
        return typed;
      }
      case 12: {
        const m = new Map<unknown, unknown>();
        for (let i = Math.floor(rng() * 4); i > 0; i--) m.set(gen(depth + 2), gen(depth + 1));
        return m;
      }
      case 13:
      case 14: {
        // 20 classes with fixed fields: more than 16 definitions forces the long 'O' form
        const c = Math.floor(rng() * 20);
        const fields: Record<string, unknown> = {};
        for (let i = 0; i <= c % 4; i++) fields[`f${i}`] = gen(depth + 1);
        const o = { $class: `com.demo.C${c}`, $: fields };
        seen.push(o);
        return o;
      }
      default:
        return seen.length > 0 ? pick(seen) : null; // the same object again: written as a ref
    }
  };
  return Array.from({ length: count }, () => gen(0));
}

describe('hessian2 skipper', () => {
  it('ends every value exactly where hessian.js ends it (random values, one stream)', () => {
    const rng = mulberry32(0x5eed);
    const values = randomValues(rng, 3000);
    const enc = new hessian.EncoderV2({ mapTypes: { 'java.util.TreeMap': true } });
    for (const v of values) enc.write(v);
    const bytes = Buffer.from(enc.get());

    const dec = new hessian.DecoderV2(bytes);
    const expected: number[] = [];
    for (let i = 0; i < values.length; i++) {
      dec.read();
      expected.push(dec.position());
    }
    expect(expected[expected.length - 1]).toBe(bytes.length);

    const sc = new HessianScanner().reset(bytes, 0, bytes.length);
    const actual: number[] = [];
    for (let i = 0; i < values.length; i++) {
      sc.skipValue();
      actual.push(sc.pos);
    }
    expect(actual).toEqual(expected);
    // The stream had every interesting form in it.
    for (const tag of [0x43, 0x4f, 0x51, 0x52, 0x41, 0x4d, 0x48, 0x56, 0x58, 0x59, 0x4c, 0x4a, 0x4b, 0x44, 0x5f]) {
      expect(bytes.includes(tag), `tag 0x${tag.toString(16)}`).toBe(true);
    }
  });

  it('reaches the attachments behind random arguments in requests', () => {
    const rng = mulberry32(42);
    for (let i = 0; i < 300; i++) {
      const args = randomValues(rng, 1 + Math.floor(rng() * 4));
      const f = one(hessianRequest({ id: i, args, attachments: { n: String(i), path: 'com.demo.Svc' } }));
      expect(f.metadata.get('n')).toBe(String(i));
    }
  });

  it('skips the forms hessian.js never writes', () => {
    const cases: Array<[string, string]> = [
      ['typed variable list U', '55 04 4c 69 73 74 91 92 5a'],
      ['untyped variable list W', '57 91 05 68 65 6c 6c 6f 5a'],
      ['fixed typed list with type ref', '72 90 91 92'],
      ['map typed by int ref', '4d 90 01 61 91 5a'],
      ['string R chunk then compact', '52 00 02 61 62 01 63'],
      ['binary A chunk then compact', '41 00 02 01 02 21 03'],
      ['binary medium', '34 03 01 02 03'],
      ['int I form', '49 00 01 00 00'],
      ['double byte, short', '5d ff'],
      ['double short', '5e 80 00'],
      ['class def + O long form', '43 01 41 92 01 61 01 62 4f 90 91 92'],
      ['ref', '51 c8 00'],
      ['long 3-byte', '3c 01 02'],
    ];
    for (const [name, hex] of cases) {
      const bytes = Buffer.from(hex.replace(/ /g, '') + 'aa', 'hex'); // trailing byte: must stop before it
      const sc = new HessianScanner().reset(bytes, 0, bytes.length);
      sc.skipValue();
      expect(sc.pos, name).toBe(bytes.length - 1);
    }
  });

  it('rejects truncated, reserved and runaway input with ScanError', () => {
    const bad = ['05 61 62', '53 00 05 61', '44 00 00', '40', '45', '5a', '48 91 91', '4f 90', '60', 'c8', '72 03 61', 'ff'];
    for (const hex of bad) {
      const bytes = Buffer.from(hex.replace(/ /g, ''), 'hex');
      expect(() => new HessianScanner().reset(bytes, 0, bytes.length).skipValue(), hex).toThrow(ScanError);
    }
    const deep = Buffer.concat([Buffer.alloc(100000, 0x79), Buffer.from([0x4e])]); // 100k nested one-element lists
    expect(() => new HessianScanner().reset(deep, 0, deep.length).skipValue()).toThrow(ScanError);
  });

  it('reads strings as hessian.js and Java write them (CESU-8 surrogates), not as standard UTF-8', () => {
    for (const s of ['', 'plain', 'héllo', '日本語', '😀 emoji 🚀', 'a'.repeat(40000) + '😀'.repeat(20000)]) {
      const bytes = hessian2(s);
      const sc = new HessianScanner().reset(bytes, 0, bytes.length);
      expect(sc.readStringOrNull()).toBe(s);
      expect(sc.pos).toBe(bytes.length);
    }
    // Standard 4-byte UTF-8 is refused: Java and hessian.js cannot read it, other decoders count it differently.
    const utf8 = Buffer.from('03' + Buffer.from('a😀').toString('hex'), 'hex');
    expect(() => new HessianScanner().reset(utf8, 0, utf8.length).readStringOrNull()).toThrow(ScanError);
    expect(() => new HessianScanner().reset(utf8, 0, utf8.length).skipValue()).toThrow(ScanError);
    const n = Buffer.from([0x4e]);
    expect(new HessianScanner().reset(n, 0, 1).readStringOrNull()).toBeNull();
  });

  it('writes strings byte-for-byte as hessian.js does, across every length form and chunking', () => {
    const samples = ['', 'a', 'x'.repeat(31), 'x'.repeat(32), 'é'.repeat(1023), 'y'.repeat(1024), 'z'.repeat(65535)];
    samples.push('w'.repeat(0x8000 - 1) + '😀' + 'tail'); // a surrogate pair straddling the chunk boundary
    samples.push('日本😀'.repeat(30000));
    for (const s of samples) {
      const mine = encodeHessianString(s);
      expect(mine.equals(hessian2(s)), `length ${s.length}`).toBe(true);
      expect(hessian.decode(mine, '2.0')).toBe(s);
    }
  });

  it('counts JVM descriptor parameters', () => {
    expect(countParameters('')).toBe(0);
    expect(countParameters('Ljava/lang/String;')).toBe(1);
    expect(countParameters('Ljava/lang/String;[Ljava/lang/String;[Ljava/lang/Object;')).toBe(3);
    expect(countParameters('IJZ[[DLcom/x/Y;S')).toBe(6);
    expect(() => countParameters('Ljava/lang/String')).toThrow(ScanError);
    expect(() => countParameters('Q')).toThrow(ScanError);
  });
});

describe('framing', () => {
  const request = dubboRequest({
    id: 77,
    group: 'g',
    args: [java.String('日本😀'), java.combine('com.demo.User', { name: 'ann', tags: java.List(['a']) })],
    attachments: { tag: 'v1' },
  });
  const resp = response(77, 4, 'done', { server: 's1' });
  const hb = HeartBeat.encode();
  const stream = Buffer.concat([request, resp, hb]);
  let expected: unknown[] = [];
  beforeAll(() => {
    expected = decodeAll([stream]).map(snapshot);
  });

  it('decodes three different frames from one chunk', () => {
    expect(expected.map((f) => (f as { type: string }).type)).toEqual(['request', 'response', 'heartbeat']);
    expect((expected[0] as { metadata: Record<string, string> }).metadata.tag).toBe('v1');
    expect((expected[1] as { metadata: Record<string, string> }).metadata.server).toBe('s1');
  });

  it('gives identical frames when the stream is cut at every byte boundary', () => {
    for (let i = 1; i < stream.length; i++) {
      const s = session();
      const frames: Frame[] = [];
      s.decode(stream.subarray(0, i), (f) => frames.push(f));
      const emitted = frames.length;
      const consumed = frames.reduce((n, f) => n + f.raw.length, 0);
      expect(s.buffered, `cut at ${i}`).toBe(i - consumed);
      s.decode(stream.subarray(i), (f) => frames.push(f));
      expect(frames.map(snapshot), `cut at ${i}`).toEqual(expected);
      expect(s.buffered).toBe(0);
      expect(emitted).toBeLessThanOrEqual(3);
    }
  });

  it('gives identical frames fed one byte at a time and in three pieces', () => {
    const bytes = [...stream].map((b) => Buffer.from([b]));
    expect(decodeAll(bytes).map(snapshot)).toEqual(expected);
    for (let i = 1; i < stream.length; i += 37) {
      for (let j = i; j < stream.length; j += 53) {
        const parts = [stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)];
        expect(decodeAll(parts).map(snapshot), `${i}/${j}`).toEqual(expected);
      }
    }
  });

  it('emits 100 frames from one chunk, in order, as views of that chunk (no copy)', () => {
    const frames: Buffer[] = [];
    for (let i = 1; i <= 100; i++) {
      frames.push(i % 2 ? dubboRequest({ id: i, attachments: { n: String(i) } }) : response(i, 1, i));
    }
    const chunk = Buffer.concat(frames);
    const s = session();
    const out = decodeAll([chunk], s);
    expect(out.map((f) => f.requestId)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    let offset = 0;
    for (let i = 0; i < 100; i++) {
      const f = out[i]!;
      expect(f.type).toBe(i % 2 === 0 ? 'request' : 'response');
      expect(f.raw.buffer).toBe(chunk.buffer);
      expect(f.raw.byteOffset).toBe(chunk.byteOffset + offset);
      expect(f.raw.equals(frames[i]!)).toBe(true);
      if (i % 2 === 0) expect(f.metadata.get('n')).toBe(String(i + 1));
      offset += frames[i]!.length;
    }
    expect(s.buffered).toBe(0);
  });

  it('rejects an oversize frame from its header alone, before buffering the body', () => {
    const s = session(1000);
    const err = codecError(() => s.decode(header(0xc2, 0, 1, 1001), () => {}));
    expect(err.reason).toBe('frame_too_large');
    // the limit itself is fine: it waits for the body
    const ok = session(1000);
    const got: Frame[] = [];
    ok.decode(header(0xc2, 0, 1, 1000), (f) => got.push(f));
    expect(got).toHaveLength(0);
    expect(ok.buffered).toBe(16);
    // and a header split across chunks is checked as soon as it is whole
    const split = session(1000);
    split.decode(header(0xc2, 0, 1, 5000).subarray(0, 10), () => {});
    expect(codecError(() => split.decode(header(0xc2, 0, 1, 5000).subarray(10), () => {})).reason).toBe(
      'frame_too_large',
    );
  });

  it('rejects garbage as bad_magic, even before a whole header has arrived', () => {
    expect(codecError(() => decodeAll([Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')])).reason).toBe('bad_magic');
    expect(codecError(() => decodeAll([Buffer.from([0xda, 0x00])])).reason).toBe('bad_magic');
    expect(codecError(() => decodeAll([Buffer.from([0x16])])).reason).toBe('bad_magic');
    // a good frame followed by garbage: the good one is emitted first
    const got: Frame[] = [];
    const err = codecError(() => session().decode(Buffer.concat([request, Buffer.alloc(20, 0x41)]), (f) => got.push(f)));
    expect(err.reason).toBe('bad_magic');
    expect(got).toHaveLength(1);
  });

  it('rejects serializations other than hessian2', () => {
    for (const serialization of [3, 6, 21]) {
      const err = codecError(() => decodeAll([frameOf(0xc0 | serialization, 0, 1, Buffer.from([0x4e]))]));
      expect(err.reason).toBe('unsupported_serialization');
    }
  });

  it('reads ids beyond 53 bits as bigint', () => {
    expect(one(response(2n ** 53n, 1, 'x')).requestId).toBe(2n ** 53n);
    expect(one(response(2 ** 53 - 1, 1, 'x')).requestId).toBe(2 ** 53 - 1);
  });
});

describe('encode', () => {
  it('returns the frame bytes themselves without an edit', () => {
    const s = session();
    const f = one(dubboRequest({ id: 3 }));
    expect(s.encode(f)).toBe(f.raw);
    expect(s.encode(f, {})).toBe(f.raw);
    expect(s.encode(f, { mutation: [] })).toBe(f.raw);
  });

  it('patches the request id in place (number and bigint)', () => {
    const s = session();
    const f = one(dubboRequest({ id: 3 }));
    const body = Buffer.from(f.raw.subarray(16));
    const out = s.encode(f, { requestId: 2 ** 40 + 5 });
    expect(out).toBe(f.raw);
    expect(one(out).requestId).toBe(2 ** 40 + 5);
    expect(out.subarray(16).equals(body)).toBe(true);

    const big = 2n ** 63n + 17n;
    expect(one(s.encode(f, { requestId: big })).requestId).toBe(big);
    expect(out.readBigUInt64BE(4)).toBe(big);
    expect(one(s.encode(f, { requestId: 0 })).requestId).toBe(0);
    expect(() => s.encode(f, { requestId: -1 })).toThrow(RangeError);
  });

  it('mutates request attachments, keeping header, arguments and other entries intact', () => {
    const args = [
      java.String('日本😀'),
      java.combine('com.demo.User', { name: 'ann', age: java.int(31), tags: java.List(['x', 'y']) }),
      java.array.int([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
      { $class: 'java.util.Date', $: new Date(1700000000123) },
    ];
    const bytes = dubboRequest({ id: 12, group: 'g1', timeout: 2500, args, attachments: { 'X-Tag': 'blue', keep: 'me' } });
    const original = Buffer.from(bytes);
    const s = session();
    const f = one(bytes);
    const mutation: KeyValue[] = [
      { key: 'x-tag', value: 'green' },
      { key: 'route-by', value: 'wäypost 🚦' },
    ];
    const out = s.encode(f, { mutation, requestId: 99 });

    expect(f.raw.equals(original)).toBe(true); // the received frame is left alone
    expect(out.subarray(0, 4).equals(original.subarray(0, 4))).toBe(true);
    expect(out.readBigUInt64BE(4)).toBe(99n);

    const before = hessianDecodeRequest(original, args.length);
    const after = hessianDecodeRequest(out, args.length);
    expect(after.slice(0, 5 + args.length)).toEqual(before.slice(0, 5 + args.length));
    const attachments = after[after.length - 1] as Record<string, unknown>;
    expect(attachments).toEqual({
      application: 'dubbo2.js',
      group: 'g1',
      interface: 'com.demo.HelloService',
      keep: 'me',
      path: 'com.demo.HelloService',
      timeout: 2500, // non-string entry kept
      version: '0.0.0',
      'route-by': 'wäypost 🚦',
      'x-tag': 'green',
    });
    expect(Object.keys(attachments)).not.toContain('X-Tag');

    const again = one(out);
    expect(again.metadata.get('x-tag')).toBe('green');
    expect(again.metadata.get('route-by')).toBe('wäypost 🚦');
    expect(again.metadata.get('keep')).toBe('me');
  });

  it('mutates requests with a typed, null or missing attachments map', () => {
    const s = session();
    const typed = new hessian.EncoderV2({ mapTypes: { 'java.util.TreeMap': true } });
    for (const v of ['2.0.2', 'com.demo.Svc', '1.0', 'm', '[Ljava/lang/Object;']) typed.write(v);
    typed.write({ $class: 'java.util.TreeMap', $: [] });
    typed.write({ $class: 'java.util.TreeMap', $: { a: 'b', n: 5 } });
    const typedFrame = frameOf(0xc2, 0, 1, Buffer.from(typed.get()));
    const out = s.encode(one(typedFrame), { mutation: [{ key: 'a', value: 'c' }] });
    expect(out.includes(Buffer.from([0x4d, 0x90]))).toBe(true); // the map keeps its header (type ref #0)
    expect(hessianDecodeRequest(out, 1)[6]).toEqual({ a: 'c', n: 5 });

    for (const req of [
      hessianRequest({ args: [1, 'two'], attachments: null }),
      hessianRequest({ args: [1, 'two'], omitAttachments: true }),
    ]) {
      const mutated = s.encode(one(req), { mutation: [{ key: 'k', value: 'v' }] });
      const decoded = hessianDecodeRequest(mutated, 2);
      expect(decoded.slice(5, 7)).toEqual([1, 'two']);
      expect(decoded[7]).toEqual({ k: 'v' });
    }
  });

  it('keeps random arguments byte-identical through a mutation', () => {
    const rng = mulberry32(7);
    const s = session();
    for (let i = 0; i < 100; i++) {
      const args = randomValues(rng, 1 + Math.floor(rng() * 3));
      const req = hessianRequest({ id: i, args, attachments: { a: '1', b: '2' } });
      const out = s.encode(one(req), { mutation: [{ key: 'b', value: 'changed' }, { key: 'c', value: '3' }] });
      const mapAt = req.length - hessian2({ a: '1', b: '2' }).length;
      expect(out.subarray(16, mapAt).equals(req.subarray(16, mapAt))).toBe(true);
      const md = one(out).metadata;
      expect([md.get('a'), md.get('b'), md.get('c')]).toEqual(['1', 'changed', '3']);
    }
  });

  it('throws bad_body when mutating a request it cannot scan', () => {
    const head = hessian2('2.0.2', 'com.demo.Svc', '1.0.0', 'call', 'I');
    const f = one(frameOf(0xc2, 0, 5, Buffer.concat([head, Buffer.from([0x45])])));
    expect(codecError(() => session().encode(f, { mutation: [{ key: 'k', value: 'v' }] })).reason).toBe('bad_body');
  });

  it('adds attachments to responses of every type, readable by dubbo2.js', () => {
    const s = session();
    const mutation = [{ key: 'x-served-by', value: 'waypost' }];
    const user = { $class: 'com.demo.User', $: { name: 'ann' } };

    const value = s.encode(one(response(5, 1, user)), { mutation });
    expect(value[16]).toBe(0x94); // now VALUE_WITH_ATTACHMENTS
    const decodedValue = dubboDecode(value);
    expect(decodedValue.err).toBeNull();
    expect(decodedValue.res).toEqual({ name: 'ann' });
    expect(decodedValue.attachments).toEqual({ 'x-served-by': 'waypost' });
    expect(one(value).metadata.get('x-served-by')).toBe('waypost');

    const nullValue = s.encode(one(response(5, 2)), { mutation });
    expect(nullValue[16]).toBe(0x95);
    expect(dubboDecode(nullValue).attachments).toEqual({ 'x-served-by': 'waypost' });

    const exc = s.encode(one(response(5, 0, exception)), { mutation });
    expect(exc[16]).toBe(0x93);
    const decodedExc = dubboDecode(exc);
    expect(decodedExc.err).toBeInstanceOf(Error);
    expect(decodedExc.attachments).toEqual({ 'x-served-by': 'waypost' });
    expect(one(exc).status).toBe('business_exception');

    const existing = s.encode(one(response(5, 4, 'v', { 'X-Served-By': 'old', other: 'kept' })), { mutation });
    const decodedExisting = dubboDecode(existing);
    expect(decodedExisting.res).toBe('v');
    expect(decodedExisting.attachments).toEqual({ other: 'kept', 'x-served-by': 'waypost' });
    expect(existing.readUInt32BE(12)).toBe(existing.length - 16);
  });

  it('leaves non-OK responses and heartbeats unchanged by a mutation', () => {
    const s = session();
    const mutation = [{ key: 'k', value: 'v' }];
    const failed = one(frameOf(0x02, 70, 5, hessian2('nope')));
    expect(s.encode(failed, { mutation })).toBe(failed.raw);
    const hb = one(HeartBeat.encode());
    expect(s.encode(hb, { mutation })).toBe(hb.raw);
    const unknown = one(frameOf(0x02, 20, 5, hessian2(9)));
    expect(s.encode(unknown, { mutation })).toBe(unknown.raw);
  });

  it('accepts frames that were not produced by this session', () => {
    const raw = dubboRequest({ id: 4 });
    const foreign: Frame = { type: 'request', requestId: 4, raw, metadata: one(raw).metadata };
    const out = session().encode(foreign, { mutation: [{ key: 'z', value: '1' }] });
    expect(one(out).metadata.get('z')).toBe('1');
  });
});

describe('local replies', () => {
  it('encode with copy leaves the frame bytes untouched', () => {
    const s = session();
    const f = one(dubboRequest({ id: 9 }));
    const before = Buffer.from(f.raw);
    const out = s.encode(f, { requestId: 1234, copy: true });
    expect(out).not.toBe(f.raw);
    expect(f.raw.equals(before)).toBe(true);
    expect(out.readBigUInt64BE(4)).toBe(1234n);
    expect(out.subarray(12).equals(before.subarray(12))).toBe(true);
  });

  it('answers with the id the client sent even after encode patched an upstream id into the frame', () => {
    const s = session();
    const f = one(dubboRequest({ id: 77 }));
    s.encode(f, { requestId: 3 });
    expect(f.raw.readBigUInt64BE(4)).toBe(3n);
    const reply = s.localReply(f, { kind: 'upstream_reset', message: 'reset' })!;
    expect(reply.readBigUInt64BE(4)).toBe(77n);
    expect(reply[3]).toBe(70);
  });

  const expectedStatus: Array<[LocalReplyKind, number]> = [
    ['no_route', 60],
    ['no_healthy_upstream', 70],
    ['upstream_reset', 70],
    ['timeout', 31],
    ['over_limit', 100],
    ['fault_abort', 70],
    ['bad_response', 50],
  ];

  for (const [kind, status] of expectedStatus) {
    it(`answers ${kind} with status ${status}, same id, the message as a hessian string`, () => {
      const s = session();
      const id = 2n ** 60n + 3n;
      const req = dubboRequest({ id: 5 });
      req.writeBigUInt64BE(id, 4);
      const f = one(req);
      const message = `${kind}: route "r1" → cluster outbound|20880||svc 🚧`;
      const reply = s.localReply(f, { kind, message })!;
      expect(reply[0]).toBe(0xda);
      expect(reply[1]).toBe(0xbb);
      expect(reply[2]).toBe(0x02);
      expect(reply[3]).toBe(status);
      expect(reply.readBigUInt64BE(4)).toBe(id);
      expect(reply.readUInt32BE(12)).toBe(reply.length - 16);
      expect(hessian.decode(reply.subarray(16), '2.0')).toBe(message);

      // dubbo2.js frames and decodes it as a failed call
      const received: Buffer[] = [];
      const db = DecodeBuffer.from(1);
      db.subscribe((b) => received.push(b));
      db.receive(reply);
      expect(received).toHaveLength(1);
      const decoded = dubboDecode(received[0]!);
      expect(decoded.err).toBeInstanceOf(Error);
      expect(decoded.res).toBeNull();
      expect(decoded.err!.message).toContain(`${kind}: route "r1"`);

      const back = one(reply);
      expect(back.type).toBe('response');
      expect(back.status).toBe('error');
      expect(back.requestId).toBe(id);
    });
  }

  it('uses the fault abort code when given', () => {
    const s = session();
    const f = one(dubboRequest({ id: 6 }));
    expect(s.localReply(f, { kind: 'fault_abort', message: 'abort', code: 40 })![3]).toBe(40);
    expect(s.localReply(f, { kind: 'fault_abort', message: 'abort', code: 90 })![3]).toBe(90);
    // a code that cannot be a dubbo error status falls back to SERVICE_ERROR
    expect(s.localReply(f, { kind: 'fault_abort', message: 'abort', code: 20 })![3]).toBe(70);
    expect(s.localReply(f, { kind: 'fault_abort', message: 'abort', code: 503 })![3]).toBe(70);
  });

  it('sends nothing for a oneway request', () => {
    const s = session();
    const req = dubboRequest({ id: 6 });
    req[2] = req[2]! & ~0x40;
    const f = one(req);
    expect(f.type).toBe('oneway');
    expect(s.localReply(f, { kind: 'no_route', message: 'x' })).toBeUndefined();
  });
});
