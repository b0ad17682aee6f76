/**
 * Hostile Dubbo requests: bytes a provider reads otherwise than a naive proxy would. Each case is built by hand,
 * shows with hessian.js (the decoder JS providers use; Java's Hessian2Input decodes strings the same way) that the
 * provider sees something else than the proxy used to route on, and asserts the proxy now refuses the request as
 * `bad_body` when routing or authorization reads its metadata.
 */
import hessian from 'hessian.js';
import { describe, expect, it } from 'vitest';
import type { Frame } from '../../src/codec.js';
import { badBody } from '../helpers/codec.js';
import { MAX_ATTACHMENTS } from '../../codecs/dubbo/body.js';
import { dubboCodec } from '../../codecs/dubbo/index.js';

// ---------------------------------------------------------------------------------------------------------------
// Hand-built hessian2

/** One hessian.js value. */
function h(value: unknown): Buffer {
  const enc = new hessian.EncoderV2();
  enc.write(value);
  return Buffer.from(enc.get());
}

/** A compact string (at most 31 units) with the given units count and raw bytes, valid or not. */
function rawString(units: number, bytes: number[] | Buffer): Buffer {
  return Buffer.concat([Buffer.from([units]), Buffer.from(bytes)]);
}

/** `text` with its first `letter` replaced by `bytes` (one unit), as a compact string. */
function withLetter(text: string, letter: string, bytes: number[]): Buffer {
  const at = text.indexOf(letter);
  return rawString(text.length, [...Buffer.from(text.slice(0, at)), ...bytes, ...Buffer.from(text.slice(at + 1))]);
}

/** An untyped map ('H' ... 'Z') of raw hessian entries. */
function map(...entries: Array<[Buffer, Buffer]>): Buffer {
  return Buffer.concat([Buffer.from([0x48]), ...entries.flat(), Buffer.from([0x5a])]);
}

interface Parts {
  service?: Buffer;
  version?: Buffer;
  method?: Buffer;
  attachments?: Buffer;
}

const SERVICE = 'com.demo.Svc';

/** A request body: dubbo version, service, version, method, one String argument, attachments. */
function body(p: Parts = {}): Buffer {
  return Buffer.concat([
    h('2.0.2'),
    p.service ?? h(SERVICE),
    p.version ?? h('1.0.0'),
    p.method ?? h('sayHello'),
    h('Ljava/lang/String;'),
    h('world'),
    p.attachments ?? map([h('path'), h(SERVICE)]),
  ]);
}

function request(b: Buffer): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt16BE(0xdabb, 0);
  head[2] = 0xc2; // request, two-way, hessian2
  head.writeBigUInt64BE(7n, 4);
  head.writeUInt32BE(b.length, 12);
  return Buffer.concat([head, b]);
}

function frame(b: Buffer): Frame {
  const frames: Frame[] = [];
  dubboCodec.create({ maxFrameSize: 1 << 20, side: 'downstream' }).decode(request(b), (f) => frames.push(f));
  expect(frames).toHaveLength(1);
  return frames[0]!;
}

/** What a provider decodes: [dubboVersion, service, version, method, descriptor, argument, attachments]. */
function providerReads(b: Buffer): unknown[] {
  const dec = new hessian.DecoderV2(b);
  const out: unknown[] = [];
  for (let i = 0; i < 7; i++) out.push(dec.read());
  return out;
}


// ---------------------------------------------------------------------------------------------------------------

