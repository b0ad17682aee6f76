/**
 * Child processes of the bench (servers, proxies, load tools) and what /proc says about them.
 *
 * Every child is spawned through `startChild`, which records it: `killAll()` (called by the scenarios' `finally`,
 * on `exit`, and on SIGINT/SIGTERM) SIGKILLs whatever is still alive, so no run leaves a server behind, also when a
 * scenario throws or times out. Only the bench's own children are ever signalled, by pid.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sleep } from '../../examples/dubbo/harness.js';

export { sleep };

const live = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let hooksInstalled = false;

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    killAll();
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(130);
    });
  }
}

/** A fresh temp dir, removed by `remove()` or, failing that, when the bench exits. */
export function tempDir(prefix: string): { dir: string; remove(): void } {
  installHooks();
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return {
    dir,
    remove: () => {
      tempDirs.delete(dir);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** SIGKILLs every child still alive (their own children too, for the process groups we made). */
export function killAll(): void {
  for (const c of live) killHard(c);
  live.clear();
}

function killHard(c: ChildProcess, evenIfExited = false): void {
  if (c.pid === undefined) return;
  if (!evenIfExited && (c.exitCode !== null || c.signalCode !== null)) return;
  try {
    process.kill(-c.pid, 'SIGKILL'); // its process group (spawned detached)
  } catch {
    // not a group leader, or gone
  }
  try {
    c.kill('SIGKILL');
  } catch {
    // gone
  }
}

export interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  /** The command line, for messages. */
  readonly command: string;
  /** The last lines of its stdout and stderr. */
  output(): string;
  /** Resolves with the exit code or signal when it is gone. */
  readonly exited: Promise<number | string | null>;
  isAlive(): boolean;
  /** Waits until `pattern` appears in its output (rejects on exit or timeout). */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
  /** `signal` (default SIGTERM), then SIGKILL after `graceMs`. */
  stop(graceMs?: number, signal?: NodeJS.Signals): Promise<void>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Keep this many lines of output (default 200). */
  keepLines?: number;
}

/** Spawns `cmd args` in a process group of its own, recorded for `killAll`. */
export function startChild(name: string, cmd: string, args: string[], opts: StartOptions = {}): Child {
  installHooks();
  const proc = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group: killAll reaches what it forks (cluster workers)
    env: opts.env ?? process.env,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
  live.add(proc);
  const keep = opts.keepLines ?? 200;
  const lines: string[] = [];
  let text = '';
  const waiters = new Set<() => void>();
  const collect = (chunk: Buffer): void => {
    const s = chunk.toString('utf8');
    text = (text + s).slice(-16_384);
    lines.push(...s.split('\n').filter((l) => l.length > 0));
    if (lines.length > keep) lines.splice(0, lines.length - keep);
    for (const w of waiters) w();
  };
  proc.stdout?.on('data', collect);
  proc.stderr?.on('data', collect);
  let exitValue: number | string | null | undefined;
  const exited = new Promise<number | string | null>((resolve) => {
    proc.once('exit', (code, signal) => {
      live.delete(proc);
      exitValue = code ?? signal;
      for (const w of waiters) w();
      resolve(exitValue);
    });
    proc.once('error', (e) => {
      live.delete(proc);
      lines.push(`spawn error: ${e.message}`);
      exitValue = null;
      for (const w of waiters) w();
      resolve(null);
    });
  });
  const command = [cmd, ...args].join(' ');
  const child: Child = {
    name,
    proc,
    pid: proc.pid ?? -1,
    command,
    output: () => lines.join('\n'),
    exited,
    isAlive: () => exitValue === undefined && proc.exitCode === null && proc.signalCode === null,
    waitFor(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = pattern.exec(text);
          if (m) return done(() => resolve(m));
          if (exitValue !== undefined) return done(() => reject(new Error(`${name} exited (${exitValue}) before printing ${pattern}: ${tail(child.output())}`)));
        };
        const t = setTimeout(() => done(() => reject(new Error(`${name} did not print ${pattern} within ${timeoutMs / 1000}s: ${tail(child.output())}`))), timeoutMs);
        const done = (f: () => void): void => {
          clearTimeout(t);
          waiters.delete(check);
          f();
        };
        waiters.add(check);
        check();
      });
    },
    async stop(graceMs = 3000, signal: NodeJS.Signals = 'SIGTERM') {
      if (!child.isAlive()) return;
      try {
        proc.kill(signal);
      } catch {
        // gone
      }
      const t = setTimeout(() => killHard(proc), graceMs);
      await exited;
      clearTimeout(t);
      killHard(proc, true); // anything left in its group (workers of a primary that died first)
    },
  };
  if (child.pid < 0) {
    // spawn failed synchronously (ENOENT is reported by 'error'); keep the object usable
  }
  return child;
}

function tail(text: string, n = 15): string {
  const t = text.split('\n').slice(-n).join('\n').trim();
  return t ? `\n${t}` : ' (no output)';
}

/** Whether `cmd` is on PATH (or an existing path). */
export function haveCommand(cmd: string): boolean {
  if (cmd.includes('/')) return existsSync(cmd);
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && existsSync(`${dir}/${cmd}`)) return true;
  return ['/usr/sbin', '/sbin', '/usr/bin'].some((d) => existsSync(`${d}/${cmd}`));
}

