/**
 * Bounded buffers with backpressure, measured on a real proxy process: a client that sends many requests and never
 * reads its answers, and an upstream that never reads its requests. In both cases the bytes the proxy holds
 * (`waypost_downstream_buffered_bytes` / `waypost_upstream_buffered_bytes`, and the process's resident memory)
 * stay bounded while the offending peer has far more queued, and other clients are served meanwhile.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRequest, FrameParser } from '../../examples/dubbo/wire.js';
import { DEMO_INTERFACE } from '../../examples/dubbo/provider.js';
import { OpsFixture, freePorts, report, servicesYaml, sleep, until } from './helpers.js';

const BUFFER_LIMIT = 64 * 1024;
/** Large enough that answers, not local replies, fill the client's buffers; it still bounds the answers owed. */
const MAX_PENDING = 256;
const NAME = 'n'.repeat(4000); // each answer carries the name back: ~4 KB per answer
const MB = 1024 * 1024;

/**
 * A raw client socket that writes `count` sayHello requests and reads nothing. `perTick`: write that many every
 * 10 ms (a client pipelining at a steady rate the provider can serve) instead of all at once.
 */
function floodWithoutReading(address: string, count: number, name: string, perTick?: number): Promise<{ socket: net.Socket; queued: () => number; written: () => number }> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: host!, port: Number(port) });
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.pause(); // never read: answers stay in the kernel buffers, then in the proxy's, unless it stops reading
      let id = 1;
      const burst = (n: number): void => {
        for (let i = 0; i < n && id <= count && !socket.destroyed; i++, id++) {
          socket.write(encodeRequest(id, { path: DEMO_INTERFACE, method: 'sayHello', args: [name] }));
        }
        if (id <= count && !socket.destroyed) setTimeout(() => burst(n), 10);
      };
      burst(perTick ?? count);
      resolve({ socket, queued: () => socket.writableLength, written: () => id - 1 });
    });
  });
}

async function sampleMax(seconds: number, read: () => Promise<number>): Promise<number> {
  let max = 0;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    max = Math.max(max, await read());
    await sleep(100);
  }
  return max;
}

