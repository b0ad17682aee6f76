/**
 * A change that adds a service and edits an existing route in one write, through both planes as child processes
 * (real Dubbo providers).
 *
 * The control plane pushes CDS, LDS and RDS back to back. The new listener names a RouteConfiguration the data
 * plane has not subscribed to yet, so on receiving the LDS response it asks for it — with the nonce of the last RDS
 * response it has seen, while the RDS response of the same push is already on its way. That request must not get
 * lost: the new route must arrive at once, and the whole change be applied in about the time of a round trip, not
 * after the data plane's 5 s warming timeout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { freePorts } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { TYPE_META_ROUTE } from '../../src/xds/resources.js';
import { routerYaml, serviceYaml, TempConfig, until, type CliProcess } from './helpers.js';
import { expectedProxyVersion, nodeSync, proxyApplied, startControl, startXdsProxy, waitSynced, writeAtomically } from './planes.js';

const NODE = 'resubscribe-node';
const EXTRA_HOST = 'second.xds.test';

let v1: Provider;
let v2: Provider;
let cfg: TempConfig;
let control: CliProcess | undefined;
let proxy: CliProcess | undefined;
let ports: { listen: number; extra: number; xds: number; controlAdmin: number; proxyAdmin: number };
const conns: RawDubboConnection[] = [];
let callId = 1;

const controlAdmin = (): string => `127.0.0.1:${ports.controlAdmin}`;
const proxyAdmin = (): string => `127.0.0.1:${ports.proxyAdmin}`;

async function whoAnswers(c: RawDubboConnection): Promise<string> {
  const r = await c.call({ id: callId++, method: 'sayHello', args: ['resub'], timeoutMs: 3000 });
  expect(r.status).toBe(20);
  const m = /from provider (v\d)@/.exec(String(r.value));
  if (!m) throw new Error(`unexpected answer ${JSON.stringify(r.value)}`);
  return m[1]!;
}

beforeAll(async () => {
  v1 = await startProvider({ version: 'v1' });
  v2 = await startProvider({ version: 'v2' });
  const [listen, extra, xds, ca, pa] = await freePorts(5);
  ports = { listen: listen!, extra: extra!, xds: xds!, controlAdmin: ca!, proxyAdmin: pa! };
  cfg = new TempConfig();
  cfg.write('service.yaml', serviceYaml({ listen: ports.listen, v1: v1.port, v2: v2.port }));
  cfg.write('router.yaml', routerYaml('v1'));
  control = await startControl({ configDir: cfg.dir, xdsPort: ports.xds, adminPort: ports.controlAdmin });
  proxy = await startXdsProxy({ xdsPort: ports.xds, adminPort: ports.proxyAdmin, node: NODE });
  await waitSynced(controlAdmin(), NODE, 'the proxy to ACK the first config');
});

afterAll(async () => {
  await Promise.all(conns.map((c) => c.close()));
  await proxy?.stop();
  await control?.stop();
  await v1?.close();
  await v2?.close();
  cfg?.remove();
});

describe('a new service and a route edit in one change', () => {
  it('is applied within a round trip, without waiting for the warming timeout', async () => {
    const conn = await RawDubboConnection.connect(`127.0.0.1:${ports.listen}`);
    conns.push(conn);
    expect(await whoAnswers(conn)).toBe('v1');
    const before = await nodeSync(controlAdmin(), NODE);
    const text =
      routerYaml('v2') +
      '---\n' +
      YAML.stringify({
        apiVersion: 'networking.istio.io/v1beta1',
        kind: 'ServiceEntry',
        metadata: { name: 'second', namespace: 'default' },
        spec: {
          hosts: [EXTRA_HOST],
          ports: [{ number: ports.extra, name: 'tcp-metaprotocol-dubbo', protocol: 'TCP' }],
          resolution: 'STATIC',
          endpoints: [{ address: '127.0.0.1', ports: { 'tcp-metaprotocol-dubbo': v1.port } }],
        },
      });
    writeAtomically(cfg.dir, 'router.yaml', text);
    // Measured from the moment the control plane serves the change (its file poll and debounce are not the point).
    await until(async () => (await nodeSync(controlAdmin(), NODE)).served[TYPE_META_ROUTE] !== before.served[TYPE_META_ROUTE], 'the control plane to serve the change', 5000, 5);
    const served = Date.now();
    const { node, served: versions } = await waitSynced(controlAdmin(), NODE, 'the node to ACK the change', 8000);
    const took = Date.now() - served;
    expect((await proxyApplied(proxyAdmin())).version).toBe(expectedProxyVersion(versions, node));
    expect(node.types[TYPE_META_ROUTE]!.subscribed).toContain(`${EXTRA_HOST}_${ports.extra}`);
    expect(proxy!.output()).not.toMatch(/warming timed out/);
    expect(took).toBeLessThan(2500);
    expect(await whoAnswers(conn)).toBe('v2');
    const second = await RawDubboConnection.connect(`127.0.0.1:${ports.extra}`);
    conns.push(second);
    expect(await whoAnswers(second)).toBe('v1');
  });
});