describe('strings a provider decodes leniently', () => {
  const cases: Array<[string, number[], string]> = [
    ['overlong 2-byte a (C1 A1)', [0xc1, 0xa1], 'overlong'],
    ['overlong 2-byte a whose second byte is no continuation (C1 E1)', [0xc1, 0xe1], 'overlong'],
    ['overlong 3-byte a (E0 81 A1)', [0xe0, 0x81, 0xa1], 'overlong'],
    ['2-byte lead before a non-continuation byte (C3 21 is á to the provider)', [0xc3, 0x21], 'continuation'],
  ];

  for (const [name, bytes, why] of cases) {
    it(`refuses a method with ${name}`, () => {
      const method = withLetter('sayHello', 'a', bytes);
      const b = body({ method });
      const provider = providerReads(b)[3] as string;
      // What the proxy used to route on: Node's decode, with U+FFFD where the provider reads a letter.
      const naive = method.subarray(1).toString('utf8');
      expect(naive).toContain('\ufffd');
      expect(naive).not.toBe(provider);
      if (why === 'overlong') expect(provider).toBe('sayHello'); // a DENY on sayHello would be bypassed
      expect(badBody(() => frame(b).metadata.get('method'))).toContain(why);
    });
  }

  it('refuses an overlong letter in the service and in attachment keys and values', () => {
    const service = body({ service: withLetter(SERVICE, 'S', [0xc1, 0x93]), attachments: map() });
    expect(providerReads(service)[1]).toBe(SERVICE);
    expect(badBody(() => frame(service).metadata.get('interface'))).toContain('overlong');

    const key = body({ attachments: map([withLetter('user', 'u', [0xc1, 0xb5]), h('admin')]) });
    expect(providerReads(key)[6]).toEqual({ user: 'admin' });
    expect(badBody(() => frame(key).metadata.get('user'))).toContain('overlong');

    const value = body({ attachments: map([h('user'), withLetter('admin', 'a', [0xe0, 0x81, 0xa1])]) });
    expect(providerReads(value)[6]).toEqual({ user: 'admin' });
    expect(badBody(() => frame(value).metadata.get('user'))).toContain('overlong');
  });

  it('refuses unpaired surrogates and 4-byte sequences', () => {
    const lone = body({ method: rawString(2, [0x61, 0xed, 0xa0, 0x80]) });
    expect(providerReads(lone)[3]).toBe('a\ud800');
    expect(badBody(() => frame(lone).metadata.get('method'))).toContain('surrogate');
    const lowFirst = body({ method: rawString(3, [0xed, 0xb0, 0x80, 0xed, 0xa0, 0x80, 0x61]) });
    expect(badBody(() => frame(lowFirst).metadata.get('method'))).toContain('surrogate');

    const fourByte = body({ method: rawString(3, [0x61, ...Buffer.from('😀')]) });
    expect(() => providerReads(fourByte)).toThrow(/UTF-8/); // hessian.js (and Java) cannot read it at all
    expect(badBody(() => frame(fourByte).metadata.get('method'))).toContain('4-byte');
  });

  it('still reads what Java and hessian.js write: 2- and 3-byte characters, surrogate pairs, NUL', () => {
    const text = 'héllo 日本 😀 \u0000';
    const b = body({ method: h(text), attachments: map([h('path'), h(SERVICE)], [h('tag'), h(text)]) });
    expect(providerReads(b)[3]).toBe(text);
    const md = frame(b).metadata;
    expect(md.get('method')).toBe(text);
    expect(md.get('tag')).toBe(text);
  });
});

describe('attachment keys', () => {
  it('refuses keys equal ignoring case: the provider reads its own spelling, the proxy kept the last', () => {
    const b = body({ attachments: map([h('user'), h('admin')], [h('USER'), h('guest')]) });
    const provider = providerReads(b)[6] as Record<string, string>;
    expect(provider.user).toBe('admin'); // the provider's code asks for "user"
    expect(provider.USER).toBe('guest'); // the proxy, lower-casing and keeping the last, saw user=guest
    expect(badBody(() => frame(b).metadata.get('user'))).toContain('appears twice');
  });

  it('refuses an exact duplicate and a duplicate whose other value is not a string', () => {
    const same = body({ attachments: map([h('user'), h('guest')], [h('user'), h('admin')]) });
    expect(badBody(() => frame(same).metadata.get('user'))).toContain('appears twice');
    // Java's HashMap keeps the last: user is null there, while a proxy skipping non-strings saw user=admin.
    const nulled = body({ attachments: map([h('user'), h('admin')], [h('User'), h(null)]) });
    expect(badBody(() => frame(nulled).metadata.get('user'))).toContain('appears twice');
  });

  it('refuses keys that are not strings: hessian.js files them under String(key)', () => {
    const list = body({ attachments: map([h(['user']), h('admin')]) });
    expect((providerReads(list)[6] as Record<string, string>).user).toBe('admin');
    expect(badBody(() => frame(list).metadata.get('user'))).toContain('not a string');

    const nullKey = body({ attachments: map([h(null), h('x')]) });
    expect((providerReads(nullKey)[6] as Record<string, string>).null).toBe('x');
    expect(badBody(() => frame(nullKey).metadata.get('null'))).toContain('not a string');

    const intKey = body({ attachments: map([h(7), h('x')]) });
    expect((providerReads(intKey)[6] as Record<string, string>)['7']).toBe('x');
    expect(badBody(() => frame(intKey).metadata.get('7'))).toContain('not a string');
  });

  it('refuses dispatch keys spelled otherwise than in lower case, or with a value that is not a string', () => {
    // Dubbo looks up "group" exactly: a proxy reading keys case-insensitively would route on a group the
    // provider never sees.
    const upper = body({ attachments: map([h('path'), h(SERVICE)], [h('Group'), h('blue')]) });
    expect((providerReads(upper)[6] as Record<string, string>).group).toBeUndefined();
    expect(badBody(() => frame(upper).metadata.get('group'))).toContain('spelled "group"');
    const intVersion = body({ attachments: map([h('path'), h(SERVICE)], [h('version'), h(2)]) });
    expect(badBody(() => frame(intVersion).metadata.get('version'))).toContain('string value');
    const nullPath = body({ attachments: map([h('path'), h(null)]) });
    expect(badBody(() => frame(nullPath).metadata.get('interface'))).toContain('string value');
  });

  it('keeps a response lenient: duplicate keys there are the provider\'s own; the last wins', () => {
    const b = Buffer.concat([h(4), h('ok'), map([h('Tag'), h('first')], [h('tag'), h('second')])]);
    const head = Buffer.alloc(16);
    head.writeUInt16BE(0xdabb, 0);
    head[2] = 0x02;
    head[3] = 20;
    head.writeUInt32BE(b.length, 12);
    const frames: Frame[] = [];
    dubboCodec.create({ maxFrameSize: 1 << 20, side: 'upstream' }).decode(Buffer.concat([head, b]), (f) => frames.push(f));
    expect(frames[0]!.metadata.get('tag')).toBe('second');
  });
});

