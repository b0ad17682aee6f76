/** Rows, tables and the run's context shared by the scenarios. */
import type { EngineResult } from './load.js';
import type { ProcWatch } from './procs.js';

export interface BenchContext {
  quick: boolean;
  /** Measured seconds per target and test. */
  durationSec: number;
  warmupSec: number;
  /** The fixed request rate of the latency tests (req/s). */
  rate: number;
  /** Closed loop: connections × calls in flight on each. */
  connections: number;
  inflight: number;
  /** redis-benchmark -n per test (fixed, as redis-benchmark measures). */
  redisRequests: { p1: number; p16: number; mget: number };
  /** Idle downstream connections opened for the memory test. */
  idleConnections: number;
  thriftClient: 'raw' | 'npm';
  thriftServer: 'raw' | 'npm';
  /** Write CPU profiles of the Waypost processes here (one folder per scenario). */
  profileDir?: string;
  log(line: string): void;
}

export interface Row {
  /** What was run: `GET -P 16 -c 50`, `closed 4x16`, `5000 req/s` … */
  test: string;
  target: string;
  rps: number;
  /** Milliseconds; NaN where the tool does not say. */
  p50: number;
  p99: number;
  p999: number;
  errors: number;
  /** req/s relative to direct in the same test. */
  ratio: number | null;
  /** Latency added to direct's in the same test (ms). */
  addedP50: number | null;
  addedP99: number | null;
  /** The proxy process's CPU seconds (user + system, all its processes) per 100,000 requests. */
  cpuPer100k?: number;
  /** The proxy's highest RSS in one process while under this load, MiB. */
  rssMiB?: number;
  note?: string;
}

export interface ScenarioResult {
  scenario: string;
  description: string;
  options: Record<string, unknown>;
  rows: Row[];
  notes: string[];
  /** Set when the scenario failed (the run then exits non-zero). */
  error?: string;
  /** Extra figures (idle RSS, per-connection memory, profiles …). */
  figures?: Record<string, unknown>;
  profiles?: Array<{ target: string; file: string; top: string }>;
  seconds?: number;
}

export const MiB = 1024;

export function engineRow(test: string, target: string, r: EngineResult, direct: Row | undefined, watch?: ProcWatch): Row {
  const errors = r.errors + r.lost + r.connectionErrors.length;
  const row: Row = {
    test,
    target,
    rps: r.rps,
    p50: r.latencyMs.p50,
    p99: r.latencyMs.p99,
    p999: r.latencyMs.p999,
    errors,
    ratio: null,
    addedP50: null,
    addedP99: null,
  };
  if (watch) {
    const cpu = watch.cpuBetween('start', 'end');
    const answered = r.ok + r.errors;
    if (Number.isFinite(cpu) && answered > 0) row.cpuPer100k = (cpu / answered) * 100_000;
    if (Number.isFinite(watch.maxRssKiB)) row.rssMiB = watch.maxRssKiB / MiB;
  }
  const notes: string[] = [];
  if (Object.keys(r.statuses).length) notes.push(`statuses ${JSON.stringify(r.statuses)}`);
  if (r.lost) notes.push(`${r.lost} unanswered`);
  if (r.dropped) notes.push(`${r.dropped} not sent (backlog)`);
  if (r.connectionErrors.length) notes.push(r.connectionErrors.slice(0, 2).join('; '));
  if (notes.length) row.note = notes.join(', ');
  return compare(row, direct);
}

/** Fills ratio and added latency from the direct row of the same test. */
export function compare(row: Row, direct: Row | undefined): Row {
  if (direct === row || row.target === 'direct') {
    row.ratio = 1;
    row.addedP50 = 0;
    row.addedP99 = 0;
    return row;
  }
  if (!direct) return row;
  if (direct.rps > 0 && Number.isFinite(row.rps)) row.ratio = row.rps / direct.rps;
  if (Number.isFinite(direct.p50) && Number.isFinite(row.p50)) row.addedP50 = row.p50 - direct.p50;
  if (Number.isFinite(direct.p99) && Number.isFinite(row.p99)) row.addedP99 = row.p99 - direct.p99;
  return row;
}

export function errorRow(test: string, target: string, message: string): Row {
  return { test, target, rps: NaN, p50: NaN, p99: NaN, p999: NaN, errors: 0, ratio: null, addedP50: null, addedP99: null, note: message.split('\n')[0]! };
}

const ms = (v: number): string => (Number.isFinite(v) ? `${v.toFixed(v < 10 ? 2 : 1)}` : '-');
const signed = (v: number | null): string => (v === null || !Number.isFinite(v) ? '-' : `${v >= 0 ? '+' : ''}${v.toFixed(2)}`);
const times = (v: number | null): string => (v === null || !Number.isFinite(v) ? '-' : `${v.toFixed(2)}x`);

/** A plain-text table (also valid Markdown when `markdown` is set). */
export function formatRows(rows: Row[], opts: { markdown?: boolean } = {}): string {
  const header = ['test', 'target', 'req/s', 'p50 ms', 'p99 ms', 'p999 ms', 'errors', 'vs direct', '+p50 ms', '+p99 ms', 'CPU s/100k', 'RSS MiB'];
  const body = rows.map((r) => [
    r.test,
    r.target,
    Number.isFinite(r.rps) ? Math.round(r.rps).toLocaleString('en-US') : '-',
    ms(r.p50),
    ms(r.p99),
    ms(r.p999),
    String(r.errors),
    times(r.ratio),
    signed(r.addedP50),
    signed(r.addedP99),
    r.cpuPer100k !== undefined && Number.isFinite(r.cpuPer100k) ? r.cpuPer100k.toFixed(2) : '-',
    r.rssMiB !== undefined && Number.isFinite(r.rssMiB) ? r.rssMiB.toFixed(0) : '-',
  ]);
  return table(header, body, { markdown: opts.markdown, left: 2 }) + notesOf(rows, opts.markdown === true);
}

function notesOf(rows: Row[], markdown: boolean): string {
  const out = rows.filter((r) => r.note).map((r) => `\n${markdown ? '- ' : '  '}${r.test} / ${r.target}: ${r.note}`);
  return out.length && markdown ? `\n${out.join('')}` : out.join('');
}

export function table(header: string[], body: string[][], opts: { markdown?: boolean | undefined; left?: number } = {}): string {
  const left = opts.left ?? 1;
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const cell = (c: string, i: number): string => (i < left ? c.padEnd(widths[i]!) : c.padStart(widths[i]!));
  if (opts.markdown) {
    const line = (cells: string[]): string => `| ${cells.map(cell).join(' | ')} |`;
    const sep = `|${widths.map((w, i) => (i < left ? ` ${'-'.repeat(w)} ` : ` ${'-'.repeat(w - 1)}: `)).join('|')}|`;
    return [line(header), sep, ...body.map(line)].join('\n');
  }
  const line = (cells: string[]): string => cells.map(cell).join('  ');
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}
