/**
 * The demo's Dubbo provider, checked directly (no proxy) with the dubbo2.js consumer wrapper and the raw client:
 * these peers are what the proxy's end-to-end tests and the demo rely on, so their behaviour is pinned here.
 */
import net from 'node:net';
import java from 'js-to-java';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDemoClient, DubboStatusError, type DemoClient } from '../../examples/dubbo/consumer.js';
import { DEMO_INTERFACE, startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection, rawCall } from '../../examples/dubbo/raw-client.js';
import {
  FrameParser,
  HEADER_LENGTH,
  ResponseType,
  Status,
  encodeFrame,
  encodeHeartbeat,
  encodeRequest,
  type RawFrame,
} from '../../examples/dubbo/wire.js';

let v1: Provider;
let v2: Provider;
const clients: DemoClient[] = [];
const conns: RawDubboConnection[] = [];

function client(address: string, opts: { attachments?: Record<string, string> } = {}): DemoClient {
  const c = createDemoClient({ address, timeoutSeconds: 5, ...opts });
  clients.push(c);
  return c;
}

async function raw(address: string): Promise<RawDubboConnection> {
  const c = await RawDubboConnection.connect(address);
  conns.push(c);
  return c;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  v1 = await startProvider({ version: 'v1' });
  v2 = await startProvider({ version: 'v2' });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  for (const c of conns) c.destroy();
  await v1?.close();
  await v2?.close();
});

describe('DemoService provider with the dubbo2.js consumer', () => {
  it('sayHello answers with the provider version and address', async () => {
    const r1 = await client(v1.address).sayHello('world');
    const r2 = await client(v2.address).sayHello('world');
    expect(r1).toEqual({ res: `Hello world, response from provider v1@${v1.address}` });
    expect(r2).toEqual({ res: `Hello world, response from provider v2@${v2.address}` });
    expect(v1.port).toBeGreaterThan(0);
    expect(v1.address).toBe(`127.0.0.1:${v1.port}`);
  });

  it('records each request: method, args, Dubbo version, path and service version', async () => {
    const before = v1.requests.length;
    await client(v1.address).sayHello('recorded');
    const req = v1.requests[before]!;
    expect(req.method).toBe('sayHello');
    expect(req.args).toEqual(['recorded']);
    expect(req.paramTypes).toBe('Ljava/lang/String;');
    expect(req.dubboVersion).toBe('2.0.2');
    expect(req.path).toBe(DEMO_INTERFACE);
    expect(req.serviceVersion).toBe('0.0.0');
    expect(req.twoWay).toBe(true);
    expect(req.attachments).toMatchObject({ path: DEMO_INTERFACE, interface: DEMO_INTERFACE, version: '0.0.0' });
  });

  it('client-wide and per-call attachments reach the provider; per-call ones do not leak to later calls', async () => {
    const c = client(v1.address, { attachments: { user: 'jason', env: 'test' } });
    const seen: Record<string, unknown>[] = [];
    const p = await startProvider({ version: 'v1', onRequest: (r) => seen.push(r.attachments) });
    try {
      const c2 = client(p.address, { attachments: { user: 'jason' } });
      const a = await c2.sayHello('a', { user: 'mike', trace: 't-1' });
      const b = await c2.sayHello('b');
      expect(a.err).toBeUndefined();
      expect(b.err).toBeUndefined();
      expect(seen[0]).toMatchObject({ user: 'mike', trace: 't-1' });
      expect(seen[1]).toMatchObject({ user: 'jason' });
      expect(seen[1]).not.toHaveProperty('trace');
    } finally {
      await p.close();
    }
    // echoAttachments returns what the provider received, as a map
    const echoed = await c.echoAttachments({ extra: 'x' });
    expect(echoed.err).toBeUndefined();
    expect(echoed.res).toMatchObject({ user: 'jason', env: 'test', extra: 'x', path: DEMO_INTERFACE });
  });

  it('concurrent calls with different per-call attachments each carry their own', async () => {
    const c = client(v2.address);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => c.echoAttachments({ n: String(i) })),
    );
    results.forEach((r, i) => expect(r.res).toMatchObject({ n: String(i) }));
  });

  it('a business exception surfaces as err (java.lang.RuntimeException with the message)', async () => {
    const r = await client(v1.address).fail('insufficient funds');
    expect(r.res).toBeUndefined();
    expect(r.err).toBeInstanceOf(Error);
    expect(r.err!.name).toBe('java.lang.RuntimeException');
    expect(r.err!.message).toBe('insufficient funds');
  });

  it('an unknown method answers status 70 SERVICE_ERROR with a readable message, like Dubbo', async () => {
    const r = await client(v1.address).call('noSuchMethod', [java.String('x')]);
    expect(r.err).toBeInstanceOf(DubboStatusError);
    expect(r.err!.status).toBe(Status.SERVICE_ERROR);
    expect(r.err!.message).toMatch(/Not found method "noSuchMethod"/);
  });

  it('slow(ms) answers after the delay, and later calls are not held behind it', async () => {
    const c = client(v2.address);
    const t0 = Date.now();
    const slow = c.slow(300);
    const fast = await c.sayHello('quick');
    const fastAt = Date.now() - t0;
    const s = await slow;
    const slowAt = Date.now() - t0;
    expect(fast.res).toMatch(/^Hello quick/);
    expect(fastAt).toBeLessThan(250);
    expect(s.res).toBe(`slept 300ms on v2@${v2.address}`);
    expect(slowAt).toBeGreaterThanOrEqual(290);
  });

  it('close() ends the connection; later calls fail without throwing', async () => {
    const c = createDemoClient({ address: v1.address, timeoutSeconds: 5 });
    expect((await c.sayHello('x')).res).toBeDefined();
    const before = v1.connections().open;
    await c.close();
    await sleep(50);
    expect(v1.connections().open).toBe(before - 1);
    const after = await c.sayHello('y');
    expect(after.err).toBeInstanceOf(Error);
    await c.close(); // idempotent
  });

  it('a call to an unreachable address resolves with err after the timeout', async () => {
    const c = createDemoClient({ address: '127.0.0.1:1', timeoutSeconds: 1 });
    const r = await c.sayHello('nobody');
    expect(r.err?.message).toMatch(/timeout/);
    await c.close();
  });
});

