/**
 * NACK round trips with both planes as child processes and real Dubbo providers (v1, v2).
 *
 * The control plane runs with `--codec` of a tiny user codec module (written to a temp dir) that the data plane
 * does not load. A change mapping a protocol to that codec is valid for the control plane, so it is served, and
 * `proxy.apply` rejects it (codec not registered), so the data plane NACKs it. Checked: `/debug/syncz` shows the
 * NACK for that node with a message naming the codec, the NACKed version is not sent again, the proxy keeps serving
 * its last good config (real calls, on an open and on a new connection); then the file is fixed and the new
 * version is ACKed (`last_acked` = `last_sent` = served, every type) and applied (calls follow it).
 *
 * 1. A change that touches the listeners only: the demo port's protocol mapped to the control-only codec.
 * 2. A change that spans every type — a new service on the control-only codec (new cluster, endpoints, listener,
 *    route) — so the rejection covers CDS, EDS, LDS and RDS; fixing only the codec (so CDS is the very version that
 *    was NACKed) must bring the node back in sync on every type, with the new listener's cluster in place.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { freePorts, httpGet, isListening } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER, TYPE_META_ROUTE } from '../../src/xds/resources.js';
import { HOST, routerYaml, sleep, TempConfig, until, type CliProcess } from './helpers.js';
import {
  DATA_PLANE_TYPES,
  expectedProxyVersion,
  isSynced,
  nodeSync,
  proxyApplied,
  startControl,
  startXdsProxy,
  waitSynced,
  writeAtomically,
  type NodeSync,
} from './planes.js';

const NODE = 'nack-node';
/** The codec only the control plane loads. */
const CONTROL_ONLY_CODEC = 'test.codec.control-only';
const DUBBO_CODEC = 'aeraki.meta_protocol.codec.dubbo';
const EXTRA_HOST = 'extra.xds.test';

let v1: Provider;
let v2: Provider;
let cfg: TempConfig;
/** Holds the codec module (outside the config directory). */
let codecDir: TempConfig;
let control: CliProcess | undefined;
let proxy: CliProcess | undefined;
let ports: { listen: number; extra: number; xds: number; controlAdmin: number; proxyAdmin: number };
const conns: RawDubboConnection[] = [];
let callId = 1;

const controlAdmin = (): string => `127.0.0.1:${ports.controlAdmin}`;
const proxyAdmin = (): string => `127.0.0.1:${ports.proxyAdmin}`;

const CODEC_MODULE = `export default {
  name: ${JSON.stringify(CONTROL_ONLY_CODEC)},
  protocol: 'controlonly',
  multiplexing: 'fifo',
  create() { throw new Error('not for the data plane'); },
};
`;

const yamlDocs = (docs: object[]): string => docs.map((d) => YAML.stringify(d)).join('---\n');

const appProtocol = (protocol: string, codec: string): object => ({
  apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
  kind: 'ApplicationProtocol',
  metadata: { name: protocol, namespace: 'default' },
  spec: { protocol, codec },
});

/**
 * The demo service (v1, v2 subsets) on port protocol `protocol`; with `codec`, an ApplicationProtocol maps that
 * protocol to it (`dubbo` needs none: it is built in).
 */
