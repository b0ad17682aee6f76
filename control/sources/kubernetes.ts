/**
 * `waypost control --kubernetes`: CRDs from a Kubernetes API server, kept current by list + watch
 * (./kube-client.ts: `@kubernetes/client-node`'s KubeConfig and Watch under Waypost's own informer).
 *
 * Watched (every namespace, or one):
 * - `networking.istio.io/v1beta1` ServiceEntry, DestinationRule, VirtualService; `metaprotocol.aeraki.io/v1alpha1`
 *   MetaRouter, ApplicationProtocol; `redis.aeraki.io/v1alpha1` RedisService, RedisDestination — each object becomes
 *   a document named `kubernetes:<namespace>/<Kind>/<name>`, validated with the files' (so an invalid MetaRouter is
 *   reported as `kubernetes:default/MetaRouter/x:0: MetaRouter/x: spec.routes[0]…: …` and rejected, and the last good
 *   config keeps being served);
 * - core/v1 Services and `discovery.k8s.io/v1` EndpointSlices (and Pods, for their labels): a Service with a port named
 *   `tcp-metaprotocol-<protocol>[-suffix]` becomes a ServiceEntry (document `kubernetes:<ns>/Service/<name>`) for host
 *   `<name>.<namespace>.svc.<clusterDomain>` with those ports and, as endpoints, the ready addresses of its
 *   EndpointSlices (label `kubernetes.io/service-name`) with their pod's labels — or, when pods cannot be read, the
 *   slice's labels.
 *
 * Generated ServiceEntries yield to the cluster's own CRDs: none is made for a host a ServiceEntry CRD already
 * defines, and none whose MetaProtocol port another generated or CRD ServiceEntry (without `addresses`) already
 * listens on — Waypost has no per-service VIPs, so two services on one port would clash on the bind address; the
 * skipped Service is logged.
 *
 * A kind the API server does not serve (CRD not installed: 404) counts as empty and is listed again every 30 s; a kind
 * it refuses (401/403) counts as empty too and is retried with backoff. Any other failure keeps the last objects.
 */
import { log } from '../../src/log.js';
import { KIND_SERVICE_ENTRY, stringAnnotations, type CrdDocument } from '../types.js';
import { Informer, KubeClient, type InformerOptions, type KubeObject, type ResourceType } from './kube-client.js';
import { resolveKubeConnection, type KubeConnection } from './kube-config.js';
import type { DocumentSource } from './source.js';

/** The CRD kinds read from the API server, at the versions requested. */
export const KUBERNETES_CRDS: readonly ResourceType[] = [
  { group: 'networking.istio.io', version: 'v1beta1', plural: 'serviceentries', kind: 'ServiceEntry' },
  { group: 'networking.istio.io', version: 'v1beta1', plural: 'destinationrules', kind: 'DestinationRule' },
  { group: 'networking.istio.io', version: 'v1beta1', plural: 'virtualservices', kind: 'VirtualService' },
  { group: 'metaprotocol.aeraki.io', version: 'v1alpha1', plural: 'metarouters', kind: 'MetaRouter' },
  { group: 'metaprotocol.aeraki.io', version: 'v1alpha1', plural: 'applicationprotocols', kind: 'ApplicationProtocol' },
  { group: 'redis.aeraki.io', version: 'v1alpha1', plural: 'redisservices', kind: 'RedisService' },
  { group: 'redis.aeraki.io', version: 'v1alpha1', plural: 'redisdestinations', kind: 'RedisDestination' },
];
export const SERVICES: ResourceType = { group: '', version: 'v1', plural: 'services', kind: 'Service' };
export const ENDPOINT_SLICES: ResourceType = { group: 'discovery.k8s.io', version: 'v1', plural: 'endpointslices', kind: 'EndpointSlice' };
export const PODS: ResourceType = { group: '', version: 'v1', plural: 'pods', kind: 'Pod' };

