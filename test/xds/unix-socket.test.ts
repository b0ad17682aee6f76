/**
 * ADS over a Unix domain socket (`control --xds-listen unix:PATH`, `proxy --xds unix:PATH`), the way a sidecar reaches
 * a node-local agent: the built CLI as child processes, real Dubbo calls through the proxy to the demo providers, and
 * a MetaRouter edit pushed over the socket. A stale socket file left by an earlier run does not stop the control plane.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, httpGet } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { routerYaml, serviceYaml, spawnCli, TempConfig, until, type CliProcess } from './helpers.js';
import { waitSynced } from './planes.js';

let v1: Provider;
let v2: Provider;
let cfg: TempConfig;
let socket: string;
let control: CliProcess | undefined;
let proxy: CliProcess | undefined;
let conn: RawDubboConnection | undefined;
let ports: { listen: number; controlAdmin: number; proxyAdmin: number };
let callId = 1;

const controlAdmin = (): string => `127.0.0.1:${ports.controlAdmin}`;
const proxyAdmin = (): string => `127.0.0.1:${ports.proxyAdmin}`;

async function whoAnswers(c: RawDubboConnection): Promise<string> {
  const r = await c.call({ id: callId++, method: 'sayHello', args: ['uds'], timeoutMs: 3000 });
  expect(r.status).toBe(20);
  return /from provider (v\d)@/.exec(String(r.value))?.[1] ?? `unexpected answer ${JSON.stringify(r.value)}`;
}

beforeAll(async () => {
  v1 = await startProvider({ version: 'v1' });
  v2 = await startProvider({ version: 'v2' });
  const [listen, ca, pa] = await freePorts(3);
  ports = { listen: listen!, controlAdmin: ca!, proxyAdmin: pa! };
  cfg = new TempConfig();
  cfg.write('service.yaml', serviceYaml({ listen: ports.listen, v1: v1.port, v2: v2.port }));
  cfg.write('router.yaml', routerYaml('v1'));
  socket = path.join(cfg.dir, 'xds.sock');
  // A socket file nobody listens on, as a control plane that was killed leaves behind.
  execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', socket]);
  expect(lstatSync(socket).isSocket()).toBe(true);

  control = await spawnCli(['control', '--config', cfg.dir, '--xds-listen', `unix:${socket}`, '--admin', controlAdmin()]);
  await until(async () => (await httpGet(controlAdmin(), '/ready')).status === 200, 'the control plane to be ready', 15_000, 50).catch((e: Error) => {
    throw new Error(`${e.message}\n--- control:\n${control?.output()}`);
  });
  proxy = await spawnCli(['proxy', '--xds', `unix://${socket}`, '--node', 'uds-node', '--admin', proxyAdmin()]);
  await until(async () => (await httpGet(proxyAdmin(), '/ready')).status === 200, 'the proxy to be ready', 15_000, 50).catch((e: Error) => {
    throw new Error(`${e.message}\n--- proxy:\n${proxy?.output()}\n--- control:\n${control?.output()}`);
  });
});

afterAll(async () => {
  await conn?.close();
  await proxy?.stop();
  await control?.stop();
  await v1?.close();
  await v2?.close();
  cfg?.remove();
});

describe('xDS over a Unix domain socket', () => {
  it('configures the proxy: it routes Dubbo calls as the control plane says, and every type is ACKed', async () => {
    const { node } = await waitSynced(controlAdmin(), 'uds-node', 'the proxy on the socket');
    expect(node.connected).toBe(true);
    conn = await RawDubboConnection.connect(`127.0.0.1:${ports.listen}`);
    for (let i = 0; i < 3; i++) expect(await whoAnswers(conn)).toBe('v1');
    expect(control!.output()).toContain(`unix:${socket}`);
  });

  it('pushes a MetaRouter edit over the socket to the open connection', async () => {
    cfg.write('router.yaml', routerYaml('v2'));
    await until(async () => (await whoAnswers(conn!)) === 'v2', 'calls on the open connection to reach v2', 10_000, 50);
    await waitSynced(controlAdmin(), 'uds-node', 'the proxy to ACK the edit');
  });

  it('removes its socket file when it stops', async () => {
    await proxy?.stop();
    await control?.stop();
    expect(existsSync(socket)).toBe(false);
  });
});
