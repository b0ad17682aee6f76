/**
 * The built-in Dubbo codec through the conformance suite. Requests and heartbeats are written by dubbo2.js (a Dubbo
 * client written by others); the rest by the demo provider's own encoder (examples/dubbo/wire.ts, hessian.js),
 * which is independent of the codec.
 */
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
import { runConformance } from './suite.js';
import { DubboContextClass, DubboEncoder, HeartBeat } from '../helpers/dubbo2js.js';

const java = jsToJava as unknown as Record<'String' | 'int', (v: unknown) => unknown>;

/** A two-way request exactly as dubbo2.js writes it. */
function dubbo2jsRequest(id: number): Buffer {
  const ctx = DubboContextClass.create();
  ctx.requestId = id;
  ctx.dubboVersion = '2.0.2';
  ctx.dubboInterface = 'com.demo.UserService';
  ctx.path = 'com.demo.UserService';
  ctx.methodName = 'findUser';
  ctx.methodArgs = [java.String('ann'), java.int(42)];
  ctx.version = '2.1.0';
  ctx.group = 'blue';
  ctx.timeout = 3000;
  ctx.attachments = { user: 'jason', 'X-Canary': 'yes' };
  ctx.isSupportedDubbox = false;
  return new DubboEncoder(ctx).encode();
}

const BIG_ID = 2n ** 60n + 3n;

runConformance('dubbo (codecs/dubbo)', {
  codec: dubboCodec,
  samples: [
    {
      name: 'dubbo2.js request',
      bytes: dubbo2jsRequest(7),
      type: 'request',
      requestId: 7,
      metadata: {
        interface: 'com.demo.UserService',
        method: 'findUser',
        version: '2.1.0',
        group: 'blue',
        user: 'jason',
        'x-canary': 'yes',
      },
      mutable: true,
    },
    {
      name: 'request with a 64-bit id',
      bytes: encodeRequest(BIG_ID, { path: 'com.demo.Svc', method: 'call', args: ['x'], attachments: { lane: 'blue' } }),
      type: 'request',
      requestId: BIG_ID,
      metadata: { interface: 'com.demo.Svc', method: 'call', lane: 'blue' },
      mutable: true,
    },
    {
      name: 'oneway request',
      bytes: encodeRequest(9, { path: 'com.demo.Svc', method: 'log', args: ['line'] }, { twoWay: false }),
      type: 'oneway',
      requestId: 9,
      metadata: { method: 'log' },
      mutable: true,
    },
    { name: 'dubbo2.js heartbeat', bytes: HeartBeat.encode(), type: 'heartbeat', requestId: 0, expectsReply: true },
    { name: 'heartbeat with an id', bytes: encodeHeartbeat(20), type: 'heartbeat', requestId: 20, expectsReply: true },
    { name: 'one-way heartbeat', bytes: encodeHeartbeat(21, { twoWay: false }), type: 'heartbeat', requestId: 21, expectsReply: false },
    {
      name: 'heartbeat answer',
      bytes: encodeHeartbeat(22, { response: true }),
      type: 'heartbeat',
      requestId: 22,
      status: 'ok',
      expectsReply: false,
    },
    {
      name: 'response value',
      bytes: encodeOkResponse(7, { kind: 'value', value: 'hello' }),
      type: 'response',
      requestId: 7,
      status: 'ok',
      mutable: true,
    },
    {
      name: 'response value with attachments',
      bytes: encodeOkResponse(8, { kind: 'value', value: { $class: 'java.util.HashMap', $: { a: 1 } }, attachments: { trace: 't1' } }),
      type: 'response',
      requestId: 8,
      status: 'ok',
      metadata: { trace: 't1' },
      mutable: true,
    },
    {
      name: 'response business exception',
      bytes: encodeOkResponse(10, { kind: 'exception', exception: javaException('java.lang.IllegalStateException', 'boom') }),
      type: 'response',
      requestId: 10,
      status: 'business_exception',
      mutable: true,
    },
    {
      name: 'response status 70',
      bytes: encodeErrorResponse(11, Status.SERVICE_ERROR, 'provider said no'),
      type: 'response',
      requestId: 11,
      status: 'error',
    },
  ],
  garbage: [
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
    Buffer.from('160301020001000001fc0303d7a1c9e4', 'hex'), // the start of a TLS ClientHello
    Buffer.from([0xda, 0x00]),
    encodeFrame(0xc6, 0, 1, Buffer.from([0x4e])).subarray(0, 16), // serialization 6
  ],
  oversize: headerOf,
  documentedKeys: ['interface', 'method', 'version', 'group'],
  heartbeats: true,
});

/** A request header announcing a body of `max + 1` bytes. */
function headerOf(max: number): Buffer {
  const h = encodeFrame(0xc2, 0, 1, Buffer.alloc(0));
  h.writeUInt32BE(max + 1, 12);
  return h;
}
