/**
 * Dubbo: the raw-socket generator (bench/dubbo/load.ts: pre-encoded hessian2 `sayHello` calls) against the demo
 * provider (a child process) directly, through haproxy (TCP) and through Waypost (one ServiceEntry + MetaRouter),
 * at a fixed concurrency and at a fixed request rate.
 */
import { freePorts, renderSingleEndpointConfig } from '../../examples/dubbo/harness.js';
import { rawCall } from '../../examples/dubbo/raw-client.js';
import { runLoad } from '../dubbo/load.js';
import type { BenchContext, ScenarioResult } from '../lib/report.js';
import { startNodeScript } from '../lib/targets.js';
import { runRpcScenario } from './common.js';

/** The demo provider (`dist/examples/dubbo/provider.js --quiet`) on a free port, as a child process. */
export async function startDubboProvider(): Promise<{ address: string; pid: number; stop(): Promise<void> }> {
  const [port] = await freePorts(1);
  const child = startNodeScript('dubbo-provider', 'examples/dubbo/provider.js', ['--port', String(port), '--version', 'v1', '--quiet']);
  const m = await child.waitFor(/listening on (\S+)/, 10_000).catch(async (e: Error) => {
    await child.stop(500);
    throw e;
  });
  return { address: m[1]!, pid: child.pid, stop: () => child.stop(2000) };
}

export async function probeDubbo(address: string): Promise<void> {
  const r = await rawCall({ address, id: 1, method: 'sayHello', args: ['probe'], timeoutMs: 5000 });
  if (r.status !== 20 || typeof r.value !== 'string' || !r.value.startsWith('Hello probe')) {
    throw new Error(`Dubbo probe through ${address}: status ${r.status} ${JSON.stringify(r.value ?? r.error)}`);
  }
}

export function runDubbo(ctx: BenchContext): Promise<ScenarioResult> {
  return runRpcScenario(
    ctx,
    {
      scenario: 'dubbo',
      description: 'Dubbo2 sayHello (raw-socket generator, hessian2) to the demo provider',
      startBackend: startDubboProvider,
      waypostConfig: (listen, provider) => ({ 'bench.yaml': renderSingleEndpointConfig({ listen, provider }) }),
      probe: probeDubbo,
      load: (address, opts, hooks) =>
        runLoad({
          address,
          connections: ctx.connections,
          inflight: ctx.inflight,
          durationSec: ctx.durationSec,
          warmupSec: ctx.warmupSec,
          ...(opts.rate ? { rate: opts.rate } : {}),
          ...hooks,
        }),
      options: { connections: ctx.connections, inflight: ctx.inflight, rate: ctx.rate, durationSec: ctx.durationSec, warmupSec: ctx.warmupSec },
      notes: ['Open loop: latency from when each call was due (no coordinated omission), 4 connections round-robin.'],
    },
    async () => (await freePorts(1))[0]!,
  );
}