/** The absolute path of `cmd` (PATH, then the sbin folders Debian puts haproxy and nutcracker in). */
export function which(cmd: string): string {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin']) {
    if (dir && existsSync(`${dir}/${cmd}`)) return `${dir}/${cmd}`;
  }
  throw new Error(`${cmd} is not installed (bash scripts/install-peers.sh installs the bench's peers)`);
}

/** Resolves once host:port accepts a connection; rejects after `timeoutMs` or when `child` exits. */
export async function waitPort(port: number, timeoutMs: number, child?: Child, host = '127.0.0.1'): Promise<void> {
  const start = Date.now();
  for (;;) {
    if (child && !child.isAlive()) throw new Error(`${child.name} exited before listening on ${port}:${tail(child.output())}`);
    if (await accepts(host, port)) return;
    if (Date.now() - start > timeoutMs) {
      throw new Error(`nothing listens on ${host}:${port} after ${timeoutMs / 1000}s${child ? `: ${child.command}${tail(child.output())}` : ''}`);
    }
    await sleep(25);
  }
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (v: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(false), 500);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** Runs a tool to completion (killed after `timeoutMs`), returning its exit code and output. */
export async function runTool(
  name: string,
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | string | null; stdout: string; stderr: string; timedOut: boolean }> {
  installHooks();
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  live.add(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-65_536)));
  let timedOut = false;
  const t = setTimeout(() => {
    timedOut = true;
    killHard(proc);
  }, timeoutMs);
  const code = await new Promise<number | string | null>((resolve) => {
    proc.once('exit', (c, s) => resolve(c ?? s));
    proc.once('error', (e) => {
      stderr += `spawn error: ${e.message}`;
      resolve(null);
    });
  });
  clearTimeout(t);
  live.delete(proc);
  void name;
  return { code, stdout, stderr, timedOut };
}

// ---- /proc -----------------------------------------------------------------------------------------------------

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

interface StatLine {
  ppid: number;
  /** utime + stime, seconds */
  cpu: number;
}

function readStat(pid: number): StatLine | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
    return { ppid: Number(rest[1]), cpu: (Number(rest[11]) + Number(rest[12])) / ticksPerSecond() };
  } catch {
    return undefined;
  }
}

/** `pid` and all its descendants alive now (cluster workers of a proxy primary). */
export function processTree(pid: number): number[] {
  const byParent = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [pid];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const st = readStat(Number(e));
    if (!st) continue;
    const list = byParent.get(st.ppid);
    if (list) list.push(Number(e));
    else byParent.set(st.ppid, [Number(e)]);
  }
  const out: number[] = [];
  const walk = (p: number): void => {
    out.push(p);
    for (const c of byParent.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

/** CPU seconds (user + system) used so far by these processes. */
export function cpuSeconds(pids: readonly number[]): number {
  let sum = 0;
  for (const p of pids) sum += readStat(p)?.cpu ?? 0;
  return sum;
}

/** VmRSS of one process, KiB (NaN when it is gone). */
export function rssKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Open-file limit of a process (soft), from /proc/<pid>/limits. */
export function nofileLimit(pid: number | 'self' = 'self'): { soft: number; hard: number } {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    const n = (v: string | undefined): number => (v === 'unlimited' ? Infinity : Number(v));
    if (m) return { soft: n(m[1]), hard: n(m[2]) };
  } catch {
    // fall through
  }
  return { soft: NaN, hard: NaN };
}

/**
 * Watches a process tree while load runs: CPU seconds between `mark('start')` and `mark('end')`, and the highest
 * RSS seen (sampled every `everyMs`; per process, so that a worker's figure is its own).
 */
export class ProcWatch {
  private timer: NodeJS.Timeout | undefined;
  private pids: number[];
  readonly marks = new Map<string, number>();
  /** Highest RSS seen in any one process of the tree, KiB. */
  maxRssKiB = NaN;
  /** Highest sum of RSS over the tree, KiB. */
  maxTreeRssKiB = NaN;

  constructor(private readonly rootPid: number, private readonly everyMs = 200) {
    this.pids = processTree(rootPid);
  }

  start(): this {
    this.pids = processTree(this.rootPid);
    this.sample();
    this.timer = setInterval(() => this.sample(), this.everyMs);
    this.timer.unref();
    return this;
  }

  private sample(): void {
    let sum = 0;
    for (const p of this.pids) {
      const r = rssKiB(p);
      if (!Number.isFinite(r)) continue;
      sum += r;
      if (!(r <= this.maxRssKiB)) this.maxRssKiB = r;
    }
    if (!(sum <= this.maxTreeRssKiB)) this.maxTreeRssKiB = sum;
  }

  /** Records the tree's CPU seconds now under `name`. */
  mark(name: string): void {
    this.marks.set(name, cpuSeconds(this.pids));
  }

  cpuBetween(a: string, b: string): number {
    const x = this.marks.get(a);
    const y = this.marks.get(b);
    return x === undefined || y === undefined ? NaN : y - x;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.sample();
  }
}
