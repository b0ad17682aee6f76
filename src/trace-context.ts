/**
 * W3C Trace Context (`traceparent`): `version-traceid-parentid-flags`, e.g.
 * `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`. The proxy is one hop of the trace: it keeps the trace
 * id and flags and sends its own span id upstream as the new parent id.
 */
import { randomFillSync } from 'node:crypto';

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

export interface TraceParent {
  readonly version: string;
  readonly traceId: string;
  readonly parentId: string;
  readonly flags: string;
}

/** A valid traceparent, or undefined (W3C: version ff, all-zero ids and malformed values are invalid). */
export function parseTraceparent(value: string | undefined): TraceParent | undefined {
  if (value === undefined) return undefined;
  const m = TRACEPARENT.exec(value.trim());
  if (!m) return undefined;
  const [, version, traceId, parentId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === 'ff' || traceId === ZERO_TRACE || parentId === ZERO_SPAN) return undefined;
  // Version 00 has exactly four fields; later versions may append more, which a 00 reader drops.
  if (version === '00' && rest !== undefined) return undefined;
  return { version, traceId, parentId, flags };
}

/** Random ids from a pooled buffer: one randomFillSync per 512 span ids instead of one per request. */
const pool = Buffer.alloc(4096);
let poolOffset = pool.length;

function randomHex(bytes: number): string {
  if (poolOffset + bytes > pool.length) {
    randomFillSync(pool);
    poolOffset = 0;
  }
  const s = pool.toString('hex', poolOffset, poolOffset + bytes);
  poolOffset += bytes;
  return s;
}

export function newSpanId(): string {
  let id = randomHex(8);
  while (id === ZERO_SPAN) id = randomHex(8);
  return id;
}

export function newTraceId(): string {
  let id = randomHex(16);
  while (id === ZERO_TRACE) id = randomHex(16);
  return id;
}

/** The traceparent to send upstream: same trace and flags, `spanId` (the proxy's span) as the parent. */
export function childTraceparent(parent: TraceParent, spanId: string): string {
  return `00-${parent.traceId}-${spanId}-${parent.flags}`;
}

/** A new sampled trace rooted at the proxy's span. */
export function rootTraceparent(spanId: string): string {
  return `00-${newTraceId()}-${spanId}-01`;
}