describe('DemoService provider on the wire (raw client)', () => {
  it('answers with the request id chosen by the client, flags 0x02 and status 20', async () => {
    const c = await raw(v1.address);
    const r = await c.call({ id: 4242, method: 'sayHello', args: ['raw'] });
    expect(r.id).toBe(4242);
    expect(r.flags).toBe(0x02);
    expect(r.status).toBe(Status.OK);
    expect(r.value).toBe(`Hello raw, response from provider v1@${v1.address}`);
  });

  it('uses response type 4 (with attachments) for Dubbo 2.0.2 requests and 1 for older ones', async () => {
    const c = await raw(v1.address);
    const newer = await c.call({ id: 1, method: 'whoami', dubboVersion: '2.0.2' });
    const older = await c.call({ id: 2, method: 'whoami', dubboVersion: '2.0.0' });
    expect(newer.responseType).toBe(ResponseType.VALUE_WITH_ATTACHMENTS);
    expect(newer.attachments).toEqual({ dubbo: '2.0.2' });
    expect(older.responseType).toBe(ResponseType.VALUE);
    expect(older.value).toBe(`v1@${v1.address}`);
    const exc = await c.call({ id: 3, method: 'fail', args: ['nope'], dubboVersion: '2.0.0' });
    expect(exc.status).toBe(Status.OK);
    expect(exc.responseType).toBe(ResponseType.WITH_EXCEPTION);
    expect(exc.error).toMatchObject({ className: 'java.lang.RuntimeException', message: 'nope' });
  });

  it('two connections using the same request ids each get their own answers', async () => {
    const a = await raw(v2.address);
    const b = await raw(v2.address);
    const [ra, rb] = await Promise.all([
      a.call({ id: 7, method: 'sayHello', args: ['alice'] }),
      b.call({ id: 7, method: 'sayHello', args: ['bob'] }),
    ]);
    expect(ra).toMatchObject({ id: 7, status: 20, value: `Hello alice, response from provider v2@${v2.address}` });
    expect(rb).toMatchObject({ id: 7, status: 20, value: `Hello bob, response from provider v2@${v2.address}` });
  });

  it('keeps 64-bit ids intact (ids above 2^53 come back as bigint)', async () => {
    const id = (1n << 63n) + 12345n;
    const r = await rawCall({ address: v1.address, id, method: 'sayHello', args: ['big'] });
    expect(r.id).toBe(id);
    expect(r.value).toMatch(/^Hello big/);
  });

  it('out-of-order answers are matched by id', async () => {
    const c = await raw(v1.address);
    const order: number[] = [];
    const slow = c.call({ id: 100, method: 'slow', args: [java('int', 200)] }).then((r) => (order.push(100), r));
    const fast = c.call({ id: 101, method: 'sayHello', args: ['f'] }).then((r) => (order.push(101), r));
    const [s, f] = await Promise.all([slow, fast]);
    expect(order).toEqual([101, 100]);
    expect(s.value).toBe(`slept 200ms on v1@${v1.address}`);
    expect(f.value).toMatch(/^Hello f/);
  });

  it('answers a two-way heartbeat with flags 0x22, status 20, the same id and body N', async () => {
    const c = await raw(v2.address);
    const before = v2.heartbeats;
    const f = await c.heartbeat(77);
    expect(f.flags).toBe(0x22);
    expect(f.status).toBe(20);
    expect(f.id).toBe(77);
    expect([...f.body]).toEqual([0x4e]);
    expect(v2.heartbeats).toBe(before + 1);
  });

  it('does not answer one-way requests or one-way events (but executes the request)', async () => {
    const c = await raw(v1.address);
    const before = v1.requests.length;
    c.oneway({ id: 500, method: 'sayHello', args: ['fire-and-forget'] });
    c.writeRaw(encodeHeartbeat(501, { twoWay: false }));
    const r = await c.call({ id: 502, method: 'sayHello', args: ['after'] });
    await sleep(100);
    expect(r.id).toBe(502);
    expect(c.received.map((f) => f.id)).toEqual([502]);
    expect(c.unexpected).toEqual([]);
    const oneway = v1.requests.slice(before).find((q) => q.id === 500);
    expect(oneway).toMatchObject({ method: 'sayHello', args: ['fire-and-forget'], twoWay: false });
  });

  it('unknown interface → status 70; non-hessian serialization and garbage bodies → status 40', async () => {
    const c = await raw(v1.address);
    const wrongPath = await c.call({ id: 1, method: 'sayHello', args: ['x'], path: 'com.example.Nope' });
    expect(wrongPath.status).toBe(Status.SERVICE_ERROR);
    expect(wrongPath.error?.message).toMatch(/Not found exported service: com.example.Nope/);

    const frame = encodeRequest(2, { path: DEMO_INTERFACE, method: 'sayHello', args: ['x'] });
    frame[2] = (frame[2]! & 0xe0) | 6; // serialization id 6 (fastjson)
    const wait2 = c.waitFor(2);
    c.writeRaw(frame);
    const f2 = await wait2;
    expect(f2.status).toBe(Status.BAD_REQUEST);

    const wait3 = c.waitFor(3);
    c.writeRaw(encodeFrame(0xc2, 0, 3, Buffer.from([0x91]))); // body: the int 1, not a string
    expect((await wait3).status).toBe(Status.BAD_REQUEST);
  });

  it('handles frames split across reads and many frames in one read', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: v2.port });
    await new Promise((r) => socket.once('connect', r));
    const frames: RawFrame[] = [];
    const parser = new FrameParser((f) => frames.push(f));
    socket.on('data', (d: Buffer) => parser.push(d));
    try {
      // 1. one frame, one byte per write
      const one = encodeRequest(1, { path: DEMO_INTERFACE, method: 'sayHello', args: ['split'] });
      for (const byte of one) {
        socket.write(Buffer.from([byte]));
        await new Promise((r) => setImmediate(r));
      }
      // 2. fifty frames (requests and heartbeats) in one write
      const many = Buffer.concat(
        Array.from({ length: 50 }, (_, i) =>
          i % 10 === 9 ? encodeHeartbeat(1000 + i) : encodeRequest(1000 + i, { path: DEMO_INTERFACE, method: 'sayHello', args: [`m${i}`] }),
        ),
      );
      socket.write(many);
      // 3. a frame whose header and body arrive in different writes, glued to the start of the next one
      const a = encodeRequest(2000, { path: DEMO_INTERFACE, method: 'sayHello', args: ['glued-a'] });
      const b = encodeRequest(2001, { path: DEMO_INTERFACE, method: 'sayHello', args: ['glued-b'] });
      socket.write(a.subarray(0, 10));
      await sleep(20);
      socket.write(Buffer.concat([a.subarray(10), b.subarray(0, HEADER_LENGTH + 3)]));
      await sleep(20);
      socket.write(b.subarray(HEADER_LENGTH + 3));

      const deadline = Date.now() + 3000;
      while (frames.length < 53 && Date.now() < deadline) await sleep(20);
      expect(frames).toHaveLength(53);
      const byId = new Map(frames.map((f) => [Number(f.id), f]));
      expect(byId.get(1)?.status).toBe(20);
      for (let i = 0; i < 50; i++) {
        const f = byId.get(1000 + i)!;
        expect(f.status).toBe(20);
        expect(f.event).toBe(i % 10 === 9);
      }
      expect(byId.get(2000)?.status).toBe(20);
      expect(byId.get(2001)?.status).toBe(20);
    } finally {
      socket.destroy();
    }
  });

  it('closes the connection on a bad magic number', async () => {
    const c = await raw(v1.address);
    c.writeRaw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await c.closed();
    expect(c.isClosed).toBe(true);
  });

  it('resetConnections() drops open connections and keeps listening', async () => {
    const p = await startProvider({ version: 'v2' });
    try {
      const c = await raw(p.address);
      expect((await c.call({ id: 1, method: 'whoami' })).status).toBe(20);
      p.resetConnections();
      await c.closed();
      const r = await rawCall({ address: p.address, id: 2, method: 'whoami' });
      expect(r.value).toBe(`v2@${p.address}`);
      expect(p.connections().accepted).toBe(2);
    } finally {
      await p.close();
    }
  });
});
