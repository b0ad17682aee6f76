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

export const log = {
  error: (msg: string, fields?: Record<string, unknown>) => emit('error', msg, fields),
  warn: (msg: string, fields?: Record<string, unknown>) => emit('warn', msg, fields),
  info: (msg: string, fields?: Record<string, unknown>) => emit('info', msg, fields),
  debug: (msg: string, fields?: Record<string, unknown>) => emit('debug', msg, fields),
  enabled: (level: LogLevel) => ORDER[level] <= threshold,
};
