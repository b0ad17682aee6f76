/**
 * A Dubbo2 load generator on raw sockets and pre-encoded hessian2 frames (no dubbo2.js: it must be fast).
 *
 * Closed loop (default): `connections` × `inflight` calls kept in flight for `durationSec`; each answer sends the
 * next call on the same connection. Open loop (`rate`): calls are issued at a fixed total rate, round-robin over the
 * connections, and latency is measured from the time each call was *due* (no coordinated omission).
 *
 * The request body is encoded once; each call copies it and writes its own id (ids count up per connection, so
 * different connections reuse the same ids — which a proxy must keep apart). Only response headers are parsed: a
 * call succeeds when the response status is 20. A warm-up period runs first and is not measured. The loops
 * themselves are bench/lib/load.ts (shared with the Thrift generator); this module is the Dubbo protocol for it.
 */
import { DEMO_INTERFACE } from '../../examples/dubbo/provider.js';
import { FrameParser, Status, encodeRequest, writeId, type RawFrame } from '../../examples/dubbo/wire.js';
import { runEngine, type EngineResult, type LatencySummary, type WireProtocol } from '../lib/load.js';

export { percentile, type LatencySummary } from '../lib/load.js';

export interface LoadOptions {
  /** `host:port` of the provider or proxy. */
  address: string;
  connections?: number;
  /** Calls in flight per connection (closed loop). */
  inflight?: number;
  /** Measured seconds. */
  durationSec?: number;
  /** Unmeasured seconds before. */
  warmupSec?: number;
  /** Total calls per second (open loop); unset = closed loop. */
  rate?: number;
  /** How long to wait for outstanding calls at the end before counting them as lost (ms). */
  drainMs?: number;
  /** Argument of sayHello (payload size knob). */
  name?: string;
  /** Extra attachments on every call. */
  attachments?: Record<string, string>;
  /** Called when the measured window opens and closes. */
  onMeasureStart?: () => void;
  onMeasureEnd?: () => void;
}

export interface LoadResult extends EngineResult {
  latencyMs: LatencySummary;
}

/** Dubbo2 `sayHello` calls, pre-encoded once; each call copies the template and writes its id. */
export function dubboProtocol(opts: { name?: string; attachments?: Record<string, string> } = {}): WireProtocol {
  const template = encodeRequest(0, {
    path: DEMO_INTERFACE,
    method: 'sayHello',
    args: [opts.name ?? 'bench'],
    attachments: opts.attachments ?? {},
  });
  return {
    request(id: number): Buffer {
      const frame = Buffer.allocUnsafe(template.length);
      template.copy(frame);
      writeId(frame, 4, id);
      return frame;
    },
    parser(onResponse) {
      return new FrameParser((f: RawFrame) => {
        if (f.event) return;
        onResponse(Number(f.id), f.status === Status.OK, String(f.status));
      });
    },
  };
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const { name, attachments, ...rest } = opts;
  return runEngine({ ...rest, protocol: dubboProtocol({ ...(name !== undefined ? { name } : {}), ...(attachments ? { attachments } : {}) }) });
}