const META_PORT = /^tcp-metaprotocol-[a-z0-9]/;
const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface KubernetesSourceOptions {
  /** `--kubeconfig PATH` (else `$KUBECONFIG`, in-cluster config, `~/.kube/config`). */
  kubeconfig?: string;
  /** A kubeconfig context other than the current one. */
  context?: string;
  /** A resolved connection (skips the lookup above). */
  connection?: KubeConnection;
  /** Watch one namespace only (default: all). */
  namespace?: string;
  /** Host suffix of generated ServiceEntries (default `cluster.local`). */
  clusterDomain?: string;
  /** Read Pods for endpoint labels (default true; without, or when forbidden, the EndpointSlice's labels are used). */
  podLabels?: boolean;
  /** `start` resolves when everything is listed once, or after this long (default 10 s) with what there is. */
  startTimeoutMs?: number;
  /** Passed to the informers (tests shorten them). */
  informer?: Pick<InformerOptions, 'retryMs' | 'missingRetryMs' | 'watchTimeoutSeconds'>;
  /** For the connection lookup (tests). */
  env?: NodeJS.ProcessEnv;
  inClusterDir?: string;
}

export class KubernetesSource implements DocumentSource {
  readonly name: string;
  readonly connection: KubeConnection;
  private readonly client: KubeClient;
  private readonly crds: Informer[] = [];
  private services!: Informer;
  private slices!: Informer;
  private pods: Informer | undefined;
  private docs: CrdDocument[] = [];
  private fingerprint = '';
  private onChange: (() => void) | undefined;
  private scheduled: NodeJS.Immediate | undefined;
  private started = false;
  private closed = false;
  private reported = new Set<string>();

  /** Resolves the connection now: a bad `--kubeconfig` throws here, before anything starts. */
  constructor(private readonly opts: KubernetesSourceOptions = {}) {
    this.connection =
      opts.connection ?? resolveKubeConnection({ kubeconfig: opts.kubeconfig, context: opts.context, env: opts.env, inClusterDir: opts.inClusterDir });
    this.client = new KubeClient(this.connection);
    this.name = `kubernetes ${this.connection.server.href.replace(/\/$/, '')}`;
  }

  /** The informers by kind (tests and diagnostics). */
  informers(): Informer[] {
    return [...this.crds, this.services, this.slices, ...(this.pods ? [this.pods] : [])].filter(Boolean);
  }

  async start(onChange: () => void): Promise<void> {
    if (this.started) throw new Error(`${this.name}: already started`);
    this.started = true;
    this.onChange = onChange;
    const iopts: InformerOptions = { ...this.opts.informer, namespace: this.opts.namespace };
    const changed = (): void => this.schedule();
    for (const r of KUBERNETES_CRDS) this.crds.push(new Informer(this.client, r, changed, iopts));
    this.services = new Informer(this.client, SERVICES, changed, iopts);
    this.slices = new Informer(this.client, ENDPOINT_SLICES, changed, iopts);
    if (this.opts.podLabels ?? true) this.pods = new Informer(this.client, PODS, changed, { ...iopts, transform: podLabelsOnly });
    log.info('kubernetes: connecting', { server: this.connection.server.href, from: this.connection.origin, namespace: this.opts.namespace ?? '(all)' });

    const timeoutMs = this.opts.startTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const all = Promise.all(this.informers().map((i) => i.start()));
    const timedOut = await Promise.race([
      all.then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      const waiting = this.informers().filter((i) => i.state === 'pending').map((i) => i.resource.plural);
      log.warn(`kubernetes: not everything listed after ${timeoutMs} ms; starting with what there is, the rest follows`, { waiting: waiting.join(',') });
    }
    this.recompute(false);
    log.info('kubernetes: listed', {
      documents: this.docs.length,
      ...Object.fromEntries(this.informers().map((i) => [i.resource.plural, i.state === 'synced' ? i.items.size : i.state])),
    });
  }

  documents(): readonly CrdDocument[] {
    return this.docs;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.scheduled) clearImmediate(this.scheduled);
    for (const i of this.informers()) i.stop();
    this.client.close();
  }

