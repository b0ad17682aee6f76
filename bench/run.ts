/**
 * `npm run bench` (`node dist/bench/run.js`): every scenario, each target of a scenario measured back to back in
 * this one run, ratios to direct, the machine's description, the targets checklist; writes bench/results.json.
 *
 *   node dist/bench/run.js [--quick] [--only redis,dubbo,thrift,thrift-npm,cost,scale] [--duration 5] [--warmup 1]
 *                          [--rate 5000] [--connections 4] [--inflight 16] [--redis-n 100000]
 *                          [--idle-connections 10000] [--thrift-client raw|npm] [--thrift-server raw|npm]
 *                          [--profile [DIR]] [--proxy-node-args "FLAGS"] [--json FILE] [--no-install]
 *
 * Exits non-zero only when a scenario fails (a process does not start, a probe call gets a wrong answer, a load
 * run gets no answers at all), never because of a figure. `--quick` (CI smoke) runs everything for about a second
 * per target and writes its JSON to the temp dir unless `--json` says where.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMainModule, projectRoot } from '../examples/dubbo/harness.js';
import { killAll } from './lib/procs.js';
import { formatRows, table, type BenchContext, type Row, type ScenarioResult } from './lib/report.js';
import { runCost } from './scenarios/cost.js';
import { runDubbo } from './scenarios/dubbo.js';
import { runRedis } from './scenarios/redis.js';
import { NO_WORKERS, runScale } from './scenarios/scale.js';
import { runThrift } from './scenarios/thrift.js';
import { loadFlag, numberFlag } from './lib/flags.js';

const SCENARIOS = ['redis', 'dubbo', 'thrift', 'thrift-npm', 'cost', 'scale'] as const;
type ScenarioName = (typeof SCENARIOS)[number];
const RUNNERS: Record<ScenarioName, (ctx: BenchContext) => Promise<ScenarioResult>> = {
  redis: runRedis,
  dubbo: runDubbo,
  thrift: (ctx) => runThrift(ctx, 'thrift'),
  'thrift-npm': (ctx) => runThrift(ctx, 'thrift-npm'),
  cost: runCost,
  scale: runScale,
};

export const USAGE = `usage: node dist/bench/run.js [--quick] [--only ${SCENARIOS.join(',')}] [--duration 5] [--warmup 1]
         [--rate 5000] [--connections 4] [--inflight 16] [--redis-n 100000] [--idle-connections 10000]
         [--thrift-client raw|npm] [--thrift-server raw|npm] [--profile [DIR]] [--proxy-node-args "FLAGS"]
         [--json FILE] [--no-install]
       node dist/bench/run.js --render bench/results.json      (the tables of a results file, as Markdown)`;

export interface RunFlags {
  quick: boolean;
  only: ScenarioName[];
  durationSec?: number;
  warmupSec?: number;
  rate?: number;
  connections?: number;
  inflight?: number;
  redisN?: number;
  idleConnections?: number;
  thriftClient?: 'raw' | 'npm';
  thriftServer?: 'raw' | 'npm';
  profile?: string | true;
  json?: string;
  /** Print this results file's tables as Markdown and exit. */
  render?: string;
  /** Node flags for every Waypost process (`--max-semi-space-size=32` …). */
  proxyNodeArgs?: string;
  install: boolean;
  help: boolean;
}

