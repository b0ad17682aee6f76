/**
 * Property-based fuzzing of the Dubbo codec (codecs/dubbo). Valid frames are written by the demo provider's encoder
 * (examples/dubbo/wire.ts, hessian.js) and by dubbo2.js, with random ids, names, arguments, attachments and results.
 */
import fc from 'fast-check';
import jsToJava from 'js-to-java';
import { dubboCodec } from '../../codecs/dubbo/index.js';
import {
  Status,
  encodeErrorResponse,
  encodeFrame,
  encodeHeartbeat,
  encodeOkResponse,
  encodeRequest,
  javaException,
} from '../../examples/dubbo/wire.js';
import { encodeHessianString } from '../../codecs/dubbo/hessian-write.js';
import type { Slot } from './harness.js';
import { fuzzCodec, type Sample } from './properties.js';
import { DubboContextClass, DubboEncoder } from '../helpers/dubbo2js.js';

const java = jsToJava as unknown as Record<'String' | 'int' | 'long' | 'boolean' | 'double', (v: unknown) => unknown> & {
  array: Record<'int' | 'String', (values: unknown[]) => unknown>;
};

const MAX = 64 * 1024;

// ---- generators -------------------------------------------------------------------------------------------------

const ident = fc.stringMatching(/^[a-zA-Z_][a-zA-Z0-9_]{0,12}(\.[a-zA-Z_][a-zA-Z0-9_]{0,12}){0,3}$/);
const methodName = fc.stringMatching(/^[a-zA-Z_$][a-zA-Z0-9_$]{0,20}$/);
const text = fc.string({ unit: 'grapheme', maxLength: 30 });
/** Dubbo ids: small, large safe integers, and 64-bit ones beyond 2^53 (bigint). */
const dubboId: fc.Arbitrary<number | bigint> = fc.oneof(
  fc.nat({ max: 1000 }),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  fc.bigInt({ min: 2n ** 53n, max: 2n ** 64n - 1n }),
);

/** Plain JS values hessian.js writes (strings, ints, doubles, booleans, null, lists, maps), and typed Java ones. */
const hessianValue: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    text,
    fc.integer(),
    fc.double({ noNaN: true }),
    fc.boolean(),
    fc.constant(null),
    fc.integer().map((n) => java.long(n)),
    fc.array(fc.integer({ min: -300, max: 300 }), { maxLength: 4 }).map((a) => java.array.int(a)),
    fc.array(tie('v'), { maxLength: 4 }),
    fc.dictionary(fc.stringMatching(/^[a-z]{1,6}$/), tie('v'), { maxKeys: 3 }).map((d) => ({ $class: 'java.util.HashMap', $: d })),
    fc.tuple(ident, text).map(([c, m]) => javaException(`java.lang.${c.replace(/\./g, '')}Exception`, m)),
  ),
})).v;

/** Attachment keys: never the ones the body's own fields win over. */
const attachmentKey = fc.stringMatching(/^[a-z][a-z0-9_-]{0,10}$/).filter((k) => !['path', 'interface', 'version', 'method'].includes(k));
const attachments = fc.dictionary(attachmentKey, fc.oneof({ weight: 4, arbitrary: text }, { weight: 1, arbitrary: fc.integer() }), { maxKeys: 5 });

function stringEntries(a: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(a).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
}

const request: fc.Arbitrary<Sample> = fc
  .record({
    id: dubboId,
    path: ident,
    method: methodName,
    version: fc.constantFrom<string | null>('0.0.0', '1.0.0', '2.1.3-SNAPSHOT', '', null),
    dubboVersion: fc.constantFrom('2.0.2', '2.6.0', '2.7.8', '3.0.0'),
    args: fc.array(hessianValue, { maxLength: 4 }),
    attachments,
    twoWay: fc.boolean(),
  })
  .map((r) => {
    const bytes = encodeRequest(
      r.id,
      { path: r.path, method: r.method, version: r.version, dubboVersion: r.dubboVersion, args: r.args, attachments: r.attachments },
      { twoWay: r.twoWay },
    );
    const metadata: Record<string, string> = { ...stringEntries(r.attachments), interface: r.path, method: r.method };
    if (r.version !== null) metadata.version = r.version; // '' comes from the attachment of the same name
    return { bytes, type: r.twoWay ? 'request' : 'oneway', requestId: r.id, metadata, mutable: true } satisfies Sample;
  });

