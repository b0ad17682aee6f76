/**
 * A request/response load generator on raw sockets, for any protocol whose requests carry an id that the response
 * repeats (Dubbo request ids, Thrift sequence ids). The protocol supplies a request frame for an id and a parser
 * that reports each response's id and whether it succeeded; everything else (connections, closed/open loop,
 * latency, warm-up, drain) is here.
 *
 * Closed loop (default): `connections` × `inflight` calls kept in flight; each answer sends the next call on the
 * same connection. Open loop (`rate`): calls are issued at a fixed total rate, round-robin over the connections,
 * and latency is measured from the time each call was *due* (no coordinated omission). A warm-up period runs first
 * and is not measured. Writes made while handling one chunk of answers leave in one syscall (cork/uncork).
 */
import net from 'node:net';

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface WireProtocol {
  /** A complete request frame carrying `id` (a fresh buffer: it is handed to socket.write). */
  request(id: number): Buffer;
  /** A parser for one connection's responses. */
  parser(onResponse: (id: number, ok: boolean, status: string) => void): { push(chunk: Buffer): void };
}

export interface EngineOptions {
  /** `host:port` of the server or proxy. */
  address: string;
  protocol: WireProtocol;
  connections?: number;
  /** Calls in flight per connection (closed loop). */
  inflight?: number;
  durationSec?: number;
  warmupSec?: number;
  /** Total calls per second (open loop); unset = closed loop. */
  rate?: number;
  /** How long to wait for outstanding calls at the end before counting them as lost (ms). */
  drainMs?: number;
  /** Called when the measured window opens and closes (to read a process's CPU time at those instants). */
  onMeasureStart?: () => void;
  onMeasureEnd?: () => void;
}

export interface EngineResult {
  address: string;
  mode: 'closed' | 'open';
  connections: number;
  inflight: number;
  rate?: number;
  durationSec: number;
  /** Calls answered with success within the measured window. */
  ok: number;
  /** Calls answered with another status, by status. */
  statuses: Record<string, number>;
  errors: number;
  /** Calls still unanswered at the end, or lost with a closed connection. */
  lost: number;
  /** Open loop: calls not sent because a connection had too many outstanding. */
  dropped: number;
  connectionErrors: string[];
  /** Successful calls per second. */
  rps: number;
  /** Milliseconds, successful calls only. */
  latencyMs: LatencySummary;
  /** Calls answered during the whole run, warm-up included. */
  answeredTotal: number;
}

const MAX_OUTSTANDING_PER_CONN = 10_000;

/** Percentile of a sorted array (nearest rank). */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length) - 1;
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank))]!;
}

export class Samples {
  private buf = new Float64Array(1 << 16);
  length = 0;
  push(v: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }
  summary(): LatencySummary {
    const s = this.buf.slice(0, this.length).sort();
    let sum = 0;
    for (let i = 0; i < s.length; i++) sum += s[i]!;
    return {
      p50: percentile(s, 50),
      p90: percentile(s, 90),
      p99: percentile(s, 99),
      p999: percentile(s, 99.9),
      max: s.length ? s[s.length - 1]! : NaN,
      mean: s.length ? sum / s.length : NaN,
    };
  }
}

export function splitHostPort(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1', Number(address.slice(i + 1))];
}

