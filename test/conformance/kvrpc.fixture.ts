/**
 * The KV-RPC fixture: sample frames written by the example's peer encoder (examples/custom-codec/wire.ts, independent
 * of the codec), garbage, and an oversize header. kvrpc.test.ts runs the example codec through the suite with it.
 */
import type { CodecFactory } from '../../src/index.js';
import {
  FLAG_HEARTBEAT,
  FLAG_ONEWAY,
  FLAG_RESPONSE,
  Status,
  encodeHeartbeat,
  encodeMessage,
  encodeRequest,
  encodeResponse,
} from '../../examples/custom-codec/wire.js';
import type { CodecFixture } from './suite.js';

/** A fixed header announcing `total` bytes in all (section + body). */
function header(sectionLength: number, bodyLength: number, patch: Record<number, number> = {}): Buffer {
  const h = encodeMessage({ id: 1 }).subarray(0, 16);
  h.writeUInt16BE(sectionLength, 10);
  h.writeUInt32BE(bodyLength, 12);
  for (const [at, v] of Object.entries(patch)) h[Number(at)] = v;
  return h;
}

export function kvrpcFixture(codec: CodecFactory): CodecFixture {
  return {
    codec,
    samples: [
      {
        name: 'request',
        bytes: encodeRequest(7, { service: 'kv.Demo', method: 'echo', user: 'jason' }, 'hello'),
        type: 'request',
        requestId: 7,
        metadata: { service: 'kv.Demo', method: 'echo', user: 'jason' },
        mutable: true,
      },
      {
        name: 'request, max u32 id, no headers, empty body',
        bytes: encodeRequest(0xffff_ffff, {}),
        type: 'request',
        requestId: 0xffff_ffff,
        mutable: true,
      },
      {
        name: 'request with a repeated, mixed-case key and a UTF-8 value',
        bytes: encodeRequest(
          3,
          [
            ['User', 'first'],
            ['method', 'whoami'],
            ['user', 'bjørn ✓'],
          ],
          Buffer.alloc(700, 0x61),
        ),
        type: 'request',
        requestId: 3,
        metadata: { user: 'bjørn ✓', method: 'whoami' },
        mutable: true,
      },
      {
        name: 'oneway',
        bytes: encodeRequest(8, { service: 'kv.Demo', method: 'log' }, 'fire and forget', true),
        type: 'oneway',
        requestId: 8,
        metadata: { method: 'log' },
        mutable: true,
      },
      {
        name: 'response ok',
        bytes: encodeResponse(7, Status.OK, { 'served-by': 'v1' }, 'hello'),
        type: 'response',
        requestId: 7,
        status: 'ok',
        metadata: { 'served-by': 'v1' },
        mutable: true,
      },
      {
        name: 'response APP_ERROR',
        bytes: encodeResponse(9, Status.APP_ERROR, { 'served-by': 'v2' }, 'no such key'),
        type: 'response',
        requestId: 9,
        status: 'business_exception',
        mutable: true,
      },
      {
        name: 'response NOT_FOUND',
        bytes: encodeResponse(10, Status.NOT_FOUND, {}, 'no method'),
        type: 'response',
        requestId: 10,
        status: 'error',
        mutable: true,
      },
      { name: 'heartbeat', bytes: encodeHeartbeat(11), type: 'heartbeat', requestId: 11, expectsReply: true },
      {
        name: 'heartbeat answer',
        bytes: encodeHeartbeat(11, { response: true }),
        type: 'heartbeat',
        requestId: 11,
        status: 'ok',
        expectsReply: false,
      },
      { name: 'oneway heartbeat', bytes: encodeHeartbeat(12, { oneway: true }), type: 'heartbeat', requestId: 12, expectsReply: false },
    ],
    garbage: [
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      Buffer.from('160301020001000001fc0303d7a1c9e4', 'hex'), // the start of a TLS ClientHello
      Buffer.from([0x4b, 0x00]),
      Buffer.from([0x4b, 0x56, 0x02]), // version 2
      Buffer.from([0x4b, 0x56, 0x01, 0x80]), // unknown flag bit
      Buffer.from([0x4b, 0x56, 0x01, FLAG_RESPONSE | FLAG_ONEWAY]),
      header(0, 0, { 9: 0x01 }), // reserved byte set
      Buffer.from([0x4b, 0x56, 0x01, FLAG_HEARTBEAT | 0x40]),
    ],
    oversize: (max) => header(0, max), // 16 + max bytes in all
    documentedKeys: ['service', 'method', 'user'],
    heartbeats: true,
  };
}
