/**
 * npm `thrift` (0.24) for the bench: code generated at run time from bench/thrift/bench.thrift by Debian's
 * `thrift` compiler, a client load driver (framed binary, the same closed/open loops as bench/lib/load.ts), and a
 * server (the generated processor).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type net from 'node:net';
import path from 'node:path';
import { projectRoot } from '../../examples/dubbo/harness.js';
import { Samples, splitHostPort, type EngineResult } from '../lib/load.js';
import { tempDir } from '../lib/procs.js';

export const IDL = (): string => path.join(projectRoot(), 'bench', 'thrift', 'bench.thrift');

export interface Generated {
  dir: string;
  cleanup(): void;
}

/** `thrift --gen js:node,es6` of bench.thrift into a temp dir that finds the project's node_modules. */
export function generate(): Generated {
  const thriftBin = ['/usr/bin/thrift', '/usr/local/bin/thrift'].find((p) => existsSync(p)) ?? 'thrift';
  const tmp = tempDir('waypost-bench-thrift-');
  const dir = tmp.dir;
  try {
    // Plain `js:node` output calls thrift.Q, which thrift 0.24 no longer has.
    execFileSync(thriftBin, ['-r', '--gen', 'js:node,es6', '-out', dir, IDL()], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
    symlinkSync(path.join(projectRoot(), 'node_modules'), path.join(dir, 'node_modules'));
    // The generated code is CommonJS: say so, or a `"type": "module"` package.json above TMPDIR would make it ESM.
    writeFileSync(path.join(dir, 'package.json'), '{"type":"commonjs"}\n');
  } catch (e) {
    tmp.remove();
    throw new Error(`thrift code generation failed (is thrift-compiler installed?): ${(e as Error).message}`);
  }
  return { dir, cleanup: () => tmp.remove() };
}

interface NpmConnection {
  on(event: string, f: (e?: Error) => void): void;
  once(event: string, f: (e?: Error) => void): void;
  connected: boolean;
  forceClose: boolean;
  destroy(): void;
}

/** Closes without npm's reconnect attempts (`destroy()` alone makes it retry and log). */
function closeConn(c: NpmConnection): void {
  c.forceClose = true;
  c.destroy();
}
interface ThriftModule {
  createConnection(host: string, port: number, options: object): NpmConnection;
  createClient(service: unknown, connection: NpmConnection): unknown;
  createServer(processor: unknown, handler: object, options: object): net.Server;
  TFramedTransport: unknown;
  TBinaryProtocol: unknown;
}
interface BenchClient {
  hello(name: string): Promise<string>;
}

function load(gen: Generated): { thrift: ThriftModule; Bench: { Client: unknown; Processor: unknown } } {
  // Resolved from the generated code's folder, so that it and the generated code share one `thrift`.
  const req = createRequire(path.join(gen.dir, 'index.js'));
  return { thrift: req('thrift') as ThriftModule, Bench: req('./Bench.js') as { Client: unknown; Processor: unknown } };
}

/** The generated processor on npm's createServer (framed binary); `hello` answers `hello <name>`. */
export async function startNpmServer(gen: Generated, port: number): Promise<net.Server> {
  const { thrift, Bench } = load(gen);
  const handler = {
    hello(name: string): string {
      return `hello ${name}`;
    },
  };
  const server = thrift.createServer(Bench, handler, { transport: thrift.TFramedTransport, protocol: thrift.TBinaryProtocol });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}

/** One `hello` call with the npm client (a probe: the answer proves the path works end to end). */
export async function npmHello(gen: Generated, address: string, name: string, timeoutMs = 5000): Promise<string> {
  const { thrift, Bench } = load(gen);
  const [host, port] = splitHostPort(address);
  const conn = thrift.createConnection(host, port, { transport: thrift.TFramedTransport, protocol: thrift.TBinaryProtocol, max_attempts: 1 });
  const errors: Error[] = [];
  conn.on('error', (e) => errors.push(e!));
  try {
    const client = thrift.createClient(Bench, conn) as BenchClient;
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      t = setTimeout(() => reject(new Error(`no answer from ${address} within ${timeoutMs} ms ${errors.map((e) => e.message).join('; ')}`)), timeoutMs);
    });
    try {
      return await Promise.race([client.hello(name), timeout]);
    } finally {
      clearTimeout(t);
    }
  } finally {
    closeConn(conn);
  }
}

export interface NpmLoadOptions {
  address: string;
  connections: number;
  inflight: number;
  durationSec: number;
  warmupSec: number;
  rate?: number;
  drainMs?: number;
  onMeasureStart?: () => void;
  onMeasureEnd?: () => void;
}

const MAX_OUTSTANDING_PER_CONN = 10_000;