  /** Informer events come in bursts (a relist, a rollout): rebuild the documents once per turn of the event loop. */
  private schedule(): void {
    if (this.scheduled || this.closed) return;
    this.scheduled = setImmediate(() => {
      this.scheduled = undefined;
      this.recompute(true);
    });
  }

  private recompute(notify: boolean): void {
    const docs = this.build();
    const fingerprint = JSON.stringify(docs);
    if (fingerprint === this.fingerprint) return;
    this.docs = docs;
    this.fingerprint = fingerprint;
    if (notify && this.started && !this.closed) this.onChange?.();
  }

  private build(): CrdDocument[] {
    const docs: CrdDocument[] = [];
    const crdHosts = new Set<string>();
    const crdNames = new Set<string>();
    /** MetaProtocol port → who listens on it on the bind address. */
    const ports = new Map<number, string>();
    const problems = new Set<string>();

    for (const inf of this.crds) {
      for (const o of sortedObjects(inf.items)) {
        const doc = crdDocument(o, inf.resource);
        docs.push(doc);
        if (doc.kind !== KIND_SERVICE_ENTRY || !isRecord(doc.spec)) continue;
        crdNames.add(`${doc.namespace ?? ''}/${doc.name}`);
        const spec = doc.spec;
        const host = Array.isArray(spec.hosts) && typeof spec.hosts[0] === 'string' ? spec.hosts[0] : undefined;
        if (host) crdHosts.add(host);
        if (Array.isArray(spec.addresses) && spec.addresses.length > 0) continue;
        for (const p of Array.isArray(spec.ports) ? spec.ports : []) {
          if (isRecord(p) && typeof p.name === 'string' && META_PORT.test(p.name) && typeof p.number === 'number' && !ports.has(p.number)) {
            ports.set(p.number, `ServiceEntry ${doc.namespace ?? ''}/${doc.name}`);
          }
        }
      }
    }

    const domain = this.opts.clusterDomain ?? 'cluster.local';
    const slicesByService = new Map<string, KubeObject[]>();
    for (const s of sortedObjects(this.slices.items)) {
      const svc = s.metadata?.labels?.[SERVICE_NAME_LABEL];
      if (!svc) continue;
      const key = `${s.metadata?.namespace ?? ''}/${svc}`;
      const list = slicesByService.get(key);
      if (list) list.push(s);
      else slicesByService.set(key, [s]);
    }
    // Pod labels once pods were listed (a transient failure keeps the last ones: labels, hence subsets, must not flap).
    const podsUsable = this.pods?.state === 'synced' || this.pods?.state === 'failing';

    for (const svc of sortedObjects(this.services.items)) {
      const ns = svc.metadata?.namespace ?? '';
      const name = svc.metadata?.name ?? '';
      const spec = isRecord(svc.spec) ? svc.spec : {};
      if (spec.type === 'ExternalName') continue;
      const metaPorts = (Array.isArray(spec.ports) ? spec.ports : []).filter(
        (p): p is { name: string; port: number } => isRecord(p) && typeof p.name === 'string' && META_PORT.test(p.name) && typeof p.port === 'number',
      );
      if (metaPorts.length === 0) continue;
      const host = `${name}.${ns}.svc.${domain}`;
      if (crdHosts.has(host)) continue; // the cluster's own ServiceEntry for this host wins
      const clash = metaPorts.find((p) => ports.has(p.port));
      if (clash) {
        problems.add(
          `kubernetes: Service ${ns}/${name} is not served: its port ${clash.name} (${clash.port}) is already a MetaProtocol listener of ${ports.get(clash.port)} (Waypost has no per-service VIPs: give each service its own port)`,
        );
        continue;
      }
      for (const p of metaPorts) ports.set(p.port, `Service ${ns}/${name}`);

      const portNames = new Set(metaPorts.map((p) => p.name));
      const endpoints: Array<{ address: string; ports: Record<string, number>; labels: Record<string, string> }> = [];
      const seen = new Set<string>();
      for (const slice of slicesByService.get(`${ns}/${name}`) ?? []) {
        const addressType = slice.addressType;
        if (addressType !== 'IPv4' && addressType !== 'IPv6') continue; // FQDN slices: no IPs to connect to
        const slicePorts: Record<string, number> = {};
        for (const p of Array.isArray(slice.ports) ? slice.ports : []) {
          if (isRecord(p) && typeof p.name === 'string' && portNames.has(p.name) && typeof p.port === 'number') slicePorts[p.name] = p.port;
        }
        if (Object.keys(slicePorts).length === 0) continue;
        for (const ep of Array.isArray(slice.endpoints) ? slice.endpoints : []) {
          if (!isRecord(ep)) continue;
          const conditions = isRecord(ep.conditions) ? ep.conditions : {};
          if (conditions.ready === false) continue; // unset means ready (the EndpointSlice API's rule)
          const address = Array.isArray(ep.addresses) && typeof ep.addresses[0] === 'string' ? ep.addresses[0] : undefined;
          if (!address) continue;
          const key = `${address} ${JSON.stringify(slicePorts)}`;
          if (seen.has(key)) continue;
          seen.add(key);
          endpoints.push({ address, ports: { ...slicePorts }, labels: this.endpointLabels(ep, slice, ns, podsUsable) });
        }
      }
      const docName = crdNames.has(`${ns}/${name}`) ? `${name}-service` : name;
      docs.push({
        file: `kubernetes:${ns}/Service/${name}`,
        index: 0,
        apiVersion: 'networking.istio.io/v1beta1',
        kind: KIND_SERVICE_ENTRY,
        name: docName,
        namespace: ns,
        spec: {
          hosts: [host],
          ports: metaPorts.map((p) => ({ number: p.port, name: p.name, protocol: 'TCP' })),
          location: 'MESH_INTERNAL',
          resolution: 'STATIC',
          endpoints,
        },
      });
    }

    for (const p of problems) if (!this.reported.has(p)) log.error(p);
    this.reported = problems;
    return docs;
  }

