/**
 * Connection and request caps against a real proxy and a real Dubbo provider: the per-listener connection limit,
 * the per-connection pending-request limit, the per-cluster request circuit breaker, and the frame size limit —
 * each with its error and its metric.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { OpsFixture, closedWithin, freePorts, report, servicesYaml, until } from './helpers.js';

const fx = new OpsFixture();
let port = 0;
let address = '';

beforeAll(async () => {
  [port] = await freePorts(1);
  address = `127.0.0.1:${port}`;
  await fx.start({
    args: ['--max-connections-per-listener', '3', '--max-pending-per-connection', '4', '--max-frame-size', '4096'],
    config: ([p]) => servicesYaml([{ listenPort: port, endpoints: [{ port: p!.port, version: 'v1' }] }]),
  });
});
afterAll(() => fx.stop());

describe('max connections per listener', () => {
  it('closes a connection over the cap at once, counts it, and accepts again once one closes', async () => {
    const conns = [await fx.connect(address), await fx.connect(address), await fx.connect(address)];
    for (const c of conns) expect((await fx.call(c, 'sayHello', ['in'])).status).toBe(20);
    const overflowBefore = await fx.metric(/^waypost_downstream_connections_rejected_total\{.*reason="overflow"/);
    const extra = await RawDubboConnection.connect(address);
    // The proxy closes it without reading: the call fails with a closed connection, not with an answer.
    expect(await closedWithin(extra, 10_000)).toBe(true);
    await expect(extra.call({ id: 999, method: 'sayHello', args: ['x'], timeoutMs: 2000 })).rejects.toThrow();
    expect((await fx.metric(/^waypost_downstream_connections_rejected_total\{.*reason="overflow"/)) - overflowBefore).toBe(1);
    // The three admitted connections were not disturbed.
    for (const c of conns) expect((await fx.call(c, 'sayHello', ['still'])).status).toBe(20);
    conns[0]!.destroy();
    await until(async () => (await fx.metric(/^waypost_downstream_connections_active\{/)) === 2, 10_000, () => 'active connections back to 2');
    const again = await fx.connect(address);
    expect((await fx.call(again, 'sayHello', ['again'])).status).toBe(20);
    expect(fx.proxy.output()).toMatch(/listener at its connection limit/);
    again.destroy();
    conns[1]!.destroy();
    conns[2]!.destroy();
    await until(async () => (await fx.metric(/^waypost_downstream_connections_active\{/)) === 0, 10_000, () => 'connections closed');
  });
});

describe('max pending requests per connection', () => {
  it('answers requests over the per-connection limit with Dubbo 100 naming the limit, counted; other connections keep their own budget', async () => {
    const a = await fx.connect(address);
    const b = await fx.connect(address);
    const before = await fx.metric(/^waypost_downstream_requests_rejected_total\{.*reason="pending_limit"/);
    const onA = Array.from({ length: 6 }, () => fx.call(a, 'slow', [{ $class: 'int', $: 400 }]));
    const onB = Array.from({ length: 4 }, () => fx.call(b, 'slow', [{ $class: 'int', $: 400 }]));
    const ra = await Promise.all(onA);
    const rb = await Promise.all(onB);
    expect(ra.filter((r) => r.status === 20)).toHaveLength(4);
    const over = ra.filter((r) => r.status === 100);
    expect(over).toHaveLength(2);
    expect(over[0]!.error?.message).toMatch(/4 requests in flight.*--max-pending-per-connection/);
    expect(rb.every((r) => r.status === 20)).toBe(true);
    expect((await fx.metric(/^waypost_downstream_requests_rejected_total\{.*reason="pending_limit"/)) - before).toBe(2);
    // The budget is back once the slow calls are answered.
    const again = await Promise.all(Array.from({ length: 4 }, () => fx.call(a, 'sayHello', ['x'])));
    expect(again.every((r) => r.status === 20)).toBe(true);
    a.destroy();
    b.destroy();
  });

  it('the per-cluster cap is the DestinationRule circuit breaker (http2MaxRequests), counted in waypost_upstream_overflow_total', async () => {
    await fx.apply(
      servicesYaml([
        {
          listenPort: port,
          endpoints: [{ port: fx.providers[0]!.port, version: 'v1' }],
          destinationRule: { trafficPolicy: { connectionPool: { http: { http2MaxRequests: 3 } } } },
        },
      ]),
    );
    const conns = [await fx.connect(address), await fx.connect(address)];
    const before = await fx.metric(/^waypost_upstream_overflow_total\{.*limit="requests"/);
    const results = await Promise.all(conns.flatMap((c) => [0, 1, 2].map(() => fx.call(c, 'slow', [{ $class: 'int', $: 400 }]))));
    expect(results.filter((r) => r.status === 20)).toHaveLength(3);
    const over = results.filter((r) => r.status === 100);
    expect(over).toHaveLength(3);
    expect(over[0]!.error?.message).toMatch(/limit of 3 requests in flight/);
    expect((await fx.metric(/^waypost_upstream_overflow_total\{.*limit="requests"/)) - before).toBe(3);
    for (const c of conns) c.destroy();
  });
});

describe('max frame size', () => {
  it('closes a connection that sends a frame over --max-frame-size, counted as frame_too_large; smaller frames pass', async () => {
    const big = await fx.connect(address);
    const small = await fx.connect(address);
    const tooLargeBefore = await fx.metric(/^waypost_frames_too_large_total\{.*direction="downstream"/);
    const decodeBefore = await fx.metric(/^waypost_decode_errors_total\{.*direction="downstream"/);
    await expect(fx.call(big, 'sayHello', ['x'.repeat(8000)], undefined, 5000)).rejects.toThrow(/closed/);
    expect(await closedWithin(big, 5000)).toBe(true);
    expect((await fx.call(small, 'sayHello', ['y'.repeat(1000)])).status).toBe(20);
    expect((await fx.metric(/^waypost_frames_too_large_total\{.*direction="downstream"/)) - tooLargeBefore).toBe(1);
    expect((await fx.metric(/^waypost_decode_errors_total\{.*direction="downstream"/)) - decodeBefore).toBe(1);
    expect(fx.proxy.output()).toMatch(/reason=frame_too_large/);
    report('a frame of ~8 KB over --max-frame-size 4096: its connection closed, counted once in waypost_frames_too_large_total');
    small.destroy();
  });
});
