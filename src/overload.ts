/**
 * The process-wide memory budget (docs/operations-limits.md, "Memory budget"), modelled on Envoy's overload manager:
 * one resource monitor (bytes held in connection buffers) and actions that fire at fractions of the budget.
 *
 * - Every connection that reads frames charges what it holds (an incomplete frame, bytes read but not decoded) to an
 *   {@link BufferAccount}. Up to the per-connection buffer limit it reads freely; bytes beyond it are a grant from the
 *   budget, given while the budget is below {@link THRESHOLDS}.grant. When the budget cannot grant, the connection
 *   stops being read (backpressure) until bytes are released; a connection left waiting for
 *   {@link STALLED_SHED_MS} while the budget stays full is shed (closed), oldest first.
 * - At `stopAccepting` new connections are accepted and closed at once (Envoy `reject_incoming_connections`).
 * - At `shed` the connections holding the most bytes are closed until the budget is back under `grant` (Envoy
 *   `reset_high_memory_streams`).
 *
 * A second resource is file descriptors: when the process is within {@link fdReserve} of its `ulimit -n`, new
 * connections are closed at once, counted and logged, so that the descriptors left serve upstream connections and
 * the admin API, and the kernel does not drop connections unseen (Node's accept loop closes them silently on EMFILE).
 *
 * Read-side bytes are charged as they arrive (a client controls them and can send fast); bytes the proxy holds
 * elsewhere (answers not yet written, upstream buffers) are bounded by backpressure already and are sampled every
 * {@link SAMPLE_MS} into the same total. With `--workers N` each worker has budget / N.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Counter, Gauge, type Registry } from 'prom-client';
import { log } from './log.js';

/** Fractions of the budget at which each action fires. */
export const THRESHOLDS = { stopAccepting: 0.8, grant: 0.9, shed: 0.95 } as const;
/** A connection paused this long for want of budget, while the budget is still full, is shed. */
export const STALLED_SHED_MS = 1_000;
/** How often the bytes held outside accounts are sampled and stalled waiters looked at. */
export const SAMPLE_MS = 250;
/**
 * Room the budget must have for each waiter it resumes: a resumed connection should get far enough to complete its
 * frame rather than every waiter creeping forward one read at a time, none completing.
 */
export const RESUME_SHARE = 1024 * 1024;

/** Descriptors kept free under `ulimit -n`: 5% of it, at least 16. */
export function fdReserve(limit: number): number {
  return Math.max(16, Math.ceil(limit * 0.05));
}

/** The soft limit on open files (Linux /proc), or Infinity when it cannot be read. */
function readFdLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : Number.POSITIVE_INFINITY;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}

/** Open descriptors of this process (the directory read opens one more), or -1 when they cannot be counted. */
function countFds(): number {
  try {
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return -1;
  }
}

/** What the budget can do to a connection that charges it. */
export interface BufferHolder {
  /** Stop reading: the budget cannot grant more. */
  pause(): void;
  /** The budget can grant again; resume reading unless paused for another reason. */
  resume(): void;
  /** Close the connection: it is shed under memory pressure. */
  shed(): void;
  /** Everything held for the connection (both directions), to choose whom to shed; default: what it charged. */
  bytes?(): number;
}

/** One connection's charge against the budget. */
export class BufferAccount {
  /** Bytes charged (read side). */
  held = 0;
  /** performance.now() when paused for want of budget, or -1. */
  pausedAt = -1;
  closed = false;

  constructor(
    private readonly manager: OverloadManager,
    readonly listener: string,
    /** Bytes this connection may hold without a grant (the per-connection buffer limit). */
    readonly free: number,
    readonly holder: BufferHolder,
  ) {}

  /**
   * Charges `held` bytes (what the connection holds now, replacing the previous charge). Returns false when the
   * connection was paused because the budget could not grant the bytes beyond its limit.
   */
  update(held: number): boolean {
    if (this.closed || held === this.held) return this.pausedAt < 0;
    return this.manager.charge(this, held);
  }

  /** The connection closed: its bytes go back to the budget. */
  close(): void {
    if (!this.closed) this.manager.release(this);
  }
}

interface ListenerCounters {
  refused: { inc(): void };
  refusedFds: { inc(): void };
  paused: { inc(): void };
  shedOver: { inc(): void };
  shedStalled: { inc(): void };
}

export interface OverloadOptions {
  /** The budget in bytes (Infinity: no budget, nothing fires). */
  readonly budgetBytes: number;
  /** Bytes held in every connection buffer of the process, accounted or not (sampled). */
  readonly sample?: () => number;
}

