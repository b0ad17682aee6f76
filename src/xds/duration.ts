/**
 * Durations as protobuf JSON writes them (`"1.5s"`) and as Istio YAML does (`"500ms"`, `"2m"`, `"1h"`), in
 * milliseconds. Throws on anything else so a bad value is reported, never read as 0.
 */
const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDuration(text: string | number): number {
  if (typeof text === 'number') return text;
  const m = /^\s*(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)\s*$/.exec(text);
  if (!m) throw new Error(`invalid duration ${JSON.stringify(text)} (use e.g. "500ms", "1.5s", "2m")`);
  return Number(m[1]) * UNIT_MS[m[2]!]!;
}

/** Milliseconds as protobuf JSON duration (`"1.5s"`). */
export function formatDuration(ms: number): string {
  return `${+(ms / 1000).toFixed(9)}s`;
}
