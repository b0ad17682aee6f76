/**
 * The control plane killed under load. test/xds/restart-load.test.ts stops `waypost control` with SIGTERM (a clean
 * shutdown) and checks re-sync; here it dies with SIGKILL — no goodbye on the stream, the socket just goes — while 8
 * connections call through `waypost proxy --xds`, a MetaRouter edit is made while it is dead, and it comes back on
 * the same port. Every call must be answered and succeed, calls keep flowing while it is dead, the proxy applies the
 * edit after the restart, is still running and serves a fresh connection, and its `waypost_requests_total` agrees
 * with what the clients saw.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { metricSum } from '../helpers/admin.js';
import { routerYaml, serviceYaml, TempConfig, type CliProcess } from '../xds/helpers.js';
import { proxyApplied, startControl, startXdsProxy, waitSynced, writeAtomically } from '../xds/planes.js';
import { DubboLoad, freePorts, freshCall, report, sleep, tally, until } from './helpers.js';

const NODE = 'chaos-control-node';

let v1: Provider;
let v2: Provider;
let cfg: TempConfig;
let control: CliProcess | undefined;
let proxy: CliProcess | undefined;
let ports: { listen: number; xds: number; controlAdmin: number; proxyAdmin: number };

const controlAdmin = (): string => `127.0.0.1:${ports.controlAdmin}`;
const proxyAdmin = (): string => `127.0.0.1:${ports.proxyAdmin}`;
const start = (): Promise<CliProcess> => startControl({ configDir: cfg.dir, xdsPort: ports.xds, adminPort: ports.controlAdmin });

async function requests(outcome: string): Promise<number> {
  return metricSum(proxyAdmin(), new RegExp(`^waypost_requests_total\\{(?=[^}]*route="all")(?=[^}]*outcome="${outcome}")`));
}

beforeAll(async () => {
  v1 = await startProvider({ version: 'v1', record: false });
  v2 = await startProvider({ version: 'v2', record: false });
  const [listen, xds, ca, pa] = await freePorts(4);
  ports = { listen: listen!, xds: xds!, controlAdmin: ca!, proxyAdmin: pa! };
  cfg = new TempConfig();
  cfg.write('service.yaml', serviceYaml({ listen: ports.listen, v1: v1.port, v2: v2.port }));
  cfg.write('router.yaml', routerYaml('v1'));
  control = await start();
  proxy = await startXdsProxy({ xdsPort: ports.xds, adminPort: ports.proxyAdmin, node: NODE });
  await waitSynced(controlAdmin(), NODE, 'the proxy to ACK the first config', 15_000);
});

afterAll(async () => {
  await proxy?.stop();
  await control?.stop();
  await v1?.close();
  await v2?.close();
  cfg?.remove();
});

describe('the control plane SIGKILLed and restarted under load', () => {
  it('loses no call, keeps serving while it is dead, and applies an edit made meanwhile once it is back', async () => {
    const ok0 = await requests('success');
    const local0 = await requests('local_reply');
    const err0 = await requests('error');
    const applied0 = await proxyApplied(proxyAdmin());
    const load = await DubboLoad.start({ address: `127.0.0.1:${ports.listen}`, connections: 8, callTimeoutMs: 10_000, maxMs: 25_000 });
    let killedAt = 0;
    let restartedAt = 0;
    let syncedAt = 0;
    try {
      await sleep(800);
      const gone = control!.exited;
      control!.child.kill('SIGKILL');
      await gone;
      control = undefined;
      killedAt = Date.now();
      writeAtomically(cfg.dir, 'router.yaml', routerYaml('v2'));
      await until(() => /xds stream lost/.test(proxy!.output()), 'the proxy to notice the control plane is gone', 10_000, 25, () => proxy!.output());
      await sleep(1000);
      restartedAt = Date.now();
      control = await start();
      await waitSynced(controlAdmin(), NODE, 'the proxy to sync with the restarted control plane', 20_000);
      syncedAt = Date.now();
      await sleep(800);
    } finally {
      await load.stop();
      load.close();
    }
    const calls = load.calls;
    const t = tally(calls);
    const whileDead = calls.filter((c) => c.sent >= killedAt && c.done <= restartedAt);
    const afterSync = calls.filter((c) => c.sent > syncedAt);
    report(
      'control plane SIGKILLed, edited while dead, restarted (8 connections)',
      t,
      `${whileDead.length} calls while it was dead, ${afterSync.filter((c) => c.by === 'v2').length}/${afterSync.length} to v2 after the re-sync`,
    );
    expect(t.noAnswer, 'calls left without an answer').toBe(0);
    expect(t.failed).toBe(0);
    expect(whileDead.length).toBeGreaterThan(20);
    expect(whileDead.every((c) => c.by === 'v1')).toBe(true); // the last good config keeps serving
    expect(afterSync.length).toBeGreaterThan(20);
    expect(afterSync.every((c) => c.by === 'v2')).toBe(true);
    expect((await proxyApplied(proxyAdmin())).version).not.toBe(applied0.version);
    expect(proxy!.child.exitCode).toBe(null);
    expect({
      success: (await requests('success')) - ok0,
      local_reply: (await requests('local_reply')) - local0,
      error: (await requests('error')) - err0,
    }).toEqual({ success: t.ok, local_reply: 0, error: 0 });
    const fresh = await freshCall(`127.0.0.1:${ports.listen}`);
    expect(fresh.status).toBe(20);
  }, 60_000);
});
