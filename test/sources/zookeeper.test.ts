/**
 * The Zookeeper (Dubbo registry) source against a real ZooKeeper (Debian's package, run in the foreground), with
 * providers registered as Dubbo registers them (EPHEMERAL URL-encoded provider URLs on their own sessions):
 *
 * - in-process: registering, a second provider, a session closing, the last provider leaving, two services on one port;
 * - end to end: `waypost control --zookeeper … --config <MetaRouter routing by version>` and
 *   `waypost proxy --xds …` as child processes, real Dubbo calls (raw hessian client) to real demo providers that are
 *   registered in ZooKeeper as they start and leave.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { ZookeeperSource } from '../../control/sources/zookeeper.js';
import type { CrdDocument } from '../../control/types.js';
import { checkDocuments } from '../../control/validate.js';
import { freePort, freePorts, httpGet } from '../../examples/dubbo/harness.js';
import { DEMO_INTERFACE, startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { setLogSink } from '../../src/log.js';
import { spawnCli, TempConfig, until, type CliProcess } from '../xds/helpers.js';
import { registerProvider, startZookeeper, type Registration, type ZookeeperServer } from './zk.js';

const HOST = 'org.apache.dubbo.samples.basic.api.demoservice';
const ECHO = 'org.example.EchoService';

let zk: ZookeeperServer;

beforeAll(async () => {
  zk = await startZookeeper();
}, 90_000);

afterAll(async () => {
  await zk?.stop();
});

interface SeSpec {
  hosts: string[];
  ports: Array<{ number: number; name: string }>;
  endpoints: Array<{ address: string; ports: Record<string, number>; labels: Record<string, string> }>;
}

describe('ZookeeperSource', () => {
  let src: ZookeeperSource;
  const logLines: string[] = [];
  let changes = 0;
  const regs: Registration[] = [];
  const entry = (host = HOST): CrdDocument | undefined => src.documents().find((d) => (d.spec as SeSpec).hosts[0] === host);
  const endpoints = (host = HOST): string[] => ((entry(host)?.spec as SeSpec | undefined)?.endpoints ?? []).map((e) => `${e.address}:${e.ports['tcp-metaprotocol-dubbo']}`);

  beforeAll(async () => {
    setLogSink((line) => logLines.push(line));
    src = new ZookeeperSource({ address: zk.address, sessionTimeoutMs: 6000 });
    await src.start(() => changes++); // nothing under /dubbo yet
  });

  afterAll(async () => {
    await Promise.all(regs.map((r) => r.close()));
    await src?.close();
    setLogSink((line) => process.stderr.write(line + '\n'));
  });

  it('starts with an empty registry (no /dubbo yet)', () => {
    expect(src.documents()).toEqual([]);
    expect(src.name).toBe(`zookeeper ${zk.address}`);
  });

  it('turns a registered provider into a ServiceEntry as dubbo2istio names it', async () => {
    regs.push(await registerProvider(zk.address, '10.0.0.1', 20880, { aeraki_meta_app_version: 'v1', aeraki_meta_app_namespace: 'dubbo' }));
    await until(() => entry(), 'the ServiceEntry', 5000);
    const doc = entry()!;
    expect(doc).toMatchObject({
      file: `zookeeper://${zk.address}/dubbo/${DEMO_INTERFACE}`,
      index: 0,
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      name: 'aeraki-org-apache-dubbo-samples-basic-api-demoservice',
      namespace: 'dubbo',
    });
    const spec = doc.spec as SeSpec;
    expect(spec.ports).toEqual([{ number: 20880, name: 'tcp-metaprotocol-dubbo', protocol: 'TCP' }]);
    expect(spec.endpoints).toHaveLength(1);
    expect(spec.endpoints[0]!.labels).toMatchObject({ version: 'v1', registryName: 'default', interface: DEMO_INTERFACE, side: 'provider', methods: 'sayHello-whoami-echoAttachments-slow-fail' });
    expect(spec.endpoints[0]!.labels).not.toHaveProperty('aeraki_meta_app_namespace');
    expect(changes).toBeGreaterThan(0);
  });

  it('adds a second provider, on its own port, as a second endpoint', async () => {
    regs.push(await registerProvider(zk.address, '10.0.0.2', 20881, { aeraki_meta_app_version: 'v2', aeraki_meta_app_namespace: 'dubbo' }));
    await until(() => endpoints().length === 2, 'the second endpoint', 5000);
    expect(endpoints()).toEqual(['10.0.0.1:20880', '10.0.0.2:20881']);
    expect((entry()!.spec as SeSpec).ports[0]!.number).toBe(20880);
  });

  it('drops the endpoint of a provider whose session closed (its ephemeral node is gone)', async () => {
    await regs.shift()!.close();
    await until(() => endpoints().length === 1, 'the endpoint to go', 5000);
    expect(endpoints()).toEqual(['10.0.0.2:20881']);
    expect((entry()!.spec as SeSpec).ports[0]!.number).toBe(20880); // the listener does not move
  });

  it('keeps the ServiceEntry, without endpoints, when the last provider leaves', async () => {
    await regs.shift()!.close();
    await until(() => endpoints().length === 0, 'the last endpoint to go', 5000);
    expect(entry()).toBeDefined();
    expect((entry()!.spec as SeSpec).endpoints).toEqual([]);
  });

  it('keeps its documents while ZooKeeper is down, and reads the registry again when it is back', async () => {
    regs.push(await registerProvider(zk.address, '10.0.0.4', 20880, { aeraki_meta_app_version: 'v1' }));
    await until(() => endpoints().length === 1, 'the provider', 5000);
    const mark = logLines.length;
    await zk.restart(300);
    expect(logLines.slice(mark).join('\n')).toMatch(/zookeeper: disconnected; keeping the last providers/);
    expect(endpoints()).toEqual(['10.0.0.4:20880']);
    // On a loaded machine ZooKeeper can take long enough to come back that the session expires: then the source
    // reconnects with a new session, which reads the registry again just the same.
    await until(() => logLines.slice(mark).some((l) => /zookeeper: reconnected( with a new session)?; reading the registry again/.test(l)), 'the source to reconnect', 20_000).catch((err: Error) => {
      throw new Error(`${err.message}; the source logged:\n${logLines.slice(mark).join('\n')}`);
    });
    // Registered after the restart: seen through the re-armed watches.
    regs.push(await registerProvider(zk.address, '10.0.0.5', 20880, { aeraki_meta_app_version: 'v2' }));
    await until(() => endpoints().length === 2, 'the provider registered after the restart', 10_000);
    await Promise.all(regs.splice(0).map((r) => r.close()));
    await until(() => endpoints().length === 0, 'both to leave', 20_000);
  }, 60_000);

  it('survives an undecodable frame from the server (a bug of the client library that would crash the process)', async () => {
    regs.push(await registerProvider(zk.address, '10.0.0.6', 20880, { aeraki_meta_app_version: 'v1' }));
    await until(() => endpoints().length === 1, 'the provider', 5000);
    const client = (src as unknown as { client: { connectionManager: { onSocketData(b: Buffer): void } } }).client;
    const mark = logLines.length;
    // A notification header without its event: the library's decoder throws from its socket 'data' handler.
    expect(() => client.connectionManager.onSocketData(Buffer.from([0, 0, 0, 16, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))).not.toThrow();
    expect(logLines.slice(mark).join('\n')).toMatch(/zookeeper: undecodable data from the server/);
    await until(() => logLines.slice(mark).some((l) => l.includes('zookeeper: reconnected')), 'the source to reconnect', 20_000).catch((err: Error) => {
      throw new Error(`${err.message}; the source logged:\n${logLines.slice(mark).join('\n')}`);
    });
    await regs.pop()!.close();
    await until(() => endpoints().length === 0, 'the provider to leave, seen after the reconnect', 20_000);
  }, 60_000);

  it('ignores, with a warning, hostile provider URLs (port 99999, a non-numeric or overflowing weight, a host that is no host) and keeps the good one', async () => {
    const mark = logLines.length;
    const good = await registerProvider(zk.address, '10.0.0.7', 20880, { aeraki_meta_app_version: 'v1', weight: '100' });
    regs.push(good);
    const hostile = [
      await registerProvider(zk.address, '10.0.0.8', 99999, { aeraki_meta_app_version: 'v1' }),
      await registerProvider(zk.address, '10.0.0.9', 20880, { aeraki_meta_app_version: 'v1', weight: 'heavy' }),
      await registerProvider(zk.address, '10.0.0.10', 20880, { aeraki_meta_app_version: 'v1', weight: '99999999999' }),
      await registerProvider(zk.address, '10.0.0.11', 20880, { aeraki_meta_app_version: 'v1', weight: '-5' }),
      await registerProvider(zk.address, 'evil host', 20880, { aeraki_meta_app_version: 'v1' }),
    ];
    regs.push(...hostile);
    const warned = (text: string) => logLines.slice(mark).some((l) => l.includes('WARN') && l.includes('zookeeper: ignoring provider') && l.includes(text));
    await until(
      () => ['port 99999 is out of range', 'weight "heavy" is not an integer', 'weight "99999999999"', 'weight "-5"', 'host "evil host" is not an IP address'].every(warned),
      'a warning for each hostile provider',
      5000,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; the source logged:\n${logLines.slice(mark).join('\n')}`);
    });
    // Only the good provider made it, and the documents still validate.
    expect(endpoints()).toEqual(['10.0.0.7:20880']);
    expect((entry()!.spec as SeSpec).ports[0]!.number).toBe(20880);
    expect(checkDocuments(src.documents()).errors.map((e) => e.format())).toEqual([]);
    // Each is warned about once, not on every rebuild.
    const again = await registerProvider(zk.address, '10.0.0.12', 20880, { aeraki_meta_app_version: 'v2' });
    await until(() => endpoints().length === 2, 'one more good provider', 5000);
    expect(logLines.slice(mark).filter((l) => l.includes('port 99999 is out of range'))).toHaveLength(1);
    await Promise.all([again, ...regs.splice(regs.indexOf(good))].map((r) => r.close()));
    await until(() => endpoints().length === 0, 'the providers to leave', 5000);
  }, 30_000);

  it('leaves out, and logs, a second service whose listener port is taken', async () => {
    regs.push(await registerProvider(zk.address, '10.0.0.3', 20880, { aeraki_meta_app_namespace: 'dubbo' }, ECHO));
    await until(() => logLines.some((l) => l.includes(`zookeeper: org.example.echoservice is not served: its port 20880 is already the listener of ${HOST}`)), 'the clash', 5000);
    // Sorted by host, the demo service comes first and keeps the port; the echo service is left out.
    expect(entry()).toBeDefined();
    expect(entry('org.example.echoservice')).toBeUndefined();
    await regs.pop()!.close();
  });
});

describe('end to end: control --zookeeper, proxy --xds, real Dubbo calls', () => {
  let v1: Provider;
  let v2: Provider;
  let reg1: Registration | undefined;
  let reg2: Registration | undefined;
  let cfg: TempConfig;
  let control: CliProcess;
  let proxy: CliProcess;
  let ports: { listen: number; xds: number; controlAdmin: number; proxyAdmin: number };
  const conns: RawDubboConnection[] = [];
  let id = 1;

  /** Who answers `sayHello` (v1 / v2), or the error status. */
  async function call(c: RawDubboConnection, attachments: Record<string, string> = {}): Promise<string> {
    const r = await c.call({ id: id++, method: 'sayHello', args: ['zk'], attachments, timeoutMs: 3000 });
    if (r.status !== 20) return `status ${r.status}`;
    const m = /from provider (v\d)@/.exec(String(r.value));
    return m ? m[1]! : `unexpected ${JSON.stringify(r.value)}`;
  }

  async function proxyVersion(): Promise<string | null> {
    return (JSON.parse((await httpGet(`127.0.0.1:${ports.proxyAdmin}`, '/config_dump')).body) as { version: string | null }).version;
  }

  /** Two providers on one port (as Dubbo apps all use 20880), on 127.0.0.2 / .3; the proxy listens on 127.0.0.1. */
  async function startProviders(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const port = await freePort('127.0.0.1');
      try {
        v1 = await startProvider({ version: 'v1', host: '127.0.0.2', port });
        v2 = await startProvider({ version: 'v2', host: '127.0.0.3', port });
        return;
      } catch (err) {
        await v1?.close();
        if (attempt > 5) throw err;
      }
    }
  }

  const params = (version: string) => ({ aeraki_meta_app_version: version, aeraki_meta_app_namespace: 'dubbo', aeraki_meta_workload_selector: 'app=dubbo-sample-provider' });

  beforeAll(async () => {
    await startProviders();
    reg1 = await registerProvider(zk.address, '127.0.0.2', v1.port, params('v1'));
    const [xds, ca, pa] = await freePorts(3);
    ports = { listen: v1.port, xds: xds!, controlAdmin: ca!, proxyAdmin: pa! };
    cfg = new TempConfig();
    cfg.write(
      'routing.yaml',
      [
        YAML.stringify({
          apiVersion: 'networking.istio.io/v1beta1',
          kind: 'DestinationRule',
          metadata: { name: 'demo', namespace: 'dubbo' },
          spec: { host: HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
        }),
        YAML.stringify({
          apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
          kind: 'MetaRouter',
          metadata: { name: 'demo', namespace: 'dubbo' },
          spec: {
            hosts: [HOST],
            routes: [
              { name: 'jason-to-v2', match: { attributes: { user: { exact: 'jason' } } }, route: [{ destination: { host: HOST, subset: 'v2' } }] },
              { name: 'all', route: [{ destination: { host: HOST } }] },
            ],
          },
        }),
      ].join('---\n'),
    );
    control = await spawnCli(['control', '--config', cfg.dir, '--zookeeper', zk.address, '--xds-listen', `127.0.0.1:${ports.xds}`, '--admin', `127.0.0.1:${ports.controlAdmin}`]);
    await until(async () => (await httpGet(`127.0.0.1:${ports.controlAdmin}`, '/ready')).status === 200, 'the control plane to be ready', 15_000, 50).catch((e: Error) => {
      throw new Error(`${e.message}\n--- control:\n${control.output()}`);
    });
    proxy = await spawnCli(['proxy', '--xds', `127.0.0.1:${ports.xds}`, '--node', 'zk-e2e', '--admin', `127.0.0.1:${ports.proxyAdmin}`]);
    await until(async () => (await httpGet(`127.0.0.1:${ports.proxyAdmin}`, '/ready')).status === 200, 'the proxy to be ready', 15_000, 50).catch((e: Error) => {
      throw new Error(`${e.message}\n--- proxy:\n${proxy.output()}\n--- control:\n${control.output()}`);
    });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(conns.map((c) => c.close()));
    await proxy?.stop();
    await control?.stop();
    await reg1?.close();
    await reg2?.close();
    await v1?.close();
    await v2?.close();
    cfg?.remove();
  });

  it('routes Dubbo calls to the provider registered in ZooKeeper', async () => {
    const c = await RawDubboConnection.connect(`127.0.0.1:${ports.listen}`);
    conns.push(c);
    for (let i = 0; i < 4; i++) expect(await call(c)).toBe('v1');
    expect(await call(c, { user: 'jason' })).toBe('status 70'); // subset v2 has no provider yet: no healthy upstream
    expect(v1.requests.length).toBe(4);
    expect(v2.requests.length).toBe(0);
    expect(control.output()).toMatch(/zookeeper: connected/);
  });

  it('sends traffic to a second provider as soon as it registers', async () => {
    const c = conns[0]!;
    const before = await proxyVersion();
    reg2 = await registerProvider(zk.address, '127.0.0.3', v2.port, params('v2'));
    await until(async () => (await proxyVersion()) !== before, 'the proxy to apply the new endpoints', 10_000, 50);
    expect(await call(c, { user: 'jason' })).toBe('v2');
    const seen = new Set<string>();
    for (let i = 0; i < 8; i++) seen.add(await call(c));
    expect(seen).toEqual(new Set(['v1', 'v2'])); // the catch-all route spreads over both providers
    expect(c.isClosed).toBe(false);
  });

  it('stops sending traffic to a provider whose ZooKeeper session closed', async () => {
    const c = conns[0]!;
    const before = await proxyVersion();
    await reg1!.close();
    reg1 = undefined;
    await until(async () => (await proxyVersion()) !== before, 'the proxy to drop the provider', 10_000, 50);
    const v1Calls = v1.requests.length;
    for (let i = 0; i < 6; i++) expect(await call(c)).toBe('v2');
    expect(await call(c, { user: 'jason' })).toBe('v2');
    const fresh = await RawDubboConnection.connect(`127.0.0.1:${ports.listen}`);
    conns.push(fresh);
    for (let i = 0; i < 3; i++) expect(await call(fresh)).toBe('v2');
    expect(v1.requests.length).toBe(v1Calls);
  });
});