export function parseFlags(argv: string[]): RunFlags {
  const out: RunFlags = { quick: false, only: [...SCENARIOS], install: true, help: false };
  const num = numberFlag;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const inline = a.startsWith('--') && eq > 0 ? a.slice(eq + 1) : undefined;
    const value = (): string | undefined => inline ?? argv[++i];
    if (loadFlag(flag, value, out)) continue;
    switch (flag) {
      case '--quick':
        out.quick = true;
        break;
      case '--only': {
        const list = (value() ?? '').split(',').filter(Boolean);
        for (const s of list) if (!(SCENARIOS as readonly string[]).includes(s)) throw new Error(`unknown scenario ${s} (${SCENARIOS.join(', ')})`);
        out.only = list as ScenarioName[];
        break;
      }
      case '--redis-n':
        out.redisN = Math.max(100, Math.floor(num('redis-n', value())));
        break;
      case '--idle-connections':
        out.idleConnections = Math.max(1, Math.floor(num('idle-connections', value())));
        break;
      case '--thrift-client':
      case '--thrift-server': {
        const v = value();
        if (v !== 'raw' && v !== 'npm') throw new Error(`${flag} takes raw or npm, not ${v}`);
        if (flag === '--thrift-client') out.thriftClient = v;
        else out.thriftServer = v;
        break;
      }
      case '--profile': {
        const next = inline ?? argv[i + 1];
        if (next !== undefined && !next.startsWith('--')) {
          out.profile = path.resolve(next);
          if (inline === undefined) i++;
        } else out.profile = true;
        break;
      }
      case '--json':
        out.json = value();
        break;
      case '--proxy-node-args':
        out.proxyNodeArgs = value() ?? '';
        break;
      case '--render':
        out.render = value();
        break;
      case '--no-install':
        out.install = false;
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

export function contextFrom(flags: RunFlags, log: (l: string) => void): BenchContext {
  const q = flags.quick;
  const redisN = flags.redisN ?? (q ? 10_000 : 100_000);
  let profileDir: string | undefined;
  if (flags.profile === true) profileDir = path.join(os.tmpdir(), `waypost-bench-profiles-${Date.now()}`);
  else if (flags.profile) profileDir = flags.profile;
  return {
    quick: q,
    durationSec: flags.durationSec ?? (q ? 1 : 5),
    warmupSec: flags.warmupSec ?? (q ? 0.3 : 1),
    rate: flags.rate ?? 5000,
    connections: flags.connections ?? 4,
    inflight: flags.inflight ?? 16,
    redisRequests: { p1: redisN, p16: redisN * 5, mget: redisN * 2 },
    idleConnections: flags.idleConnections ?? (q ? 2000 : 10_000),
    thriftClient: flags.thriftClient ?? 'raw',
    thriftServer: flags.thriftServer ?? 'raw',
    ...(profileDir ? { profileDir } : {}),
    log,
  };
}

// ---- the machine ------------------------------------------------------------------------------------------------

export interface Machine {
  cpuModel: string;
  cores: number;
  node: string;
  kernel: string;
  os: string;
  memoryGiB: number;
  loadAverageStart: number[];
  loadAverageEnd?: number[];
  peers: Record<string, string>;
  note: string;
}

function firstLine(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error) return 'not installed';
  return `${r.stdout ?? ''}\n${r.stderr ?? ''}`.split('\n').map((l) => l.trim()).find((l) => l.length > 0) ?? 'unknown';
}

function describeMachine(): Machine {
  let osName = `${os.type()} ${os.release()}`;
  try {
    const m = /^PRETTY_NAME="?([^"\n]+)/m.exec(readFileSync('/etc/os-release', 'utf8'));
    if (m) osName = m[1]!;
  } catch {
    // keep the default
  }
  const bin = (name: string): string => ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].map((d) => `${d}/${name}`).find((p) => existsSync(p)) ?? name;
  const cores = os.cpus().length;
  const load = os.loadavg();
  return {
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    cores,
    node: process.version,
    kernel: `${os.type()} ${os.release()} ${os.arch()}`,
    os: osName,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadAverageStart: load.map((x) => Math.round(x * 100) / 100),
    peers: {
      'redis-server': firstLine(bin('redis-server'), ['--version']),
      haproxy: firstLine(bin('haproxy'), ['-v']),
      nutcracker: firstLine(bin('nutcracker'), ['--version']),
    },
    note: load[0]! > cores * 0.5 ? `busy machine: load average ${load[0]!.toFixed(2)} on ${cores} cores at the start; figures are noisy` : 'quiet at the start',
  };
}

// ---- the checklist --------------------------------------------------------------------------------------------------

export interface Check {
  target: string;
  status: 'met' | 'NOT met' | 'n/a';
  detail: string;
}

function find(s: ScenarioResult | undefined, test: string, target: string): Row | undefined {
  return s?.rows.find((r) => r.test === test && r.target === target);
}

