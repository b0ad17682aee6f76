/**
 * Scale: Dubbo through `waypost proxy --workers 1` and `--workers 2` (node:cluster; the primary serves admin), the
 * closed-loop test of the Dubbo scenario, when this build's CLI lists `--workers`. Otherwise one placeholder row
 * says so (no figures are made up).
 */
import { freePorts, renderSingleEndpointConfig } from '../../examples/dubbo/harness.js';
import { runLoad } from '../dubbo/load.js';
import { ProcWatch, processTree } from '../lib/procs.js';
import { engineRow, errorRow, type BenchContext, type Row, type ScenarioResult } from '../lib/report.js';
import { startWaypost, waypostHasWorkers, type WaypostTarget } from '../lib/targets.js';
import { probeDubbo, startDubboProvider } from './dubbo.js';

export const NO_WORKERS = 'workers: not available in this build';

export async function runScale(ctx: BenchContext): Promise<ScenarioResult> {
  const test = `closed ${ctx.connections}x${ctx.inflight}`;
  const base: ScenarioResult = {
    scenario: 'scale',
    description: 'Dubbo closed loop through waypost --workers 1 and --workers 2',
    options: { connections: ctx.connections, inflight: ctx.inflight, durationSec: ctx.durationSec },
    rows: [],
    notes: [],
  };
  if (!waypostHasWorkers()) {
    base.rows.push({ ...errorRow(test, 'waypost --workers N', NO_WORKERS), note: NO_WORKERS });
    base.notes.push(`${NO_WORKERS}: \`node dist/src/cli.js proxy --help\` does not list --workers; this row is a placeholder.`);
    base.figures = { available: false };
    return base;
  }
  const rows: Row[] = [];
  let provider: Awaited<ReturnType<typeof startDubboProvider>> | undefined;
  const started: WaypostTarget[] = [];
  try {
    provider = await startDubboProvider();
    const providerPort = Number(provider.address.split(':')[1]);
    const load = (address: string, watch?: ProcWatch) =>
      runLoad({
        address,
        connections: ctx.connections,
        inflight: ctx.inflight,
        durationSec: ctx.durationSec,
        warmupSec: ctx.warmupSec,
        onMeasureStart: () => watch?.mark('start'),
        onMeasureEnd: () => watch?.mark('end'),
      });
    ctx.log(`[scale] ${test}: direct, --workers 1, --workers 2`);
    const d = await load(provider.address);
    const direct = engineRow(test, 'direct', d, undefined);
    rows.push(direct);
    for (const workers of [1, 2]) {
      const [listen] = await freePorts(1);
      const label = `waypost --workers ${workers}`;
      const wp = await startWaypost({
        config: { 'bench.yaml': renderSingleEndpointConfig({ listen: listen!, provider: providerPort }) },
        listenPorts: [listen!],
        workers,
        label,
      });
      started.push(wp);
      try {
        await probeDubbo(wp.address);
        const watch = new ProcWatch(wp.child.pid).start();
        const r = await load(wp.address, watch);
        watch.stop();
        const row = engineRow(test, label, r, direct, watch);
        row.note = [row.note, `${processTree(wp.child.pid).length} processes; RSS = highest single process`].filter(Boolean).join('; ');
        rows.push(row);
        ctx.log(`  ${label}: ${Math.round(r.rps)} req/s, p99 ${r.latencyMs.p99.toFixed(2)} ms`);
      } catch (e) {
        rows.push(errorRow(test, label, (e as Error).message));
        throw e;
      } finally {
        await wp.stop();
      }
    }
  } finally {
    for (const wp of started) await wp.stop().catch(() => undefined);
    await provider?.stop().catch(() => undefined);
  }
  return { ...base, rows, figures: { available: true } };
}
