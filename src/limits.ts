/**
 * Hard limits of the MetaProtocol data plane (docs/operations-limits.md). Each has a CLI flag, a default, a clear
 * error when it is hit and a metric. Where Waypost's config is silent, Envoy's names and defaults are the guide.
 */
import { parseDuration } from './xds/duration.js';

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

/** A duration flag: `500ms`, `30s`, `1h`, or a bare number of seconds; `0` disables where allowed. */
export function durationFlag(text: string, flag: string): number {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t) * 1000;
  try {
    return parseDuration(t);
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