/** Requests exactly as dubbo2.js (a Dubbo client written by others) writes them. */
const dubbo2jsRequest: fc.Arbitrary<Sample> = fc
  .record({
    id: fc.integer({ min: 0, max: 0x7fff_ffff }),
    path: ident,
    method: methodName,
    version: fc.constantFrom('1.0.0', '2.1.0'),
    group: fc.stringMatching(/^[a-z]{1,8}$/),
    args: fc.array(fc.oneof(text.map((s) => java.String(s)), fc.integer().map((n) => java.int(n)), fc.boolean().map((b) => java.boolean(b))), { maxLength: 3 }),
    attachments: fc.dictionary(attachmentKey.filter((k) => k !== 'group' && k !== 'timeout'), fc.stringMatching(/^[ -~]{0,12}$/), { maxKeys: 3 }),
  })
  .map((r) => {
    const ctx = DubboContextClass.create();
    Object.assign(ctx, {
      requestId: r.id,
      dubboVersion: '2.0.2',
      dubboInterface: r.path,
      path: r.path,
      methodName: r.method,
      methodArgs: r.args,
      version: r.version,
      group: r.group,
      timeout: 3000,
      attachments: r.attachments,
      isSupportedDubbox: false,
    });
    const metadata = { ...r.attachments, interface: r.path, method: r.method, version: r.version, group: r.group };
    return { bytes: new DubboEncoder(ctx).encode(), type: 'request', requestId: r.id, metadata, mutable: true } satisfies Sample;
  });

const heartbeat: fc.Arbitrary<Sample> = fc.tuple(dubboId, fc.boolean()).map(([id, twoWay]) => ({
  bytes: encodeHeartbeat(id, { twoWay }),
  type: 'heartbeat',
  requestId: id,
  expectsReply: twoWay,
  mutable: false,
}));

const okResponse: fc.Arbitrary<Sample> = fc
  .record({
    id: dubboId,
    exception: fc.boolean(),
    value: hessianValue,
    message: text,
    attachments: fc.option(attachments, { nil: undefined }),
  })
  .map((r) => {
    const bytes = r.exception
      ? encodeOkResponse(r.id, { kind: 'exception', exception: javaException('java.lang.IllegalStateException', r.message), attachments: r.attachments })
      : encodeOkResponse(r.id, { kind: 'value', value: r.value, attachments: r.attachments });
    return {
      bytes,
      type: 'response',
      requestId: r.id,
      status: r.exception ? 'business_exception' : 'ok',
      metadata: r.attachments ? stringEntries(r.attachments) : {},
      mutable: true,
    } satisfies Sample;
  });

const errorResponse: fc.Arbitrary<Sample> = fc
  .tuple(dubboId, fc.constantFrom(Status.CLIENT_TIMEOUT, Status.SERVER_TIMEOUT, Status.BAD_REQUEST, Status.SERVICE_NOT_FOUND, Status.SERVICE_ERROR, Status.SERVER_ERROR), text)
  .map(([id, status, message]) => ({ bytes: encodeErrorResponse(id, status, message), type: 'response', requestId: id, status: 'error', mutable: false }));

const heartbeatAnswer: fc.Arbitrary<Sample> = dubboId.map((id) => ({
  bytes: encodeHeartbeat(id, { response: true }),
  type: 'heartbeat',
  requestId: id,
  status: 'ok',
  expectsReply: false,
  mutable: false,
}));

/** Where the length-like fields are: the id, the body length, the first hessian tag and length bytes. */
function slots(frame: Buffer): Slot[] {
  const out: Slot[] = [{ at: 12, width: 4 }, { at: 4, width: 8 }, { at: 3, width: 1 }, { at: 2, width: 1 }];
  if (frame.length > 18) out.push({ at: 16, width: 1 }, { at: 16, width: 2 }, { at: 17, width: 2 });
  return out;
}

/** A valid header before a random body of exactly the announced length, or hessian strings then random bytes. */
const structured: fc.Arbitrary<Buffer> = fc.oneof(
  fc
    .tuple(fc.constantFrom(0xc2, 0x82, 0xe2, 0xa2, 0x02, 0x22), fc.constantFrom(0, 20, 70), dubboId, fc.uint8Array({ maxLength: 400 }))
    .map(([flags, status, id, body]) => encodeFrame(flags, status, id, Buffer.from(body))),
  fc
    .tuple(dubboId, fc.array(text, { minLength: 1, maxLength: 5 }), fc.uint8Array({ maxLength: 300 }))
    .map(([id, strings, tail]) => encodeFrame(0xc2, 0, id, Buffer.concat([...strings.map((s) => encodeHessianString(s)), Buffer.from(tail)]))),
  fc
    .tuple(dubboId, fc.constantFrom(0x90, 0x91, 0x92, 0x93, 0x94, 0x95), fc.uint8Array({ maxLength: 300 }))
    .map(([id, type, tail]) => encodeFrame(0x02, 20, id, Buffer.concat([Buffer.from([type]), Buffer.from(tail)]))),
);

fuzzCodec({
  suite: 'dubbo',
  codec: dubboCodec,
  maxFrameSize: MAX,
  slack: 16,
  keys: ['interface', 'method', 'version', 'group', 'user'],
  inputs: { downstream: structured, upstream: structured },
  streams: [
    { name: 'requests', side: 'downstream', sample: fc.oneof({ weight: 4, arbitrary: request }, dubbo2jsRequest, heartbeat), slots },
    { name: 'responses', side: 'upstream', sample: fc.oneof({ weight: 3, arbitrary: okResponse }, errorResponse, heartbeatAnswer), slots },
  ],
  runs: { bytes: 2000, mutated: 1500, split: 400, roundTrip: 400 },
  newId: fc.integer({ min: 1, max: 0x7fff_ffff }),
});