export function checklist(results: Partial<Record<ScenarioName, ScenarioResult>>, ctx: BenchContext): Check[] {
  const out: Check[] = [];
  const fmt = (v: number, d = 2): string => (Number.isFinite(v) ? v.toFixed(d) : '-');
  const verdict = (ok: boolean | undefined): Check['status'] => (ok === undefined ? 'n/a' : ok ? 'met' : 'NOT met');
  const signedMs = (v: number | null): string => (v === null || !Number.isFinite(v) ? '-' : `${v >= 0 ? '+' : ''}${v.toFixed(2)} ms`);

  for (const p of [16, 1]) {
    const parts: string[] = [];
    let ok: boolean | undefined = true;
    for (const cmd of ['SET', 'GET']) {
      const w = find(results.redis, `${cmd} -P ${p}`, 'waypost');
      const n = find(results.redis, `${cmd} -P ${p}`, 'nutcracker');
      if (!w || !n || !(n.rps > 0) || !Number.isFinite(w.rps)) {
        ok = undefined;
        parts.push(`${cmd}: not measured`);
        continue;
      }
      const r = w.rps / n.rps;
      if (ok !== undefined) ok = ok && r >= 0.8;
      parts.push(`${cmd} ${Math.round(w.rps)}/${Math.round(n.rps)} = ${fmt(r)}x`);
    }
    out.push({ target: `Redis -P ${p} throughput >= 0.8 x nutcracker`, status: verdict(ok), detail: parts.join(', ') });
  }
  const rateTest = `${ctx.rate} req/s`;
  const closedTest = `closed ${ctx.connections}x${ctx.inflight}`;
  for (const s of ['dubbo', 'thrift'] as const) {
    const name = s === 'dubbo' ? 'Dubbo' : 'Thrift';
    const w = find(results[s], rateTest, 'waypost');
    const d = find(results[s], rateTest, 'direct');
    const added = w?.addedP99 ?? null;
    out.push({
      target: `${name} at ${ctx.rate} req/s: added p99 <= 1 ms`,
      status: verdict(w && d && added !== null && Number.isFinite(added) && w.errors === 0 ? added <= 1 : w && d && w.errors > 0 ? false : undefined),
      detail:
        w && d
          ? `p99 ${fmt(w.p99)} ms vs direct ${fmt(d.p99)} ms: ${signedMs(added)}${w.errors ? `, ${w.errors} errors` : ''} (haproxy ${signedMs(find(results[s], rateTest, 'haproxy')?.addedP99 ?? null)})`
          : 'not measured',
    });
  }
  const closedRow = (s: 'dubbo' | 'thrift' | 'thrift-npm'): string | undefined => {
    const w = find(results[s], closedTest, 'waypost');
    const d = find(results[s], closedTest, 'direct');
    if (!w || !d) return undefined;
    return `${Math.round(w.rps)} vs ${Math.round(d.rps)} req/s = ${fmt(w.ratio ?? NaN)}x (haproxy ${fmt(find(results[s], closedTest, 'haproxy')?.ratio ?? NaN)}x)`;
  };
  for (const s of ['dubbo', 'thrift'] as const) {
    const name = s === 'dubbo' ? 'Dubbo' : 'Thrift';
    // Thrift is judged against a real Thrift server (npm's processor) when that scenario ran; the raw bench server,
    // faster than any real one, is shown beside it.
    const judged = s === 'thrift' && results['thrift-npm'] ? 'thrift-npm' : s;
    const w = find(results[judged], closedTest, 'waypost');
    const ratio = w?.ratio ?? null;
    const parts: string[] = [];
    const main = closedRow(judged);
    if (main) parts.push(`${judged === 'thrift-npm' ? 'npm server: ' : ''}${main}, ${closedTest}`);
    if (judged === 'thrift-npm' && closedRow('thrift')) parts.push(`raw server: ${closedRow('thrift')}`);
    out.push({
      target: `${name} max throughput through one worker >= 0.5 x direct`,
      status: verdict(ratio === null || !Number.isFinite(ratio) ? undefined : ratio >= 0.5),
      detail: parts.length ? parts.join('; ') : 'not measured',
    });
  }
  const perConn = results.cost?.figures?.kibPerIdleConnection as number | undefined;
  out.push({
    target: '<= 10 KiB per idle downstream connection',
    status: verdict(perConn === undefined || !Number.isFinite(perConn) ? undefined : perConn <= 10),
    detail:
      perConn === undefined
        ? 'not measured'
        : `${fmt(perConn)} KiB (${results.cost?.figures?.connections} connections; ${fmt(results.cost?.figures?.kibPerConnectionAfterOneCall as number)} KiB after one call each)`,
  });
  const waypostRows = (['redis', 'dubbo', 'thrift', 'thrift-npm', 'scale'] as const).flatMap((s) => (results[s]?.rows ?? []).filter((r) => r.target.startsWith('waypost') && r.rssMiB !== undefined));
  const maxRss = waypostRows.reduce((m, r) => Math.max(m, r.rssMiB!), -Infinity);
  const worst = waypostRows.find((r) => r.rssMiB === maxRss);
  out.push({
    target: 'RSS under load <= 150 MiB per worker',
    status: verdict(waypostRows.length ? maxRss <= 150 : undefined),
    detail: worst ? `highest ${fmt(maxRss, 0)} MiB (${worst.test}, ${worst.target})` : 'not measured',
  });
  return out;
}

