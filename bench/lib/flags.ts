/** Flags shared by the benchmark commands (bench/run.ts, bench/dubbo/run.ts). */

/** A non-negative number given to `--name`, or a clear error. */
export function numberFlag(name: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || !Number.isFinite(n) || n < 0) throw new Error(`--${name} needs a non-negative number, got ${v}`);
  return n;
}

export interface LoadFlags {
  durationSec?: number;
  warmupSec?: number;
  rate?: number;
  connections?: number;
  inflight?: number;
}

/** Reads one of the load-shape flags into `out`; false when `flag` is not one of them. */
export function loadFlag(flag: string, value: () => string | undefined, out: LoadFlags): boolean {
  switch (flag) {
    case '--duration':
      out.durationSec = numberFlag('duration', value());
      return true;
    case '--warmup':
      out.warmupSec = numberFlag('warmup', value());
      return true;
    case '--rate':
      out.rate = numberFlag('rate', value());
      return true;
    case '--connections':
      out.connections = Math.max(1, Math.floor(numberFlag('connections', value())));
      return true;
    case '--inflight':
      out.inflight = Math.max(1, Math.floor(numberFlag('inflight', value())));
      return true;
    default:
      return false;
  }
}
