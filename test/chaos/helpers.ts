/**
 * Helpers for the chaos and soak suites: `waypost proxy --config DIR` as a child process on a directory these
 * helpers write (so a crash is seen as an exit), Dubbo providers as child processes (so they can be SIGKILLed),
 * misbehaving raw TCP backends (silent, half a response then a reset), a Dubbo load of N concurrent connections that
 * records what every call got back, and the proxy's RSS read from /proc.
 *
 * The load never lets a call wait forever: each call carries a client deadline, and a call that reaches it is
 * recorded as `no answer` — the one outcome no chaos scenario allows.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { freePorts, httpGet, projectRoot, sleep, spawnProxy, waitReady, type ProxyProcess } from '../../examples/dubbo/harness.js';
import { RawDubboConnection, type RawResult } from '../../examples/dubbo/raw-client.js';
import { FrameParser, encodeOkResponse, type RawFrame } from '../../examples/dubbo/wire.js';
import { configVersion, metricSum } from '../helpers/admin.js';

export { freePorts, sleep };

export const PORT_NAME = 'tcp-metaprotocol-dubbo';

// ---- config ---------------------------------------------------------------------------------------------------------

export interface DubboServiceSpec {
  /** Also the MetaRouter's and the route's name prefix. */
  name: string;
  /** The listener port (the ServiceEntry port number). */
  listen: number;
  /** Backends: each gets a `version` label (v1, v2, …) in order unless given. */
  endpoints: Array<{ port: number; version?: string }>;
  /** Extra fields of the single route (`timeout`, `retries`, …). */
  route?: Record<string, unknown>;
  /** Route everything to this subset (a subset per version is declared). */
  subset?: string;
}

export function hostOf(name: string): string {
  return `${name}.chaos.waypost.test`;
}

/** ServiceEntry + DestinationRule (a subset per version) + MetaRouter with one route named `<name>`. */
export function dubboService(s: DubboServiceSpec): unknown[] {
  const host = hostOf(s.name);
  const versions = s.endpoints.map((e, i) => e.version ?? `v${i + 1}`);
  return [
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: s.name, namespace: 'default' },
      spec: {
        hosts: [host],
        ports: [{ number: s.listen, name: PORT_NAME, protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: s.endpoints.map((e, i) => ({ address: '127.0.0.1', ports: { [PORT_NAME]: e.port }, labels: { version: versions[i] } })),
      },
    },
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: s.name, namespace: 'default' },
      spec: { host, subsets: [...new Set(versions)].map((v) => ({ name: v, labels: { version: v } })) },
    },
    metaRouter(s.name, s.subset, s.route),
  ];
}

export function metaRouter(name: string, subset?: string, route: Record<string, unknown> = {}): unknown {
  const host = hostOf(name);
  return {
    apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
    kind: 'MetaRouter',
    metadata: { name, namespace: 'default' },
    spec: { hosts: [host], routes: [{ name, route: [{ destination: { host, ...(subset ? { subset } : {}) } }], ...route }] },
  };
}

export function yamlDocs(docs: unknown[]): string {
  return docs.map((d) => YAML.stringify(d)).join('---\n');
}

// ---- the proxy --------------------------------------------------------------------------------------------------------

/** `waypost proxy --config DIR` (the built CLI) as a child process, on a temp directory of YAML files. */
export class ChaosProxy {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-chaos-'));
  proxy!: ProxyProcess;

  /** Writes `files` (name → YAML text), starts the proxy and waits until it is ready. */
  async start(files: Record<string, string>, opts: { logLevel?: string } = {}): Promise<void> {
    for (const [name, text] of Object.entries(files)) this.write(name, text);
    this.proxy = await spawnProxy({ configDir: this.dir, ...(opts.logLevel ? { logLevel: opts.logLevel } : {}) });
    await waitReady(this.proxy);
  }

  get admin(): string {
    return this.proxy.adminAddress;
  }

  get pid(): number {
    return this.proxy.child.pid!;
  }

  /** Whether the proxy process is still running. */
  get alive(): boolean {
    return this.proxy.child.exitCode === null && this.proxy.child.signalCode === null;
  }

  /** Replaces a config file by rename (the watcher never sees it half-written). */
  write(name: string, text: string | Buffer): void {
    const tmp = path.join(this.dir, `.${name}.tmp`);
    writeFileSync(tmp, text);
    renameSync(tmp, path.join(this.dir, name));
  }