// ---- the run ------------------------------------------------------------------------------------------------------

export interface BenchReport {
  generatedAt: string;
  command: string;
  quick: boolean;
  machine: Machine;
  options: Omit<BenchContext, 'log'> & { proxyNodeArgs?: string };
  scenarios: Partial<Record<ScenarioName, ScenarioResult>>;
  checklist: Check[];
  failed: string[];
  seconds: number;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`${what} did not finish within ${ms / 1000}s`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

/** A scenario failed when it threw, or when a row (other than the --workers placeholder) got no answers. */
function failure(s: ScenarioResult): string | undefined {
  if (s.error) return s.error;
  const bad = s.rows.find((r) => r.note !== NO_WORKERS && !(r.rps > 0));
  return bad ? `${bad.test} / ${bad.target}: no successful requests${bad.note ? ` (${bad.note})` : ''}` : undefined;
}

export function renderReport(report: BenchReport, opts: { markdown?: boolean } = {}): string {
  const md = opts.markdown === true;
  const m = report.machine;
  const lines: string[] = [];
  const item = (text: string): string => (md ? `- ${text}` : `  ${text}`);
  lines.push(`${md ? '- ' : ''}machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB; ${m.os}; ${m.kernel}; node ${m.node}`);
  lines.push(`${md ? '- ' : ''}load average ${m.loadAverageStart.join(' ')} at the start, ${(m.loadAverageEnd ?? []).join(' ')} at the end (${m.note})`);
  lines.push(`${md ? '- ' : ''}peers: ${Object.entries(m.peers).map(([k, v]) => `${k}: ${v}`).join('; ')}`);
  lines.push(`${md ? '- ' : ''}command: ${md ? '`' : ''}${report.command}${md ? '`' : ''}${report.options.proxyNodeArgs ? ` (proxy node args: ${report.options.proxyNodeArgs})` : ''}`);
  for (const [name, s] of Object.entries(report.scenarios)) {
    lines.push('');
    lines.push(`${md ? '####' : '=='} ${name}: ${s.description}${s.seconds !== undefined ? ` (${s.seconds.toFixed(0)} s)` : ''}`);
    if (md) lines.push('');
    if (s.error) lines.push(`ERROR: ${s.error}`);
    if (s.rows.length) lines.push(formatRows(s.rows, opts));
    const extras: string[] = [];
    for (const [k, v] of Object.entries(s.figures ?? {})) extras.push(item(`${k}: ${typeof v === 'number' ? (Number.isInteger(v) ? v : v.toFixed(2)) : String(v)}`));
    for (const n of s.notes) extras.push(item(`note: ${n}`));
    if (extras.length) {
      if (md && s.rows.length) lines.push('');
      lines.push(...extras);
    }
  }
  lines.push('');
  lines.push(md ? '#### targets\n' : '== targets');
  lines.push(table(['target', 'status', 'measured'], report.checklist.map((c) => [c.target, c.status, c.detail]), { markdown: md, left: 3 }));
  return lines.join('\n');
}

export async function runAll(argv: string[], log: (l: string) => void = (l) => console.log(l)): Promise<BenchReport> {
  const flags = parseFlags(argv);
  const ctx = contextFrom(flags, log);
  if (flags.proxyNodeArgs !== undefined) process.env.WAYPOST_BENCH_NODE_ARGS = flags.proxyNodeArgs;
  const started = Date.now();
  if (flags.install) {
    try {
      execFileSync('bash', [path.join(projectRoot(), 'scripts', 'install-peers.sh')], { stdio: 'inherit', timeout: 600_000 });
    } catch (e) {
      log(`warning: scripts/install-peers.sh failed (${(e as Error).message.split('\n')[0]}); scenarios needing a missing peer will fail`);
    }
  }
  if (ctx.profileDir) mkdirSync(ctx.profileDir, { recursive: true });
  const machine = describeMachine();
  log(`machine: ${machine.cpuModel}, ${machine.cores} cores, node ${machine.node}, ${machine.kernel}; ${machine.note}`);
  const scenarios: BenchReport['scenarios'] = {};
  const failed: string[] = [];
  const budget = ctx.quick ? 90_000 : 900_000;
  for (const name of flags.only) {
    log(`\n== scenario: ${name} ==`);
    const t0 = Date.now();
    let result: ScenarioResult;
    try {
      result = await withTimeout(RUNNERS[name](ctx), budget, `scenario ${name}`);
    } catch (e) {
      const err = e as Error;
      log(`scenario ${name} failed: ${err.message}`);
      result = { scenario: name, description: 'failed', options: {}, rows: [], notes: [], error: err.message.split('\n').slice(0, 8).join('\n') };
      killAll(); // whatever the scenario left running
    }
    result.seconds = (Date.now() - t0) / 1000;
    const why = failure(result);
    if (why) failed.push(`${name}: ${why}`);
    scenarios[name] = result;
    if (result.rows.length) log(formatRows(result.rows));
    for (const p of result.profiles ?? []) log(`profile ${p.target} (${p.file}):\n${p.top}`);
  }
  machine.loadAverageEnd = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const { log: _log, ...options } = ctx;
  void _log;
  return {
    generatedAt: new Date().toISOString(),
    command: ['node', 'dist/bench/run.js', ...argv].join(' '),
    quick: ctx.quick,
    machine,
    options: { ...options, ...(process.env.WAYPOST_BENCH_NODE_ARGS ? { proxyNodeArgs: process.env.WAYPOST_BENCH_NODE_ARGS } : {}) },
    scenarios,
    checklist: checklist(scenarios, ctx),
    failed,
    seconds: (Date.now() - started) / 1000,
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let flags: RunFlags;
  try {
    flags = parseFlags(argv);
  } catch (e) {
    console.error(`${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (flags.help) {
    console.log(USAGE);
    return;
  }
  if (flags.render) {
    // Re-renders a results file (the README's tables): node dist/bench/run.js --render bench/results.json
    const saved = JSON.parse(readFileSync(flags.render, 'utf8')) as BenchReport;
    console.log(renderReport(saved, { markdown: true }));
    return;
  }
  let report: BenchReport;
  try {
    report = await runAll(argv);
  } catch (e) {
    console.error(`bench failed: ${(e as Error).stack ?? String(e)}`);
    killAll();
    process.exit(1);
  }
  killAll();
  console.log('\n' + renderReport(report));
  const file = flags.json
    ? path.resolve(flags.json)
    : report.quick
      ? path.join(os.tmpdir(), 'waypost-bench-quick.json')
      : path.join(projectRoot(), 'bench', 'results.json');
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  const shown = path.relative(process.cwd(), file);
  console.log(`\nwrote ${shown && !shown.startsWith('..') ? shown : file} (${report.seconds.toFixed(0)} s)`);
  if (report.failed.length) {
    console.error(`\nfailed scenarios:\n  ${report.failed.join('\n  ')}`);
    process.exit(1);
  }
  process.exit(0);
}

if (isMainModule(import.meta.url)) void main();
