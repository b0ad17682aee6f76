/**
 * The memory budget (src/overload.ts) on a real proxy process with a real Dubbo provider: many connections each
 * sending most of a large frame and never the rest cannot make the proxy hold more than its budget; it pauses and
 * sheds them (counted), refuses new connections while the budget is nearly used, and a client already connected
 * keeps being served throughout.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeHeader, FLAG_REQUEST, FLAG_TWOWAY, HESSIAN2, HEADER_LENGTH } from '../../examples/dubbo/wire.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { OpsFixture, closedWithin, freePorts, report, servicesYaml, sleep, until } from './helpers.js';

const MiB = 1024 * 1024;
const BUDGET = 64 * MiB;
const FRAME_BODY = 8 * MiB - HEADER_LENGTH; // a whole frame of 8 MiB: --max-frame-size allows it
/** What each attacker sends of its frame: all but the last MiB, so that no frame ever completes. */
const SENT = 7 * MiB;
/**
 * What the process may hold beyond its resident size before the attack and the budget: garbage of shed
 * connections' buffers not yet collected, allocator slack, the kernel-to-user copies of reads in progress.
 */
const ALLOWANCE = 64 * MiB;

/** Bytes of one attacker: a Dubbo request header announcing an 8 MiB frame, then SENT bytes of it. */
const header = encodeHeader(FLAG_REQUEST | FLAG_TWOWAY | HESSIAN2, 0, 1, FRAME_BODY);
const body = Buffer.alloc(SENT - HEADER_LENGTH, 0x4e);

interface Attacker {
  socket: net.Socket;
  /** Resolves once the socket closed, or all its bytes were handed to the kernel. */
  settled: Promise<unknown>;
  closed: boolean;
}

function attack(port: number): Promise<Attacker> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined); // shed: reset by the proxy
    socket.resume(); // read (nothing comes) so that a close by the proxy is seen even once every byte is written
    const attacker: Attacker = { socket, settled: Promise.resolve(), closed: false };
    attacker.settled = new Promise<void>((done) => {
      socket.once('close', () => {
        attacker.closed = true;
        done();
      });
      socket.once('connect', () => {
        socket.write(header);
        socket.write(body, () => done());
      });
    });
    resolve(attacker);
  });
}

async function sampleWhile<T>(work: Promise<T>, read: () => number, everyMs = 20): Promise<{ result: T; max: number }> {
  let max = 0;
  let done = false;
  const result = work.finally(() => (done = true));
  while (!done) {
    max = Math.max(max, read());
    await sleep(everyMs);
  }
  return { result: await result, max: Math.max(max, read()) };
}

