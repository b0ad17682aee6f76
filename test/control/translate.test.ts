import { describe, expect, it } from 'vitest';
import { contentVersion, parseDocuments, translate } from '../../control/index.js';
import { DEMO_DR, DEMO_MR, DEMO_SE, HOST, compileYaml, docs, metaRouter } from './helpers.js';

const ADS = { ads: {}, resource_api_version: 'V3' };
const C = (port: number, subset = '', host = HOST) => `outbound|${port}|${subset}|${host}`;

async function snapshotOf(yaml: string, options = {}) {
  const result = await compileYaml(yaml, options);
  expect(result.errors.map((e) => e.format())).toEqual([]);
  return result.snapshot!;
}

describe('route translation', () => {
  it('translates mirror, mutations, timeout, retries and fault', async () => {
    const snap = await snapshotOf(
      docs(
        DEMO_SE,
        DEMO_DR,
        metaRouter(`  routes:
    - name: mirrored
      route: [{destination: {host: ${HOST}, subset: v1}}]
      mirror: {host: ${HOST}, subset: v2}
      mirrorPercentage: {value: 37.5}
      requestMutation: [{key: foo, value: bar}, {key: foo1, value: bar1}]
      responseMutation: [{key: served-by, value: waypost}]
      timeout: 1.5s
      retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "connect-failure, reset,unavailable"}
      fault:
        delay: {fixedDelay: 2m, percentage: {value: 12.5}}
        abort: {errorCode: 70, message: injected}
    - route: [{destination: {host: ${HOST}}}]
      mirror: {host: ${HOST}}
      fault:
        abort: {percentage: {value: 0.0001}}`),
      ),
    );
    expect(snap.routes[0]!.routes).toEqual([
      {
        name: 'mirrored',
        route: {
          cluster: C(20880, 'v1'),
          request_mirror_policies: [{ cluster: C(20880, 'v2'), runtime_fraction: { default_value: { numerator: 375000, denominator: 'MILLION' } } }],
        },
        request_mutation: [
          { key: 'foo', value: 'bar' },
          { key: 'foo1', value: 'bar1' },
        ],
        response_mutation: [{ key: 'served-by', value: 'waypost' }],
        timeout: '1.5s',
        retry_policy: { num_retries: 3, per_try_timeout: '0.5s', retry_on: 'connect-failure,reset,unavailable' },
        fault: {
          delay: { fixed_delay: '120s', percentage: { numerator: 125000, denominator: 'MILLION' } },
          abort: { percentage: { numerator: 1000000, denominator: 'MILLION' }, error_code: 70, message: 'injected' },
        },
      },
      {
        name: 'route-1',
        route: {
          cluster: C(20880),
          request_mirror_policies: [{ cluster: C(20880), runtime_fraction: { default_value: { numerator: 1000000, denominator: 'MILLION' } } }],
        },
        fault: { abort: { percentage: { numerator: 1, denominator: 'MILLION' } } },
      },
    ]);
  });

  it('turns attribute matches into header matchers on lower-cased names; {} means present', async () => {
    const snap = await snapshotOf(
      docs(
        DEMO_SE,
        metaRouter(`  routes:
    - name: m
      match:
        attributes:
          Interface: {exact: org.apache.dubbo.samples.basic.api.DemoService}
          method: {prefix: say}
          user: {regex: "j(a|o)son"}
          canary: {}
      route: [{destination: {host: ${HOST}}}]
    - name: catch-all
      match: {attributes: {}}
      route: [{destination: {host: ${HOST}}}]`),
      ),
    );
    expect(snap.routes[0]!.routes).toEqual([
      {
        name: 'm',
        match: {
          metadata: [
            { name: 'interface', string_match: { exact: 'org.apache.dubbo.samples.basic.api.DemoService' } },
            { name: 'method', string_match: { prefix: 'say' } },
            { name: 'user', string_match: { safe_regex: { regex: 'j(a|o)son' } } },
            { name: 'canary', present_match: true },
          ],
        },
        route: { cluster: C(20880) },
      },
      { name: 'catch-all', route: { cluster: C(20880) } },
    ]);
  });

  it('defaults a destination port to the listener port, or to the only MetaProtocol port of another service', async () => {
    const snap = await snapshotOf(
      docs(
        `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: two-ports}
spec:
  hosts: [multi.example.com]
  ports:
    - {number: 7001, name: tcp-metaprotocol-dubbo-a}
    - {number: 7002, name: tcp-metaprotocol-dubbo-b, targetPort: 9002}
  resolution: STATIC
  endpoints: [{address: 10.0.0.9}]`,
        `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: single}
spec:
  hosts: [single.example.com]
  ports: [{number: 8000, name: tcp-metaprotocol-thrift}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.10}]`,
        `apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: {name: multi}
spec:
  hosts: [multi.example.com]
  routes:
    - name: explicit
      match: {attributes: {x: {exact: "1"}}}
      route: [{destination: {host: multi.example.com, port: {number: 7002}}}]
    - name: elsewhere
      match: {attributes: {x: {exact: "2"}}}
      route: [{destination: {host: single.example.com}}]
    - name: same
      route: [{destination: {host: multi.example.com}}]`,
      ),
    );
    expect(snap.routes.map((r) => [r.name, r.routes.map((x) => x.route.cluster)])).toEqual([
      ['multi.example.com_7001', [C(7002, '', 'multi.example.com'), C(8000, '', 'single.example.com'), C(7001, '', 'multi.example.com')]],
      ['multi.example.com_7002', [C(7002, '', 'multi.example.com'), C(8000, '', 'single.example.com'), C(7002, '', 'multi.example.com')]],
      ['single.example.com_8000', [C(8000, '', 'single.example.com')]],
    ]);
    expect(snap.listeners.map((l) => l.name)).toEqual(['127.0.0.1_7001', '127.0.0.1_7002', '127.0.0.1_8000']);
    // targetPort is the endpoint port when the endpoint names none.
    expect(snap.endpoints.map((e) => [e.cluster_name, e.endpoints[0]!.lb_endpoints.map((l) => l.endpoint.address.socket_address.port_value)])).toEqual([
      [C(7001, '', 'multi.example.com'), [7001]],
      [C(7002, '', 'multi.example.com'), [9002]],
      [C(8000, '', 'single.example.com'), [8000]],
    ]);
  });
});

