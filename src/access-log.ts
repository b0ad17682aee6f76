/**
 * The access log: one JSON line per MetaProtocol request (`--access-log PATH|-`). Lines are formatted when a request
 * ends and written in batches — at most every {@link FLUSH_INTERVAL_MS} or once {@link FLUSH_BYTES} are waiting — so
 * a request never costs a write of its own. When the log is off nothing is formatted at all (the exchange checks
 * `listener.accessLog` first). A file or pipe that cannot keep up holds at most {@link MAX_PENDING_BYTES}; lines
 * beyond that are dropped and counted (`waypost_access_log_dropped_total`) rather than growing memory.
 */
import fs from 'node:fs';
import type { Writable } from 'node:stream';
import { log } from './log.js';
import type { Route } from './router.js';

export const FLUSH_INTERVAL_MS = 100;
export const FLUSH_BYTES = 64 * 1024;
export const MAX_PENDING_BYTES = 8 * 1024 * 1024;

/** What one line says (field names as written). */
export interface AccessLogEntry {
  /** ISO-8601 time the request ended. */
  time: string;
  listener: string;
  protocol: string;
  route: string | null;
  cluster: string | null;
  /** `host:port` of the endpoint that answered (the last attempt's), or null. */
  upstream_host: string | null;
  /** success, error, business_exception, local_reply (as the `waypost_requests_total` label), or downstream_closed. */
  outcome: string;
  /** For local replies: no_route, timeout, over_limit, fault_abort, no_healthy_upstream, upstream_reset, bad_response. */
  local_reply: string | null;
  duration_ms: number;
  /** The request id as the client sent it. */
  request_id: string;
  /** The route's match keys with this request's values (what the route matched on). */
  attributes: Record<string, string>;
  /** The traceparent sent upstream (the proxy's span as parent), or null. */
  traceparent: string | null;
  /** Upstream attempts (1 + retries); 0 when none was made. */
  attempts: number;
}

const matchKeysCache = new WeakMap<Route, readonly string[]>();

/** The metadata keys a route's match reads (lower-case), computed once per compiled route. */
export function routeMatchKeys(route: Route): readonly string[] {
  let keys = matchKeysCache.get(route);
  if (!keys) {
    keys = (route.config.match?.metadata ?? []).map((m) => m.name.toLowerCase()).filter((k, i, all) => all.indexOf(k) === i);
    matchKeysCache.set(route, keys);
  }
  return keys;
}

export class AccessLog {
  private readonly stream: Writable;
  private readonly ownStream: boolean;
  private pending: string[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private failed = false;
  dropped = 0;
  written = 0;
  /** Called per dropped line (the proxy counts them in `waypost_access_log_dropped_total`). */
  onDropped: (() => void) | undefined;

  /** `target`: a file path (appended to, created if missing) or `-` for stdout. */
  constructor(readonly target: string) {
    if (target === '-') {
      this.stream = process.stdout;
      this.ownStream = false;
    } else {
      this.stream = fs.createWriteStream(target, { flags: 'a' });
      this.ownStream = true;
      this.stream.on('error', (err) => {
        if (!this.failed) log.error('access log cannot be written; lines are dropped from now on', { path: target, error: err.message });
        this.failed = true;
      });
    }
    this.stream.on('drain', () => this.flush());
  }

  /** Opens the file now so that a bad path is reported at start-up (rejects with a clear message). */
  static async open(target: string): Promise<AccessLog> {
    if (target !== '-') {
      try {
        await fs.promises.appendFile(target, '');
      } catch (err) {
        throw new Error(`--access-log ${target}: ${(err as Error).message}`);
      }
    }
    return new AccessLog(target);
  }

  record(entry: AccessLogEntry): void {
    if (this.failed) {
      this.drop();
      return;
    }
    const line = JSON.stringify(entry) + '\n';
    if (this.pendingBytes + line.length > MAX_PENDING_BYTES) {
      this.drop();
      return;
    }
    this.pending.push(line);
    this.pendingBytes += line.length;
    if (this.pendingBytes >= FLUSH_BYTES) this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), FLUSH_INTERVAL_MS);
      this.timer.unref();
    }
  }

  /** Writes what is waiting as one chunk, unless the stream is still busy with the previous ones. */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.pending.length === 0 || this.failed) return;
    if (this.stream.writableNeedDrain) return; // 'drain' calls flush again
    const chunk = this.pending.join('');
    this.written += this.pending.length;
    this.pending = [];
    this.pendingBytes = 0;
    this.stream.write(chunk);
  }

  /** Writes what is left and closes the file (stdout stays open). */
  close(): Promise<void> {
    this.flush();
    if (this.pending.length > 0 && !this.failed) {
      // The stream was busy: hand the rest over anyway; end() waits for it.
      this.written += this.pending.length;
      this.stream.write(this.pending.join(''));
      this.pending = [];
      this.pendingBytes = 0;
    }
    if (!this.ownStream) return Promise.resolve();
    return new Promise((resolve) => this.stream.end(() => resolve()));
  }

  private drop(): void {
    this.dropped++;
    this.onDropped?.();
  }
}
