/**
 * A user MetaProtocol filter end to end: the deny_users example (examples/user-filter/) loaded into the real proxy
 * CLI with `--filter`, named in a MetaRouter's `waypost.io/meta-protocol-filters` annotation, in front of the demo
 * Dubbo provider. Nothing in src/ knows the filter: it is resolved by name through the filter registry.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { DEMO_HOST, DEMO_PORT_NAME, freePorts, projectRoot, spawnProxy, waitReady, writeTempConfig, type ProxyProcess } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection, Status } from '../../examples/dubbo/raw-client.js';
import { metricSum } from '../helpers/admin.js';

const FILTER_MODULE = path.join(projectRoot(), 'dist', 'examples', 'user-filter', 'filter.js');
// The proxy child loads the compiled filter: a missing build must fail, not skip.
if (!existsSync(FILTER_MODULE)) throw new Error(`${FILTER_MODULE} is missing: run npx tsc -p .`);

let provider: Provider;
let proxy: ProxyProcess;
let config: { dir: string; remove(): void };
let conn: RawDubboConnection;
let nextId = 1;

function configYaml(listen: number, providerPort: number): string {
  const filters = [{ name: 'example.filters.deny_users', config: { users: ['mallory', 'eve'] } }];
  return [
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'demo', namespace: 'default' },
      spec: {
        hosts: [DEMO_HOST],
        ports: [{ number: listen, name: DEMO_PORT_NAME, protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: [{ address: '127.0.0.1', ports: { [DEMO_PORT_NAME]: providerPort } }],
      },
    },
    {
      apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
      kind: 'MetaRouter',
      metadata: { name: 'demo', namespace: 'default', annotations: { 'waypost.io/meta-protocol-filters': JSON.stringify(filters) } },
      spec: { hosts: [DEMO_HOST], routes: [{ name: 'all', route: [{ destination: { host: DEMO_HOST } }] }] },
    },
  ]
    .map((d) => YAML.stringify(d))
    .join('---\n');
}

beforeAll(async () => {
  provider = await startProvider({ version: 'v1' });
  const [listen] = await freePorts(1);
  config = writeTempConfig({ 'demo.yaml': configYaml(listen!, provider.port) }, 'waypost-user-filter-');
  proxy = await spawnProxy({ configDir: config.dir, extraArgs: ['--filter', FILTER_MODULE] });
  await waitReady(proxy);
  conn = await RawDubboConnection.connect(`127.0.0.1:${listen}`);
});

afterAll(async () => {
  conn?.close();
  await proxy?.stop();
  await provider?.close();
  config?.remove();
});

const call = (attachments: Record<string, string>) =>
  conn.call({ id: nextId++, method: 'sayHello', args: ['x'], attachments, timeoutMs: 10_000 });

describe('a user filter through waypost proxy --filter', () => {
  it('loads the module and registers its factory by name', () => {
    expect(proxy.output()).toMatch(/filter loaded .*filters=example\.filters\.deny_users/);
  });

  it('denies a listed user with the protocol-native error, before the provider sees the call', async () => {
    const before = provider.requests.length;
    const r = await call({ user: 'mallory' });
    expect(r.status).toBe(Status.SERVER_ERROR);
    expect(r.error?.message).toMatch(/^user mallory is not allowed on listener /);
    expect(provider.requests.length).toBe(before);
    expect(conn.isClosed).toBe(false);
  });

  it('lets other users and calls without the attachment through to the provider', async () => {
    const before = provider.requests.length;
    expect((await call({ user: 'alice' })).status).toBe(Status.OK);
    expect((await call({})).status).toBe(Status.OK);
    expect(provider.requests.length).toBe(before + 2);
  });

  it('counts its denials in its own metric, on the proxy\'s /metrics', async () => {
    await call({ user: 'eve' });
    await call({ user: 'eve' });
    expect(await metricSum(proxy.adminAddress, /^example_users_denied_total\{.*user="eve"/)).toBe(2);
  });
});
