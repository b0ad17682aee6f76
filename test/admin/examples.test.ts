/**
 * examples/kubernetes: every manifest parses; the demo's custom resources pass `waypost validate`; the control
 * plane's ClusterRole covers what the Kubernetes source lists and watches; the containers' command lines are ones the
 * CLI accepts — run for real: `waypost control` with the Deployment's args reading the demo resources from a fake
 * Kubernetes API server, `waypost proxy` with the waypoint's args taking its config over xDS, and the demo client
 * Job's script calling through it; and the Grafana dashboard queries only metrics that proxy exposes, with a panel
 * for every metric of the contract (docs/configuration.md, Metrics).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ENDPOINT_SLICES, KUBERNETES_CRDS, PODS, SERVICES } from '../../control/sources/kubernetes.js';
import { cliPath, freePorts, httpGet, projectRoot } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { FakeKubeApi, TEST_CA, type Obj } from '../sources/kube-api.js';
import { spawnCli, until, type CliProcess } from '../xds/helpers.js';

const run = promisify(execFile);
const DIR = path.join(projectRoot(), 'examples', 'kubernetes');

/** The metrics every Waypost proxy exports (docs/configuration.md, "Metrics"). */
const DOCUMENTED_METRICS = [
  'waypost_requests_total',
  'waypost_request_duration_seconds',
  'waypost_decode_errors_total',
  'waypost_downstream_connections_active',
  'waypost_upstream_connections_active',
  'waypost_upstream_retries_total',
  'waypost_faults_injected_total',
  'waypost_rate_limited_total',
  'waypost_outlier_ejections_total',
  'waypost_xds_updates_total',
  'waypost_config_applies_total',
];

const CR_GROUPS = new Set(['networking.istio.io', 'metaprotocol.aeraki.io', 'redis.aeraki.io']);

interface K8sDoc {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  spec?: Record<string, unknown>;
  [k: string]: unknown;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: Array<{ name: string; value?: string }>;
}

function manifests(): Array<{ file: string; docs: K8sDoc[] }> {
  return readdirSync(DIR)
    .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
    .sort()
    .map((file) => {
      const parsed = YAML.parseAllDocuments(readFileSync(path.join(DIR, file), 'utf8'));
      for (const d of parsed) {
        if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
      }
      return { file, docs: parsed.map((d) => d.toJS() as K8sDoc).filter((d) => d !== null) };
    });
}

const allDocs = (): K8sDoc[] => manifests().flatMap((m) => m.docs);
const groupOf = (apiVersion: string): string => (apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '');
const find = (kind: string, name: string): K8sDoc => {
  const d = allDocs().find((x) => x.kind === kind && x.metadata.name === name);
  if (!d) throw new Error(`no ${kind}/${name} in examples/kubernetes`);
  return d;
};
const containersOf = (d: K8sDoc): Container[] =>
  ((d.spec as { template: { spec: { containers: Container[] } } }).template.spec.containers);

/** The args with `$(VAR)` expanded from the container's env (as the kubelet does), values from `env` or `fieldRef`s. */
function expand(args: string[], vars: Record<string, string>): string[] {
  return args.map((a) => a.replace(/\$\(([A-Z_]+)\)/g, (_m, v: string) => vars[v] ?? `$(${v})`));
}

/** Replaces the value after `flag` in `args`. */
function withFlag(args: string[], flag: string, value: string): string[] {
  const i = args.indexOf(flag);
  if (i < 0) throw new Error(`${flag} is not in ${args.join(' ')}`);
  return [...args.slice(0, i + 1), value, ...args.slice(i + 2)];
}