export class OverloadManager {
  readonly budget: number;
  /** Sum of the accounts' charges. */
  private accounted = 0;
  /** Sum over accounts of the bytes beyond their free allowance (granted from the budget). */
  private granted = 0;
  /** Bytes held outside the accounts, as last sampled. */
  private others = 0;
  private readonly accounts = new Set<BufferAccount>();
  /** Accounts paused for want of budget, oldest first (a Set keeps insertion order). */
  private readonly waiters = new Set<BufferAccount>();
  private readonly grantAt: number;
  private readonly shedAt: number;
  private readonly refuseAt: number;
  private refusing = false;
  private shedding = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly sample: (() => number) | undefined;
  private metrics: OverloadMetrics | undefined;
  private readonly byListener = new Map<string, ListenerCounters>();
  private readonly none = { inc: (): void => undefined };
  /** `ulimit -n`, and the descriptors open as of the last count plus connections opened minus closed since. */
  private fdLimit = Number.POSITIVE_INFINITY;
  private fdCounted = 0;
  private fdDelta = 0;
  private ticks = 0;

  constructor(options: OverloadOptions) {
    this.budget = options.budgetBytes;
    this.grantAt = this.budget * THRESHOLDS.grant;
    this.shedAt = this.budget * THRESHOLDS.shed;
    this.refuseAt = this.budget * THRESHOLDS.stopAccepting;
    this.sample = options.sample;
  }

  /** Bytes held, as the budget sees them. */
  get used(): number {
    return this.accounted + this.others;
  }

