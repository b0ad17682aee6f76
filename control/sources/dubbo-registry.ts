/**
 * Dubbo registry entries → ServiceEntries, with the rules of Aeraki's dubbo2istio (pkg/dubbo/common/conversion.go,
 * pkg/dubbo/zk/model/conversion.go), re-implemented:
 *
 * - A provider registers the znode `/dubbo/<interface>/providers/<URL-encoded provider URL>`, e.g.
 *   `dubbo://10.0.0.5:20880/org.apache.dubbo.samples.basic.api.DemoService?interface=…&version=1.0.0&group=g&…`.
 * - Its service host is `<interface>[-<group>][-<version with . → ->]`, lower-cased (interface + group + version is
 *   a Dubbo service's key).
 * - The ServiceEntry (`aeraki-<host with . → ->`, in namespace `aeraki_meta_app_namespace`) has one port, named
 *   `tcp-metaprotocol-dubbo`, numbered as the provider's port, resolution STATIC, location MESH_INTERNAL; one
 *   endpoint per provider: its IP, its port, locality `aeraki_meta_locality`, and as labels the URL's parameters
 *   except `aeraki_meta_app_service_account`, `aeraki_meta_app_namespace`, `aeraki_meta_workload_selector`,
 *   `aeraki_meta_locality` and `aeraki_meta_app_version` — which, when set, becomes the `version` label — with commas
 *   in values turned into `-`, and parameters that are not valid label names/values (`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?
 *   [A-Za-z0-9])?$`, at most 63 characters) dropped; plus `registryName: <registry name>`.
 * - Providers of one host in another namespace than the first one's are ignored (logged), as in dubbo2istio.
 * - A provider URL whose port is not 1..65535, whose host is not an IP address or a host name, or whose `weight` is
 *   not an integer in 0..2^31-1 (what Dubbo itself parses) is ignored, with a warning: the registry is written by
 *   every provider, so nothing in it is trusted to be well-formed.
 *
 * Where Waypost differs, and why:
 * - A provider without `aeraki_meta_app_namespace` is not ignored: it goes to the source's default namespace (plain
 *   Dubbo apps do not set Aeraki's parameters, and outside Kubernetes the namespace only names the document).
 * - A provider on another port than the first one's is kept, with its own port on its endpoint (dubbo2istio drops
 *   it because a Kubernetes Service has one target port; a WorkloadEntry names its own). The ServiceEntry's port —
 *   the listener's — is the lowest provider port when the host is first seen, and stays while the source runs.
 */
import { isIpOrHostname } from '../../src/xds/validate.js';
import { KIND_SERVICE_ENTRY, type CrdDocument, type WorkloadEntry } from '../types.js';

export const DUBBO_PORT_NAME = 'tcp-metaprotocol-dubbo';
export const REGISTRY_NAME_LABEL = 'registryName';
/** Java's Integer.MAX_VALUE: Dubbo parses `weight` as an int. */
const MAX_WEIGHT = 2_147_483_647;

export interface DubboProvider {
  /** The znode name as registered (URL-encoded). */
  node: string;
  ip: string;
  port: number;
  interface: string;
  /** The URL's query parameters, decoded. */
  params: Record<string, string>;
}

const LABEL = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const NOT_LABELS = new Set([
  'aeraki_meta_app_service_account',
  'aeraki_meta_app_namespace',
  'aeraki_meta_workload_selector',
  'aeraki_meta_locality',
  'aeraki_meta_app_version',
]);

/**
 * Parses a providers/ znode name (`dubbo%3A%2F%2F10.0.0.5%3A20880%2F…`); undefined when it is not a `dubbo://` URL
 * with a host, a port and an interface (the reason is in `why`, for the log).
 */