/** The npm client as the load: `connections` clients, each with `inflight` calls in flight, or `rate` calls/s. */
export async function runNpmLoad(gen: Generated, opts: NpmLoadOptions): Promise<EngineResult> {
  const { thrift, Bench } = load(gen);
  const [host, port] = splitHostPort(opts.address);
  const mode: 'closed' | 'open' = opts.rate && opts.rate > 0 ? 'open' : 'closed';
  const conns: Array<{ conn: NpmConnection; client: BenchClient; pending: number; alive: boolean }> = [];
  const connectionErrors: string[] = [];
  for (let i = 0; i < opts.connections; i++) {
    const conn = thrift.createConnection(host, port, { transport: thrift.TFramedTransport, protocol: thrift.TBinaryProtocol, max_attempts: 1 });
    const entry = { conn, client: thrift.createClient(Bench, conn) as BenchClient, pending: 0, alive: true };
    conn.on('error', (e) => connectionErrors.push(`${opts.address}: ${e?.message}`));
    conn.on('close', () => (entry.alive = false));
    conns.push(entry);
  }
  await Promise.all(
    conns.map(
      (c) =>
        new Promise<void>((resolve, reject) => {
          if (c.conn.connected) return resolve();
          const t = setTimeout(() => reject(new Error(`connect to ${opts.address} timed out`)), 5000);
          c.conn.once('connect', () => {
            clearTimeout(t);
            resolve();
          });
          c.conn.once('error', (e) => {
            clearTimeout(t);
            reject(e ?? new Error('connect failed'));
          });
        }),
    ),
  );

  const samples = new Samples();
  const statuses: Record<string, number> = {};
  let ok = 0;
  let errors = 0;
  let lost = 0;
  let dropped = 0;
  let answeredTotal = 0;
  let outstanding = 0;
  let onIdle: (() => void) | null = null;
  const t0 = process.hrtime.bigint();
  const measureStart = t0 + BigInt(Math.round(opts.warmupSec * 1e9));
  const measureEnd = measureStart + BigInt(Math.round(opts.durationSec * 1e9));
  let sending = true;
  const timers: NodeJS.Timeout[] = [];
  if (opts.onMeasureStart) timers.push(setTimeout(opts.onMeasureStart, opts.warmupSec * 1000));
  if (opts.onMeasureEnd) timers.push(setTimeout(opts.onMeasureEnd, (opts.warmupSec + opts.durationSec) * 1000));

  const call = (c: (typeof conns)[number], start: bigint): void => {
    c.pending++;
    outstanding++;
    const settle = (success: boolean, status: string): void => {
      c.pending--;
      outstanding--;
      answeredTotal++;
      const now = process.hrtime.bigint();
      if (start >= measureStart && start < measureEnd) {
        if (success) {
          ok++;
          samples.push(Number(now - start) / 1e6);
        } else {
          errors++;
          statuses[status] = (statuses[status] ?? 0) + 1;
        }
      }
      if (mode === 'closed' && sending && c.alive) {
        if (now < measureEnd) call(c, now);
        else sending = false;
      }
      if (!sending && outstanding === 0 && onIdle) onIdle();
    };
    c.client.hello('bench').then(
      () => settle(true, 'ok'),
      (e: Error) => settle(false, e.name || 'error'),
    );
  };

  const runMs = Number(measureEnd - t0) / 1e6;
  if (mode === 'closed') {
    const now = process.hrtime.bigint();
    for (const c of conns) for (let i = 0; i < opts.inflight; i++) call(c, now);
    await new Promise<void>((r) => setTimeout(r, runMs));
    sending = false;
  } else {
    const intervalNs = 1e9 / opts.rate!;
    let issued = 0;
    let rr = 0;
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const now = process.hrtime.bigint();
        if (now >= measureEnd) {
          clearInterval(tick);
          resolve();
          return;
        }
        const due = Math.floor(Number(now - t0) / intervalNs);
        for (; issued < due; issued++) {
          const c = conns[rr++ % conns.length]!;
          const dueAt = t0 + BigInt(Math.round(issued * intervalNs));
          if (!c.alive || c.pending >= MAX_OUTSTANDING_PER_CONN) {
            if (dueAt >= measureStart) dropped++;
            continue;
          }
          call(c, dueAt);
        }
      }, 1);
    });
    sending = false;
  }
  if (outstanding > 0) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, opts.drainMs ?? 2000);
      onIdle = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
  for (const t of timers) clearTimeout(t);
  // What is still outstanding is lost (counted whole: the npm client keeps no start times we could filter by).
  lost += outstanding;
  for (const c of conns) closeConn(c.conn);
  return {
    address: opts.address,
    mode,
    connections: opts.connections,
    inflight: opts.inflight,
    ...(mode === 'open' ? { rate: opts.rate! } : {}),
    durationSec: opts.durationSec,
    ok,
    statuses,
    errors,
    lost,
    dropped,
    connectionErrors: [...new Set(connectionErrors)],
    rps: ok / opts.durationSec,
    latencyMs: samples.summary(),
    answeredTotal,
  };
}
