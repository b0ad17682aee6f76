/**
 * The idle timeout and the frame deadline (slowloris) against a real proxy: which connections they close, which
 * they leave alone, and how each is counted in `waypost_downstream_timeouts_total{kind}`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRequest } from '../../examples/dubbo/wire.js';
import { DEMO_INTERFACE } from '../../examples/dubbo/provider.js';
import { OpsFixture, closedWithin, freePorts, report, servicesYaml, sleep } from './helpers.js';

const IDLE_MS = 1500;
const FRAME_MS = 500;
const fx = new OpsFixture();
let address = '';

const idle = (): Promise<number> => fx.metric(/^waypost_downstream_timeouts_total\{.*kind="idle"/);
const frame = (): Promise<number> => fx.metric(/^waypost_downstream_timeouts_total\{.*kind="frame"/);
const request = (id: number): Buffer => encodeRequest(id, { path: DEMO_INTERFACE, method: 'sayHello', args: ['slowloris'] });

beforeAll(async () => {
  const [port] = await freePorts(1);
  address = `127.0.0.1:${port}`;
  await fx.start({
    args: ['--idle-timeout', `${IDLE_MS}ms`, '--frame-timeout', `${FRAME_MS}ms`],
    config: ([p]) => servicesYaml([{ listenPort: port!, endpoints: [{ port: p!.port, version: 'v1' }] }]),
  });
});
afterAll(() => fx.stop());

describe('idle timeout', () => {
  it('closes a connection with nothing in flight and no bytes for --idle-timeout, counted as kind="idle"', async () => {
    const before = await idle();
    const c = await fx.connect(address);
    expect((await fx.call(c, 'sayHello', ['once'])).status).toBe(20);
    const t0 = Date.now();
    expect(await closedWithin(c, 20_000)).toBe(true);
    const after = Date.now() - t0;
    report(`idle connection closed ${after} ms after its last answer (--idle-timeout ${IDLE_MS}ms)`);
    // Never early (the timer runs from the last byte, which was before t0).
    expect(after).toBeGreaterThanOrEqual(IDLE_MS - 100);
    expect((await idle()) - before).toBe(1);
  });

  it('does not close a connection whose request is in flight longer than the idle timeout', async () => {
    const before = await idle();
    const c = await fx.connect(address);
    const r = await fx.call(c, 'slow', [{ $class: 'int', $: IDLE_MS * 2 }]);
    expect(r.status).toBe(20);
    expect(c.isClosed).toBe(false);
    expect((await fx.call(c, 'sayHello', ['after'])).status).toBe(20);
    expect((await idle()) - before).toBe(0);
    c.destroy();
  });

  it('keeps a connection that sends a whole request now and then (each within the idle timeout)', async () => {
    const c = await fx.connect(address);
    for (let i = 0; i < 4; i++) {
      expect((await fx.call(c, 'sayHello', [`tick${i}`])).status).toBe(20);
      await sleep(IDLE_MS / 2);
    }
    expect(c.isClosed).toBe(false);
    c.destroy();
  });
});

describe('frame deadline (slowloris)', () => {
  it('closes a connection whose frame stays incomplete past --frame-timeout, counted as kind="frame"', async () => {
    const beforeFrame = await frame();
    const c = await fx.connect(address);
    const bytes = request(1);
    c.writeRaw(bytes.subarray(0, 20)); // the header and a little of the body
    expect(await closedWithin(c, 15_000)).toBe(true);
    expect((await frame()) - beforeFrame).toBe(1);
    expect(fx.proxy.output()).toMatch(/a frame did not complete in time/);
  });

  it('closes a slowloris that keeps trickling bytes (so it is never idle) by the frame deadline, not the idle timeout', async () => {
    const beforeFrame = await frame();
    const beforeIdle = await idle();
    const c = await fx.connect(address);
    const bytes = request(2);
    const t0 = Date.now();
    let sent = 0;
    // One byte every 50 ms: the whole frame would take far longer than the deadline.
    while (!c.isClosed && sent < bytes.length - 1 && Date.now() - t0 < 20_000) {
      c.writeRaw(bytes.subarray(sent, sent + 1));
      sent++;
      await sleep(50);
    }
    expect(await closedWithin(c, 15_000)).toBe(true);
    report(`slowloris closed after ${Date.now() - t0} ms and ${sent}/${bytes.length} bytes (--frame-timeout ${FRAME_MS}ms)`);
    expect(sent).toBeLessThan(bytes.length - 1);
    expect((await frame()) - beforeFrame).toBe(1);
    expect((await idle()) - beforeIdle).toBe(0);
  });

  it('does not close a connection whose frames arrive split but each completes in time', async () => {
    const c = await fx.connect(address);
    for (let id = 10; id < 14; id++) {
      const bytes = request(id);
      const answer = c.waitFor(id, 10_000);
      c.writeRaw(bytes.subarray(0, 10));
      await sleep(FRAME_MS / 5);
      c.writeRaw(bytes.subarray(10));
      expect((await answer).status).toBe(20);
    }
    expect(c.isClosed).toBe(false);
    c.destroy();
  });
});
