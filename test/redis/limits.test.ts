/**
 * Hard limits on Redis listeners (docs/operations-limits.md), against a real redis-server: idle timeout, the frame
 * deadline (a command that never completes, or trickles in byte by byte), the pending limit (a pipeline waits, in
 * order, instead of failing), and the buffer limit with a client that never reads (the proxy's memory for it stays
 * bounded, and every reply still comes once it reads).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encode, ensurePeers, freePorts, ProxyFixture, RawClient, serviceEntry, sleep, startRedis, type RedisServer } from './helpers.js';

const MAIN = 'main.redis.svc.cluster.local';
const LIMITS = { idleTimeoutMs: 400, frameTimeoutMs: 400, maxPendingPerConnection: 8, bufferLimitBytes: 64 * 1024 };

let redis: RedisServer;
let fx: ProxyFixture;
let port: number;

beforeAll(async () => {
  ensurePeers();
  redis = await startRedis();
  [port] = await freePorts(1);
  fx = new ProxyFixture(LIMITS);
  await fx.apply([serviceEntry({ host: MAIN, port: port!, endpoints: [redis.port] })]);
});

afterAll(async () => {
  await fx?.close();
  await redis?.stop();
});

const metric = (kind: string): Promise<number> => fx.metric(new RegExp(`^waypost_downstream_timeouts_total\\{.*kind="${kind}"`));

describe('redis listener limits', () => {
  it('closes a connection idle for --idle-timeout, but not one waiting for a reply', async () => {
    const before = await metric('idle');
    const idle = await fx.raw(port);
    expect(await idle.commands([['PING']])).toEqual(['+PONG']);
    const t0 = Date.now();
    await idle.waitClosed(5000);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(LIMITS.idleTimeoutMs - 50);
    expect(await metric('idle')).toBe(before + 1);

    // A command in flight longer than the idle timeout (the server paused): the connection waits for its reply.
    const busy = await fx.raw(port);
    const pauser = await RawClient.connect(redis.port);
    expect(await pauser.commands([['CLIENT', 'PAUSE', '900', 'ALL']])).toEqual(['+OK']);
    expect(await busy.commands([['GET', 'idle-test']], 5000)).toEqual(['$-1']);
    expect(busy.closed).toBe(false);
    pauser.destroy();
  });

  it('closes a connection whose command does not complete within --frame-timeout, even when it trickles in', async () => {
    const before = await metric('frame');
    const half = await fx.raw(port);
    half.write('*2\r\n$3\r\nGET\r\n$5\r\nhel');
    await half.waitClosed(5000);
    expect(await metric('frame')).toBe(before + 1);

    // A slowloris: one byte every 50 ms keeps the connection from being idle, but the command never ends in time.
    const slow = await fx.raw(port);
    const bytes = encode(['SET', 'slowloris', 'x'.repeat(200)]);
    let sent = 0;
    while (!slow.closed && sent < bytes.length) {
      slow.write(bytes.subarray(sent, sent + 1));
      sent++;
      await sleep(50);
    }
    expect(slow.closed).toBe(true);
    expect(sent).toBeLessThan(bytes.length);
    expect(await metric('frame')).toBe(before + 2);

    // Commands split across writes that complete in time are served.
    const ok = await fx.raw(port);
    const cmd = encode(['SET', 'split', 'value']);
    ok.write(cmd.subarray(0, 7));
    await sleep(150);
    ok.write(cmd.subarray(7));
    expect(await ok.read(1)).toEqual(['+OK']);
  });

  it('holds a pipeline over --max-pending-per-connection until replies drain: every command answered, in order', async () => {
    const pauses = (): Promise<number> => fx.metric(/^waypost_backpressure_pauses_total\{.*cause="pending_limit"/);
    const before = await pauses();
    const c = await fx.raw(port);
    const n = 300;
    const cmds: string[][] = [];
    for (let i = 0; i < n; i++) cmds.push(i % 2 === 0 ? ['SET', `p${i}`, String(i)] : ['GET', `p${i - 1}`]);
    const replies = await c.commands(cmds, 20_000);
    expect(replies).toHaveLength(n);
    for (let i = 0; i < n; i++) expect(replies[i]).toBe(i % 2 === 0 ? '+OK' : `$${String(i - 1).length}\r\n${i - 1}`);
    expect(await pauses()).toBeGreaterThan(before);
  });

  it('stops reading a client that never reads: the proxy holds a bounded amount for it, and every reply comes later', async () => {
    const value = 'v'.repeat(100_000);
    const setter = await fx.raw(port);
    expect(await setter.commands([['SET', 'big', value]])).toEqual(['+OK']);
    const gauge = (): Promise<number> => fx.metric(/^waypost_downstream_buffered_bytes\{/);
    const n = 400; // 40 MB of replies
    const reader = await fx.raw(port);
    reader.socket.pause(); // never reads: the kernel buffers fill, then the proxy's
    reader.write(Buffer.concat(Array.from({ length: n }, () => encode(['GET', 'big']))));
    let max = 0;
    for (let i = 0; i < 20; i++) {
      await sleep(50);
      const g = await gauge();
      max = Math.max(max, g);
    }
    // Bound: the buffer limit + the pending limit's replies + one read (docs/operations-limits.md).
    const bound = LIMITS.bufferLimitBytes + LIMITS.maxPendingPerConnection * (value.length + 16) + 64 * 1024;
    console.log(`[limits] redis client that never reads: ${n} GETs of 100 kB sent, proxy held at most ${Math.round(max / 1024)} KiB (bound ${Math.round(bound / 1024)} KiB)`);
    expect(max).toBeGreaterThan(0);
    expect(max).toBeLessThanOrEqual(bound);
    // Another client is served meanwhile.
    const other = await fx.raw(port);
    expect(await other.commands([['PING']])).toEqual(['+PONG']);
    reader.socket.resume();
    const replies = await reader.read(n, 30_000);
    expect(replies.every((r) => r === `$${value.length}\r\n${value}`)).toBe(true);
  });
});
