/**
 * The built-in Thrift codec through the conformance suite, once per transport × protocol. Every sample is written
 * by python3-thrift clients and processors (test/fixtures/thrift/peer.py, from greeter.thrift) — the same frames the
 * codec's own suite uses. A session holds one transport per connection, hence one run per combination.
 */
import { afterAll } from 'vitest';
import { thriftCodec } from '../../codecs/thrift/index.js';
import { generate, pythonFrames, type Generated } from '../fixtures/thrift/peers.js';
import { runConformance, type CodecFixture, type Sample } from './suite.js';

interface Config {
  key: string;
  wire: 'framed' | 'unframed' | 'header';
  protocol: 'binary' | 'compact' | 'lax';
}
const CONFIGS: Config[] = [
  { key: 'framed-binary', wire: 'framed', protocol: 'binary' },
  { key: 'framed-compact', wire: 'framed', protocol: 'compact' },
  { key: 'framed-lax', wire: 'framed', protocol: 'lax' },
  { key: 'buffered-binary', wire: 'unframed', protocol: 'binary' },
  { key: 'buffered-compact', wire: 'unframed', protocol: 'compact' },
  { key: 'buffered-lax', wire: 'unframed', protocol: 'lax' },
  { key: 'header-binary', wire: 'header', protocol: 'binary' },
  { key: 'header-compact', wire: 'header', protocol: 'compact' },
];

// python3-thrift writes every frame once for the whole file (never skipped: without it these tests fail).
let gen: Generated | undefined;
let loading: Promise<Map<string, Buffer>> | undefined;
function pythonWritten(): Promise<Map<string, Buffer>> {
  return (loading ??= (async () => {
    gen = await generate();
    return pythonFrames(gen);
  })());
}
afterAll(() => gen?.cleanup());

function i32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(v);
  return b;
}

/** The start of a message whose one string field claims 2^31-1 bytes (unframed: no length but the field's). */
function hugeUnframed(protocol: Config['protocol']): Buffer {
  const name = Buffer.from('hello');
  switch (protocol) {
    case 'binary':
      return Buffer.concat([Buffer.from([0x80, 0x01, 0x00, 0x01]), i32(5), name, i32(1), Buffer.from([0x0b, 0x00, 0x01]), i32(0x7fffffff)]);
    case 'lax':
      return Buffer.concat([i32(5), name, Buffer.from([0x01]), i32(1), Buffer.from([0x0b, 0x00, 0x01]), i32(0x7fffffff)]);
    case 'compact':
      return Buffer.concat([Buffer.from([0x82, 0x21, 0x01, 0x05]), name, Buffer.from([0x18, 0xff, 0xff, 0xff, 0xff, 0x07])]);
  }
}

/** The first bytes of a frame announcing more than `max` bytes. */
function oversize(c: Config, max: number): Buffer {
  switch (c.wire) {
    case 'unframed':
      return hugeUnframed(c.protocol);
    case 'header':
      return Buffer.concat([i32(max + 1), Buffer.from([0x0f, 0xff, 0x00, 0x00])]);
    case 'framed':
      if (c.protocol === 'binary') return Buffer.concat([i32(max + 1), Buffer.from([0x80, 0x01, 0x00, 0x01])]);
      if (c.protocol === 'compact') return Buffer.concat([i32(max + 1), Buffer.from([0x82, 0x21])]);
      return Buffer.concat([i32(max + 1), i32(5)]); // lax: a name length after the frame length
  }
}

function fixture(c: Config, frames: Map<string, Buffer>): CodecFixture {
  const py = (name: string): Buffer => {
    const b = frames.get(`${c.key}/${name}`);
    if (!b) throw new Error(`python wrote no frame ${c.key}/${name}`);
    return b;
  };
  const header = c.wire === 'header';
  const samples: Sample[] = [
    {
      name: 'request hello',
      bytes: py('req/hello'),
      type: 'request',
      requestId: 7,
      metadata: { method: 'hello', ...(header ? { 'x-user': 'alice', 'trace-id': 't-1' } : {}) },
      mutable: header,
    },
    { name: 'oneway ping', bytes: py('req/ping'), type: 'oneway', requestId: 9, metadata: { method: 'ping' }, mutable: header },
    {
      name: 'multiplexed request',
      bytes: py('req/mux'),
      type: 'request',
      requestId: 11,
      metadata: { method: 'hello', service: 'Greeter' },
      mutable: header,
    },
    { name: 'request, seqid 2^31-1', bytes: py('req/big-seqid'), type: 'request', requestId: 2 ** 31 - 1, mutable: header },
    { name: 'reply', bytes: py('rep/hello'), type: 'response', requestId: 7, status: 'ok', metadata: { method: 'hello' }, mutable: header },
    { name: 'void reply', bytes: py('rep/nothing'), type: 'response', requestId: 70000, status: 'ok', mutable: header },
    { name: 'declared exception', bytes: py('rep/fail'), type: 'response', requestId: 8, status: 'business_exception', mutable: header },
    { name: 'TApplicationException', bytes: py('rep/unknown'), type: 'response', requestId: 13, status: 'error', mutable: header },
  ];
  return {
    codec: thriftCodec,
    samples,
    garbage: [
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      Buffer.from('160301020001000001fc0303d7a1c9e4', 'hex'), // the start of a TLS ClientHello
      Buffer.from([0xff, 0x00, 0x00, 0x10, 0x80, 0x01]),
      Buffer.from([0x80, 0x02, 0x00, 0x01]), // binary version 0x8002
    ],
    oversize: (max) => oversize(c, max),
    documentedKeys: ['method', 'service'],
    heartbeats: false,
    seed: c.key.length,
  };
}

for (const c of CONFIGS) {
  runConformance(`thrift ${c.key} (codecs/thrift)`, async () => fixture(c, await pythonWritten()));
}
