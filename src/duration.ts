/**
 * The one duration syntax of the project, for config, xDS and flags alike: Go's `time.ParseDuration` as Istio's YAML
 * writes it (`1s`, `100ms`, `1.5s`, `2m`, `1h30m`; units ns, us/µs, ms, s, m, h), which also reads the proto3 JSON
 * form of `google.protobuf.Duration` (`"1.5s"`). Arithmetic is in integer nanoseconds (bigint), so nothing is lost
 * to floating point; the data plane reads milliseconds through {@link durationMs}.
 */

const NS_PER_UNIT: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  'µs': 1_000n, // U+00B5 micro sign
  'μs': 1_000n, // U+03BC Greek mu
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

const SEGMENT = /([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)/y;

export const NS_PER_MS = 1_000_000n;
export const NS_PER_SECOND = 1_000_000_000n;

/** Nanoseconds in `text`, or undefined when it is not a duration. */
export function parseDuration(text: string): bigint | undefined {
  if (typeof text !== 'string' || text === '') return undefined;
  if (text === '0') return 0n;
  let total = 0n;
  let at = 0;
  while (at < text.length) {
    SEGMENT.lastIndex = at;
    const m = SEGMENT.exec(text);
    if (!m) return undefined;
    const whole = m[1] ?? '';
    const frac = m[2] ?? '';
    if (whole === '' && frac === '') return undefined; // a unit with no number: "s", ".s"
    const unit = NS_PER_UNIT[m[3]!]!;
    total += BigInt(whole || '0') * unit;
    if (frac) total += (BigInt(frac) * unit) / 10n ** BigInt(frac.length);
    at = SEGMENT.lastIndex;
  }
  return total;
}

/** Why `text` is not a usable duration (at least `min`, default 1ms, as Istio requires), or undefined when it is. */
export function durationProblem(text: unknown, min: bigint = NS_PER_MS): string | undefined {
  if (typeof text !== 'string') return `must be a duration string like "1s" or "500ms" (got ${describe(text)})`;
  const ns = parseDuration(text);
  if (ns === undefined) {
    return `"${text}" is not a duration: write a number and a unit (ns, us, ms, s, m, h), e.g. "1s", "500ms", "1.5s", "2m"`;
  }
  if (ns < min) return `"${text}" is too short: it must be at least ${formatDuration(min)}`;
  return undefined;
}

/** Proto3 JSON for a Duration of `ns` nanoseconds: `"10s"`, `"1.5s"`, `"0.000001s"`. */
export function formatDuration(ns: bigint): string {
  const sign = ns < 0n ? '-' : '';
  const abs = ns < 0n ? -ns : ns;
  const seconds = abs / NS_PER_SECOND;
  const nanos = abs % NS_PER_SECOND;
  if (nanos === 0n) return `${sign}${seconds}s`;
  const frac = nanos.toString().padStart(9, '0').replace(/0+$/, '');
  return `${sign}${seconds}.${frac}s`;
}

/** A duration written as Istio YAML, as proto3 JSON (`"1m30s"` → `"90s"`). Throws when it does not parse. */
export function toDurationJson(text: string): string {
  const ns = parseDuration(text);
  if (ns === undefined) throw new Error(`"${text}" is not a duration`);
  return formatDuration(ns);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

/**
 * Milliseconds in a duration (a number is taken as milliseconds already): for the data plane, which reads the
 * durations of xDS resources and of its own flags. Throws on anything else, so a bad value is reported, never read
 * as 0.
 */
export function durationMs(text: string | number): number {
  if (typeof text === 'number') return text;
  const ns = parseDuration(text.trim());
  if (ns === undefined) throw new Error(`invalid duration ${JSON.stringify(text)} (use e.g. "500ms", "1.5s", "2m", "1h30m")`);
  return Number(ns) / 1e6;
}