  /** Writes a file and waits until the proxy serves a new config version. */
  async apply(name: string, text: string, timeoutMs = 15_000): Promise<void> {
    const before = await this.version();
    this.write(name, text);
    await until(async () => (await this.version()) !== before, `the proxy to apply the new ${name}`, timeoutMs, 25, () => this.proxy.output());
  }

  version(): Promise<string> {
    return configVersion(this.admin);
  }

  metric(pattern: RegExp): Promise<number> {
    return metricSum(this.admin, pattern);
  }

  /** How many Prometheus samples match `pattern` (to check a pattern is not vacuous). */
  async series(pattern: RegExp): Promise<number> {
    const body = (await httpGet(this.admin, '/stats/prometheus')).body;
    return body.split('\n').filter((l) => !l.startsWith('#') && pattern.test(l)).length;
  }

  /** `waypost_requests_total` of one route, by outcome. */
  async outcomes(route: string): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const o of ['success', 'error', 'business_exception', 'local_reply']) {
      out[o] = await this.metric(new RegExp(`^waypost_requests_total\\{(?=[^}]*route="${route}")(?=[^}]*outcome="${o}")`));
    }
    return out;
  }

  async stop(): Promise<void> {
    await this.proxy?.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Polls `fn` until it returns something truthy; throws `what` (and `context()`) after `timeoutMs`. */
export async function until<T>(
  fn: () => T | Promise<T>,
  what: string,
  timeoutMs = 10_000,
  everyMs = 25,
  context?: () => string,
): Promise<Exclude<NonNullable<T>, false>> {
  const start = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as Exclude<NonNullable<T>, false>;
    } catch (err) {
      last = err;
    }
    if (Date.now() - start > timeoutMs) {
      const ctx = context ? `\n--- context:\n${context().split('\n').slice(-30).join('\n')}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}${ctx}`);
    }
    await sleep(everyMs);
  }
}

// ---- backends ---------------------------------------------------------------------------------------------------------

/** A Dubbo provider (examples/dubbo/provider.ts, built) in its own process, so that it can be SIGKILLed. */
export interface ProviderProcess {
  readonly port: number;
  readonly version: string;
  child: ChildProcess;
  /** SIGKILL, and wait until the process is gone. */
  kill(): Promise<void>;
  /** Starts it again on the same port (after kill()). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function spawnProvider(version: 'v1' | 'v2', port?: number): Promise<ProviderProcess> {
  const script = path.join(projectRoot(), 'dist', 'examples', 'dubbo', 'provider.js');
  const p = port ?? (await freePorts(1))[0]!;
  const launch = async (): Promise<ChildProcess> => {
    const child = spawn(process.execPath, [script, '--port', String(p), '--version', version, '--quiet'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    process.once('exit', () => child.kill('SIGKILL'));
    // The port may still be held for a moment by the previous process: retry the launch until it listens.
    await until(() => {
      if (child.exitCode !== null) throw new Error(`provider exited (${child.exitCode}): ${out}`);
      return out.includes('listening on');
    }, `provider ${version} to listen on ${p}`, 10_000, 20);
    return child;
  };
  const gone = (c: ChildProcess): Promise<void> =>
    c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', () => r()));
  const proc: ProviderProcess = {
    port: p,
    version,
    child: await launch(),
    async kill() {
      const done = gone(proc.child);
      proc.child.kill('SIGKILL');
      await done;
    },
    async restart() {
      await until(async () => {
        try {
          proc.child = await launch();
          return true;
        } catch {
          return false;
        }
      }, `provider ${version} to restart on ${p}`, 15_000, 100);
    },
    async stop() {
      await proc.kill();
    },
  };
  return proc;
}

/** A raw TCP server for misbehaving backends; `onConnection` gets each accepted socket. */
export interface RawServer {
  readonly port: number;
  /** Connections accepted so far. */
  accepted(): number;
  /** Connections open now. */
  open(): number;
  close(): Promise<void>;
}

export function startRawServer(onConnection: (s: net.Socket, index: number) => void): Promise<RawServer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
    onConnection(s, accepted++);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        accepted: () => accepted,
        open: () => sockets.size,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}

