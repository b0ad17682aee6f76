/**
 * The control plane restarts under load: steady Dubbo calls (4 connections, calls back to back, bounded in time)
 * through `waypost proxy --xds` while `waypost control` is stopped with SIGTERM and started again on the same port,
 * twice — once with the same files (the proxy re-syncs without applying anything: its config is unchanged), once
 * with a MetaRouter edit made while it was down (the proxy applies it under load). Not one call may fail, calls must
 * keep flowing while the control plane is down, and each new control plane's `/debug/syncz` must show the node's
 * ACK of every type it serves.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { routerYaml, serviceYaml, sleep, TempConfig, until, type CliProcess } from './helpers.js';
import { expectedProxyVersion, proxyApplied, startControl, startXdsProxy, waitSynced, writeAtomically } from './planes.js';

const NODE = 'restart-load-node';
const CONNECTIONS = 4;
/** Hard bounds on the load, whatever happens. */
const MAX_LOAD_MS = 25_000;
const MAX_CALLS = 200_000;

let v1: Provider;
let v2: Provider;
let cfg: TempConfig;
let control: CliProcess | undefined;
let proxy: CliProcess | undefined;
let ports: { listen: number; xds: number; controlAdmin: number; proxyAdmin: number };
const conns: RawDubboConnection[] = [];

const controlAdmin = (): string => `127.0.0.1:${ports.controlAdmin}`;
const proxyAdmin = (): string => `127.0.0.1:${ports.proxyAdmin}`;
const start = (): Promise<CliProcess> => startControl({ configDir: cfg.dir, xdsPort: ports.xds, adminPort: ports.controlAdmin });

interface CallRecord {
  /** When the call was sent and answered (ms since the epoch). */
  sent: number;
  done: number;
  version?: string;
  error?: string;
}

/** Calls back to back on each connection until `stop()` (or the hard bounds). */
class Load {
  readonly calls: CallRecord[] = [];
  private stopped = false;
  private readonly loops: Promise<void>[];

  constructor(connections: RawDubboConnection[]) {
    const t0 = Date.now();
    let id = 1;
    this.loops = connections.map(async (c) => {
      while (!this.stopped && Date.now() - t0 < MAX_LOAD_MS && this.calls.length < MAX_CALLS) {
        const rec: CallRecord = { sent: Date.now(), done: 0 };
        try {
          const r = await c.call({ id: id++, method: 'sayHello', args: ['load'], timeoutMs: 3000 });
          const m = /from provider (v\d)@/.exec(String(r.value));
          if (r.status !== 20 || !m) rec.error = `status ${r.status}: ${JSON.stringify(r.error ?? r.value)}`;
          else rec.version = m[1];
        } catch (err) {
          rec.error = (err as Error).message;
        }
        rec.done = Date.now();
        this.calls.push(rec);
      }
    });
  }

  failures(): CallRecord[] {
    return this.calls.filter((c) => c.error !== undefined);
  }

  /** Calls sent and answered within [from, to]. */
  between(from: number, to: number): CallRecord[] {
    return this.calls.filter((c) => c.sent >= from && c.done <= to);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.loops);
  }
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
  await waitSynced(controlAdmin(), NODE, 'the proxy to ACK the first config');
  for (let i = 0; i < CONNECTIONS; i++) conns.push(await RawDubboConnection.connect(`127.0.0.1:${ports.listen}`));
});

afterAll(async () => {
  await Promise.all(conns.map((c) => c.close()));
  await proxy?.stop();
  await control?.stop();
  await v1?.close();
  await v2?.close();
  cfg?.remove();
});

describe('control plane restarts during load', () => {
  it('loses no call, keeps serving while the control plane is down, and re-syncs with each new control plane', async () => {
    const load = new Load(conns);
    try {
      await sleep(300);
      const applied = await proxyApplied(proxyAdmin());

      // 1. Stopped and restarted with the same files.
      const down1 = Date.now();
      await control!.stop();
      control = undefined;
      await until(() => /xds stream lost/.test(proxy!.output()), 'the proxy to notice the control plane is gone', 5000);
      await sleep(400);
      const up1 = Date.now();
      expect(load.between(down1, up1).length).toBeGreaterThan(20); // calls kept flowing while it was down
      control = await start();
      const sync1 = await waitSynced(controlAdmin(), NODE, 'the proxy to re-sync with the restarted control plane', 15_000);
      // Same files, same versions: the proxy ACKed them without applying anything again.
      expect(await proxyApplied(proxyAdmin())).toEqual(applied);
      expect(applied.version).toBe(expectedProxyVersion(sync1.served, sync1.node));

      // 2. Stopped, the MetaRouter edited meanwhile (all to v2), restarted.
      await sleep(200);
      const down2 = Date.now();
      await control.stop();
      control = undefined;
      writeAtomically(cfg.dir, 'router.yaml', routerYaml('v2'));
      await sleep(400);
      const up2 = Date.now();
      expect(load.between(down2, up2).length).toBeGreaterThan(20);
      expect(load.between(down2, up2).every((c) => c.version === 'v1')).toBe(true);
      control = await start();
      const sync2 = await waitSynced(controlAdmin(), NODE, 'the proxy to sync with the edited config', 15_000);
      const applied2 = await proxyApplied(proxyAdmin());
      expect(applied2.version).toBe(expectedProxyVersion(sync2.served, sync2.node));
      expect(applied2.version).not.toBe(applied.version);
      const switched = Date.now();
      await sleep(300);
      // Calls sent after the ACK go to v2 only.
      const after = load.between(switched, Date.now());
      expect(after.length).toBeGreaterThan(20);
      expect(after.every((c) => c.version === 'v2')).toBe(true);
    } finally {
      await load.stop();
    }
    const failures = load.failures();
    console.log(`restart-load: ${load.calls.length} calls, ${failures.length} failed`);
    expect(failures.slice(0, 5), `${failures.length} of ${load.calls.length} calls failed`).toEqual([]);
    expect(load.calls.length).toBeGreaterThan(200);
    for (const c of conns) expect(c.isClosed).toBe(false);
  });
});
