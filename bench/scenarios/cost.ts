/**
 * Cost of idle downstream connections: a fresh Waypost with one Dubbo listener; RSS at idle, then with N idle TCP
 * connections open to the listener (RSS delta / N), then after one call on each, then after they close.
 * (CPU per 100k requests and RSS under load are measured in every other scenario's Waypost rows.)
 */
import type net from 'node:net';
import { freePorts, renderSingleEndpointConfig } from '../../examples/dubbo/harness.js';
import { FrameParser } from '../../examples/dubbo/wire.js';
import { dubboProtocol } from '../dubbo/load.js';
import { connectTo } from '../lib/load.js';
import { nofileLimit, rssKiB, sleep } from '../lib/procs.js';
import type { BenchContext, ScenarioResult } from '../lib/report.js';
import { adminMetric, startWaypost, type WaypostTarget } from '../lib/targets.js';
import { startDubboProvider } from './dubbo.js';

/** RSS sampled `n` times `everyMs` apart; the median (a GC in the middle moves one sample, not the figure). */
async function settledRss(pid: number, n = 5, everyMs = 200): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    xs.push(rssKiB(pid));
    if (i < n - 1) await sleep(everyMs);
  }
  xs.sort((a, b) => a - b);
  return xs[Math.floor(xs.length / 2)]!;
}

async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const start = Date.now();
  while (!(await cond())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
    await sleep(100);
  }
}

export async function runCost(ctx: BenchContext): Promise<ScenarioResult> {
  const notes: string[] = [];
  const figures: Record<string, unknown> = {};
  let wanted = ctx.idleConnections;
  const own = nofileLimit();
  if (own.soft < wanted + 256) {
    const capped = Math.max(100, own.soft - 256);
    notes.push(`the bench's open-file limit is ${own.soft} (ulimit -n): ${capped} connections instead of ${wanted}; raise it with \`ulimit -n ${wanted + 1024}\` before the run`);
    wanted = capped;
  }
  const sockets: net.Socket[] = [];
  let provider: Awaited<ReturnType<typeof startDubboProvider>> | undefined;
  let wp: WaypostTarget | undefined;
  try {
    provider = await startDubboProvider();
    const [listen] = await freePorts(1);
    wp = await startWaypost({
      config: { 'bench.yaml': renderSingleEndpointConfig({ listen: listen!, provider: Number(provider.address.split(':')[1]) }) },
      listenPorts: [listen!],
      nofile: wanted + 1024,
    });
    const w = wp;
    notes.push(`proxy: ${w.nofileNote}`);
    // One call first, so that the upstream connection and the route's state exist before the baseline.
    const warm = await connectTo(w.address);
    await oneCallEach([warm]);
    warm.destroy();
    await sleep(500);
    const base = await settledRss(w.child.pid);
    figures.idleRssMiB = base / 1024;
    const activeBase = await adminMetric(w.adminAddress, 'waypost_downstream_connections_active');

    ctx.log(`[cost] opening ${wanted} idle connections to the Waypost Dubbo listener ${w.address}`);
    const t0 = Date.now();
    const batch = 200;
    for (let i = 0; i < wanted; i += batch) {
      const n = Math.min(batch, wanted - i);
      const opened = await Promise.all(Array.from({ length: n }, () => connectTo(w.address, 10_000)));
      for (const s of opened) s.on('error', () => undefined);
      sockets.push(...opened);
    }
    await waitFor(
      `the proxy to count ${wanted} downstream connections`,
      async () => (await adminMetric(w.adminAddress, 'waypost_downstream_connections_active')) - activeBase >= wanted,
      20_000,
    );
    figures.connectSeconds = (Date.now() - t0) / 1000;
    await sleep(1000);
    const idle = await settledRss(w.child.pid);
    figures.connections = wanted;
    figures.rssWithIdleConnectionsMiB = idle / 1024;
    figures.kibPerIdleConnection = (idle - base) / wanted;
    ctx.log(`  RSS ${(base / 1024).toFixed(1)} MiB → ${(idle / 1024).toFixed(1)} MiB: ${((idle - base) / wanted).toFixed(2)} KiB per idle connection`);

    await oneCallEach(sockets);
    await sleep(1000);
    const used = await settledRss(w.child.pid);
    figures.rssAfterOneCallEachMiB = used / 1024;
    figures.kibPerConnectionAfterOneCall = (used - base) / wanted;
    ctx.log(`  after one call on each: ${(used / 1024).toFixed(1)} MiB: ${((used - base) / wanted).toFixed(2)} KiB per connection`);

    for (const s of sockets.splice(0)) s.destroy();
    await waitFor(
      'the proxy to see the connections close',
      async () => (await adminMetric(w.adminAddress, 'waypost_downstream_connections_active')) <= activeBase,
      20_000,
    ).catch((e: Error) => notes.push(e.message));
    await sleep(1000);
    figures.rssAfterCloseMiB = (await settledRss(w.child.pid)) / 1024;
    notes.push('RSS is read from /proc/<pid>/status (VmRSS) of the proxy, median of 5 samples over 1 s; the delta includes V8 heap growth not yet collected.');
  } finally {
    for (const s of sockets) s.destroy();
    await wp?.stop().catch(() => undefined);
    await provider?.stop().catch(() => undefined);
  }
  return {
    scenario: 'cost',
    description: `memory per idle downstream connection (${wanted} connections to a Waypost Dubbo listener)`,
    options: { connections: wanted },
    rows: [],
    notes,
    figures,
  };
}

/** One sayHello on each socket (all at once), resolving when every answer is in (30 s at most). */
async function oneCallEach(sockets: net.Socket[]): Promise<void> {
  const protocol = dubboProtocol({ name: 'idle' });
  let waiting = sockets.length;
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${waiting} of ${sockets.length} calls unanswered after 30s`)), 30_000);
    for (const s of sockets) {
      const parser = new FrameParser((f) => {
        if (f.event) return;
        s.removeAllListeners('data');
        if (--waiting === 0) {
          clearTimeout(t);
          resolve();
        }
      });
      s.on('data', (d: Buffer) => parser.push(d));
      s.write(protocol.request(1));
    }
  });
}
