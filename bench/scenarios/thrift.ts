/**
 * Thrift: framed binary `Bench.hello(name)` (bench/thrift/bench.thrift) against a Thrift server in a child process
 * (bench/thrift/server.js) directly, through haproxy (TCP) and through Waypost (ServiceEntry port
 * `tcp-metaprotocol-thrift` + MetaRouter), at a fixed concurrency and at a fixed request rate.
 *
 * The load comes from the raw-socket generator (bench/thrift/wire.ts: the bytes npm's TFramedTransport +
 * TBinaryProtocol write, pre-encoded) unless `--thrift-client npm`; the npm client (code generated at run time)
 * makes one probe call through every target either way. The server is the fast raw one unless
 * `--thrift-server npm` (npm's generated processor).
 */
import YAML from 'yaml';
import { freePorts } from '../../examples/dubbo/harness.js';
import { runEngine } from '../lib/load.js';
import type { BenchContext, ScenarioResult } from '../lib/report.js';
import { startNodeScript } from '../lib/targets.js';
import { generate, npmHello, runNpmLoad, type Generated } from '../thrift/npm.js';
import { thriftHelloProtocol } from '../thrift/wire.js';
import { runRpcScenario } from './common.js';

const HOST = 'bench.thrift.local';
const PORT_NAME = 'tcp-metaprotocol-thrift';

function thriftConfig(listen: number, server: number): string {
  return [
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'thrift-bench', namespace: 'bench' },
      spec: {
        hosts: [HOST],
        ports: [{ number: listen, name: PORT_NAME, protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: [{ address: '127.0.0.1', ports: { [PORT_NAME]: server } }],
      },
    },
    {
      apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
      kind: 'MetaRouter',
      metadata: { name: 'thrift-bench', namespace: 'bench' },
      spec: { hosts: [HOST], routes: [{ name: 'all', route: [{ destination: { host: HOST } }] }] },
    },
  ]
    .map((d) => YAML.stringify(d))
    .join('---\n');
}

/**
 * `thrift`: the configured server (raw by default). `thrift-npm`: the same against npm's generated processor — a
 * real Thrift server, the backend the throughput target is judged against (the raw server answers faster than any
 * real one, so against it even haproxy loses half the throughput).
 */
export async function runThrift(ctx: BenchContext, scenario: 'thrift' | 'thrift-npm' = 'thrift'): Promise<ScenarioResult> {
  if (scenario === 'thrift-npm') ctx = { ...ctx, thriftServer: 'npm' };
  const gen: Generated = generate();
  try {
    return await runRpcScenario(
      ctx,
      {
        scenario,
        description: `Thrift framed binary hello(name): ${ctx.thriftClient} client, ${ctx.thriftServer} server`,
        startBackend: async () => {
          const [port] = await freePorts(1);
          const child = startNodeScript('thrift-server', 'bench/thrift/server.js', ['--impl', ctx.thriftServer, '--port', String(port), '--gen', gen.dir]);
          const m = await child.waitFor(/listening on (\S+)/, 15_000).catch(async (e: Error) => {
            await child.stop(500);
            throw e;
          });
          return { address: m[1]!, pid: child.pid, stop: () => child.stop(2000) };
        },
        waypostConfig: (listen, server) => ({ 'thrift.yaml': thriftConfig(listen, server) }),
        probe: async (address) => {
          const answer = await npmHello(gen, address, 'probe');
          if (answer !== 'hello probe') throw new Error(`Thrift probe through ${address}: answered ${JSON.stringify(answer)}`);
        },
        load: (address, opts, hooks) => {
          const common = {
            address,
            connections: ctx.connections,
            inflight: ctx.inflight,
            durationSec: ctx.durationSec,
            warmupSec: ctx.warmupSec,
            ...(opts.rate ? { rate: opts.rate } : {}),
            ...hooks,
          };
          return ctx.thriftClient === 'npm' ? runNpmLoad(gen, common) : runEngine({ ...common, protocol: thriftHelloProtocol() });
        },
        options: {
          client: ctx.thriftClient,
          server: ctx.thriftServer,
          connections: ctx.connections,
          inflight: ctx.inflight,
          rate: ctx.rate,
          durationSec: ctx.durationSec,
          warmupSec: ctx.warmupSec,
        },
        notes: [
          ctx.thriftClient === 'raw'
            ? 'Load: pre-encoded framed-binary calls on raw sockets (the npm client tops out far below the proxy; --thrift-client npm uses it); one npm-client probe call per target.'
            : 'Load: the npm thrift client (framed binary), in this process.',
        ],
      },
      async () => (await freePorts(1))[0]!,
    );
  } finally {
    gen.cleanup();
  }
}