describe('a memory budget of 64 MiB', () => {
  const fx = new OpsFixture();
  let port = 0;
  let address = '';
  beforeAll(async () => {
    [port] = await freePorts(1);
    address = `127.0.0.1:${port}`;
    await fx.start({
      args: ['--memory-budget', '64Mi'],
      config: ([p]) => servicesYaml([{ listenPort: port, endpoints: [{ port: p!.port, version: 'v1' }] }]),
    });
  });
  afterAll(() => fx.stop());

  it('holds 150 connections each sending 7 MiB of an 8 MiB frame within the budget: pauses and sheds them, counted, and serves a client meanwhile', async () => {
    expect(await fx.metric(/^waypost_overload_budget_bytes /)).toBe(BUDGET);
    const normal = await fx.connect(address);
    for (let i = 0; i < 20; i++) expect((await fx.call(normal, 'sayHello', ['warm'])).status).toBe(20);
    const rssBefore = fx.rss();

    const attackers = await Promise.all(Array.from({ length: 150 }, () => attack(port)));
    // The client already connected keeps calling while the attack runs.
    const answers: number[] = [];
    let stop = false;
    const served = (async () => {
      while (!stop) {
        answers.push((await fx.call(normal, 'sayHello', ['during'])).status);
        await sleep(20);
      }
    })();
    const { max: rssMax } = await sampleWhile(Promise.all(attackers.map((a) => a.settled)), () => fx.rss());
    // Waiters stalled while the budget stays full are shed a moment later: keep watching.
    const { max: rssAfter } = await sampleWhile(sleep(3000), () => fx.rss());
    stop = true;
    await served;

    const shed = await fx.metric(/^waypost_overload_connections_shed_total\{/);
    const paused = await fx.metric(/^waypost_overload_paused_total\{/);
    const used = await fx.metric(/^waypost_overload_used_bytes /);
    const refused = await fx.metric(/^waypost_overload_connections_refused_total\{/);
    const closed = attackers.filter((a) => a.closed).length;
    const peak = Math.max(rssMax, rssAfter);
    report(
      `150 x 7 MiB of 8 MiB frames, budget 64 MiB: RSS ${(rssBefore / MiB).toFixed(0)} -> max ${(peak / MiB).toFixed(0)} MiB ` +
        `(bound ${((rssBefore + BUDGET + ALLOWANCE) / MiB).toFixed(0)}); refused ${refused}, shed ${shed}, paused ${paused}, ` +
        `closed by the proxy ${closed}, budget used now ${(used / MiB).toFixed(1)} MiB; ` +
        `${answers.length} calls of another client during the attack`,
    );

    expect(fx.proxy.child.exitCode).toBeNull();
    expect(peak).toBeLessThan(rssBefore + BUDGET + ALLOWANCE);
    expect(used).toBeLessThanOrEqual(BUDGET);
    expect(shed).toBeGreaterThan(0);
    // Every attacker the proxy closed was refused at accept or shed; the others hold their 7 MiB within the budget.
    expect(closed).toBe(refused + shed);
    expect((150 - closed) * SENT).toBeLessThanOrEqual(BUDGET);
    expect(answers.length).toBeGreaterThan(0);
    expect(answers.every((s) => s === 20)).toBe(true);
    expect((await fx.call(normal, 'sayHello', ['after'])).status).toBe(20);
    for (const a of attackers) a.socket.destroy();
    await until(async () => (await fx.metric(/^waypost_overload_used_bytes /)) < 1 * MiB, 10_000, () => 'budget released');
  }, 120_000);

  it('closes new connections at once while the budget is over 80% used (counted), and accepts them again once it is released', async () => {
    const normal = await fx.connect(address);
    expect((await fx.call(normal, 'sayHello', ['before'])).status).toBe(20);
    const refusedBefore = await fx.metric(/^waypost_overload_connections_refused_total\{/);
    // 8 x 7 MiB = 56 MiB: over the stop-accepting threshold (51.2 MiB), under the grant threshold (57.6 MiB).
    const attackers = await Promise.all(Array.from({ length: 8 }, () => attack(port)));
    await until(async () => (await fx.metric(/^waypost_overload_used_bytes /)) >= 0.8 * BUDGET, 20_000, () => 'budget 80% used');
    expect(await fx.metric(/^waypost_overload_action_active\{action="stop_accepting"\}/)).toBe(1);

    const late = await RawDubboConnection.connect(address);
    expect(await closedWithin(late, 10_000)).toBe(true);
    expect((await fx.metric(/^waypost_overload_connections_refused_total\{/)) - refusedBefore).toBe(1);
    // A client connected before is still served.
    expect((await fx.call(normal, 'sayHello', ['during'])).status).toBe(20);
    expect(fx.proxy.output()).toMatch(/memory budget nearly used, closing new connections/);

    for (const a of attackers) a.socket.destroy();
    await until(async () => (await fx.metric(/^waypost_overload_used_bytes /)) < 0.8 * BUDGET, 10_000, () => 'budget released');
    const again = await fx.connect(address);
    expect((await fx.call(again, 'sayHello', ['again'])).status).toBe(20);
    expect(await fx.metric(/^waypost_overload_actions_fired_total\{action="stop_accepting"\}/)).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
