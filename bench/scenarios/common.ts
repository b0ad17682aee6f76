/** Helpers the scenarios share: the request/response scenario (Dubbo, Thrift) and profile summaries. */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { projectRoot } from '../../examples/dubbo/harness.js';
import type { EngineResult } from '../lib/load.js';
import { ProcWatch, rssKiB } from '../lib/procs.js';
import { MiB, engineRow, errorRow, type BenchContext, type Row, type ScenarioResult } from '../lib/report.js';
import { startHaproxy, startWaypost, type Target, type WaypostTarget } from '../lib/targets.js';

/** The top self-time entries of each profile (bench/profile-summary.mjs). */
export function profileSummaries(target: string, files: string[], top = 15): Array<{ target: string; file: string; top: string }> {
  const script = path.join(projectRoot(), 'bench', 'profile-summary.mjs');
  return files.map((file) => {
    let text: string;
    try {
      text = execFileSync(process.execPath, [script, file, String(top)], { encoding: 'utf8', timeout: 60_000, maxBuffer: 16 << 20 });
    } catch (e) {
      text = `profile-summary failed: ${(e as Error).message}`;
    }
    return { target, file, top: text.trimEnd() };
  });
}

export interface LoadHooks {
  onMeasureStart(): void;
  onMeasureEnd(): void;
}

export interface RpcScenarioSpec {
  scenario: string;
  description: string;
  /** Starts the backend server; resolves with its address and a stopper. */
  startBackend(): Promise<{ address: string; pid: number; stop(): Promise<void> }>;
  /** The Waypost config (file → YAML) for a listener on `listen` routing everything to the backend's port. */
  waypostConfig(listen: number, backendPort: number): Record<string, string>;
  /** One real client call through `address`; throws when the answer is wrong. */
  probe(address: string): Promise<void>;
  /** Runs the load generator against `address` (closed loop, or open loop when `rate` is set). */
  load(address: string, opts: { rate?: number }, hooks: LoadHooks): Promise<EngineResult>;
  options: Record<string, unknown>;
  notes: string[];
}

/**
 * direct, haproxy (TCP), Waypost — started once, then measured back to back: the closed-loop test over the three,
 * then the fixed-rate test over the three. The proxies' CPU time over the measured window and their RSS are read
 * from /proc while each runs.
 */
export async function runRpcScenario(ctx: BenchContext, spec: RpcScenarioSpec, freePort: () => Promise<number>): Promise<ScenarioResult> {
  const rows: Row[] = [];
  const figures: Record<string, unknown> = {};
  const stops: Array<() => Promise<void>> = [];
  let waypost: WaypostTarget | undefined;
  try {
    const backend = await spec.startBackend();
    stops.push(backend.stop);
    const backendPort = Number(backend.address.split(':')[1]);
    const haproxy = await startHaproxy(backend.address);
    stops.push(haproxy.stop);
    const listen = await freePort();
    waypost = await startWaypost({
      config: spec.waypostConfig(listen, backendPort),
      listenPorts: [listen],
      ...(ctx.profileDir ? { profileDir: path.join(ctx.profileDir, spec.scenario) } : {}),
    });
    const wp = waypost;
    stops.push(() => wp.stop());
    figures.waypostIdleRssMiB = rssKiB(wp.child.pid) / MiB;
    const direct: Target = { name: 'direct', address: backend.address, stop: async () => undefined };
    const targets: Target[] = [direct, haproxy, wp];
    ctx.log(`backend ${backend.address}; haproxy ${haproxy.address}; waypost ${wp.address}`);
    for (const t of targets) await spec.probe(t.address);

    const tests: Array<{ label: string; rate?: number }> = [
      { label: `closed ${ctx.connections}x${ctx.inflight}` },
      { label: `${ctx.rate} req/s`, rate: ctx.rate },
    ];
    for (const test of tests) {
      // The fixed-rate test measures tail latency, which one stall of the shared machine can move: it runs
      // `rounds` times, the order reversed every other round, and the run with the median p99 is reported.
      const rounds = test.rate && !ctx.quick ? 3 : 1;
      ctx.log(`[${spec.scenario}] ${test.label}, ${ctx.warmupSec}s warm-up + ${ctx.durationSec}s per target${rounds > 1 ? `, ${rounds} rounds` : ''}`);
      const runs = new Map<string, Array<{ r: EngineResult; watch: ProcWatch | undefined }>>();
      for (let round = 0; round < rounds; round++) {
        for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
          const watch = t.child ? new ProcWatch(t.child.pid).start() : undefined;
          let r: EngineResult;
          try {
            r = await spec.load(t.address, test.rate ? { rate: test.rate } : {}, {
              onMeasureStart: () => watch?.mark('start'),
              onMeasureEnd: () => watch?.mark('end'),
            });
          } catch (e) {
            watch?.stop();
            rows.push(errorRow(test.label, t.name, (e as Error).message));
            throw e;
          } finally {
            watch?.stop();
          }
          (runs.get(t.name) ?? runs.set(t.name, []).get(t.name)!).push({ r, watch });
          ctx.log(`  ${t.name}${rounds > 1 ? ` (round ${round + 1})` : ''}: ${Math.round(r.rps)} req/s, p50 ${r.latencyMs.p50.toFixed(2)} ms, p99 ${r.latencyMs.p99.toFixed(2)} ms${r.errors ? `, ${r.errors} errors` : ''}`);
        }
      }
      let directRow: Row | undefined;
      for (const t of targets) {
        const all = runs.get(t.name)!.slice().sort((a, b) => (rounds > 1 ? a.r.latencyMs.p99 - b.r.latencyMs.p99 : 0));
        const { r, watch } = all[Math.floor(all.length / 2)]!;
        const row = engineRow(test.label, t.name, r, directRow, watch);
        if (t.name === 'direct') directRow = row;
        rows.push(row);
      }
    }
    figures.waypostRssAfterMiB = rssKiB(wp.child.pid) / MiB;
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  }
  const result: ScenarioResult = { scenario: spec.scenario, description: spec.description, options: spec.options, rows, notes: spec.notes, figures };
  if (waypost) result.profiles = profileSummaries('waypost', waypost.profiles());
  return result;
}