/** Accepts connections, reads everything, never writes a byte. */
export function startSilentServer(): Promise<RawServer> {
  return startRawServer((s) => s.on('data', () => undefined));
}

/**
 * A backend that answers the first request on each connection with the first `cut(index)` bytes of a real Dubbo
 * response (an OK response to `sayHello`), then ends the connection: with a TCP reset (`rst`) or a plain close.
 */
export function startHalfResponseServer(opts: { cut: (len: number, index: number) => number; rst: boolean }): Promise<RawServer> {
  return startRawServer((s, index) => {
    let done = false;
    const parser = new FrameParser((f: RawFrame) => {
      if (done || !f.isRequest || f.event) return;
      done = true;
      const full = encodeOkResponse(f.id, { kind: 'value', value: `Hello, response from a backend that will reset ${'x'.repeat(200)}` });
      const n = Math.max(1, Math.min(full.length - 1, opts.cut(full.length, index)));
      s.write(full.subarray(0, n), () => {
        // Let the bytes leave before the reset, so the proxy really holds half a frame.
        setTimeout(() => (opts.rst ? s.resetAndDestroy() : s.destroy()), 5);
      });
    });
    s.on('data', (chunk: Buffer) => {
      try {
        parser.push(chunk);
      } catch {
        s.destroy();
      }
    });
  });
}

// ---- load -------------------------------------------------------------------------------------------------------------

export interface CallRecord {
  conn: number;
  sent: number;
  done: number;
  /** The Dubbo status; undefined when no answer came (`error` says why). */
  status?: number;
  /** The provider version that answered (`v1`…) for an OK sayHello. */
  by?: string;
  message?: string;
  /** No answer: the client deadline passed, or the connection closed with the call in flight. */
  error?: string;
}

export interface LoadOptions {
  address: string;
  connections: number;
  /** Calls in flight per connection (default 1: back to back). */
  window?: number;
  /** Client deadline per call (default 10 s): a call not answered by then is recorded as "no answer". */
  callTimeoutMs?: number;
  method?: string;
  args?: (i: number) => unknown[];
  attachments?: Record<string, string>;
  /** Hard bounds, whatever happens. */
  maxMs?: number;
  maxCalls?: number;
  /** Pause between calls on each connection (default 0). */
  pauseMs?: number;
  /** Picks each call's method and arguments (overrides `method`/`args`). */
  pick?: (i: number) => { method: string; args: unknown[] };
  /** Keep every call's record (default true); false keeps only the counts (long soaks). */
  record?: boolean;
}

/** N connections making calls back to back until stop(); every call's outcome is recorded. */
export class DubboLoad {
  readonly calls: CallRecord[] = [];
  readonly conns: RawDubboConnection[] = [];
  /** Calls made, and failed ones by status (`none` for no answer), whether or not records are kept. */
  count = 0;
  readonly failures = new Map<string, number>();
  private stopped = false;
  private loops: Promise<void>[] = [];
  private static nextId = 1;

  private constructor(private readonly o: LoadOptions) {}

  static async start(o: LoadOptions): Promise<DubboLoad> {
    const load = new DubboLoad(o);
    for (let i = 0; i < o.connections; i++) load.conns.push(await RawDubboConnection.connect(o.address));
    const t0 = Date.now();
    const maxMs = o.maxMs ?? 60_000;
    const maxCalls = o.maxCalls ?? 1_000_000;
    const window = o.window ?? 1;
    load.loops = load.conns.flatMap((c, ci) =>
      Array.from({ length: window }, async () => {
        while (!load.stopped && Date.now() - t0 < maxMs && load.count < maxCalls) {
          if (c.isClosed) {
            // A connection closed under us is itself a finding (the proxy should keep it open): record, stop this loop.
            load.add({ conn: ci, sent: Date.now(), done: Date.now(), error: 'connection closed' });
            return;
          }
          load.add(await load.one(c, ci));
          if (o.pauseMs) await sleep(o.pauseMs);
        }
      }),
    );
    return load;
  }

  private add(rec: CallRecord): void {
    this.count++;
    if (rec.status !== 20) {
      const k = rec.status === undefined ? 'none' : String(rec.status);
      this.failures.set(k, (this.failures.get(k) ?? 0) + 1);
    }
    if (this.o.record !== false || rec.status === undefined) this.calls.push(rec);
  }