describe('local rate limit', () => {
  it("becomes Aeraki's local_ratelimit meta_protocol filter before the router, on every listener of the host", async () => {
    const snap = await snapshotOf(
      docs(
        DEMO_SE.replace('  resolution: STATIC', '  addresses: [10.1.0.1, 10.1.0.2]\n  resolution: STATIC'),
        metaRouter(`  localRateLimit:
    tokenBucket: {fillInterval: 60s, maxTokens: 10, tokensPerFill: 10}
    conditions:
      - tokenBucket: {fillInterval: 10s, maxTokens: 2, tokensPerFill: 2}
        match:
          attributes:
            method: {exact: sayHello}`),
      ),
    );
    const filters = snap.listeners.map((l) => (l.filter_chains[0]!.filters[0]!.typed_config as { meta_protocol_filters: unknown }).meta_protocol_filters);
    const expected = [
      {
        name: 'aeraki.meta_protocol.filters.local_ratelimit',
        config: {
          '@type': 'type.googleapis.com/aeraki.meta_protocol_proxy.filters.local_ratelimit.v1alpha.LocalRateLimit',
          stat_prefix: HOST,
          token_bucket: { max_tokens: 10, tokens_per_fill: 10, fill_interval: '60s' },
          conditions: [
            {
              match: { metadata: [{ name: 'method', string_match: { exact: 'sayHello' } }] },
              token_bucket: { max_tokens: 2, tokens_per_fill: 2, fill_interval: '10s' },
            },
          ],
        },
      },
      { name: 'aeraki.meta_protocol.filters.router' },
    ];
    expect(filters).toEqual([expected, expected]);
    // A rate-limit-only MetaRouter keeps the default route.
    expect(snap.routes[0]!.routes).toEqual([{ name: 'default', route: { cluster: C(20880) } }]);
  });
});

