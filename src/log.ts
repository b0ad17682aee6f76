/**
 * A small structured logger: one line per event on stderr, `time level message key=value…`. The proxy logs
 * rarely on the hot path (decode errors, config changes), so a dependency-free logger is enough.
 */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
const ORDER: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

let threshold: number = ORDER.info;
let sink: (line: string) => void = (line) => process.stderr.write(line + '\n');

export function setLogLevel(level: string): void {
  if (!(level in ORDER)) throw new Error(`unknown log level "${level}" (error, warn, info, debug)`);
  threshold = ORDER[level as LogLevel];
}

/** Redirects log lines (tests). */
export function setLogSink(fn: (line: string) => void): void {
  sink = fn;
}

function fmt(value: unknown): string {
  const s = typeof value === 'string' ? value : JSON.stringify(value);
  return /[\s"=]/.test(s ?? '') ? JSON.stringify(s) : String(s);
}

function emit(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
  if (ORDER[level] > threshold) return;
  let line = `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${msg}`;
  if (fields) for (const k in fields) if (fields[k] !== undefined) line += ` ${k}=${fmt(fields[k])}`;
  sink(line);
}

/** When each rate-limited cause last logged, and how many of its lines were held back since. */
const lastLogged = new Map<string, { at: number; suppressed: number }>();
/** Distinct causes remembered at once: a peer that varies the cause cannot grow the map without bound. */
const MAX_CAUSES = 1024;

/**
 * Logs at most once per `intervalMs` per `cause` (a peer that sends one bad frame after another must not flood the
 * log); the next line for that cause says how many were held back. Counting is the metrics' job, not the log's.
 */
function limited(level: LogLevel, cause: string, intervalMs: number, msg: string, fields?: Record<string, unknown>): void {
  if (ORDER[level] > threshold) return;
  const now = Date.now();
  const seen = lastLogged.get(cause);
  if (seen && now - seen.at < intervalMs) {
    seen.suppressed++;
    return;
  }
  if (!seen && lastLogged.size >= MAX_CAUSES) lastLogged.delete(lastLogged.keys().next().value!);
  const suppressed = seen?.suppressed ?? 0;
  lastLogged.set(cause, { at: now, suppressed: 0 });
  emit(level, msg, suppressed > 0 ? { ...fields, suppressed } : fields);
}

/** How often one cause may log a line, in the rate-limited calls. */
export const LOG_INTERVAL_MS = 10_000;

export const log = {
  /** Rate-limited: once per {@link LOG_INTERVAL_MS} per cause (what a peer can trigger at will). */
  warnLimited: (cause: string, msg: string, fields?: Record<string, unknown>) => limited('warn', cause, LOG_INTERVAL_MS, msg, fields),
  errorLimited: (cause: string, msg: string, fields?: Record<string, unknown>) => limited('error', cause, LOG_INTERVAL_MS, msg, fields),
  error: (msg: string, fields?: Record<string, unknown>) => emit('error', msg, fields),
  warn: (msg: string, fields?: Record<string, unknown>) => emit('warn', msg, fields),
  info: (msg: string, fields?: Record<string, unknown>) => emit('info', msg, fields),
  debug: (msg: string, fields?: Record<string, unknown>) => emit('debug', msg, fields),
  enabled: (level: LogLevel) => ORDER[level] <= threshold,
};
