/**
 * Containment, continuation by continuation. The Dubbo codec is wrapped in a "poisoned" codec that throws at the step a
 * request names in its `poison` attachment — reading its metadata, its Nth encode (1: the first attempt, 2: a retry
 * or the primary after a mirror), the encode of its answer, or its local reply — so that each asynchronous
 * continuation the proxy has is made to throw for real: the request's own frame (filters, route), a fault delay ending
 * (timer), a per-try timeout and an upstream reset starting a retry, the rate limit service's callback, a mirror, an
 * upstream answer. Behind the proxy: the demo Dubbo provider, a server that resets every connection, one that never
 * answers, and a rate limit service.
 *
 * For each: the poisoned request gets its native error (Dubbo status 40, 50 or 80) or, when even that cannot be
 * encoded, only its connection closes; a well-formed call on the same connection and on another one is answered;
 * `waypost_contained_errors_total{where}` counts it; nothing reaches the process's uncaught-exception handlers.
 */
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { dubboCodec } from '../../codecs/dubbo/index.js';
import { compile, formatErrors } from '../../control/index.js';
import { freePorts } from '../../examples/dubbo/harness.js';
import { DEMO_INTERFACE, startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection, type RawResult } from '../../examples/dubbo/raw-client.js';
import { encodeOkResponse } from '../../examples/dubbo/wire.js';
import { createRegistry } from '../../src/builtin-codecs.js';
import { CodecError, type CodecFactory, type CodecSession, type Frame, type FrameEdit, type LocalReply, type Metadata } from '../../src/codec.js';
import { setLogSink } from '../../src/log.js';
import { Proxy } from '../../src/proxy.js';
import { RateLimitService } from '../helpers/ratelimit.js';

const HOST = 'poisoned.waypost.test';
const PORT_NAME = 'tcp-metaprotocol-poisoned';

// ---- the poisoned codec ----------------------------------------------------------------------------------------------

/** Keys the poisoned metadata still answers (the head of the request: routing may read them). */
const HEAD_KEYS = new Set(['poison', 'case', 'interface', 'service', 'method', 'version', 'path']);
/** Upstream ids of requests whose answer must fail to encode (set when such a request is encoded upstream). */
const poisonedAnswers = new Set<number>();
const encodes = new WeakMap<Frame, number>();
/** Bytes that make the poisoned session's decode throw `null`. */
const THROW_NULL = Buffer.from('throw-null');

function poisonOf(frame: Frame): string | undefined {
  try {
    return frame.metadata.get('poison');
  } catch {
    return undefined;
  }
}

function poisonedMetadata(inner: Metadata, poison: string | undefined): Metadata {
  if (poison === undefined || !poison.includes('metadata')) return inner;
  return {
    get(key: string) {
      if (HEAD_KEYS.has(key)) return inner.get(key);
      // A codec may throw anything, not only an Error.
      if (poison.includes('null')) throw null;
      throw new CodecError('bad_body', `poisoned attachment ${key}`);
    },
    entries: () => inner.entries(),
  };
}

class PoisonedSession implements CodecSession {
  constructor(private readonly inner: CodecSession) {}

  get buffered(): number {
    return this.inner.buffered;
  }

  decode(chunk: Buffer, sink: (frame: Frame) => void): void {
    if (chunk.includes(THROW_NULL)) throw null;
    this.inner.decode(chunk, (frame) => {
      const poison = frame.type === 'request' ? poisonOf(frame) : undefined;
      if (poison === undefined) return sink(frame);
      // The same frame (its bytes, its codec's state) seen through poisoned metadata.
      const poisoned = Object.create(frame) as Frame;
      Object.defineProperty(poisoned, 'metadata', { value: poisonedMetadata(frame.metadata, poison) });
      sink(poisoned);
    });
  }

  encode(frame: Frame, edit?: FrameEdit): Buffer {
    if (frame.type === 'response' && poisonedAnswers.delete(Number(frame.requestId))) throw new CodecError('bad_body', 'poisoned answer');
    const poison = frame.type === 'request' ? poisonOf(frame) : undefined;
    if (poison !== undefined) {
      const n = (encodes.get(frame) ?? 0) + 1;
      encodes.set(frame, n);
      if (poison === `encode@${n}`) throw new CodecError('bad_body', `poisoned encode #${n}`);
      if (poison === `nobytes@${n}`) return undefined as unknown as Buffer;
      if (poison === 'answer' && edit?.requestId !== undefined) poisonedAnswers.add(Number(edit.requestId));
    }
    return this.inner.encode(frame, edit);
  }