describe('codecs', () => {
  const brpcSe = `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: brpc}
spec:
  hosts: [brpc.example.com]
  ports: [{number: 8000, name: tcp-metaprotocol-brpc-echo}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]`;
  const brpcAp = `apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: ApplicationProtocol
metadata: {name: brpc}
spec: {protocol: brpc, codec: aeraki.meta_protocol.codec.brpc}`;

  const protocolOf = (snap: Awaited<ReturnType<typeof snapshotOf>>) =>
    snap.listeners.map((l) => (l.filter_chains[0]!.filters[0]!.typed_config as { protocol: unknown }).protocol);

  it('maps a protocol to the codec an ApplicationProtocol names', async () => {
    const snap = await snapshotOf(docs(brpcAp, brpcSe), { knownCodecs: ['aeraki.meta_protocol.codec.brpc'] });
    expect(protocolOf(snap)).toEqual([{ name: 'brpc', codec: { name: 'aeraki.meta_protocol.codec.brpc' } }]);
  });

  it('lets an ApplicationProtocol override a built-in codec', async () => {
    const snap = await snapshotOf(
      docs(DEMO_SE, `apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: ApplicationProtocol
metadata: {name: my-dubbo}
spec: {protocol: dubbo, codec: example.codec.dubbo3}`),
    );
    expect(protocolOf(snap)).toEqual([{ name: 'dubbo', codec: { name: 'example.codec.dubbo3' } }]);
  });

  it('rejects a port whose codec is not among knownCodecs, naming the field', async () => {
    const result = await compileYaml(docs(brpcAp, brpcSe), { knownCodecs: ['aeraki.meta_protocol.codec.dubbo', 'aeraki.meta_protocol.codec.thrift'] });
    expect(result.snapshot).toBeUndefined();
    expect(result.errors.map((e) => e.format())).toEqual([
      `${result.file}:1: ServiceEntry/brpc: spec.ports[0].name: codec "aeraki.meta_protocol.codec.brpc" (protocol "brpc", from ApplicationProtocol/brpc (${result.file}:0)) is not a known codec (known: aeraki.meta_protocol.codec.dubbo, aeraki.meta_protocol.codec.thrift)`,
    ]);
  });
});

describe('clusters and endpoints', () => {
  it('puts DestinationRule traffic policy on clusters, a subset policy overriding the top-level one', async () => {
    const snap = await snapshotOf(
      docs(
        DEMO_SE,
        `apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: dr}
spec:
  host: ${HOST}
  trafficPolicy:
    loadBalancer: {simple: LEAST_CONN}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 250ms}
    outlierDetection:
      consecutiveErrors: 7
      consecutiveGatewayErrors: 2
      interval: 1m
      baseEjectionTime: 30s
      maxEjectionPercent: 50
  subsets:
    - name: v1
      labels: {version: v1}
      trafficPolicy:
        loadBalancer: {simple: RANDOM}
        outlierDetection: {consecutive5xxErrors: 3}
    - name: v2
      labels: {version: v2}
      trafficPolicy:
        loadBalancer:
          consistentHash: {httpHeaderName: user}`,
        DEMO_MR,
      ),
    );
    const base = { '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster', type: 'EDS' };
    expect(snap.clusters).toEqual([
      {
        ...base,
        name: C(20880),
        eds_cluster_config: { eds_config: ADS, service_name: C(20880) },
        connect_timeout: '0.25s',
        lb_policy: 'LEAST_REQUEST',
        circuit_breakers: { thresholds: [{ max_connections: 100 }] },
        outlier_detection: { consecutive_5xx: 7, consecutive_gateway_failure: 2, interval: '60s', base_ejection_time: '30s', max_ejection_percent: 50 },
      },
      {
        ...base,
        name: C(20880, 'v1'),
        eds_cluster_config: { eds_config: ADS, service_name: C(20880, 'v1') },
        connect_timeout: '0.25s',
        lb_policy: 'RANDOM',
        circuit_breakers: { thresholds: [{ max_connections: 100 }] },
        outlier_detection: { consecutive_5xx: 3 },
      },
      {
        ...base,
        name: C(20880, 'v2'),
        eds_cluster_config: { eds_config: ADS, service_name: C(20880, 'v2') },
        connect_timeout: '0.25s',
        lb_policy: 'RING_HASH',
        circuit_breakers: { thresholds: [{ max_connections: 100 }] },
        outlier_detection: { consecutive_5xx: 7, consecutive_gateway_failure: 2, interval: '60s', base_ejection_time: '30s', max_ejection_percent: 50 },
      },
    ]);
    // The consistent-hash header goes on routes to the hashed cluster (Aeraki's hash_policy).
    expect(snap.routes[0]!.routes.map((r) => r.route.hash_policy)).toEqual([['user'], ['user']]);
  });

  it('hashes the default route on the top-level consistentHash header', async () => {
    const snap = await snapshotOf(
      docs(DEMO_SE, `apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: dr}
spec:
  host: ${HOST}
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: method}}}`),
    );
    expect(snap.routes[0]!.routes).toEqual([{ name: 'default', route: { cluster: C(20880), hash_policy: ['method'] } }]);
    expect(snap.clusters.map((c) => c.lb_policy)).toEqual(['RING_HASH']);
  });

  it('with DNS resolution, endpoints are host names; without endpoints, the host itself', async () => {
    const snap = await snapshotOf(
      docs(
        `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: dns}
spec:
  hosts: [provider.example.com]
  addresses: [10.20.0.1, 10.20.0.2]
  ports: [{number: 9090, name: tcp-metaprotocol-thrift, targetPort: 9091}]
  resolution: DNS
  endpoints:
    - {address: a.provider.example.com, labels: {zone: a}}
    - {address: b.provider.example.com, weight: 0}`,
        `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: bare}
spec:
  hosts: [bare.example.com]
  ports: [{number: 9090, name: tcp-metaprotocol-thrift}]
  resolution: DNS`,
      ),
    );
    expect(snap.listeners.map((l) => l.name)).toEqual(['10.20.0.1_9090', '10.20.0.2_9090', '127.0.0.1_9090']);
    expect(snap.endpoints).toEqual([
      {
        '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
        cluster_name: C(9090, '', 'provider.example.com'),
        endpoints: [
          {
            lb_endpoints: [
              {
                endpoint: { address: { socket_address: { address: 'a.provider.example.com', port_value: 9091 } } },
                metadata: { filter_metadata: { istio: { labels: { zone: 'a' } } } },
                health_status: 'HEALTHY',
              },
              {
                endpoint: { address: { socket_address: { address: 'b.provider.example.com', port_value: 9091 } } },
                metadata: { filter_metadata: { istio: { labels: {} } } },
                health_status: 'HEALTHY',
              },
            ],
          },
        ],
      },
      {
        '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
        cluster_name: C(9090, '', 'bare.example.com'),
        endpoints: [
          {
            lb_endpoints: [
              {
                endpoint: { address: { socket_address: { address: 'bare.example.com', port_value: 9090 } } },
                metadata: { filter_metadata: { istio: { labels: {} } } },
                health_status: 'HEALTHY',
              },
            ],
          },
        ],
      },
    ]);
  });

  it('binds listeners on the bind option when a service has no addresses, else on its addresses', async () => {
    const vip = `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: vip}
spec:
  hosts: [vip.example.com]
  addresses: [10.30.0.1/32]
  ports: [{number: 20990, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]`;
    const snap = await snapshotOf(docs(DEMO_SE, vip), { bind: '0.0.0.0' });
    expect(snap.listeners.map((l) => [l.name, l.address?.socket_address])).toEqual([
      ['0.0.0.0_20880', { address: '0.0.0.0', port_value: 20880 }],
      ['10.30.0.1_20990', { address: '10.30.0.1', port_value: 20990 }],
    ]);
  });
});