describe('examples/kubernetes manifests', () => {
  it('parse, every document a Kubernetes object, namespaced ones in the demo or system namespace', () => {
    const ms = manifests();
    expect(ms.map((m) => m.file)).toEqual(
      expect.arrayContaining(['00-crds.yaml', '10-control-plane.yaml', '20-waypoint.yaml', '30-demo-providers.yaml', '40-demo-routing.yaml', '50-demo-client.yaml', 'kustomization.yaml']),
    );
    const clusterScoped = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'Kustomization']);
    let n = 0;
    for (const { file, docs } of ms) {
      for (const d of docs) {
        n++;
        expect(typeof d.apiVersion, `${file}: apiVersion`).toBe('string');
        expect(typeof d.kind, `${file}: kind`).toBe('string');
        if (d.kind === 'Kustomization') continue;
        expect(d.metadata?.name, `${file}: ${d.kind} metadata.name`).toMatch(/^[a-z0-9][a-z0-9.-]*$/);
        if (!clusterScoped.has(d.kind)) expect(['waypost-system', 'waypost-demo'], `${file}: ${d.kind}/${d.metadata.name}`).toContain(d.metadata.namespace);
      }
    }
    process.stdout.write(`[examples] ${n} documents in ${ms.length} files\n`);
    const kustomization = ms.find((m) => m.file === 'kustomization.yaml')!.docs[0] as unknown as { resources: string[] };
    for (const r of kustomization.resources) expect(ms.map((m) => m.file)).toContain(r);
  });

  it('the demo custom resources pass `waypost validate`, and translate to a listener on every interface of the waypoint', async () => {
    const crs = allDocs().filter((d) => CR_GROUPS.has(groupOf(d.apiVersion)));
    expect(crs.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual(['DestinationRule/dubbo-demo', 'MetaRouter/dubbo-demo', 'ServiceEntry/dubbo-demo']);
    const file = path.join(DIR, '40-demo-routing.yaml');
    const v = await run(process.execPath, [cliPath(), 'validate', file]);
    expect(v.stdout).toMatch(/^ok: /);
    expect(v.stderr).toBe(''); // no warnings either
    const control = find('Deployment', 'waypost-control');
    const args = containersOf(control)[0]!.args!;
    const bind = args[args.indexOf('--bind') + 1]!;
    const t = await run(process.execPath, [cliPath(), 'translate', '--bind', bind, file], { maxBuffer: 16 << 20 });
    const snapshot = JSON.parse(t.stdout) as { listeners: Array<{ address: { socket_address: { address: string; port_value: number } } }>; routes: Array<{ routes: Array<{ name: string }> }> };
    expect(snapshot.listeners.map((l) => l.address.socket_address)).toEqual([{ address: '0.0.0.0', port_value: 20880 }]);
    expect(snapshot.routes[0]!.routes.map((r) => r.name)).toEqual(['v2-for-jason', 'split']);
    // The waypoint's Service and container expose the port the listener binds.
    const waypoint = find('Service', 'waypost-waypoint') as unknown as { spec: { ports: Array<{ port: number; name: string }> } };
    expect(waypoint.spec.ports.map((p) => p.port)).toContain(20880);
    // Named so that the control plane does not turn the waypoint's own Service into a ServiceEntry.
    for (const d of allDocs().filter((x) => x.kind === 'Service')) {
      for (const p of (d.spec as { ports: Array<{ name: string }> }).ports) expect(p.name, `Service ${d.metadata.name}`).not.toMatch(/^tcp-metaprotocol-/);
    }
  });

  it('the ClusterRole lets the control plane list and watch everything the Kubernetes source reads; 00-crds.yaml defines every kind', () => {
    const role = find('ClusterRole', 'waypost-control') as unknown as { rules: Array<{ apiGroups: string[]; resources: string[]; verbs: string[] }> };
    const allowed = (group: string, plural: string, verb: string): boolean =>
      role.rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(plural) && r.verbs.includes(verb));
    for (const r of [...KUBERNETES_CRDS, SERVICES, ENDPOINT_SLICES, PODS]) {
      for (const verb of ['list', 'watch']) expect(allowed(r.group, r.plural, verb), `${verb} ${r.group || 'core'}/${r.plural}`).toBe(true);
    }
    // No write access of any kind.
    expect(role.rules.flatMap((r) => r.verbs).filter((v) => !['list', 'watch'].includes(v))).toEqual([]);
    const binding = find('ClusterRoleBinding', 'waypost-control') as unknown as { roleRef: { name: string }; subjects: Array<{ name: string; namespace: string }> };
    expect(binding.roleRef.name).toBe('waypost-control');
    const control = find('Deployment', 'waypost-control') as unknown as { metadata: { namespace: string }; spec: { template: { spec: { serviceAccountName: string } } } };
    expect(binding.subjects).toEqual([{ kind: 'ServiceAccount', name: control.spec.template.spec.serviceAccountName, namespace: control.metadata.namespace }]);

    const crds = manifests().find((m) => m.file === '00-crds.yaml')!.docs as unknown as Array<{ spec: { group: string; names: { plural: string; kind: string }; versions: Array<{ name: string; served: boolean }> } }>;
    for (const r of KUBERNETES_CRDS) {
      const crd = crds.find((c) => c.spec.group === r.group && c.spec.names.plural === r.plural);
      expect(crd, `CRD ${r.plural}.${r.group}`).toBeDefined();
      expect(crd!.spec.names.kind).toBe(r.kind);
      expect(crd!.spec.versions.filter((v) => v.served).map((v) => v.name)).toContain(r.version);
    }
  });
});