  private endpointLabels(ep: Record<string, unknown>, slice: KubeObject, ns: string, podsUsable: boolean): Record<string, string> {
    const ref = isRecord(ep.targetRef) ? ep.targetRef : undefined;
    if (podsUsable && ref && ref.kind === 'Pod' && typeof ref.name === 'string') {
      const pod = this.pods!.items.get(`${typeof ref.namespace === 'string' ? ref.namespace : ns}/${ref.name}`);
      if (pod) return { ...(pod.metadata?.labels ?? {}) };
    }
    return { ...(slice.metadata?.labels ?? {}) };
  }
}

function crdDocument(o: KubeObject, r: ResourceType): CrdDocument {
  const ns = o.metadata?.namespace;
  const name = typeof o.metadata?.name === 'string' ? o.metadata.name : '';
  return {
    file: `kubernetes:${ns ?? ''}/${o.kind ?? r.kind}/${name}`,
    index: 0,
    apiVersion: o.apiVersion ?? `${r.group}/${r.version}`,
    kind: o.kind ?? r.kind,
    name,
    ...(ns !== undefined ? { namespace: ns } : {}),
    ...(stringAnnotations(o.metadata?.annotations) ? { annotations: stringAnnotations(o.metadata?.annotations)! } : {}),
    spec: o.spec,
  };
}

function podLabelsOnly(o: KubeObject): KubeObject {
  const m = o.metadata ?? {};
  return { metadata: { name: m.name, namespace: m.namespace, resourceVersion: m.resourceVersion, labels: m.labels } };
}

function sortedObjects(items: Map<string, KubeObject>): KubeObject[] {
  return [...items.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, o]) => o);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