describe('dispatch fields: the provider invokes the attachments\' path and version', () => {
  it('refuses a path attachment that names another service than the body', () => {
    const b = body({ service: h('com.demo.Public'), attachments: map([h('path'), h('com.demo.Admin')]) });
    const provider = providerReads(b);
    expect(provider[1]).toBe('com.demo.Public'); // what the proxy routed on
    // DecodeableRpcInvocation puts the map over the body; DubboProtocol.getInvoker looks up attachments.path.
    expect((provider[6] as Record<string, string>).path).toBe('com.demo.Admin');
    expect(badBody(() => frame(b).metadata.get('interface'))).toContain('com.demo.Admin');
    // Reading the interface alone is enough to catch it (no attachment key needs to be asked for).
    expect(badBody(() => frame(b).metadata.entries())).toContain('path');
  });

  it('refuses a path attachment when the body has no service and the interface attachment differs', () => {
    const b = body({ service: h(''), attachments: map([h('interface'), h('com.demo.Public')], [h('path'), h('com.demo.Admin')]) });
    expect(badBody(() => frame(b).metadata.get('interface'))).toContain('com.demo.Admin');
  });

  it('refuses a version attachment that disagrees with the body, treating empty, null and 0.0.0 alike', () => {
    const b = body({ version: h('1.0.0'), attachments: map([h('path'), h(SERVICE)], [h('version'), h('2.0.0')]) });
    expect((providerReads(b)[6] as Record<string, string>).version).toBe('2.0.0');
    expect(badBody(() => frame(b).metadata.get('version'))).toContain('2.0.0');
    expect(badBody(() => frame(b).metadata.get('interface'))).toContain('2.0.0');

    // dubbo2.js without a version: null in the body, 0.0.0 in the attachments — the same service key.
    const none = frame(body({ version: h(null), attachments: map([h('path'), h(SERVICE)], [h('version'), h('0.0.0')]) }));
    expect(none.metadata.get('version')).toBe('0.0.0');
    const empty = frame(body({ version: h('0.0.0'), attachments: map([h('path'), h(SERVICE)], [h('version'), h('')]) }));
    expect(empty.metadata.get('version')).toBe('0.0.0');
    // No version in the body: the attachment is what both the provider and the proxy use.
    const fromAttachment = frame(body({ version: h(null), attachments: map([h('path'), h(SERVICE)], [h('version'), h('3.0')]) }));
    expect(fromAttachment.metadata.get('version')).toBe('3.0');
  });

  it('accepts agreeing fields, and a group only the attachments carry', () => {
    const md = frame(
      body({ attachments: map([h('path'), h(SERVICE)], [h('version'), h('1.0.0')], [h('group'), h('blue')]) }),
    ).metadata;
    expect([md.get('interface'), md.get('version'), md.get('group'), md.get('method')]).toEqual([
      SERVICE,
      '1.0.0',
      'blue',
      'sayHello',
    ]);
  });
});

describe('attachments beyond what any call carries', () => {
  const many = (n: number): Buffer => map([h('path'), h(SERVICE)], ...Array.from({ length: n - 1 }, (_, i): [Buffer, Buffer] => [h(`k${i}`), h(0)]));

  it(`reads ${MAX_ATTACHMENTS} attachments, and refuses a map of more (reading is linear in their count)`, () => {
    expect(frame(body({ attachments: many(MAX_ATTACHMENTS) })).metadata.get('k5')).toBeUndefined();
    expect(frame(body({ attachments: many(MAX_ATTACHMENTS) })).metadata.get('path')).toBe(SERVICE);
    expect(badBody(() => frame(body({ attachments: many(MAX_ATTACHMENTS + 1) })).metadata.get('user'))).toMatch(/more than 1024 attachments/);
    // The provider would read them all: it is the proxy that refuses to spend the time.
    expect(Object.keys(providerReads(body({ attachments: many(MAX_ATTACHMENTS + 1) }))[6] as object)).toHaveLength(MAX_ATTACHMENTS + 1);
  });

  it('refuses them when a mutation rewrites the map too', () => {
    const f = frame(body({ attachments: many(MAX_ATTACHMENTS + 1) }));
    const session = dubboCodec.create({ maxFrameSize: 1 << 20, side: 'upstream' });
    expect(() => session.encode(f, { mutation: [{ key: 'x', value: 'y' }] })).toThrow(/more than 1024 attachments/);
  });
});
