/**
 * Graceful drain and hot reload against a real `waypost proxy` process: SIGTERM stops accepting, answers what is in
 * flight, closes idle connections and exits 0 within --drain-timeout; rewriting the config while a client connects
 * in a tight loop never refuses a connection on the listener that stays.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HOST, OpsFixture, closedWithin, freePorts, report, servicesYaml, sleep, tcpConnect, until } from '../limits/helpers.js';

let fx: OpsFixture | undefined;
afterEach(async () => {
  await fx?.stop();
  fx = undefined;
});

async function startWith(args: string[], versions: Array<'v1' | 'v2'> = ['v1']): Promise<{ fx: OpsFixture; port: number; address: string }> {
  const [port] = await freePorts(1);
  const f = new OpsFixture();
  fx = f;
  await f.start({
    versions,
    args,
    config: (ps) => servicesYaml([{ listenPort: port!, endpoints: ps.map((p) => ({ port: p.port, version: p.version })) }]),
  });
  return { fx: f, port: port!, address: `127.0.0.1:${port}` };
}

describe('SIGTERM drain', () => {
  it('stops accepting, answers the request in flight, closes the idle connection, and exits 0 before --drain-timeout', async () => {
    const { fx, port, address } = await startWith(['--drain-timeout', '20s']);
    const provider = fx.providers[0]!;
    const busy = await fx.connect(address);
    const idle = await fx.connect(address);
    expect((await fx.call(idle, 'sayHello', ['warm'])).status).toBe(20);
    const before = provider.requests.length;
    const slow = fx.call(busy, 'slow', [{ $class: 'int', $: 2000 }]);
    await until(() => provider.requests.length > before, 10_000, () => 'the slow call reached the provider');
    const t0 = Date.now();
    fx.proxy.child.kill('SIGTERM');
    // The idle connection is closed at once, long before the slow answer is due.
    expect(await closedWithin(idle, 1500)).toBe(true);
    const idleClosedAt = Date.now() - t0;
    // New connections are refused once the listener is closed.
    await until(async () => (await tcpConnect(port, 1000)) === 'ECONNREFUSED', 5000, () => 'connections refused');
    const r = await slow;
    const answeredAt = Date.now() - t0;
    expect(r.status).toBe(20);
    expect(String(r.value)).toMatch(/slept 2000ms/);
    const code = await fx.proxy.exited;
    const exitedAt = Date.now() - t0;
    report(`drain: idle connection closed after ${idleClosedAt} ms, in-flight call answered after ${answeredAt} ms, exit ${code} after ${exitedAt} ms (--drain-timeout 20s)`);
    expect(code).toBe(0);
    expect(exitedAt).toBeLessThan(20_000);
    expect(fx.proxy.output()).toMatch(/drained: every connection closed/);
  });

  it('past --drain-timeout closes what is left and exits 0', async () => {
    const { fx, address } = await startWith(['--drain-timeout', '1s']);
    const provider = fx.providers[0]!;
    const busy = await fx.connect(address);
    const before = provider.requests.length;
    const slow = fx.call(busy, 'slow', [{ $class: 'int', $: 15_000 }], undefined, 30_000);
    await until(() => provider.requests.length > before, 10_000, () => 'the slow call reached the provider');
    const t0 = Date.now();
    fx.proxy.child.kill('SIGTERM');
    await expect(slow).rejects.toThrow(/closed/);
    const code = await fx.proxy.exited;
    const exitedAt = Date.now() - t0;
    report(`drain timeout 1s with a 15 s call in flight: exit ${code} after ${exitedAt} ms`);
    expect(code).toBe(0);
    expect(exitedAt).toBeGreaterThanOrEqual(900);
    expect(exitedAt).toBeLessThan(14_000);
    expect(fx.proxy.output()).toMatch(/drain timeout reached, closing the connections left.*connections=1/);
  });
});

describe('--workers', () => {
  it('every worker gets the flags (access log, drain timeout): a call in flight is answered and logged, then exit 0', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-workers-'));
    const file = path.join(dir, 'access.log');
    try {
      const { fx, address } = await startWith(['--workers', '2', '--access-log', file, '--drain-timeout', '20s']);
      const provider = fx.providers[0]!;
      const c = await fx.connect(address);
      const before = provider.requests.length;
      const slow = c.call({ id: 4242, method: 'slow', args: [{ $class: 'int', $: 1500 }], timeoutMs: 20_000 });
      await until(() => provider.requests.length > before, 10_000, () => 'the slow call reached the provider');
      const t0 = Date.now();
      fx.proxy.child.kill('SIGTERM');
      expect((await slow).status).toBe(20);
      expect(await fx.proxy.exited).toBe(0);
      report(`--workers 2: SIGTERM with a 1.5 s call in flight: answered, exit 0 after ${Date.now() - t0} ms`);
      const lines = existsSync(file) ? readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { request_id: string; outcome: string }) : [];
      expect(lines.find((l) => l.request_id === '4242')?.outcome).toBe('success');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('hot reload', () => {
  it('never refuses a connection on an unchanged listener while listeners and routes change', async () => {
    const { fx, port, address } = await startWith([], ['v1', 'v2']);
    const [v1, v2] = fx.providers;
    const [otherPort] = await freePorts(1);
    const routeTo = (subset: string): Record<string, unknown> => ({ routes: [{ name: `to-${subset}`, route: [{ destination: { host: HOST, subset } }] }] });
    const main = (subset: string) => ({ listenPort: port, endpoints: [{ port: v1!.port, version: 'v1' }, { port: v2!.port, version: 'v2' }], metaRouter: routeTo(subset) });
    const other = { host: 'other.waypost.test', listenPort: otherPort!, endpoints: [{ port: v1!.port, version: 'v1' }] };

    let stop = false;
    const outcomes = new Map<string, number>();
    const connectLoop = (async () => {
      while (!stop) {
        const r = await tcpConnect(port, 3000);
        outcomes.set(r, (outcomes.get(r) ?? 0) + 1);
      }
    })();
    let calls = 0;
    const failures: string[] = [];
    const callLoop = (async () => {
      const c = await fx.connect(address);
      while (!stop) {
        const r = await fx.call(c, 'sayHello', ['reload']);
        calls++;
        if (r.status !== 20) failures.push(`status ${r.status} ${r.error?.message ?? ''}`);
      }
    })();
    const versions: string[] = [];
    for (let i = 0; i < 6; i++) {
      const subset = i % 2 === 0 ? 'v2' : 'v1';
      await fx.apply(servicesYaml(i % 2 === 0 ? [main(subset), other] : [main(subset)]));
      versions.push(subset);
      // Each config takes effect: a fresh call lands on the subset it routes to.
      const c = await fx.connect(address);
      expect(String((await fx.call(c, 'whoami')).value)).toMatch(new RegExp(`^${subset}@`));
      c.destroy();
      expect(await tcpConnect(otherPort!, 1000)).toBe(i % 2 === 0 ? 'ok' : 'ECONNREFUSED');
      await sleep(200);
    }
    stop = true;
    await connectLoop;
    await callLoop;
    const summary = [...outcomes].map(([k, v]) => `${k}=${v}`).join(' ');
    report(`hot reload x6 (listener added/removed, route switched): connects ${summary}; ${calls} calls on one open connection, ${failures.length} failed`);
    expect([...outcomes.keys()]).toEqual(['ok']);
    expect(outcomes.get('ok')!).toBeGreaterThan(50);
    expect(failures).toEqual([]);
  });
});