  /** Registers the `waypost_overload_*` and accept-error metrics and starts sampling (a proxy does it once). */
  start(registry: Registry): void {
    this.metrics = new OverloadMetrics(registry, this);
    this.fdLimit = readFdLimit();
    if (Number.isFinite(this.fdLimit)) this.countFds();
    if ((Number.isFinite(this.budget) || Number.isFinite(this.fdLimit)) && this.timer === undefined) {
      this.timer = setInterval(() => this.tick(), SAMPLE_MS);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** An account for a connection of `listener` that may hold `free` bytes without a grant. */
  account(listener: string, free: number, holder: BufferHolder): BufferAccount {
    const a = new BufferAccount(this, listener, free, holder);
    this.accounts.add(a);
    return a;
  }

  /** A listener accepted a socket (it holds a descriptor until its 'close'). */
  socketOpened(): void {
    this.fdDelta++;
  }
  socketClosed(): void {
    this.fdDelta--;
  }

  /** Open descriptors, estimated between counts. */
  get fdsInUse(): number {
    return this.fdCounted + this.fdDelta;
  }

  get fdsLimit(): number {
    return this.fdLimit;
  }

  /**
   * Called for each accepted connection: true when the process is nearly out of file descriptors or the
   * stop-accepting action is active, in which case the caller closes it at once. Counted and logged (rate-limited)
   * here.
   */
  refuseConnection(listener: string): boolean {
    if (this.fdsInUse >= this.fdLimit - fdReserve(this.fdLimit)) {
      this.counters(listener).refusedFds.inc();
      log.warnLimited(`fd-refuse:${listener}`, 'nearly out of file descriptors, closing new connections', {
        listener,
        open: this.fdsInUse,
        limit: this.fdLimit,
        hint: 'raise the limit (ulimit -n) or cap connections (--max-connections-per-listener)',
      });
      return true;
    }
    this.updateActions();
    if (!this.refusing) return false;
    this.counters(listener).refused.inc();
    log.warnLimited(`overload-refuse:${listener}`, 'memory budget nearly used, closing new connections', {
      listener,
      used: this.used,
      budget: this.budget,
    });
    return true;
  }

  /** A listener's accept failed (EMFILE, ENFILE …): counted and logged (rate-limited). */
  acceptError(listener: string, err: NodeJS.ErrnoException): void {
    const code = err.code ?? 'unknown';
    this.metrics?.acceptErrors.labels(listener, code).inc();
    log.warnLimited(`accept-error:${listener}:${code}`, 'cannot accept a connection', {
      listener,
      code,
      error: err.message,
      hint: code === 'EMFILE' || code === 'ENFILE' ? 'out of file descriptors: raise the limit (ulimit -n) or cap connections (--max-connections-per-listener)' : undefined,
    });
  }

  /** @internal BufferAccount.update */
  charge(a: BufferAccount, held: number): boolean {
    const delta = held - a.held;
    this.granted += Math.max(0, held - a.free) - Math.max(0, a.held - a.free);
    a.held = held;
    this.accounted += delta;
    if (delta < 0) {
      if (a.pausedAt >= 0 && held <= a.free) {
        // Back within its own allowance (it was read again for another reason): it needs no grant.
        this.waiters.delete(a);
        a.pausedAt = -1;
        a.holder.resume();
      }
      this.wake();
      return a.pausedAt < 0;
    }
    if (held > a.free && this.used > this.grantAt) {
      // The bytes already read stay charged; no more are read until the budget can grant them.
      if (a.pausedAt < 0) {
        a.pausedAt = performance.now();
        this.waiters.add(a);
        this.counters(a.listener).paused.inc();
      }
      a.holder.pause();
    }
    if (this.used >= this.shedAt) this.shedBiggest();
    else this.updateActions();
    return a.pausedAt < 0 && !a.closed;
  }

  /** @internal BufferAccount.close */
  release(a: BufferAccount): void {
    a.closed = true;
    this.accounts.delete(a);
    this.waiters.delete(a);
    this.accounted -= a.held;
    this.granted -= Math.max(0, a.held - a.free);
    a.held = 0;
    this.wake();
  }

  /** Resumes waiters, those holding the most (closest to a complete frame) first, while the budget has room for them. */
  private wake(): void {
    let room = this.grantAt - this.used;
    if (this.waiters.size > 0 && room >= RESUME_SHARE) {
      const ranked = this.waiters.size === 1 ? [...this.waiters] : [...this.waiters].sort((x, y) => y.held - x.held);
      for (const a of ranked) {
        if (room < RESUME_SHARE) break;
        room -= RESUME_SHARE;
        this.waiters.delete(a);
        a.pausedAt = -1;
        a.holder.resume();
      }
    }
    this.updateActions();
  }

  /** Closes the connections holding the most until the budget is back under the grant threshold. */
  private shedBiggest(): void {
    if (this.shedding) return;
    this.shedding = true;
    try {
      this.fired('shed');
      const ranked = [...this.accounts].map((a) => ({ a, bytes: a.holder.bytes?.() ?? a.held })).filter((r) => r.bytes > 0);
      ranked.sort((x, y) => y.bytes - x.bytes);
      let shed = 0;
      for (const { a, bytes } of ranked) {
        if (this.used < this.grantAt) break;
        this.shed(a, bytes, 'over_threshold');
        shed++;
      }
      log.warnLimited('overload-shed', 'memory budget nearly used, closed the connections holding the most', {
        closed: shed,
        used: this.used,
        budget: this.budget,
      });
    } finally {
      this.shedding = false;
    }
    this.updateActions();
  }

  private shed(a: BufferAccount, bytes: number, reason: 'over_threshold' | 'stalled'): void {
    // Bytes held outside the account (answers not yet written) leave with the connection too.
    this.others = Math.max(0, this.others - Math.max(0, bytes - a.held));
    const c = this.counters(a.listener);
    (reason === 'stalled' ? c.shedStalled : c.shedOver).inc();
    this.release(a);
    a.holder.shed();
  }

  /** Every SAMPLE_MS: bytes held outside accounts; waiters stalled while the budget stays full are shed. */
  private countFds(): void {
    const n = countFds();
    if (n < 0) {
      this.fdLimit = Number.POSITIVE_INFINITY;
      return;
    }
    this.fdCounted = n;
    this.fdDelta = 0;
  }

  private tick(): void {
    // Descriptors are counted once a second (a directory read), and tracked by accepts and closes in between.
    if (Number.isFinite(this.fdLimit) && ++this.ticks % 4 === 0) this.countFds();
    if (!Number.isFinite(this.budget)) return;
    if (this.sample) this.others = Math.max(0, this.sample() - this.accounted);
    if (this.used >= this.shedAt) {
      this.shedBiggest();
      return;
    }
    this.wake();
    // Whoever wake() could not resume waits for bytes that no one releases (partial frames that never complete):
    // the oldest waiters are shed, each freeing room for the others.
    const now = performance.now();
    let stalled = 0;
    for (const a of this.waiters) {
      if (now - a.pausedAt < STALLED_SHED_MS) break; // oldest first: the rest waited less
      this.shed(a, a.holder.bytes?.() ?? a.held, 'stalled');
      stalled++;
      if (this.grantAt - this.used >= RESUME_SHARE) break; // room for one more to resume
    }
    if (stalled > 0) this.wake();
    if (stalled > 0) {
      this.fired('shed');
      log.warnLimited('overload-stalled', 'memory budget full, closed connections waiting for it', { closed: stalled, used: this.used, budget: this.budget });
    }
  }

  private updateActions(): void {
    const refusing = this.used >= this.refuseAt;
    if (refusing !== this.refusing) {
      this.refusing = refusing;
      if (refusing) this.fired('stop_accepting');
    }
  }

  private fired(action: 'stop_accepting' | 'shed'): void {
    this.metrics?.actionsFired.labels(action).inc();
  }

  private counters(listener: string): ListenerCounters {
    let c = this.byListener.get(listener);
    if (!c) {
      const m = this.metrics;
      c = m
        ? {
            refused: m.refused.labels(listener, 'memory'),
            refusedFds: m.refused.labels(listener, 'file_descriptors'),
            paused: m.paused.labels(listener),
            shedOver: m.shed.labels(listener, 'over_threshold'),
            shedStalled: m.shed.labels(listener, 'stalled'),
          }
        : { refused: this.none, refusedFds: this.none, paused: this.none, shedOver: this.none, shedStalled: this.none };
      this.byListener.set(listener, c);
    }
    return c;
  }

  /** For the gauges. */
  snapshot(): { used: number; granted: number; waiting: number; refusing: boolean; shedding: boolean } {
    return { used: this.used, granted: this.granted, waiting: this.waiters.size, refusing: this.refusing, shedding: this.used >= this.shedAt };
  }
}

/** The overload metrics, on the proxy's registry. */
class OverloadMetrics {
  readonly actionsFired: Counter<'action'>;
  readonly refused: Counter<'listener' | 'reason'>;
  readonly paused: Counter<'listener'>;
  readonly shed: Counter<'listener' | 'reason'>;
  readonly acceptErrors: Counter<'listener' | 'code'>;

  constructor(registry: Registry, m: OverloadManager) {
    const registers = [registry];
    const budget = Number.isFinite(m.budget) ? m.budget : 0;
    new Gauge({
      name: 'waypost_overload_budget_bytes',
      help: 'The memory budget for connection buffers (--memory-budget; per worker with --workers); 0: none',
      registers,
      collect() {
        this.set(budget);
      },
    });
    new Gauge({
      name: 'waypost_overload_used_bytes',
      help: 'Bytes held in connection buffers, as the memory budget counts them',
      registers,
      collect() {
        this.set(m.snapshot().used);
      },
    });
    new Gauge({
      name: 'waypost_overload_granted_bytes',
      help: 'Bytes held beyond connections\' --per-connection-buffer-limit (incomplete frames), granted from the budget',
      registers,
      collect() {
        this.set(m.snapshot().granted);
      },
    });
    new Gauge({
      name: 'waypost_overload_waiting_connections',
      help: 'Connections not read because the memory budget cannot grant them more',
      registers,
      collect() {
        this.set(m.snapshot().waiting);
      },
    });
    new Gauge({
      name: 'waypost_overload_action_active',
      help: 'Whether an overload action is active (stop_accepting: new connections closed at once; shed: connections holding the most closed)',
      labelNames: ['action'] as const,
      registers,
      collect() {
        const s = m.snapshot();
        this.labels('stop_accepting').set(s.refusing ? 1 : 0);
        this.labels('shed').set(s.shedding ? 1 : 0);
      },
    });
    new Gauge({
      name: 'waypost_overload_file_descriptors',
      help: 'File descriptors of the process (used: open now; limit: ulimit -n, 0 when unknown); new connections are closed within 5% (at least 16) of the limit',
      labelNames: ['state'] as const,
      registers,
      collect() {
        this.labels('used').set(m.fdsInUse);
        this.labels('limit').set(Number.isFinite(m.fdsLimit) ? m.fdsLimit : 0);
      },
    });
    this.actionsFired = new Counter({
      name: 'waypost_overload_actions_fired_total',
      help: 'Times an overload action fired (stop_accepting: began refusing; shed: a round of closing connections)',
      labelNames: ['action'] as const,
      registers,
    });
    this.refused = new Counter({
      name: 'waypost_overload_connections_refused_total',
      help: 'Connections closed as soon as accepted, by reason (memory: the budget was over its stop-accepting threshold; file_descriptors: the process was nearly out of them)',
      labelNames: ['listener', 'reason'] as const,
      registers,
    });
    this.paused = new Counter({
      name: 'waypost_overload_paused_total',
      help: 'Times a connection stopped being read because the memory budget could not grant its incomplete frame more bytes',
      labelNames: ['listener'] as const,
      registers,
    });
    this.shed = new Counter({
      name: 'waypost_overload_connections_shed_total',
      help: 'Connections closed to keep within the memory budget (over_threshold: holding the most; stalled: waited too long for budget)',
      labelNames: ['listener', 'reason'] as const,
      registers,
    });
    this.acceptErrors = new Counter({
      name: 'waypost_downstream_accept_errors_total',
      help: 'Failed accepts on a listener, by error code (EMFILE, ENFILE: out of file descriptors; the kernel\'s pending connection is dropped)',
      labelNames: ['listener', 'code'] as const,
      registers,
    });
  }
}
