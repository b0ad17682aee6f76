/**
 * Dubbo benchmark: the same load directly against one provider, then through the proxy; prints a table
 * (target, req/s, p50, p99, p999, ratio to direct).
 *
 *   node dist/bench/dubbo/run.js [--duration 5] [--warmup 1] [--connections 4] [--inflight 16] [--rate N]
 *                                [--proxy HOST:PORT] [--provider-port 0] [--proxy-log-level LEVEL] [--json FILE]
 *
 * The provider runs in a child process (`dist/examples/dubbo/provider.js --quiet`) so that it does not share an
 * event loop with the load generator. By default the proxy is spawned too, with a generated single-endpoint config
 * (`node dist/src/cli.js proxy --config <tmp dir> --admin 127.0.0.1:<free>`); with `--proxy HOST:PORT` an already
 * running proxy is measured instead — it must route org.apache.dubbo.samples.basic.api.DemoService to the provider,
 * which then listens on `--provider-port` (default 20881 in that case).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  freePorts,
  isMainModule,
  projectRoot,
  renderSingleEndpointConfig,
  spawnProxy,
  waitReady,
  writeTempConfig,
  type ProxyProcess,
} from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { rawCall } from '../../examples/dubbo/raw-client.js';
import { runLoad, type LoadResult } from './load.js';
import { loadFlag, numberFlag } from '../lib/flags.js';

export interface DubboBenchOptions {
  durationSec?: number;
  warmupSec?: number;
  connections?: number;
  inflight?: number;
  rate?: number;
  /** Measure this running proxy instead of spawning one. */
  proxy?: string;
  /** Provider port (default: free port; 20881 when `proxy` is given). */
  providerPort?: number;
  proxyLogLevel?: string;
  /** Run the provider in this process instead of a child (not recommended: it competes with the load generator). */
  inProcessProvider?: boolean;
  log?: (line: string) => void;
}

export interface BenchRow {
  target: string;
  address: string;
  rps: number;
  p50: number;
  p99: number;
  p999: number;
  errors: number;
  /** Throughput relative to the direct row (1 for direct). */
  ratio: number | null;
  /** p99 relative to the direct row. */
  p99Ratio: number | null;
  note?: string;
}

export interface DubboBenchResult {
  scenario: 'dubbo';
  options: Required<Pick<DubboBenchOptions, 'durationSec' | 'warmupSec' | 'connections' | 'inflight'>> & { rate?: number; proxy?: string };
  rows: BenchRow[];
  results: Record<string, LoadResult | { error: string }>;
}

interface ProviderHandle {
  address: string;
  stop(): Promise<void>;
}

async function startProviderChild(port: number, log: (l: string) => void): Promise<ProviderHandle> {
  const script = path.join(projectRoot(), 'dist', 'examples', 'dubbo', 'provider.js');
  if (!existsSync(script)) {
    log(`  (${script} not built; running the provider in-process)`);
    return inProcess(port);
  }
  const child: ChildProcess = spawn(process.execPath, [script, '--port', String(port), '--version', 'v1', '--quiet'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.on('exit', killOnExit);
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`provider did not start within 10s: ${out}`)), 10_000);
    const onData = (c: Buffer): void => {
      out += c.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`provider exited (${code}): ${out.trim()}`));
    });
  });
  return {
    address,
    stop: async () => {
      process.off('exit', killOnExit);
      if (child.exitCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 2000);
      await gone;
      clearTimeout(t);
    },
  };
}

async function inProcess(port: number): Promise<ProviderHandle> {
  const p: Provider = await startProvider({ port, version: 'v1', record: false });
  return { address: p.address, stop: () => p.close() };
}

function row(target: string, r: LoadResult, direct: LoadResult | undefined): BenchRow {
  const errors = r.errors + r.lost + r.connectionErrors.length;
  const out: BenchRow = {
    target,
    address: r.address,
    rps: r.rps,
    p50: r.latencyMs.p50,
    p99: r.latencyMs.p99,
    p999: r.latencyMs.p999,
    errors,
    ratio: direct && direct.rps > 0 ? r.rps / direct.rps : null,
    p99Ratio: direct && direct.latencyMs.p99 > 0 ? r.latencyMs.p99 / direct.latencyMs.p99 : null,
  };
  const notes: string[] = [];
  if (Object.keys(r.statuses).length) notes.push(`statuses ${JSON.stringify(r.statuses)}`);
  if (r.lost) notes.push(`${r.lost} unanswered`);
  if (r.dropped) notes.push(`${r.dropped} not sent (backlog)`);
  if (r.connectionErrors.length) notes.push(r.connectionErrors.slice(0, 2).join('; '));
  if (notes.length) out.note = notes.join(', ');
  return out;
}