export function parseProviderNode(node: string, why?: (reason: string) => void): DubboProvider | undefined {
  let url: string;
  try {
    // Dubbo encodes with java.net.URLEncoder, which writes a space as '+'.
    url = decodeURIComponent(node.replace(/\+/g, '%20'));
  } catch {
    why?.('not URL-encoded');
    return undefined;
  }
  const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/(\[[^\]]+\]|[^/:?#]+):(\d+)\/([^?#]*)(?:\?([^#]*))?/.exec(url);
  if (!m) {
    why?.(`not a provider URL (protocol://ip:port/interface?…): ${url}`);
    return undefined;
  }
  const [, protocol, host, portText, path, query] = m;
  if (protocol !== 'dubbo') {
    why?.(`protocol ${protocol} is not dubbo`);
    return undefined;
  }
  const port = Number(portText);
  if (!(port >= 1 && port <= 65535)) {
    why?.(`port ${portText} is out of range (1..65535)`);
    return undefined;
  }
  const ip = host!.replace(/^\[|\]$/g, '');
  if (!isIpOrHostname(ip)) {
    why?.(`host ${JSON.stringify(ip)} is not an IP address or a host name`);
    return undefined;
  }
  const params: Record<string, string> = {};
  for (const [k, v] of new URLSearchParams(query ?? '')) params[k] = v;
  // Dubbo reads `weight` as a Java int (default 100); anything else is a broken or hostile registration.
  if (params.weight !== undefined && !(/^\d{1,10}$/.test(params.weight) && Number(params.weight) <= MAX_WEIGHT)) {
    why?.(`weight ${JSON.stringify(params.weight)} is not an integer in 0..${MAX_WEIGHT}`);
    return undefined;
  }
  const iface = params.interface || path!;
  if (!iface) {
    why?.('no interface');
    return undefined;
  }
  return { node, ip, port, interface: iface, params };
}

/** `<interface>[-<group>][-<version, dots as dashes>]`, lower-cased. */
export function serviceHost(iface: string, params: Record<string, string>): string {
  let host = iface;
  if (params.group) host += `-${params.group}`;
  const version = (params.version ?? '').replace(/\./g, '-');
  if (version) host += `-${version}`;
  return host.toLowerCase();
}

/** dubbo2istio's ServiceEntry name for a host. */
export function serviceEntryName(host: string): string {
  return `aeraki-${host.toLowerCase().replace(/\./g, '-')}`;
}

/** The endpoint labels of a provider (see the file comment). */
export function providerLabels(params: Record<string, string>, registryName: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) if (!NOT_LABELS.has(k)) labels[k] = v;
  if (params.aeraki_meta_app_version) labels.version = params.aeraki_meta_app_version;
  for (const [k, raw] of Object.entries(labels)) {
    const v = raw.replace(/,/g, '-');
    if (!LABEL.test(k) || !LABEL.test(v) || k.length > 63 || v.length > 63) delete labels[k];
    else labels[k] = v;
  }
  labels[REGISTRY_NAME_LABEL] = registryName;
  return labels;
}

export interface DubboService {
  host: string;
  interface: string;
  namespace: string;
  /** The listener port. */
  port: number;
  endpoints: WorkloadEntry[];
}

export interface ConvertOptions {
  registryName: string;
  /** For providers without `aeraki_meta_app_namespace`. */
  defaultNamespace: string;
  /** Listener ports already given to hosts: kept, so a listener does not move as providers come and go. */
  known?: ReadonlyMap<string, number>;
  /** Told about each provider that is skipped, and why. */
  skip?: (provider: DubboProvider, reason: string) => void;
}

/** Groups providers into services by host (sorted by host; endpoints in provider order). */
export function providersToServices(providers: readonly DubboProvider[], opts: ConvertOptions): DubboService[] {
  const byHost = new Map<string, DubboService>();
  for (const p of providers) {
    const host = serviceHost(p.interface, p.params);
    const namespace = p.params.aeraki_meta_app_namespace || opts.defaultNamespace;
    let svc = byHost.get(host);
    if (!svc) {
      svc = { host, interface: p.interface, namespace, port: opts.known?.get(host) ?? 0, endpoints: [] };
      byHost.set(host, svc);
    }
    if (namespace !== svc.namespace) {
      opts.skip?.(p, `its namespace ${namespace} is not ${svc.namespace}, where the other providers of ${host} are`);
      continue;
    }
    const endpoint: WorkloadEntry = {
      address: p.ip,
      ports: { [DUBBO_PORT_NAME]: p.port },
      labels: providerLabels(p.params, opts.registryName),
    };
    const locality = p.params.aeraki_meta_locality;
    if (locality) endpoint.locality = locality;
    svc.endpoints.push(endpoint);
  }
  for (const svc of byHost.values()) {
    if (svc.port === 0) svc.port = Math.min(...svc.endpoints.map((e) => e.ports![DUBBO_PORT_NAME]!));
  }
  return [...byHost.values()].filter((s) => s.port > 0).sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
}

/** The ServiceEntry document of a service; `file`/`index` say where it came from. */
export function serviceEntryDocument(svc: DubboService, file: string, index: number): CrdDocument {
  return {
    file,
    index,
    apiVersion: 'networking.istio.io/v1beta1',
    kind: KIND_SERVICE_ENTRY,
    name: serviceEntryName(svc.host),
    namespace: svc.namespace,
    spec: {
      hosts: [svc.host],
      ports: [{ number: svc.port, name: DUBBO_PORT_NAME, protocol: 'TCP' }],
      location: 'MESH_INTERNAL',
      resolution: 'STATIC',
      endpoints: svc.endpoints,
    },
  };
}