describe('the manifests’ command lines, run: control --kubernetes, a waypoint over xDS, the demo client Job', () => {
  let api: FakeKubeApi;
  let tmp: string;
  let providers: Provider[] = [];
  let control: CliProcess | undefined;
  let waypoint: CliProcess | undefined;
  let listenPort = 0;
  let waypointAdmin = '';

  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'waypost-k8s-example-'));
    providers = [await startProvider({ version: 'v1' }), await startProvider({ version: 'v2' })];
    const [xdsPort, controlAdmin, proxyAdmin, listen] = await freePorts(4);
    listenPort = listen!;
    waypointAdmin = `127.0.0.1:${proxyAdmin}`;

    // The demo resources as the API server holds them. Two changes, because the test runs on one machine: the
    // ServiceEntry's port is a free one, and its endpoints are the local providers instead of the providers' DNS names.
    api = new FakeKubeApi([...KUBERNETES_CRDS, SERVICES, ENDPOINT_SLICES, PODS]);
    await api.listen();
    for (const d of allDocs().filter((x) => CR_GROUPS.has(groupOf(x.apiVersion)))) {
      const obj = structuredClone(d) as unknown as Obj & { spec: Record<string, unknown> };
      if (d.kind === 'ServiceEntry') {
        const spec = obj.spec as { ports: Array<{ number: number; name: string }>; resolution: string; endpoints: Array<{ address: string; ports: Record<string, number>; labels: Record<string, string> }> };
        spec.ports[0]!.number = listenPort;
        spec.resolution = 'STATIC';
        for (const e of spec.endpoints) {
          const p = providers.find((x) => x.version === e.labels.version)!;
          e.address = '127.0.0.1';
          e.ports = { [spec.ports[0]!.name]: p.port };
        }
      }
      const res = KUBERNETES_CRDS.find((r) => r.kind === d.kind)!;
      api.put(res, obj);
    }
    writeFileSync(path.join(tmp, 'ca.pem'), TEST_CA());
    const kubeconfig = path.join(tmp, 'kubeconfig');
    writeFileSync(
      kubeconfig,
      YAML.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        'current-context': 'test',
        clusters: [{ name: 'fake', cluster: { server: api.url, 'certificate-authority': 'ca.pem' } }],
        contexts: [{ name: 'test', context: { cluster: 'fake', user: 'waypost' } }],
        users: [{ name: 'waypost', user: { token: api.token } }],
      }),
    );

    // The control plane's Deployment args; only its addresses move to loopback ports, and the kubeconfig replaces the
    // in-cluster service account.
    let cargs = containersOf(find('Deployment', 'waypost-control'))[0]!.args!;
    cargs = withFlag(cargs, '--xds-listen', `127.0.0.1:${xdsPort}`);
    cargs = withFlag(cargs, '--admin', `127.0.0.1:${controlAdmin}`);
    control = await spawnCli([...cargs, '--kubeconfig', kubeconfig]);
    await until(async () => (await httpGet(`127.0.0.1:${controlAdmin}`, '/ready').catch(() => ({ status: 0 }))).status === 200, 'the control plane to be ready', 20_000, 100).catch((e: Error) => {
      throw new Error(`${e.message}\n${control!.output()}`);
    });

    // The waypoint's Deployment args, likewise.
    const wc = containersOf(find('Deployment', 'waypost-waypoint'))[0]!;
    let wargs = expand(wc.args!, { POD_NAME: 'waypost-waypoint-0', POD_NAMESPACE: 'waypost-demo' });
    expect(wargs[wargs.indexOf('--xds') + 1]).toBe('waypost-control.waypost-system.svc.cluster.local:15010');
    wargs = withFlag(wargs, '--xds', `127.0.0.1:${xdsPort}`);
    wargs = withFlag(wargs, '--admin', waypointAdmin);
    waypoint = await spawnCli(wargs);
    await until(async () => (await httpGet(waypointAdmin, '/ready').catch(() => ({ status: 0 }))).status === 200, 'the waypoint to be ready', 20_000, 100).catch((e: Error) => {
      throw new Error(`${e.message}\n${waypoint!.output()}\n--- control:\n${control!.output()}`);
    });
  }, 90_000);

  afterAll(async () => {
    await waypoint?.stop();
    await control?.stop();
    await api?.close();
    await Promise.all(providers.map((p) => p.close()));
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the control plane serves the resources from the API server, and the waypoint listens on every interface', async () => {
    const listeners = JSON.parse((await httpGet(waypointAdmin, '/listeners')).body) as Array<{ address: string }>;
    expect(listeners.map((l) => l.address)).toEqual([`0.0.0.0:${listenPort}`]);
    expect(control!.output()).toMatch(/kubernetes: listed/);
    // The node id the waypoint gave, from the pod's name and namespace.
    expect(waypoint!.output()).toContain('waypoint~waypost-demo~waypost-waypoint-0');
  });

  it('the demo client Job’s script, run against the waypoint: jason’s calls reach v2, every call succeeds', async () => {
    const job = find('Job', 'dubbo-demo-client') as unknown as { spec: { template: { spec: { containers: Container[] } } } };
    const c = job.spec.template.spec.containers[0]!;
    expect(c.command!.slice(0, 1)).toEqual(['node']);
    const env = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value ?? '']));
    const { stdout } = await run(process.execPath, [...c.command!.slice(1), ...c.args!], {
      env: { ...process.env, ...env, WAYPOINT: `127.0.0.1:${listenPort}`, WAYPOST_HOME: projectRoot() },
      timeout: 60_000,
    });
    const lines = stdout.trim().split('\n');
    expect(lines).toHaveLength(Number(env.CALLS));
    const jason = lines.filter((l) => l.startsWith('jason'));
    const anyone = lines.filter((l) => l.startsWith('anyone'));
    expect(jason.every((l) => /status 20: .*provider v2@/.test(l))).toBe(true);
    expect(anyone.every((l) => /status 20: .*provider v[12]@/.test(l))).toBe(true);
    process.stdout.write(`[examples] demo client through the waypoint: ${jason.length} jason calls all on v2; others: ${anyone.filter((l) => /v1@/.test(l)).length} v1, ${anyone.filter((l) => /v2@/.test(l)).length} v2\n`);
  });

  it('the Grafana dashboard queries only metrics the running waypoint exposes, and has a panel for every contract metric', async () => {
    const dash = JSON.parse(readFileSync(path.join(DIR, 'grafana-dashboard.json'), 'utf8')) as {
      schemaVersion: number;
      templating: { list: Array<{ name: string; type: string; query: unknown }> };
      panels: Array<{ type: string; title: string; datasource?: { uid: string }; targets?: Array<{ expr: string }> }>;
    };
    expect(dash.schemaVersion).toBeGreaterThanOrEqual(36);
    const dsVar = dash.templating.list.find((v) => v.type === 'datasource');
    expect(dsVar?.query).toBe('prometheus');
    const queries = dash.panels.filter((p) => p.type !== 'row');
    for (const p of queries) {
      expect(p.datasource?.uid, p.title).toBe(`\${${dsVar!.name}}`);
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
    }

    // Names the proxy exposes: `# TYPE name kind`, with a histogram's _bucket, _sum and _count series.
    const prom = (await httpGet(waypointAdmin, '/stats/prometheus', 5000)).body;
    const exposed = new Set<string>();
    for (const m of prom.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      exposed.add(m[1]!);
      if (m[2] === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exposed.add(m[1]! + s);
    }
    const exprs = queries.flatMap((p) => p.targets!.map((t) => ({ panel: p.title, expr: t.expr })));
    const used = new Set<string>();
    for (const { panel, expr } of exprs) {
      const names = expr.match(/\bwaypost_[a-z0-9_]+/g) ?? [];
      expect(names.length, `${panel}: ${expr}`).toBeGreaterThan(0);
      for (const n of names) {
        expect(exposed.has(n), `${panel}: ${n} is not in /stats/prometheus`).toBe(true);
        used.add(n.replace(/_(bucket|sum|count)$/, (s) => (exposed.has(n.slice(0, -s.length)) ? '' : s)));
      }
      // Variables the query uses are defined.
      for (const v of expr.match(/\$(\w+)/g) ?? []) {
        if (v.startsWith('$__')) continue;
        expect(dash.templating.list.map((t) => `$${t.name}`), `${panel}: ${v}`).toContain(v);
      }
    }
    const configuration = readFileSync(path.join(projectRoot(), 'docs', 'configuration.md'), 'utf8');
    for (const m of DOCUMENTED_METRICS) {
      expect(configuration, `${m} in docs/configuration.md`).toContain(`\`${m}\``);
      expect(used.has(m), `a panel for ${m}`).toBe(true);
    }
    process.stdout.write(`[examples] dashboard: ${queries.length} panels, ${exprs.length} queries over ${used.size} metrics, all exposed by the proxy\n`);
  });
});