function serviceYaml(protocol: string, codec?: string): string {
  const portName = `tcp-metaprotocol-${protocol}`;
  return yamlDocs([
    ...(codec ? [appProtocol(protocol, codec)] : []),
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'demo', namespace: 'default' },
      spec: {
        hosts: [HOST],
        ports: [{ number: ports.listen, name: portName, protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: [
          { address: '127.0.0.1', ports: { [portName]: v1.port }, labels: { version: 'v1' } },
          { address: '127.0.0.1', ports: { [portName]: v2.port }, labels: { version: 'v2' } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: 'demo', namespace: 'default' },
      spec: { host: HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    },
  ]);
}

/** router.yaml: the demo MetaRouter, plus (with `extraCodec`) a service `extra` on protocol `extraproto` → that codec. */
function routerFile(to: 'v1' | 'v2', extraCodec?: string): string {
  if (!extraCodec) return routerYaml(to);
  return (
    routerYaml(to) +
    '---\n' +
    yamlDocs([
      appProtocol('extraproto', extraCodec),
      {
        apiVersion: 'networking.istio.io/v1beta1',
        kind: 'ServiceEntry',
        metadata: { name: 'extra', namespace: 'default' },
        spec: {
          hosts: [EXTRA_HOST],
          ports: [{ number: ports.extra, name: 'tcp-metaprotocol-extraproto', protocol: 'TCP' }],
          resolution: 'STATIC',
          endpoints: [{ address: '127.0.0.1', ports: { 'tcp-metaprotocol-extraproto': v2.port } }],
        },
      },
    ])
  );
}

async function whoAnswers(c: RawDubboConnection): Promise<string> {
  const r = await c.call({ id: callId++, method: 'sayHello', args: ['nack'], timeoutMs: 3000 });
  expect(r.status).toBe(20);
  const m = /from provider (v\d)@/.exec(String(r.value));
  if (!m) throw new Error(`unexpected answer ${JSON.stringify(r.value)}`);
  return m[1]!;
}

async function connect(port = ports.listen): Promise<RawDubboConnection> {
  const c = await RawDubboConnection.connect(`127.0.0.1:${port}`);
  conns.push(c);
  return c;
}

async function nackMetric(): Promise<number> {
  const text = (await httpGet(proxyAdmin(), '/stats/prometheus')).body;
  let sum = 0;
  for (const line of text.split('\n')) if (/^waypost_xds_updates_total\{.*result="nack"/.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

/** Writes `file` and waits until the control plane records a NACK from the node of the version of `type` it now serves. */
async function writeAndAwaitNack(file: string, text: string, type: string): Promise<{ node: NodeSync; served: Record<string, string> }> {
  writeAtomically(cfg.dir, file, text);
  return until(
    async () => {
      const s = await nodeSync(controlAdmin(), NODE);
      const t = s.node?.types[type];
      return t?.last_nack && t.last_nack.version === s.served[type] ? (s as { node: NodeSync; served: Record<string, string> }) : undefined;
    },
    `the control plane to record a NACK of the new ${type}`,
    10_000,
  );
}

/** Every type the node uses: ACKed at the served version, the ACK answering the last response sent. */
function expectAllAcked(node: NodeSync, served: Record<string, string>): void {
  for (const [short, t] of DATA_PLANE_TYPES) {
    const ts = node.types[t];
    if (!ts) continue;
    expect({ type: short, acked: ts.last_acked?.version }).toEqual({ type: short, acked: served[t] });
    if (ts.last_sent) expect({ type: short, acked: ts.last_acked?.nonce }).toEqual({ type: short, acked: ts.last_sent.nonce });
    expect({ type: short, synced: ts.synced }).toEqual({ type: short, synced: true });
  }
}

beforeAll(async () => {
  v1 = await startProvider({ version: 'v1' });
  v2 = await startProvider({ version: 'v2' });
  const [listen, extra, xds, ca, pa] = await freePorts(5);
  ports = { listen: listen!, extra: extra!, xds: xds!, controlAdmin: ca!, proxyAdmin: pa! };
  cfg = new TempConfig();
  codecDir = new TempConfig();
  const codecFile = path.join(codecDir.dir, 'control-only-codec.mjs');
  writeFileSync(codecFile, CODEC_MODULE);
  cfg.write('service.yaml', serviceYaml('dubbo'));
  cfg.write('router.yaml', routerFile('v1'));
  control = await startControl({ configDir: cfg.dir, xdsPort: ports.xds, adminPort: ports.controlAdmin, codecs: [codecFile] });
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
  codecDir?.remove();
});

describe('NACK round trip: the control plane accepts, the data plane rejects, the fix is ACKed', () => {
  let conn: RawDubboConnection;

  it('serves the first config (all to v1), with no NACK on record', async () => {
    conn = await connect();
    for (let i = 0; i < 3; i++) expect(await whoAnswers(conn)).toBe('v1');
    const { node, served } = await nodeSync(controlAdmin(), NODE);
    expect((await proxyApplied(proxyAdmin())).version).toBe(expectedProxyVersion(served, node!));
    for (const [, t] of DATA_PLANE_TYPES) expect(node!.types[t]?.last_nack ?? null).toBeNull();
  });

  it('1. a listener change: NACK on record with the reason, not resent, the last good config keeps serving; the fix is ACKed and applied', async () => {
    const good = await proxyApplied(proxyAdmin());
    const before = await nodeSync(controlAdmin(), NODE);
    const nacksBefore = await nackMetric();
    const { node, served } = await writeAndAwaitNack('service.yaml', serviceYaml('mine', CONTROL_ONLY_CODEC), TYPE_LISTENER);
    // Only the listeners changed (the protocol is a listener filter setting).
    for (const t of [TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_META_ROUTE]) expect(served[t]).toBe(before.served[t]);
    const lds = node.types[TYPE_LISTENER]!;
    expect(lds.last_nack!.message).toContain(`codec "${CONTROL_ONLY_CODEC}" is not registered`);
    expect(lds.last_nack!.message).toMatch(/^config rejected: listener \S+/);
    expect(lds.last_sent!.version).toBe(served[TYPE_LISTENER]);
    expect(lds.last_nack!.nonce).toBe(lds.last_sent!.nonce);
    expect(lds.last_acked!.version).toBe(before.served[TYPE_LISTENER]);
    expect(lds.synced).toBe(false);
    expect(isSynced(node, served)).toBe(false);
    expect(await nackMetric()).toBeGreaterThan(nacksBefore);

    // The last good config keeps serving, on the open connection and on a new one.
    expect(await proxyApplied(proxyAdmin())).toEqual(good);
    for (let i = 0; i < 3; i++) expect(await whoAnswers(conn)).toBe('v1');
    expect(await whoAnswers(await connect())).toBe('v1');
    // The NACKed version is not sent again.
    await sleep(300);
    const later = (await nodeSync(controlAdmin(), NODE)).node!.types[TYPE_LISTENER]!;
    expect(later.last_sent).toEqual(lds.last_sent);
    expect(later.last_nack).toEqual(lds.last_nack);

    // The fix: the protocol mapped to the Dubbo codec, and (same write) the MetaRouter moved to v2.
    const nackedLds = served[TYPE_LISTENER];
    writeAtomically(cfg.dir, 'router.yaml', routerFile('v2'));
    writeAtomically(cfg.dir, 'service.yaml', serviceYaml('mine', DUBBO_CODEC));
    const fixed = await waitSynced(controlAdmin(), NODE, 'the node to ACK the fixed config');
    expect(fixed.served[TYPE_LISTENER]).not.toBe(nackedLds);
    expect(fixed.served[TYPE_LISTENER]).not.toBe(before.served[TYPE_LISTENER]);
    expectAllAcked(fixed.node, fixed.served);
    // The NACK stays on record, for the version it was about.
    expect(fixed.node.types[TYPE_LISTENER]!.last_nack!.version).toBe(nackedLds);
    expect((await proxyApplied(proxyAdmin())).version).toBe(expectedProxyVersion(fixed.served, fixed.node));
    for (let i = 0; i < 3; i++) expect(await whoAnswers(conn)).toBe('v2');
    expect(conn.isClosed).toBe(false);
    const listeners = JSON.parse((await httpGet(proxyAdmin(), '/listeners')).body) as Array<{ address: string; protocol: string; codec: string }>;
    expect(listeners.find((l) => l.address.endsWith(`:${ports.listen}`))).toMatchObject({ protocol: 'mine', codec: DUBBO_CODEC });
  });

  it('2. a change spanning every type is rejected as a whole; fixing the codec alone brings every type back in sync', async () => {
    // Where part 1 left off: all to v2.
    const good = await proxyApplied(proxyAdmin());
    const before = await nodeSync(controlAdmin(), NODE);
    // A new service on the control-only codec: a new cluster, its endpoints, a listener and its route.
    const { node, served } = await writeAndAwaitNack('router.yaml', routerFile('v2', CONTROL_ONLY_CODEC), TYPE_LISTENER);
    for (const t of [TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER, TYPE_META_ROUTE]) expect(served[t]).not.toBe(before.served[t]);
    expect(node.types[TYPE_LISTENER]!.last_nack!.message).toContain(`codec "${CONTROL_ONLY_CODEC}" is not registered`);
    // The rejection covers every type the data plane held for it, the cluster too.
    expect(node.types[TYPE_CLUSTER]!.last_nack?.version).toBe(served[TYPE_CLUSTER]);
    // The last good config keeps serving.
    expect(await proxyApplied(proxyAdmin())).toEqual(good);
    for (let i = 0; i < 3; i++) expect(await whoAnswers(conn)).toBe('v2');
    expect(await isListening('127.0.0.1', ports.extra)).toBe(false);

    // The fix touches the codec name only: clusters and endpoints are as in the NACKed change.
    writeAtomically(cfg.dir, 'router.yaml', routerFile('v2', DUBBO_CODEC));
    await until(async () => (await nodeSync(controlAdmin(), NODE)).served[TYPE_LISTENER] !== served[TYPE_LISTENER], 'the control plane to serve the fix');
    const now = await nodeSync(controlAdmin(), NODE);
    expect(now.served[TYPE_CLUSTER]).toBe(served[TYPE_CLUSTER]);
    // The node must end up with the whole fixed config: every type ACKed at the served version, and applied.
    await until(
      async () => {
        const s = await nodeSync(controlAdmin(), NODE);
        return isSynced(s.node, s.served);
      },
      'the node to be in sync on every type after the fix',
      6000,
    ).catch(async (err: Error) => {
      const s = await nodeSync(controlAdmin(), NODE);
      const view = DATA_PLANE_TYPES.map(([short, t]) => {
        const ts = s.node?.types[t];
        return `${short}: served ${s.served[t]} sent ${ts?.last_sent?.version} acked ${ts?.last_acked?.version} nack ${ts?.last_nack?.version ?? '-'}`;
      });
      throw new Error(`${err.message}\n${view.join('\n')}\nproxy applied ${(await proxyApplied(proxyAdmin())).version}`);
    });
    const fixed = await nodeSync(controlAdmin(), NODE);
    expectAllAcked(fixed.node!, fixed.served);
    expect((await proxyApplied(proxyAdmin())).version).toBe(expectedProxyVersion(fixed.served, fixed.node!));
    for (let i = 0; i < 3; i++) expect(await whoAnswers(conn)).toBe('v2');
    // The new listener answers: its cluster is there.
    expect(await whoAnswers(await connect(ports.extra))).toBe('v2');
  });
});
