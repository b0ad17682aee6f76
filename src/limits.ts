/**
 * Hard limits of the MetaProtocol data plane (docs/operations-limits.md). Each has a CLI flag, a default, a clear
 * error when it is hit and a metric. Where Waypost's config is silent, Envoy's names and defaults are the guide.
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { durationMs } from './duration.js';

export interface DownstreamLimits {
  /** Open connections per listener; a connection over it is closed at once (Envoy `max_connections`). */
  readonly maxConnectionsPerListener: number;
  /** Requests in flight on one downstream connection; more are answered over_limit. */
  readonly maxPendingPerConnection: number;
  /** A connection with nothing in flight and no bytes either way for this long is closed; 0 disables. */
  readonly idleTimeoutMs: number;
  /** A frame begun but not complete within this is a slowloris: the connection is closed; 0 disables. */
  readonly frameTimeoutMs: number;
  /**
   * Bytes a connection may have queued for writing before the proxy stops reading from whoever fills it (Envoy
   * `per_connection_buffer_limit_bytes`): a downstream whose answers pile up, or the downstreams feeding an upstream
   * connection that does not keep up.
   */
  readonly bufferLimitBytes: number;
}

export const DEFAULT_LIMITS: DownstreamLimits = {
  maxConnectionsPerListener: Number.POSITIVE_INFINITY,
  maxPendingPerConnection: 1024,
  idleTimeoutMs: 3_600_000,
  frameTimeoutMs: 30_000,
  bufferLimitBytes: 1024 * 1024,
};

/** Envoy's default per-connection buffer limit, also used for upstream connections. */
export const DEFAULT_BUFFER_LIMIT = DEFAULT_LIMITS.bufferLimitBytes;

/** How long SIGTERM waits for in-flight requests before closing what is left. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 5_000;

/** `--tracing`: what the proxy does with W3C `traceparent` (src/trace-context.ts). */
export type TracingMode = 'off' | 'propagate' | 'start';

/** A duration flag: `500ms`, `30s`, `1h30m` (the config's syntax), or a bare number of seconds; `0` disables where allowed. */
export function durationFlag(text: string, flag: string): number {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  try {
    return durationMs(t);
  } catch {
    throw new Error(`${flag} wants a duration such as 500ms, 30s, 2m, 1h (or 0 to disable), not "${text}"`);
  }
}

/** A whole-number flag >= `min`. */
export function countFlag(text: string, flag: string, min: number): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag} wants a whole number >= ${min}, not "${text}"`);
  return n;
}

/** Bytes of the default memory budget at most (`--memory-budget`), for the whole proxy. */
export const MAX_DEFAULT_MEMORY_BUDGET = 512 * 1024 * 1024;

/**
 * The default `--memory-budget`: half the memory this process may use (the cgroup's `memory.max` when one is set,
 * else the machine's), at most {@link MAX_DEFAULT_MEMORY_BUDGET}. Half, because the process needs memory of its own
 * besides connection buffers (code, heap, garbage not yet collected).
 */
export function defaultMemoryBudget(cgroupLimit: () => number | undefined = readCgroupMemoryLimit): number {
  const limit = cgroupLimit() ?? os.totalmem();
  return Math.max(MIN_MEMORY_BUDGET, Math.min(MAX_DEFAULT_MEMORY_BUDGET, Math.floor(limit / 2)));
}

/** The smallest `--memory-budget` accepted. */
export const MIN_MEMORY_BUDGET = 4 * 1024 * 1024;

/** cgroup v2 `memory.max` (or v1 `memory.limit_in_bytes`) of this process, when one is set. */
function readCgroupMemoryLimit(): number | undefined {
  for (const file of ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes']) {
    try {
      const n = Number(readFileSync(file, 'utf8').trim());
      // "max" (NaN) or v1's huge "unlimited" value mean no limit.
      if (Number.isFinite(n) && n > 0 && n < os.totalmem()) return n;
    } catch {
      // not there: the next one, or no cgroup limit
    }
  }
  return undefined;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, ki: 1024, kib: 1024, m: 1024 ** 2, mi: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gi: 1024 ** 3, gib: 1024 ** 3 };

/** A size flag: `67108864`, `64Mi`, `64MiB`, `1G` (binary units, as Kubernetes quantities) and >= `min`. */
export function sizeFlag(text: string, flag: string, min: number): number {
  const m = /^(\d+)\s*([a-z]*)$/i.exec(text.trim());
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  const n = m && unit !== undefined ? Number(m[1]) * unit : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`${flag} wants a size such as 512Mi, 1Gi or a number of bytes, at least ${min}, not "${text}"`);
  return n;
}
