/**
 * End to end over xDS with the built CLI as child processes: `waypost control` serving the Dubbo demo CRDs and
 * `waypost proxy --xds` fed by it, real Dubbo calls on one open connection (raw hessian client) to the demo
 * providers. A MetaRouter edit moves that connection's calls from v1 to v2; with the control plane stopped the proxy
 * keeps serving; restarted, the proxy reconnects and follows the next edit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, httpGet } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { TYPE_META_ROUTE } from '../../src/xds/resources.js';
import { routerYaml, serviceYaml, spawnCli, TempConfig, until, type CliProcess } from './helpers.js';

let v1: Provider;
let v2: Provider;
let cfg: TempConfig;
let control: CliProcess | undefined;
let proxy: CliProcess | undefined;
let ports: { listen: number; xds: number; controlAdmin: number; proxyAdmin: number };
const conns: RawDubboConnection[] = [];
let callId = 1;

const controlAdmin = (): string => `127.0.0.1:${ports.controlAdmin}`;
const proxyAdmin = (): string => `127.0.0.1:${ports.proxyAdmin}`;

async function startControl(): Promise<CliProcess> {
  const cp = await spawnCli([
    'control',
    '--config',
    cfg.dir,
    '--xds-listen',
    `127.0.0.1:${ports.xds}`,
    '--admin',
    controlAdmin(),
  ]);
  await until(async () => (await httpGet(controlAdmin(), '/ready')).status === 200, `the control plane to be ready\n${cp.output()}`, 15_000, 50);
  return cp;
}

async function whoAnswers(c: RawDubboConnection): Promise<string> {
  const r = await c.call({ id: callId++, method: 'sayHello', args: ['e2e'], timeoutMs: 3000 });
  expect(r.status).toBe(20);
  const m = /from provider (v\d)@/.exec(String(r.value));
  if (!m) throw new Error(`unexpected answer ${JSON.stringify(r.value)}`);
  return m[1]!;
}

async function proxyVersion(): Promise<string | null> {
  return (JSON.parse((await httpGet(proxyAdmin(), '/config_dump')).body) as { version: string | null }).version;
}

async function nodeRds(): Promise<{ connected: boolean; acked: string | undefined; served: string } | undefined> {
  const s = JSON.parse((await httpGet(controlAdmin(), '/debug/syncz')).body) as {
    types: Record<string, string>;
    nodes: Array<{ node_id: string; connected: boolean; types: Record<string, { last_acked: { version: string } | null }> }>;
  };
  const n = s.nodes.find((x) => x.node_id === 'e2e-node');
  return n && { connected: n.connected, acked: n.types[TYPE_META_ROUTE]?.last_acked?.version, served: s.types[TYPE_META_ROUTE]! };
}

beforeAll(async () => {
  v1 = await startProvider({ version: 'v1' });
  v2 = await startProvider({ version: 'v2' });
  const [listen, xds, ca, pa] = await freePorts(4);
  ports = { listen: listen!, xds: xds!, controlAdmin: ca!, proxyAdmin: pa! };
  cfg = new TempConfig();
  cfg.write('service.yaml', serviceYaml({ listen: ports.listen, v1: v1.port, v2: v2.port }));
  cfg.write('router.yaml', routerYaml('v1'));
  control = await startControl();
  proxy = await spawnCli(['proxy', '--xds', `127.0.0.1:${ports.xds}`, '--node', 'e2e-node', '--admin', proxyAdmin()]);
  await until(async () => (await httpGet(proxyAdmin(), '/ready')).status === 200, 'the proxy to be ready', 15_000, 50).catch((e: Error) => {
    throw new Error(`${e.message}\n--- proxy:\n${proxy?.output()}\n--- control:\n${control?.output()}`);
  });
});

afterAll(async () => {
  await Promise.all(conns.map((c) => c.close()));
  await proxy?.stop();
  await control?.stop();
  await v1?.close();
  await v2?.close();
  cfg?.remove();
});

describe('waypost control + waypost proxy --xds (Dubbo demo)', () => {
  let conn: RawDubboConnection;

  it('routes Dubbo calls as the control plane says (all to v1)', async () => {
    conn = await RawDubboConnection.connect(`127.0.0.1:${ports.listen}`);
    conns.push(conn);
    for (let i = 0; i < 3; i++) expect(await whoAnswers(conn)).toBe('v1');
    const n = await nodeRds();
    expect(n?.connected).toBe(true);
    expect(n?.acked).toBe(n?.served);
  });

  it('follows a MetaRouter edit pushed over xDS on the same open connection', async () => {
    const before = await proxyVersion();
    const servedBefore = (await nodeRds())!.served;
    cfg.write('router.yaml', routerYaml('v2'));
    await until(async () => (await proxyVersion()) !== before, 'the proxy to apply the pushed routes');
    expect(await whoAnswers(conn)).toBe('v2');
    expect(conn.isClosed).toBe(false);
    await until(async () => {
      const n = await nodeRds();
      return n && n.served !== servedBefore && n.acked === n.served;
    }, 'the control plane to record the ACK');
  });

  it('keeps serving when the control plane is gone', async () => {
    await control!.stop();
    control = undefined;
    expect(await whoAnswers(conn)).toBe('v2');
    const fresh = await RawDubboConnection.connect(`127.0.0.1:${ports.listen}`);
    conns.push(fresh);
    expect(await whoAnswers(fresh)).toBe('v2');
    expect((await httpGet(proxyAdmin(), '/ready')).status).toBe(200);
    expect(proxy!.output()).toMatch(/xds stream lost/);
  });

  it('reconnects to a restarted control plane and follows the next edit', async () => {
    const before = await proxyVersion();
    cfg.write('router.yaml', routerYaml('v1')); // edited while the control plane is down
    control = await startControl();
    await until(async () => (await nodeRds())?.connected, 'the proxy to reconnect');
    await until(async () => (await proxyVersion()) !== before, 'the proxy to apply the routes of the restarted control plane');
    expect(await whoAnswers(conn)).toBe('v1');
    expect(conn.isClosed).toBe(false);
  });
});
