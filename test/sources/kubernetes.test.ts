/**
 * The Kubernetes document source (control/sources/kubernetes.ts) against a fake API server that speaks the real
 * list/watch wire format over HTTPS (./kube-api.ts): CRDs and MetaProtocol Services become documents; watch events
 * change and remove them; a dropped watch resumes from the last resourceVersion; 410 Gone (as an ERROR event or an
 * HTTP status) relists; the control plane serves what the source says, pushes a changed MetaRouter, and rejects an
 * invalid one naming `kubernetes:<ns>/<Kind>/<name>` and the field while the last good config keeps being served.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KubernetesSource, KUBERNETES_CRDS, ENDPOINT_SLICES, PODS, SERVICES } from '../../control/sources/kubernetes.js';
import { fromKubeconfig, inCluster } from '../../control/sources/kube-config.js';
import { startControlPlane, type ControlPlane } from '../../control/xds/control-plane.js';
import { setLogSink } from '../../src/log.js';
import { decodeResource } from '../../src/xds/convert.js';
import { TYPE_META_ROUTE } from '../../src/xds/resources.js';
import type { CrdDocument } from '../../control/types.js';
import { freePorts, httpGet } from '../../examples/dubbo/harness.js';
import { rawAdsClient, spawnCli, until, type RawAdsClient, type RawRequest, type RawResponse, type RawStream } from '../xds/helpers.js';
import { FakeKubeApi, TEST_CA, type Obj, type Res } from './kube-api.js';

const NS = 'default';
const HOST = 'demo.default.svc.cluster.local';
const PORT = 20880;
const crd = (kind: string): Res => KUBERNETES_CRDS.find((r) => r.kind === kind)!;
const SE = crd('ServiceEntry');
const DR = crd('DestinationRule');
const MR = crd('MetaRouter');

const service = (name = 'demo', port = PORT, portName = 'tcp-metaprotocol-dubbo'): Obj => ({
  metadata: { name, namespace: NS },
  spec: { type: 'ClusterIP', clusterIP: '10.96.0.10', selector: { app: name }, ports: [{ name: portName, port, targetPort: 20881, protocol: 'TCP' }] },
});
const endpoint = (ip: string, pod: string, ready = true) => ({
  addresses: [ip],
  conditions: { ready, serving: ready, terminating: !ready },
  targetRef: { kind: 'Pod', namespace: NS, name: pod },
  nodeName: 'node-1',
});
const slice = (name: string, endpoints: unknown[], service = 'demo'): Obj => ({
  metadata: {
    name,
    namespace: NS,
    labels: { 'kubernetes.io/service-name': service, 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
  },
  addressType: 'IPv4',
  ports: [{ name: 'tcp-metaprotocol-dubbo', port: 20881, protocol: 'TCP' }],
  endpoints,
});
const pod = (name: string, version: string): Obj => ({ metadata: { name, namespace: NS, labels: { app: 'demo', version } }, spec: { containers: [] }, status: {} });
const destinationRule = (): Obj => ({
  metadata: { name: 'demo', namespace: NS },
  spec: { host: HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
});
const metaRouter = (subset: string): Obj => ({
  metadata: { name: 'demo', namespace: NS },
  spec: { hosts: [HOST], routes: [{ name: 'all', route: [{ destination: { host: HOST, subset } }] }] },
});
const legacyEntry = (): Obj => ({
  metadata: { name: 'legacy', namespace: 'apps' },
  spec: {
    hosts: ['legacy.example'],
    ports: [{ number: 20890, name: 'tcp-metaprotocol-dubbo', protocol: 'TCP' }],
    resolution: 'STATIC',
    endpoints: [{ address: '10.0.0.9', labels: { version: 'v1' } }],
  },
});

const ALL: Res[] = [...KUBERNETES_CRDS, SERVICES, ENDPOINT_SLICES, PODS];
const FAST = { retryMs: 30, missingRetryMs: 300, watchTimeoutSeconds: () => 60 };

const logLines: string[] = [];
let tmp: string;

function kubeconfig(api: FakeKubeApi, name = 'kubeconfig'): string {
  writeFileSync(path.join(tmp, 'ca.pem'), TEST_CA());
  const file = path.join(tmp, name);
  writeFileSync(
    file,
    [
      'apiVersion: v1',
      'kind: Config',
      'current-context: test',
      'clusters:',
      `- name: fake\n  cluster:\n    server: ${api.url}\n    certificate-authority: ca.pem`,
      'contexts:',
      '- name: test\n  context:\n    cluster: fake\n    user: waypost\n    namespace: apps',
      'users:',
      `- name: waypost\n  user:\n    token: ${api.token}`,
      '',
    ].join('\n'),
  );
  return file;
}

function seed(api: FakeKubeApi): void {
  api.put(DR, destinationRule());
  api.put(MR, metaRouter('v1'));
  api.put(SE, legacyEntry());
  api.put(SERVICES, service());
  api.put(SERVICES, service('web', 8080, 'http-web')); // no MetaProtocol port: not a ServiceEntry
  api.put(PODS, pod('demo-v1-a', 'v1'));
  api.put(PODS, pod('demo-v2-a', 'v2'));
  api.put(ENDPOINT_SLICES, slice('demo-abc', [endpoint('10.1.0.1', 'demo-v1-a'), endpoint('10.1.0.2', 'demo-v2-a'), endpoint('10.1.0.3', 'demo-v1-b', false)]));
}

const doc = (src: KubernetesSource, file: string): CrdDocument | undefined => src.documents().find((d) => d.file === file);
const generated = (src: KubernetesSource) =>
  doc(src, `kubernetes:${NS}/Service/demo`)?.spec as { hosts: string[]; ports: unknown[]; endpoints: Array<{ address: string; ports: Record<string, number>; labels: Record<string, string> }> } | undefined;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'waypost-kube-'));
  setLogSink((line) => logLines.push(line));
});

afterAll(() => {
  setLogSink((line) => process.stderr.write(line + '\n'));
  rmSync(tmp, { recursive: true, force: true });
});

describe('kubeconfig and in-cluster config', () => {
  it('reads server, CA (relative path), token and namespace from a kubeconfig', () => {
    const api = new FakeKubeApi([]);
    api.port = 6443;
    const c = fromKubeconfig([kubeconfig(api, 'kc-only')]);
    expect(c.server.href).toBe('https://127.0.0.1:6443/');
    expect(c.ca?.toString()).toContain('BEGIN CERTIFICATE');
    expect(c.token?.()).toBe(api.token);
    expect(c.namespace).toBe('apps');
  });

  it('says what is wrong with an unusable kubeconfig', () => {
    const file = path.join(tmp, 'bad');
    writeFileSync(file, 'current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nclusters:\n- name: c\n  cluster: {server: "https://k"}\nusers:\n- name: u\n  user: {exec: {command: aws}}\n');
    expect(() => fromKubeconfig([file])).toThrow(/user "u": exec and auth-provider credential plugins are not supported/);
    writeFileSync(file, 'current-context: nope\n');
    expect(() => fromKubeconfig([file])).toThrow(/context "nope" is not defined/);
  });

  it('builds the in-cluster config from the service account files', () => {
    const dir = path.join(tmp, 'sa');
    rmSync(dir, { recursive: true, force: true });
    expect(() => inCluster({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, dir)).toThrow(/token is missing/);
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'token'), 'sa-token\n');
    writeFileSync(path.join(dir, 'ca.crt'), TEST_CA());
    writeFileSync(path.join(dir, 'namespace'), 'waypost');
    const c = inCluster({ KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' }, dir);
    expect(c.server.href).toBe('https://10.96.0.1/');
    expect(c.token?.()).toBe('sa-token');
    expect(c.namespace).toBe('waypost');
    expect(c.ca?.toString()).toContain('BEGIN CERTIFICATE');
  });
});

describe('KubernetesSource: list and watch', () => {
  let api: FakeKubeApi;
  let src: KubernetesSource;
  let changes = 0;

  beforeAll(async () => {
    api = new FakeKubeApi(ALL);
    api.missing.add('redis.aeraki.io/v1alpha1/redisservices'); // a CRD that is not installed must not block the rest
    await api.listen();
    seed(api);
    src = new KubernetesSource({ kubeconfig: kubeconfig(api), informer: FAST });
    await src.start(() => changes++);
  });

  afterAll(async () => {
    await src?.close();
    await api?.close();
  });

  it('lists the CRDs as documents named kubernetes:<ns>/<Kind>/<name>, over TLS with the bearer token', () => {
    const files = src.documents().map((d) => d.file);
    expect(files).toEqual(
      expect.arrayContaining([`kubernetes:apps/ServiceEntry/legacy`, `kubernetes:${NS}/DestinationRule/demo`, `kubernetes:${NS}/MetaRouter/demo`]),
    );
    const mr = doc(src, `kubernetes:${NS}/MetaRouter/demo`)!;
    expect(mr).toMatchObject({ apiVersion: 'metaprotocol.aeraki.io/v1alpha1', kind: 'MetaRouter', name: 'demo', namespace: NS, index: 0 });
    expect(mr.spec).toEqual(metaRouter('v1').spec);
    expect(api.requests.every((r) => r.auth === `Bearer ${api.token}`)).toBe(true);
    expect(api.listRequests('metarouters')[0]!.path).toBe('/apis/metaprotocol.aeraki.io/v1alpha1/metarouters');
    expect(src.informers().find((i) => i.resource.plural === 'redisservices')!.state).toBe('missing');
  });

  it('turns a MetaProtocol Service and its ready EndpointSlice endpoints into a ServiceEntry with the pods\' labels', () => {
    const se = doc(src, `kubernetes:${NS}/Service/demo`)!;
    expect(se).toMatchObject({ kind: 'ServiceEntry', apiVersion: 'networking.istio.io/v1beta1', name: 'demo', namespace: NS });
    expect(se.spec).toEqual({
      hosts: [HOST],
      ports: [{ number: PORT, name: 'tcp-metaprotocol-dubbo', protocol: 'TCP' }],
      location: 'MESH_INTERNAL',
      resolution: 'STATIC',
      endpoints: [
        { address: '10.1.0.1', ports: { 'tcp-metaprotocol-dubbo': 20881 }, labels: { app: 'demo', version: 'v1' } },
        { address: '10.1.0.2', ports: { 'tcp-metaprotocol-dubbo': 20881 }, labels: { app: 'demo', version: 'v2' } },
      ],
    });
    expect(src.documents().some((d) => d.file.endsWith('/Service/web'))).toBe(false);
  });

  it('follows watch events: a changed, an added and a deleted object', async () => {
    const before = changes;
    api.put(MR, metaRouter('v2'));
    await until(() => (doc(src, `kubernetes:${NS}/MetaRouter/demo`)?.spec as { routes: Array<{ route: Array<{ destination: { subset: string } }> }> }).routes[0]!.route[0]!.destination.subset === 'v2', 'the MetaRouter change');
    expect(changes).toBeGreaterThan(before);

    api.put(PODS, pod('demo-v1-b', 'v1'));
    api.put(ENDPOINT_SLICES, slice('demo-abc', [endpoint('10.1.0.1', 'demo-v1-a'), endpoint('10.1.0.2', 'demo-v2-a'), endpoint('10.1.0.3', 'demo-v1-b')]));
    await until(() => generated(src)?.endpoints.length === 3, 'the endpoint that became ready');
    expect(generated(src)!.endpoints[2]).toEqual({ address: '10.1.0.3', ports: { 'tcp-metaprotocol-dubbo': 20881 }, labels: { app: 'demo', version: 'v1' } });

    api.put(PODS, pod('demo-v1-b', 'v3')); // a relabelled pod relabels its endpoint
    await until(() => generated(src)?.endpoints[2]?.labels.version === 'v3', 'the pod label change');

    api.remove(DR, NS, 'demo');
    await until(() => !doc(src, `kubernetes:${NS}/DestinationRule/demo`), 'the DestinationRule to disappear');
    api.remove(SERVICES, NS, 'demo');
    await until(() => !generated(src), 'the generated ServiceEntry to disappear');
    api.put(SERVICES, service());
    api.put(DR, destinationRule());
    await until(() => generated(src) && doc(src, `kubernetes:${NS}/DestinationRule/demo`), 'both to come back');
  });

  it('resumes a dropped watch from the last resourceVersion, without listing again', async () => {
    const rv = api.put(MR, metaRouter('v1'));
    await until(() => src.informers().find((i) => i.resource.plural === 'metarouters')!.resourceVersion === rv, 'the informer to see the change');
    await until(() => api.openWatches('metarouters') === 1, 'the metarouters watch');
    const lists = api.listRequests('metarouters').length;
    const watches = api.watchRequests('metarouters').length;
    expect(api.dropWatches()).toBeGreaterThan(5);
    // Changed while the watch is down: replayed from history on the resumed watch.
    api.put(MR, metaRouter('v2'));
    await until(() => (doc(src, `kubernetes:${NS}/MetaRouter/demo`)?.spec as { routes: Array<{ route: Array<{ destination: { subset: string } }> }> }).routes[0]!.route[0]!.destination.subset === 'v2', 'the change made during the drop');
    const resumed = api.watchRequests('metarouters').slice(watches);
    expect(resumed.length).toBeGreaterThanOrEqual(1);
    expect(resumed[0]!.query.resourceVersion).toBe(rv);
    expect(resumed[0]!.query.watch).toBe('true'); // opened by @kubernetes/client-node's Watch
    expect(resumed[0]!.query.allowWatchBookmarks).toBe('true');
    expect(api.listRequests('metarouters').length).toBe(lists);
  });

  it('moves its resourceVersion on BOOKMARKs', async () => {
    await until(() => api.openWatches('metarouters') === 1, 'the metarouters watch');
    api.put(PODS, pod('unrelated', 'v9')); // bumps the server's resourceVersion without touching metarouters
    api.bookmark();
    const inf = src.informers().find((i) => i.resource.plural === 'metarouters')!;
    await until(() => inf.resourceVersion === String(api.rv), 'the bookmark');
  });

  it('lists again after 410 Gone (an ERROR event), and so sees changes whose events were compacted away', async () => {
    const inf = src.informers().find((i) => i.resource.plural === 'destinationrules')!;
    const lists = api.listRequests('destinationrules').length;
    const watches = api.watchRequests('destinationrules').length;
    const rvBefore = inf.resourceVersion;
    api.silently(() => api.remove(DR, NS, 'demo'));
    api.dropWatches();
    await until(() => !doc(src, `kubernetes:${NS}/DestinationRule/demo`), 'the relist to drop the DestinationRule');
    expect(api.listRequests('destinationrules').length).toBe(lists + 1);
    expect(inf.stats.relists).toBeGreaterThanOrEqual(1);
    // It first tried to resume from where it was, and was told that is too old.
    expect(api.watchRequests('destinationrules').slice(watches)[0]!.query.resourceVersion).toBe(rvBefore);
    expect(logLines.join('\n')).toMatch(/destinationrules resourceVersion \d+ is too old \(410 Gone\): listing again/);
  });

  it('lists again after an HTTP 410 on the watch request too', async () => {
    api.goneAsHttp = true;
    const lists = api.listRequests('destinationrules').length;
    api.silently(() => api.put(DR, destinationRule()));
    api.dropWatches();
    await until(() => doc(src, `kubernetes:${NS}/DestinationRule/demo`), 'the relist to bring the DestinationRule back');
    expect(api.listRequests('destinationrules').length).toBe(lists + 1);
    expect(api.requests.some((r) => r.status === 410)).toBe(true);
    api.goneAsHttp = false;
  });

  it('picks up a CRD installed later', async () => {
    api.missing.delete('redis.aeraki.io/v1alpha1/redisservices');
    api.put(KUBERNETES_CRDS.find((r) => r.kind === 'RedisService')!, {
      metadata: { name: 'cache', namespace: NS },
      spec: { host: ['redis.default.svc.cluster.local'] },
    });
    await until(() => doc(src, `kubernetes:${NS}/RedisService/cache`), 'the RedisService', 5000);
  });
});

describe('KubernetesSource: pods forbidden, paginated lists, one namespace', () => {
  let api: FakeKubeApi;
  let src: KubernetesSource;

  beforeAll(async () => {
    api = new FakeKubeApi(ALL);
    api.forbidden.add('/v1/pods');
    api.maxPage = 3; // the server may return fewer items than asked for: the client follows `continue`
    await api.listen();
    seed(api);
    for (let i = 0; i < 7; i++) api.put(MR, { ...metaRouter('v1'), metadata: { name: `extra-${i}`, namespace: NS } });
    api.put(MR, { ...metaRouter('v1'), metadata: { name: 'elsewhere', namespace: 'other' } });
    src = new KubernetesSource({ kubeconfig: kubeconfig(api), namespace: NS, informer: FAST });
    await src.start(() => {});
  });

  afterAll(async () => {
    await src?.close();
    await api?.close();
  });

  it('labels endpoints with their EndpointSlice\'s labels when pods cannot be read', () => {
    expect(src.informers().find((i) => i.resource.plural === 'pods')!.state).toBe('forbidden');
    expect(generated(src)!.endpoints.map((e) => e.labels)).toEqual([
      { 'kubernetes.io/service-name': 'demo', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
      { 'kubernetes.io/service-name': 'demo', 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    ]);
    expect(logLines.join('\n')).toMatch(/kubernetes: not allowed to list pods: .*403 Forbidden/);
  });

  it('watches only the namespace it is given, at the namespaced paths, following list pages', () => {
    expect(api.listRequests('metarouters')[0]!.path).toBe(`/apis/metaprotocol.aeraki.io/v1alpha1/namespaces/${NS}/metarouters`);
    expect(api.listRequests('metarouters').map((r) => r.query.continue !== undefined)).toEqual([false, true, true]);
    expect(src.documents().filter((d) => d.kind === 'MetaRouter')).toHaveLength(8);
    expect(src.documents().some((d) => d.namespace === 'other')).toBe(false);
  });

  it('skips a second MetaProtocol Service on the same port, saying why', async () => {
    api.put(SERVICES, service('twin'));
    await until(() => logLines.some((l) => l.includes('Service default/twin is not served: its port tcp-metaprotocol-dubbo (20880) is already a MetaProtocol listener of Service default/demo')), 'the clash to be logged');
    expect(src.documents().some((d) => d.file.endsWith('/Service/twin'))).toBe(false);
  });
});

describe('control plane with the Kubernetes source', () => {
  let api: FakeKubeApi;
  let src: KubernetesSource;
  let cp: ControlPlane;
  let ads: RawAdsClient;
  let s: RawStream<RawRequest, RawResponse>;
  const ROUTE = `${HOST}_${PORT}`;
  const routeCluster = (r: RawResponse): string =>
    (decodeResource(TYPE_META_ROUTE, r.resources![0]!, 0).json as { routes: Array<{ route: { cluster: string } }> }).routes[0]!.route.cluster;

  beforeAll(async () => {
    api = new FakeKubeApi(ALL);
    await api.listen();
    seed(api);
    src = new KubernetesSource({ kubeconfig: kubeconfig(api), informer: FAST });
    cp = await startControlPlane({ paths: [], xds: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 }, sources: [src], debounceMs: 20 });
    ads = rawAdsClient(cp.xdsPort);
  });

  afterAll(async () => {
    ads?.close();
    await cp?.close();
    await api?.close();
  });

  it('serves the resources translated from the API server\'s objects', async () => {
    expect(cp.snapshot).toBeDefined();
    const clusters = cp.snapshot!.clusters.map((c) => (c as { name: string }).name);
    expect(clusters).toEqual(expect.arrayContaining([`outbound|${PORT}||${HOST}`, `outbound|${PORT}|v1|${HOST}`, `outbound|${PORT}|v2|${HOST}`, 'outbound|20890||legacy.example']));
    const v1 = cp.snapshot!.endpoints.find((e) => (e as { cluster_name: string }).cluster_name === `outbound|${PORT}|v1|${HOST}`);
    expect(JSON.stringify(v1)).toContain('10.1.0.1');
    expect(JSON.stringify(v1)).not.toContain('10.1.0.2');

    s = ads.sotw();
    s.send({ node: { id: 'k8s-test' }, type_url: TYPE_META_ROUTE, resource_names: [ROUTE] });
    const r = await s.next();
    expect(routeCluster(r)).toBe(`outbound|${PORT}|v1|${HOST}`);
    s.send({ type_url: TYPE_META_ROUTE, version_info: r.version_info, response_nonce: r.nonce, resource_names: [ROUTE] });
  });

  it('pushes a new RDS version when the MetaRouter changes in the cluster', async () => {
    const version = cp.snapshot!.version;
    api.put(MR, metaRouter('v2'));
    const r = await s.next(5000);
    expect(r.type_url).toBe(TYPE_META_ROUTE);
    expect(routeCluster(r)).toBe(`outbound|${PORT}|v2|${HOST}`);
    expect(cp.snapshot!.version).not.toBe(version);
    s.send({ type_url: TYPE_META_ROUTE, version_info: r.version_info, response_nonce: r.nonce, resource_names: [ROUTE] });
  });

  it('rejects an invalid MetaRouter from the API server naming kubernetes:<ns>/<Kind>/<name> and the field, and keeps serving', async () => {
    const version = cp.snapshot!.version;
    const mark = logLines.length;
    api.put(MR, {
      metadata: { name: 'demo', namespace: NS },
      spec: { hosts: [HOST], routes: [{ name: 'all', route: [{ destination: { host: HOST, subset: 'v9' } }] }] },
    });
    await until(() => logLines.slice(mark).some((l) => l.includes('config change rejected')), 'the rejection');
    const errors = logLines.slice(mark).filter((l) => l.includes('invalid config:'));
    expect(errors.join('\n')).toMatch(/invalid config: kubernetes:default\/MetaRouter\/demo:0: MetaRouter\/demo: spec\.routes\[0\]\.route\[0\]\.destination\.subset: .*v9/);
    expect(cp.snapshot!.version).toBe(version);
    expect(await s.none(300)).toEqual([]);

    // A bad field type is reported at its path too.
    const mark2 = logLines.length;
    api.put(MR, { metadata: { name: 'demo', namespace: NS }, spec: { hosts: [HOST], routes: [{ name: 'all', route: [{ destination: { host: HOST }, weight: 'lots' }] }] } });
    await until(() => logLines.slice(mark2).some((l) => l.includes('config change rejected')), 'the second rejection');
    expect(logLines.slice(mark2).join('\n')).toMatch(/kubernetes:default\/MetaRouter\/demo:0: MetaRouter\/demo: spec\.routes\[0\]\.route\[0\]\.weight/);
    expect(cp.snapshot!.version).toBe(version);

    api.put(MR, metaRouter('v1'));
    const r = await s.next(5000);
    expect(routeCluster(r)).toBe(`outbound|${PORT}|v1|${HOST}`);
  });

  it('pushes endpoint changes when a pod stops being ready', async () => {
    api.put(ENDPOINT_SLICES, slice('demo-abc', [endpoint('10.1.0.1', 'demo-v1-a', false), endpoint('10.1.0.2', 'demo-v2-a')]));
    await until(() => {
      const v1 = cp.snapshot!.endpoints.find((e) => (e as { cluster_name: string }).cluster_name === `outbound|${PORT}|v1|${HOST}`);
      return v1 && !JSON.stringify(v1).includes('10.1.0.1');
    }, 'the v1 endpoint to be gone');
  });
});

describe('an unreachable API server', () => {
  it('does not hold up the start, and logs why it has nothing', async () => {
    const api = new FakeKubeApi(ALL);
    await api.listen();
    const file = kubeconfig(api, 'kc-gone');
    await api.close(); // nothing listens there any more
    const mark = logLines.length;
    const src = new KubernetesSource({ kubeconfig: file, informer: { ...FAST, retryMs: 5000 } });
    await src.start(() => {});
    expect(src.documents()).toEqual([]);
    expect(src.informers().every((i) => i.state === 'failing')).toBe(true);
    expect(logLines.slice(mark).join('\n')).toMatch(/kubernetes: cannot list metarouters \(keeping the last 0\): .*ECONNREFUSED/);
    await src.close();
  });
});

describe('waypost control --kubernetes --kubeconfig PATH', () => {
  let api: FakeKubeApi;

  beforeAll(async () => {
    api = new FakeKubeApi(ALL);
    await api.listen();
    seed(api);
  });

  afterAll(async () => {
    await api?.close();
  });

  it('serves what the API server holds', async () => {
    const [xds, admin] = await freePorts(2);
    const cp = await spawnCli(['control', '--kubernetes', '--kubeconfig', kubeconfig(api, 'kc-cli'), '--xds-listen', `127.0.0.1:${xds}`, '--admin', `127.0.0.1:${admin}`]);
    try {
      await until(async () => (await httpGet(`127.0.0.1:${admin}`, '/ready')).status === 200, 'the control plane to be ready', 15_000, 50).catch((e: Error) => {
        throw new Error(`${e.message}\n${cp.output()}`);
      });
      const dump = (await httpGet(`127.0.0.1:${admin}`, '/config_dump')).body;
      expect(dump).toContain(`outbound|${PORT}|v1|${HOST}`);
      expect(dump).toContain('10.1.0.1');
      expect(cp.output()).toMatch(/kubernetes: listed/);
    } finally {
      await cp.stop();
    }
  });

  it('refuses --kubeconfig without --kubernetes, and says why a kubeconfig cannot be used', async () => {
    const usage = await spawnCli(['control', '--kubeconfig', '/nowhere', '--xds-listen', '127.0.0.1:0']);
    expect(await usage.exited).toBe(2);
    expect(usage.output()).toMatch(/--kubeconfig goes with --kubernetes/);
    const bad = await spawnCli(['control', '--kubernetes', '--kubeconfig', path.join(tmp, 'missing'), '--xds-listen', '127.0.0.1:0', '--admin', 'off']);
    expect(await bad.exited).toBe(1);
    expect(bad.output()).toMatch(/cannot read kubeconfig .*missing/);
  });
});