describe('a client that never reads its answers', () => {
  const fx = new OpsFixture();
  let address = '';
  beforeAll(async () => {
    const [port] = await freePorts(1);
    address = `127.0.0.1:${port}`;
    await fx.start({
      args: ['--per-connection-buffer-limit', String(BUFFER_LIMIT), '--max-pending-per-connection', String(MAX_PENDING)],
      config: ([p]) => servicesYaml([{ listenPort: port!, endpoints: [{ port: p!.port, version: 'v1' }] }]),
    });
  });
  afterAll(() => fx.stop());

  it('stops reading it: the proxy holds a bounded number of bytes for it, and other clients are served', async () => {
    const provider = fx.providers[0]!;
    const warm = await fx.connect(address);
    for (let i = 0; i < 50; i++) expect((await fx.call(warm, 'sayHello', [NAME])).status).toBe(20);
    const rssBefore = fx.rss();
    const requests = 16_000; // ~64 MB of requests and as many of answers, at ~8 MB/s for 8 s
    const requestBytes = encodeRequest(1, { path: DEMO_INTERFACE, method: 'sayHello', args: [NAME] }).length;
    const flood = await floodWithoutReading(address, requests, NAME, 20);
    const served0 = provider.requests.length;
    // Meanwhile another client on the same listener gets its answers.
    const others: number[] = [];
    const other = await fx.connect(address);
    const otherDone = (async () => {
      for (let i = 0; i < 40; i++) {
        const t0 = performance.now();
        expect((await fx.call(other, 'sayHello', ['other'])).status).toBe(20);
        others.push(performance.now() - t0);
        await sleep(50);
      }
    })();
    const maxBuffered = await sampleMax(4, () => fx.metric(/^waypost_downstream_buffered_bytes\{/));
    await otherDone;
    const rssPeak = fx.rss();
    const pauses = await fx.metric(/^waypost_backpressure_pauses_total\{.*cause="downstream_write"/);
    const reached = provider.requests.length - served0 - 40;
    const stillQueuedInClient = flood.queued();
    const writtenByClient = flood.written() * requestBytes;
    // The bound: the buffer limit, plus the answers to the requests already in flight when reading stopped, plus one
    // read's worth of bytes (64 KiB) not yet decoded and the local replies it may have produced.
    const answerSize = NAME.length + 200;
    const bound = BUFFER_LIMIT + MAX_PENDING * answerSize + 2 * 64 * 1024 + 64 * 1024;
    report(
      `slow reader: wrote ${(writtenByClient / MB).toFixed(1)} MB of requests in 4 s, ${(stillQueuedInClient / MB).toFixed(1)} MB of them still queued in the client's socket; ` +
        `${reached} reached the provider; proxy buffered at most ${(maxBuffered / 1024).toFixed(0)} KiB (bound ${(bound / 1024).toFixed(0)} KiB); ` +
        `RSS ${(rssBefore / MB).toFixed(1)} → ${(rssPeak / MB).toFixed(1)} MB; ${pauses} pauses; other client's calls: max ${Math.max(...others).toFixed(0)} ms`,
    );
    expect(pauses).toBeGreaterThan(0);
    expect(maxBuffered).toBeLessThanOrEqual(bound);
    // How much of the flood stays queued in the client depends on the kernel's socket buffers (autotuned up to
    // tcp_rmem's maximum), so it is reported, not asserted; the proxy's own bytes and memory are.
    // Without backpressure the proxy would hold tens of MB of answers; its memory grows far less.
    expect(rssPeak - rssBefore).toBeLessThan(30 * MB);
    expect(others).toHaveLength(40);

    // Once the client reads, every request it sent gets its answer (20, or 100 over the pending limit): none is lost.
    let answers = 0;
    let ok = 0;
    let over = 0;
    const parser = new FrameParser((f) => {
      answers++;
      if (f.status === 20) ok++;
      else if (f.status === 100) over++;
    });
    flood.socket.on('data', (chunk: Buffer) => parser.push(chunk));
    flood.socket.resume();
    await until(() => answers === requests, 60_000, () => `all ${requests} answers (have ${answers})`);
    report(`after the client read again: ${answers} answers (${ok} ok, ${over} over the pending limit of ${MAX_PENDING})`);
    expect(ok + over).toBe(requests);
    flood.socket.destroy();
  });
});

describe('an upstream that never reads its requests', () => {
  const fx = new OpsFixture();
  let slowAddress = '';
  let goodAddress = '';
  let blackHole: net.Server;
  const held = new Set<net.Socket>();
  beforeAll(async () => {
    blackHole = net.createServer((s) => {
      held.add(s);
      s.pause(); // accept, never read
      s.on('error', () => undefined);
    });
    await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', () => r()));
    const holePort = (blackHole.address() as net.AddressInfo).port;
    const [slowPort, goodPort] = await freePorts(2);
    slowAddress = `127.0.0.1:${slowPort}`;
    goodAddress = `127.0.0.1:${goodPort}`;
    await fx.start({
      // No pending cap to speak of: the upstream buffer limit alone must hold the line.
      args: ['--per-connection-buffer-limit', String(BUFFER_LIMIT), '--max-pending-per-connection', '1000000'],
      config: ([p]) =>
        servicesYaml([
          { host: 'slow.waypost.test', listenPort: slowPort!, endpoints: [{ port: holePort, version: 'v1' }] },
          { listenPort: goodPort!, endpoints: [{ port: p!.port, version: 'v1' }] },
        ]),
    });
  });
  afterAll(async () => {
    await fx.stop();
    for (const s of held) s.destroy();
    blackHole.close();
  });

  it('pauses the clients feeding it: the proxy holds a bounded number of bytes, and other services are served', async () => {
    const rssBefore = fx.rss();
    const requests = 12_000;
    const requestBytes = encodeRequest(1, { path: 'slow.waypost.test', method: 'sayHello', args: [NAME] }).length;
    const floods = await Promise.all([0, 1].map(() => floodWithoutReading(slowAddress, requests / 2, NAME)));
    const good = await fx.connect(goodAddress);
    const others: number[] = [];
    const otherDone = (async () => {
      for (let i = 0; i < 40; i++) {
        const t0 = performance.now();
        expect((await fx.call(good, 'sayHello', ['other'])).status).toBe(20);
        others.push(performance.now() - t0);
        await sleep(50);
      }
    })();
    const read = async (): Promise<number> =>
      (await fx.metric(/^waypost_upstream_buffered_bytes\{/)) + (await fx.metric(/^waypost_downstream_buffered_bytes\{/));
    const maxBuffered = await sampleMax(4, read);
    await otherDone;
    const rssPeak = fx.rss();
    const pauses = await fx.metric(/^waypost_backpressure_pauses_total\{.*cause="upstream_write"/);
    const queued = floods.reduce((n, f) => n + f.queued(), 0);
    const written = floods.reduce((n, f) => n + f.written(), 0) * requestBytes;
    // The upstream buffer limit, plus what each paused client had in the read that tripped it (64 KiB), plus one
    // more read per client not yet decoded.
    const bound = BUFFER_LIMIT + 2 * 2 * 64 * 1024 + 2 * (requestBytes + 64 * 1024);
    report(
      `slow upstream: 2 clients wrote ${(written / MB).toFixed(1)} MB of requests, ${(queued / MB).toFixed(1)} MB of them still queued in their sockets; ` +
        `proxy buffered at most ${(maxBuffered / 1024).toFixed(0)} KiB (bound ${(bound / 1024).toFixed(0)} KiB); RSS ${(rssBefore / MB).toFixed(1)} → ${(rssPeak / MB).toFixed(1)} MB; ` +
        `${pauses} pauses; other service's calls: max ${Math.max(...others).toFixed(0)} ms`,
    );
    expect(pauses).toBeGreaterThan(0);
    expect(maxBuffered).toBeLessThanOrEqual(bound);
    expect(rssPeak - rssBefore).toBeLessThan(30 * MB);
    expect(others).toHaveLength(40);
    for (const f of floods) f.socket.destroy();
  });
});