export function connectTo(address: string, timeoutMs = 5000): Promise<net.Socket> {
  const [host, port] = splitHostPort(address);
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to ${address} timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

interface Conn {
  socket: net.Socket;
  nextId: number;
  /** id → start time (ns) */
  pending: Map<number, bigint>;
  alive: boolean;
  corked: boolean;
}

export async function runEngine(opts: EngineOptions): Promise<EngineResult> {
  const connections = Math.max(1, opts.connections ?? 4);
  const inflight = Math.max(1, opts.inflight ?? 16);
  const durationSec = opts.durationSec ?? 5;
  const warmupSec = opts.warmupSec ?? 1;
  const drainMs = opts.drainMs ?? 2000;
  const mode: 'closed' | 'open' = opts.rate && opts.rate > 0 ? 'open' : 'closed';
  const protocol = opts.protocol;

  const samples = new Samples();
  const statuses: Record<string, number> = {};
  const connectionErrors: string[] = [];
  let ok = 0;
  let errors = 0;
  let lost = 0;
  let dropped = 0;
  let answeredTotal = 0;

  const sockets = await Promise.all(Array.from({ length: connections }, () => connectTo(opts.address)));
  const t0 = process.hrtime.bigint();
  const measureStart = t0 + BigInt(Math.round(warmupSec * 1e9));
  const measureEnd = measureStart + BigInt(Math.round(durationSec * 1e9));
  let sending = true;
  let onIdle: (() => void) | null = null;
  const conns: Conn[] = [];

  const markTimers: NodeJS.Timeout[] = [];
  if (opts.onMeasureStart) markTimers.push(setTimeout(opts.onMeasureStart, warmupSec * 1000));
  if (opts.onMeasureEnd) markTimers.push(setTimeout(opts.onMeasureEnd, (warmupSec + durationSec) * 1000));

  const send = (c: Conn, startNs: bigint): void => {
    if (!c.alive) return;
    const id = c.nextId++;
    if (c.nextId > 0x7fff_ffff) c.nextId = 1;
    c.pending.set(id, startNs);
    c.socket.write(protocol.request(id));
  };

  const totalPending = (): number => conns.reduce((n, c) => n + c.pending.size, 0);

  for (const socket of sockets) {
    socket.setNoDelay(true);
    const c: Conn = { socket, nextId: 1, pending: new Map(), alive: true, corked: false };
    conns.push(c);
    const parser = protocol.parser((id, success, status) => {
      const start = c.pending.get(id);
      if (start === undefined) return;
      c.pending.delete(id);
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
      if (mode === 'closed' && sending) {
        if (now < measureEnd) send(c, now);
        else sending = false;
      }
      if (!sending && onIdle && totalPending() === 0) onIdle();
    });
    socket.on('data', (chunk: Buffer) => {
      if (!c.corked) {
        c.corked = true;
        socket.cork();
        process.nextTick(() => {
          c.corked = false;
          socket.uncork();
        });
      }
      try {
        parser.push(chunk);
      } catch (e) {
        connectionErrors.push(`${opts.address}: ${(e as Error).message}`);
        socket.destroy();
      }
    });
    socket.on('error', (e) => connectionErrors.push(`${opts.address}: ${e.message}`));
    socket.on('close', () => {
      c.alive = false;
      for (const start of c.pending.values()) if (start >= measureStart && start < measureEnd) lost++;
      c.pending.clear();
      if (!sending && onIdle && totalPending() === 0) onIdle();
    });
  }

  const runMs = Number(measureEnd - t0) / 1e6;
  if (mode === 'closed') {
    const now = process.hrtime.bigint();
    for (const c of conns) for (let i = 0; i < inflight; i++) send(c, now);
    await new Promise<void>((resolve) => setTimeout(resolve, runMs));
    sending = false;
  } else {
    const rate = opts.rate!;
    const intervalNs = 1e9 / rate;
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
          if (!c.alive || c.pending.size >= MAX_OUTSTANDING_PER_CONN) {
            if (dueAt >= measureStart) dropped++;
            continue;
          }
          send(c, dueAt);
        }
      }, 1);
    });
    sending = false;
  }

  // Drain: wait for outstanding calls (bounded), then count what is left as lost.
  if (totalPending() > 0) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, drainMs);
      onIdle = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }
  for (const t of markTimers) clearTimeout(t);
  for (const c of conns) {
    for (const start of c.pending.values()) if (start >= measureStart && start < measureEnd) lost++;
    c.pending.clear();
    c.alive = false;
    c.socket.destroy();
  }

  return {
    address: opts.address,
    mode,
    connections,
    inflight,
    ...(mode === 'open' ? { rate: opts.rate! } : {}),
    durationSec,
    ok,
    statuses,
    errors,
    lost,
    dropped,
    connectionErrors: [...new Set(connectionErrors)],
    rps: ok / durationSec,
    latencyMs: samples.summary(),
    answeredTotal,
  };
}
