/**
 * Dubbo provider URLs → ServiceEntries with dubbo2istio's rules (control/sources/dubbo-registry.ts): host naming from
 * interface + group + version, labels from the URL's parameters, the aeraki_meta_* parameters, invalid labels dropped.
 */
import { describe, expect, it } from 'vitest';
import {
  parseProviderNode,
  providerLabels,
  providersToServices,
  serviceEntryDocument,
  serviceEntryName,
  serviceHost,
  type DubboProvider,
} from '../../control/sources/dubbo-registry.js';
import { checkDocuments } from '../../control/validate.js';

const IFACE = 'org.apache.dubbo.samples.basic.api.DemoService';

/** A providers/ znode name as Dubbo writes it: the provider URL, URL-encoded. */
function providerNode(ip: string, port: number, params: Record<string, string>): string {
  const query = Object.entries({ interface: IFACE, side: 'provider', ...params })
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
  return encodeURIComponent(`dubbo://${ip}:${port}/${IFACE}?${query}`);
}

const parse = (node: string): DubboProvider => {
  const p = parseProviderNode(node);
  if (!p) throw new Error(`not parsed: ${node}`);
  return p;
};

describe('provider URLs', () => {
  it('parses a URL-encoded provider znode name', () => {
    const node =
      'dubbo%3A%2F%2F10.244.0.7%3A20880%2Forg.apache.dubbo.samples.basic.api.DemoService%3Fanyhost%3Dtrue%26application%3Ddubbo-sample-provider' +
      '%26aeraki_meta_app_namespace%3Dmeta-dubbo%26aeraki_meta_app_version%3Dv1%26aeraki_meta_locality%3Dbj%252Fbj-01%26dubbo%3D2.0.2%26generic%3Dfalse' +
      '%26interface%3Dorg.apache.dubbo.samples.basic.api.DemoService%26methods%3DsayHello%2CsayHi%26pid%3D1%26side%3Dprovider%26timestamp%3D1614829389932';
    const p = parse(node);
    expect(p).toMatchObject({ ip: '10.244.0.7', port: 20880, interface: IFACE });
    expect(p.params).toMatchObject({ aeraki_meta_app_version: 'v1', aeraki_meta_locality: 'bj/bj-01', methods: 'sayHello,sayHi' });
  });

  it('skips what is not a dubbo:// provider URL, saying why', () => {
    const why: string[] = [];
    expect(parseProviderNode(encodeURIComponent('tri://10.0.0.1:50051/x.Y?interface=x.Y'), (w) => why.push(w))).toBeUndefined();
    expect(parseProviderNode('not%ZZencoded', (w) => why.push(w))).toBeUndefined();
    expect(parseProviderNode(encodeURIComponent('dubbo://10.0.0.1/x.Y'), (w) => why.push(w))).toBeUndefined();
    expect(why).toEqual([expect.stringContaining('protocol tri is not dubbo'), 'not URL-encoded', expect.stringContaining('not a provider URL')]);
    expect(parse(encodeURIComponent('dubbo://[fd00::7]:20880/x.Y?side=provider'))).toMatchObject({ ip: 'fd00::7', interface: 'x.Y' });
  });
});

describe('dubbo2istio naming and labels', () => {
  it('names the host <interface>[-<group>][-<version>], lower-cased, and the entry aeraki-<host with dashes>', () => {
    expect(serviceHost(IFACE, {})).toBe('org.apache.dubbo.samples.basic.api.demoservice');
    expect(serviceHost(IFACE, { group: 'Batch', version: '1.0.2' })).toBe('org.apache.dubbo.samples.basic.api.demoservice-batch-1-0-2');
    expect(serviceEntryName('org.apache.dubbo.samples.basic.api.demoservice')).toBe('aeraki-org-apache-dubbo-samples-basic-api-demoservice');
  });

  it('labels an endpoint with the URL parameters, aeraki_meta_app_version as version, and the registry name', () => {
    const labels = providerLabels(
      {
        interface: IFACE,
        version: '1.0.0',
        group: 'g1',
        methods: 'sayHello,sayHi',
        aeraki_meta_app_version: 'v2',
        aeraki_meta_app_namespace: 'meta-dubbo',
        aeraki_meta_app_service_account: 'sa',
        aeraki_meta_workload_selector: 'app%3Dx',
        aeraki_meta_locality: 'bj/bj-01',
        aeraki_meta_zone: 'z1',
        'bad key': 'x',
        long: 'x'.repeat(64),
        slashy: 'a/b',
      },
      'zk-east',
    );
    expect(labels).toEqual({
      interface: IFACE,
      version: 'v2',
      group: 'g1',
      methods: 'sayHello-sayHi',
      aeraki_meta_zone: 'z1',
      registryName: 'zk-east',
    });
  });

  it('groups providers into one ServiceEntry per host, with an endpoint per provider, that validates', () => {
    const providers = [
      parse(providerNode('10.0.0.1', 20880, { aeraki_meta_app_version: 'v1', aeraki_meta_app_namespace: 'dubbo', aeraki_meta_locality: 'r/z' })),
      parse(providerNode('10.0.0.2', 20881, { aeraki_meta_app_version: 'v2', aeraki_meta_app_namespace: 'dubbo' })),
      parse(providerNode('10.0.0.3', 20880, { aeraki_meta_app_version: 'v1', aeraki_meta_app_namespace: 'elsewhere' })),
      parse(providerNode('10.0.0.4', 20890, { group: 'batch', aeraki_meta_app_version: 'v1' })),
    ];
    const skipped: string[] = [];
    const services = providersToServices(providers, { registryName: 'default', defaultNamespace: 'default', skip: (p, why) => skipped.push(`${p.ip}: ${why}`) });
    expect(services.map((s) => [s.host, s.namespace, s.port, s.endpoints.map((e) => `${e.address}:${e.ports!['tcp-metaprotocol-dubbo']}`)])).toEqual([
      ['org.apache.dubbo.samples.basic.api.demoservice', 'dubbo', 20880, ['10.0.0.1:20880', '10.0.0.2:20881']],
      ['org.apache.dubbo.samples.basic.api.demoservice-batch', 'default', 20890, ['10.0.0.4:20890']],
    ]);
    expect(skipped).toEqual(['10.0.0.3: its namespace elsewhere is not dubbo, where the other providers of org.apache.dubbo.samples.basic.api.demoservice are']);
    expect(services[0]!.endpoints[0]!.locality).toBe('r/z');

    // The listener port sticks once given, whatever the providers' ports.
    const again = providersToServices(providers.slice(1, 2), { registryName: 'default', defaultNamespace: 'default', known: new Map([[services[0]!.host, 20880]]) });
    expect(again[0]!.port).toBe(20880);

    const docs = services.map((s, i) => serviceEntryDocument(s, 'zookeeper://zk:2181/dubbo/x', i));
    expect(docs[0]).toMatchObject({ kind: 'ServiceEntry', name: 'aeraki-org-apache-dubbo-samples-basic-api-demoservice', namespace: 'dubbo' });
    expect(docs[0]!.spec).toMatchObject({ ports: [{ number: 20880, name: 'tcp-metaprotocol-dubbo', protocol: 'TCP' }], resolution: 'STATIC', location: 'MESH_INTERNAL' });
    expect(checkDocuments(docs).errors.map((e) => e.format())).toEqual([]);
  });
});