export function formatTable(rows: BenchRow[]): string {
  const ms = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(v < 10 ? 2 : 1)} ms` : '-');
  const x = (v: number | null): string => (v === null || !Number.isFinite(v) ? '-' : `${v.toFixed(2)}x`);
  const header = ['target', 'address', 'req/s', 'p50', 'p99', 'p999', 'errors', 'req/s vs direct', 'p99 vs direct'];
  const body = rows.map((r) => [
    r.target,
    r.address,
    Number.isFinite(r.rps) ? Math.round(r.rps).toLocaleString('en-US') : '-',
    ms(r.p50),
    ms(r.p99),
    ms(r.p999),
    String(r.errors),
    x(r.ratio),
    x(r.p99Ratio),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const lines = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
  for (const r of rows) if (r.note) lines.push(`  ${r.target}: ${r.note}`);
  return lines.join('\n');
}

export async function runDubboBench(opts: DubboBenchOptions = {}): Promise<DubboBenchResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const durationSec = opts.durationSec ?? 5;
  const warmupSec = opts.warmupSec ?? 1;
  const connections = opts.connections ?? 4;
  const inflight = opts.inflight ?? 16;
  const load = { durationSec, warmupSec, connections, inflight, ...(opts.rate ? { rate: opts.rate } : {}) };
  const results: DubboBenchResult['results'] = {};
  const rows: BenchRow[] = [];
  let provider: ProviderHandle | undefined;
  let proxy: ProxyProcess | undefined;
  let temp: { remove(): void } | undefined;

  try {
    const [freeProvider, listen] = await freePorts(2);
    const providerPort = opts.providerPort ?? (opts.proxy ? 20881 : freeProvider!);
    provider = opts.inProcessProvider ? await inProcess(providerPort) : await startProviderChild(providerPort, log);
    log(`provider v1 on ${provider.address}`);
    const mode = opts.rate ? `${opts.rate} req/s open loop` : `${connections} connections x ${inflight} in flight`;
    log(`load: ${mode}, ${warmupSec}s warm-up + ${durationSec}s measured per target`);

    // 1. direct
    log(`\n[direct] ${provider.address}`);
    const direct = await runLoad({ address: provider.address, ...load });
    results.direct = direct;
    rows.push(row('direct', direct, direct));
    log(`  ${Math.round(direct.rps)} req/s, p99 ${direct.latencyMs.p99.toFixed(2)} ms`);

    // 2. proxy
    let proxyAddress = opts.proxy;
    if (!proxyAddress) {
      const port = listen!;
      const t = writeTempConfig({ 'bench.yaml': renderSingleEndpointConfig({ listen: port, provider: Number(provider.address.split(':')[1]) }) }, 'waypost-bench-');
      temp = t;
      try {
        proxy = await spawnProxy({ configDir: t.dir, ...(opts.proxyLogLevel ? { logLevel: opts.proxyLogLevel } : {}) });
        log(`\n[proxy] ${proxy.command}`);
        await waitReady(proxy, 15_000);
        proxyAddress = `127.0.0.1:${port}`;
      } catch (e) {
        const msg = (e as Error).message;
        log(`  could not start the proxy: ${msg}`);
        results.proxy = { error: msg };
        rows.push({ target: 'proxy', address: '-', rps: NaN, p50: NaN, p99: NaN, p999: NaN, errors: 0, ratio: null, p99Ratio: null, note: msg.split('\n')[0]! });
      }
    } else {
      log(`\n[proxy] ${proxyAddress} (already running)`);
    }
    if (proxyAddress) {
      // One call first, so that a misrouted proxy is reported as such rather than as a wall of errors.
      const probe = await rawCall({ address: proxyAddress, id: 1, method: 'sayHello', args: ['probe'], timeoutMs: 5000 }).catch(
        (e: Error) => ({ status: -1, error: { className: 'Error', message: e.message } }),
      );
      if (probe.status !== 20) {
        log(`  warning: a probe call through the proxy answered status ${probe.status}: ${probe.error?.message ?? ''}`);
      }
      const viaProxy = await runLoad({ address: proxyAddress, ...load });
      results.proxy = viaProxy;
      rows.push(row('proxy', viaProxy, direct));
      log(`  ${Math.round(viaProxy.rps)} req/s, p99 ${viaProxy.latencyMs.p99.toFixed(2)} ms`);
    }
  } finally {
    await proxy?.stop();
    await provider?.stop();
    temp?.remove();
  }
  log('');
  log(formatTable(rows));
  return {
    scenario: 'dubbo',
    options: { ...load, ...(opts.proxy ? { proxy: opts.proxy } : {}) },
    rows,
    results,
  };
}

// ---- flags -----------------------------------------------------------------------------------------------------

export function parseBenchFlags(argv: string[]): DubboBenchOptions & { json?: string; help?: boolean } {
  const out: DubboBenchOptions & { json?: string; help?: boolean } = {};
  const num = numberFlag;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    if (loadFlag(flag, value, out)) continue;
    switch (flag) {
      case '--proxy':
        out.proxy = value();
        break;
      case '--provider-port':
        out.providerPort = Math.floor(num('provider-port', value()));
        break;
      case '--proxy-log-level':
        out.proxyLogLevel = value();
        break;
      case '--in-process-provider':
        out.inProcessProvider = true;
        break;
      case '--json':
        out.json = value();
        break;
      case '--help':
      case '-h':
        out.help = true;
        break;
      default:
        throw new Error(`unknown flag ${a}`);
    }
  }
  return out;
}

export const BENCH_USAGE = `flags: [--duration 5] [--warmup 1] [--connections 4] [--inflight 16] [--rate REQ_PER_S]
       [--proxy HOST:PORT] [--provider-port N] [--proxy-log-level LEVEL] [--in-process-provider] [--json FILE]`;

async function main(): Promise<void> {
  let flags: ReturnType<typeof parseBenchFlags>;
  try {
    flags = parseBenchFlags(process.argv.slice(2));
  } catch (e) {
    console.error(`${(e as Error).message}\n${BENCH_USAGE}`);
    process.exit(2);
  }
  if (flags.help) {
    console.log(`usage: node dist/bench/dubbo/run.js ${BENCH_USAGE}`);
    return;
  }
  const result = await runDubboBench(flags);
  if (flags.json) writeFileSync(flags.json, JSON.stringify(result, null, 2) + '\n');
  process.exit(result.rows.some((r) => !Number.isFinite(r.rps) || r.rps === 0) ? 1 : 0);
}

if (isMainModule(import.meta.url)) void main();