  private async one(c: RawDubboConnection, ci: number): Promise<CallRecord> {
    const id = DubboLoad.nextId++;
    const rec: CallRecord = { conn: ci, sent: Date.now(), done: 0 };
    const picked = this.o.pick?.(id);
    try {
      const r: RawResult = await c.call({
        id,
        method: picked?.method ?? this.o.method ?? 'sayHello',
        args: picked?.args ?? (this.o.args ? this.o.args(id) : [`c${id}`]),
        ...(this.o.attachments ? { attachments: this.o.attachments } : {}),
        timeoutMs: this.o.callTimeoutMs ?? 10_000,
      });
      rec.status = r.status;
      if (r.status === 20) rec.by = /\b(v\d)@/.exec(String(r.value ?? ''))?.[1];
      else rec.message = String(r.error?.message ?? r.error ?? '');
    } catch (err) {
      rec.error = (err as Error).message;
    }
    rec.done = Date.now();
    return rec;
  }

  async stop(): Promise<CallRecord[]> {
    this.stopped = true;
    await Promise.all(this.loops);
    return this.calls;
  }

  close(): void {
    for (const c of this.conns) c.destroy();
  }
}

export interface Tally {
  sent: number;
  ok: number;
  failed: number;
  /** Failed calls by Dubbo status. */
  byStatus: Record<number, number>;
  /** Calls that got no answer (client deadline or connection closed). */
  noAnswer: number;
  /** A few distinct failure messages, for the report. */
  messages: string[];
}

export function tally(calls: readonly CallRecord[]): Tally {
  const t: Tally = { sent: calls.length, ok: 0, failed: 0, byStatus: {}, noAnswer: 0, messages: [] };
  const seen = new Set<string>();
  for (const c of calls) {
    if (c.status === 20) {
      t.ok++;
      continue;
    }
    t.failed++;
    if (c.status === undefined) t.noAnswer++;
    else t.byStatus[c.status] = (t.byStatus[c.status] ?? 0) + 1;
    const m = (c.status === undefined ? `no answer: ${c.error}` : `${c.status} ${c.message}`)
      .replace(/\d+(\.\d+)?\b/g, 'N')
      .slice(0, 140);
    if (!seen.has(m) && seen.size < 6) {
      seen.add(m);
      t.messages.push(m);
    }
  }
  return t;
}

/** Prints `[chaos] <scenario>: sent N, ok A, failed B (status 70 ×k, 31 ×m)` and the distinct messages. */
export function report(scenario: string, t: Tally, extra = ''): void {
  const parts = Object.entries(t.byStatus).map(([s, n]) => `status ${s} ×${n}`);
  if (t.noAnswer) parts.push(`NO ANSWER ×${t.noAnswer}`);
  const lines = [`[chaos] ${scenario}: sent ${t.sent}, ok ${t.ok}, failed ${t.failed}${parts.length ? ` (${parts.join(', ')})` : ''}${extra ? `; ${extra}` : ''}`];
  for (const m of t.messages) lines.push(`[chaos]   e.g. ${m}`);
  process.stdout.write(lines.join('\n') + '\n');
}

/** One call on a fresh connection (the proxy still accepts and serves). */
export async function freshCall(address: string, method = 'sayHello', args: unknown[] = ['after'], timeoutMs = 5000): Promise<RawResult> {
  const c = await RawDubboConnection.connect(address);
  try {
    return await c.call({ id: 1, method, args, timeoutMs });
  } finally {
    c.destroy();
  }
}

// ---- memory -----------------------------------------------------------------------------------------------------------

/** The resident set size of process `pid` in MiB (`VmRSS` of /proc/<pid>/status). */
export function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Theil–Sen slope of y over x: the median of the pairwise slopes. Unlike least squares it is not pulled by the saw
 * teeth of garbage collection, only by a sustained climb.
 */
export function theilSen(xs: readonly number[], ys: readonly number[]): number {
  const slopes: number[] = [];
  for (let i = 0; i < xs.length; i++) {
    for (let j = i + 1; j < xs.length; j++) if (xs[j] !== xs[i]) slopes.push((ys[j]! - ys[i]!) / (xs[j]! - xs[i]!));
  }
  return slopes.length ? median(slopes) : 0;
}