  localReply(request: Frame, reply: LocalReply): Buffer | undefined {
    if (poisonOf(request)?.includes('localreply')) throw new CodecError('bad_body', 'poisoned local reply');
    return this.inner.localReply(request, reply);
  }

  heartbeatReply(heartbeat: Frame): Buffer | undefined {
    return this.inner.heartbeatReply(heartbeat);
  }
}

const poisonedCodec: CodecFactory = {
  name: 'test.codec.poisoned',
  protocol: 'poisoned',
  multiplexing: dubboCodec.multiplexing,
  create: (options) => new PoisonedSession(dubboCodec.create(options)),
};

// ---- peers and proxy -------------------------------------------------------------------------------------------------

let provider: Provider;
let proxy: Proxy;
let dir: string;
let listenPort: number;
const rls = new RateLimitService();
const servers: net.Server[] = [];
const escaped: unknown[] = [];
const onEscape = (err: unknown): void => {
  escaped.push(err);
};

/**
 * A TCP server that resets every connection as soon as it gets bytes, never answers at all (`silent`), or answers
 * every frame with an id nobody asked for (`stray`).
 */
async function badServer(mode: 'reset' | 'silent' | 'stray'): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    if (mode === 'reset') s.on('data', () => s.resetAndDestroy());
    if (mode === 'stray') s.on('data', (d) => s.write(encodeOkResponse(d.readUInt32BE(8) + 1000, { kind: 'value', value: 'stray' })));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

/** A route for the calls whose `case` attachment names it (every call is a real sayHello the provider answers). */
function route(name: string, extra: Record<string, unknown>, subset?: string): Record<string, unknown> {
  return {
    name,
    match: { attributes: { case: { exact: name } } },
    route: [{ destination: { host: HOST, ...(subset ? { subset } : {}) } }],
    ...extra,
  };
}

beforeAll(async () => {
  process.on('uncaughtException', onEscape);
  process.on('unhandledRejection', onEscape);
  setLogSink((l) => process.env.DEBUG_CONTAIN && process.stderr.write(l + '\n'));
  provider = await startProvider({ version: 'v1' });
  await rls.start();
  rls.quota = 1_000_000;
  const [resetA, resetB, silent, stray] = [await badServer('reset'), await badServer('reset'), await badServer('silent'), await badServer('stray')];
  [listenPort] = await freePorts(1);
  const endpoint = (port: number, version: string): unknown => ({ address: '127.0.0.1', ports: { [PORT_NAME]: port }, labels: { version } });
  const docs = [
    { apiVersion: 'metaprotocol.aeraki.io/v1alpha1', kind: 'ApplicationProtocol', metadata: { name: 'poisoned' }, spec: { protocol: 'poisoned', codec: poisonedCodec.name } },
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'poisoned' },
      spec: {
        hosts: [HOST],
        ports: [{ number: listenPort, name: PORT_NAME, protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: [endpoint(provider.port, 'good'), endpoint(resetA, 'reset'), endpoint(resetB, 'reset'), endpoint(silent, 'silent'), endpoint(stray, 'stray')],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: 'poisoned' },
      spec: {
        host: HOST,
        subsets: ['good', 'reset', 'silent', 'stray'].map((v) => ({ name: v, labels: { version: v } })),
      },
    },
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'rls' },
      spec: { hosts: ['rls.waypost.test'], ports: [{ number: 8081, name: 'grpc', protocol: 'GRPC' }], resolution: 'STATIC', endpoints: [{ address: '127.0.0.1', ports: { grpc: rls.port } }] },
    },
    {
      apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
      kind: 'MetaRouter',
      metadata: { name: 'poisoned' },
      spec: {
        hosts: [HOST],
        globalRateLimit: {
          domain: 'containment',
          rateLimitService: 'outbound|8081||rls.waypost.test',
          match: { attributes: { case: { exact: 'limited' } } },
          descriptors: [{ property: 'case', descriptorKey: 'case' }],
          requestTimeout: '5s',
        },
        routes: [
          route('delayed', { fault: { delay: { fixedDelay: '20ms' } } }, 'good'),
          route('reset', { retries: { attempts: 1, retryOn: 'reset' } }, 'reset'),
          route('silent', { timeout: '10s', retries: { attempts: 1, perTryTimeout: '50ms', retryOn: 'timeout' } }, 'silent'),
          route('stray', { timeout: '200ms' }, 'stray'),
          route('mirrored', { mirror: { host: HOST, subset: 'good' }, mirrorPercentage: { value: 100 } }, 'good'),
          route('limited', {}, 'good'),
          { name: 'by-user', match: { attributes: { user: { exact: 'alice' } } }, route: [{ destination: { host: HOST, subset: 'good' } }] },
          { name: 'rest', route: [{ destination: { host: HOST, subset: 'good' } }] },
        ],
      },
    },
  ];
  dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-containment-'));
  writeFileSync(path.join(dir, 'config.yaml'), docs.map((d) => YAML.stringify(d)).join('---\n'));
  const registry = createRegistry();
  registry.register(poisonedCodec);
  const result = await compile([dir], { knownCodecs: registry.names() });
  if (!result.snapshot) throw new Error(`config rejected:\n${formatErrors(result.errors)}`);
  proxy = new Proxy({ codecs: registry, maxFrameSize: 1024 * 1024 });
  await proxy.apply(result.snapshot);
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await provider?.close();
  rls.server.forceShutdown();
  for (const s of servers) s.close();
  setLogSink((line) => process.stderr.write(`${line}\n`));
  process.off('uncaughtException', onEscape);
  process.off('unhandledRejection', onEscape);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