describe('version', () => {
  const base = docs(DEMO_SE, DEMO_DR, DEMO_MR);

  it('is the same for the same input, and a hash of the resources', async () => {
    const a = await snapshotOf(base);
    const b = await snapshotOf(base);
    expect(a.version).toMatch(/^[0-9a-f]{12}$/);
    expect(b.version).toBe(a.version);
    const { version, ...resources } = a;
    expect(contentVersion(resources)).toBe(version);
  });

  it('does not depend on the key order of YAML maps', async () => {
    const reordered = base.replace('      ports:\n        tcp-metaprotocol-dubbo: 20881\n      labels:\n        version: v1', '      labels:\n        version: v1\n      ports:\n        tcp-metaprotocol-dubbo: 20881');
    expect(reordered).not.toBe(base);
    expect((await snapshotOf(reordered)).version).toBe((await snapshotOf(base)).version);
  });

  it('changes when the configuration changes', async () => {
    const a = await snapshotOf(base);
    const b = await snapshotOf(base.replace('weight: 20', 'weight: 30').replace('weight: 80', 'weight: 70'));
    const c = await snapshotOf(base.replace('address: 10.0.0.2', 'address: 10.0.0.3'));
    expect(b.version).not.toBe(a.version);
    expect(c.version).not.toBe(a.version);
    expect(c.version).not.toBe(b.version);
  });

  it('translate() on parsed documents matches compile()', async () => {
    const { docs: loaded } = parseDocuments(base, 'mem.yaml');
    expect(translate(loaded, {})).toEqual(await snapshotOf(base));
  });
});
