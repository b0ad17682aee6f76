/**
 * Frames the proxy holds after reading them — requests kept by a fault delay, oneway calls included — count against
 * the connection's pending limit and the memory budget. Before, oneway calls were not counted at all: 4 clients
 * sending oneway frames to a delayed route took a proxy with a 512 MiB budget to 2 GB. A real proxy process and a
 * real Dubbo provider.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRequest } from '../../examples/dubbo/wire.js';
import { DEMO_INTERFACE } from '../../examples/dubbo/provider.js';
import { HOST, OpsFixture, freePorts, report, servicesYaml, sleep, until } from './helpers.js';

const MiB = 1024 * 1024;
const BUDGET = 64 * MiB;
/** What the process may hold beyond its resident size before the attack and the budget (garbage not yet collected). */
const ALLOWANCE = 96 * MiB;

const fx = new OpsFixture();
let port: number;

beforeAll(async () => {
  [port] = await freePorts(1);
  await fx.start({
    args: ['--memory-budget', String(BUDGET), '--max-pending-per-connection', '100'],
    config: (providers) =>
      servicesYaml([
        {
          listenPort: port!,
          endpoints: [{ port: providers[0]!.port, version: 'v1' }],
          // Every call is held for a minute: the frames stay in the proxy.
          metaRouter: { routes: [{ name: 'held', route: [{ destination: { host: HOST } }], fault: { delay: { fixedDelay: '60s' } } }] },
        },
      ]),
  });
}, 60_000);

afterAll(() => fx.stop());

/** `n` oneway sayHello calls carrying `size` bytes each, on one connection. */
function oneways(n: number, size: number, firstId: number): Buffer {
  const arg = 'x'.repeat(size);
  return Buffer.concat(Array.from({ length: n }, (_, i) => encodeRequest(firstId + i, { path: DEMO_INTERFACE, method: 'sayHello', args: [arg] }, { twoWay: false })));
}

describe('frames held by the proxy', () => {
  it('oneway calls count against --max-pending-per-connection: those over it are dropped, counted', async () => {
    const before = await fx.metric(/^waypost_downstream_requests_rejected_total\{.*reason="pending_limit"/);
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => undefined);
    s.write(oneways(250, 100, 1));
    await until(async () => (await fx.metric(/^waypost_downstream_requests_rejected_total\{.*reason="pending_limit"/)) - before === 150, 15_000, () => 'the 150 over the limit counted');
    expect(await fx.metric(/^waypost_faults_injected_total\{.*type="delay"/)).toBe(100);
    s.destroy();
  });

  it('held frames go against the memory budget: the connections holding the most are shed, memory stays bounded', async () => {
    await sleep(500);
    const rssBefore = fx.rss();
    const shedBefore = await fx.metric(/^waypost_overload_connections_shed_total/);
    // 8 clients x 100 held oneway calls of 256 KiB: 200 MiB, three times the budget.
    const sockets = Array.from({ length: 8 }, (_, c) => {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      s.write(oneways(100, 256 * 1024, 10_000 * (c + 1)));
      return s;
    });
    let worst = 0;
    for (let i = 0; i < 60; i++) {
      worst = Math.max(worst, fx.rss());
      await sleep(50);
    }
    const shed = (await fx.metric(/^waypost_overload_connections_shed_total/)) - shedBefore;
    const closed = sockets.filter((s) => s.destroyed || s.readyState === 'closed').length;
    for (const s of sockets) s.destroy();
    report(`held frames: 8 clients x 100 oneway calls of 256 KiB on a 60 s delay: RSS ${(rssBefore / MiB).toFixed(0)} → at most ${(worst / MiB).toFixed(0)} MiB (budget ${BUDGET / MiB} MiB), ${shed} connections shed, ${closed} closed`);
    expect(shed).toBeGreaterThan(0);
    expect(worst).toBeLessThan(rssBefore + BUDGET + ALLOWANCE);
    // A client of its own is still served.
    const conn = await fx.connect(`127.0.0.1:${port}`);
    expect(conn.isClosed).toBe(false);
  }, 60_000);
});