let nextId = 1;

function call(conn: RawDubboConnection, route: string | undefined, attachments: Record<string, string> = {}): Promise<RawResult> {
  return conn.call({ id: nextId++, path: DEMO_INTERFACE, method: 'sayHello', args: ['x'], attachments: { ...(route ? { case: route } : {}), ...attachments }, timeoutMs: 8_000 });
}

/** The sum of a metric's samples whose labels include every one of `labels` (`key="value"`). */
async function metric(name: string, ...labels: string[]): Promise<number> {
  let sum = 0;
  for (const line of (await proxy.metrics.registry.metrics()).split('\n')) {
    if (line.startsWith(`${name}{`) && labels.every((l) => line.includes(l))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

function contained(where: string): Promise<number> {
  return metric('waypost_contained_errors_total', `where="${where}"`);
}

/** Runs `fn` on a connection of its own, closed after. */
async function withConnection(fn: (conn: RawDubboConnection) => Promise<void>): Promise<void> {
  const conn = await RawDubboConnection.connect(`127.0.0.1:${listenPort}`);
  try {
    await fn(conn);
  } finally {
    conn.destroy();
  }
}

/** A well-formed call, on `conn` and on a fresh connection: both answered by the provider. */
async function othersServed(conn: RawDubboConnection): Promise<void> {
  expect((await call(conn, undefined)).status).toBe(20);
  await withConnection(async (fresh) => {
    expect((await call(fresh, undefined)).status).toBe(20);
  });
}

const BAD_REQUEST = 40;
const BAD_RESPONSE = 50;
const SERVER_ERROR = 80;

describe('every continuation hands a throw to its own request', () => {
  const cases: Array<{ continuation: string; where: string; route?: string; poison: string; status: number }> = [
    { continuation: 'the frame just decoded (route match reads a bad attachment)', where: 'request', poison: 'metadata', status: BAD_REQUEST },
    { continuation: 'the first attempt (encode)', where: 'request', poison: 'encode@1', status: BAD_REQUEST },
    { continuation: 'a fault delay ending (timer)', where: 'timer', route: 'delayed', poison: 'encode@1', status: BAD_REQUEST },
    { continuation: 'a retry after an upstream reset', where: 'upstream_failure', route: 'reset', poison: 'encode@2', status: BAD_REQUEST },
    { continuation: 'a retry after a per-try timeout (timer)', where: 'timer', route: 'silent', poison: 'encode@2', status: BAD_REQUEST },
    { continuation: 'the rate limit service answering', where: 'filter_callback', route: 'limited', poison: 'encode@1', status: BAD_REQUEST },
    { continuation: 'an upstream answer being re-encoded', where: 'response', poison: 'answer', status: BAD_RESPONSE },
    { continuation: 'a codec that throws null, not an Error (route match)', where: 'request', poison: 'metadata,null', status: SERVER_ERROR },
    { continuation: 'a codec whose encode returns no bytes (retry after reset)', where: 'upstream_failure', route: 'reset', poison: 'nobytes@2', status: SERVER_ERROR },
    { continuation: 'a codec whose encode returns no bytes (first attempt)', where: 'request', poison: 'nobytes@1', status: SERVER_ERROR },
  ];
  for (const c of cases) {
    it(`${c.continuation}: native error ${c.status}, counted as ${c.where}, others served`, async () => {
      await withConnection(async (conn) => {
        const before = await contained(c.where);
        const r = await call(conn, c.route, { poison: c.poison });
        expect(r.status).toBe(c.status);
        expect(await contained(c.where)).toBe(before + 1);
        await othersServed(conn);
      });
      expect(escaped).toEqual([]);
    });
  }

  it('a mirror that cannot be encoded is dropped and counted; the primary call is answered', async () => {
    await withConnection(async (conn) => {
      const before = await contained('mirror');
      // The mirror encodes its copy first: encode #1 is the mirror's, #2 the primary's.
      const r = await call(conn, 'mirrored', { poison: 'encode@1' });
      expect(r.status).toBe(20);
      expect(await contained('mirror')).toBe(before + 1);
      await othersServed(conn);
    });
    expect(escaped).toEqual([]);
  });

  it('a request whose error reply cannot be encoded either closes only its own connection', async () => {
    const conn = await RawDubboConnection.connect(`127.0.0.1:${listenPort}`);
    const before = await contained('request');
    const r = call(conn, undefined, { poison: 'metadata,localreply' }).catch((err: Error) => err);
    await conn.closed();
    expect(await r).toBeInstanceOf(Error);
    expect(await contained('request')).toBe(before + 1);
    await withConnection(async (fresh) => {
      await othersServed(fresh);
    });
    expect(escaped).toEqual([]);
  });

  it('leaves nothing pending upstream: a request that failed to encode is not waiting for an answer', async () => {
    await withConnection(async (conn) => {
      for (let i = 0; i < 50; i++) expect((await call(conn, undefined, { poison: 'encode@1' })).status).toBe(BAD_REQUEST);
      expect((await call(conn, undefined)).status).toBe(20);
      // An entry left behind by a failed encode would wait forever for an answer, holding its whole frame.
      const dump = proxy.clustersDump() as Array<{ endpoints: Array<{ awaiting_answers: number }> }>;
      expect(dump.flatMap((c) => c.endpoints.map((e) => e.awaiting_answers))).toEqual(dump.flatMap((c) => c.endpoints.map(() => 0)));
    });
  });

  it('an upstream answer with an id nobody asked for is dropped and counted; the call times out natively', async () => {
    await withConnection(async (conn) => {
      const text = (): Promise<number> => metric('waypost_upstream_stray_frames_total');
      const before = await text();
      expect((await call(conn, 'stray')).status).toBe(31);
      expect(await text()).toBe(before + 1);
      await othersServed(conn);
    });
  });

  it('a codec whose decode throws null closes only that connection, counted', async () => {
    const conn = await RawDubboConnection.connect(`127.0.0.1:${listenPort}`);
    const before = await metric('waypost_decode_errors_total', 'direction="downstream"');
    const answer = call(conn, undefined, { note: 'throw-null' }).catch((err: Error) => err);
    await conn.closed();
    expect(await answer).toBeInstanceOf(Error);
    expect(await metric('waypost_decode_errors_total', 'direction="downstream"')).toBe(before + 1);
    await withConnection(async (fresh) => {
      await othersServed(fresh);
    });
    expect(escaped).toEqual([]);
  });

  it('a request whose client goes away before its answer is counted as downstream_closed', async () => {
    const closedCount = (): Promise<number> => metric('waypost_requests_total', 'route="silent"', 'outcome="downstream_closed"');
    const before = await closedCount();
    const conn = await RawDubboConnection.connect(`127.0.0.1:${listenPort}`);
    void call(conn, 'silent').catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
    conn.destroy();
    const t0 = Date.now();
    while ((await closedCount()) === before && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 20));
    expect(await closedCount()).toBe(before + 1);
  });
});
