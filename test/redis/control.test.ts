/**
 * RedisService / RedisDestination (Aeraki's redis.aeraki.io/v1alpha1) → Envoy redis_proxy listeners and clusters,
 * and their validation (file:document: Kind/name: field.path: problem).
 */
import { describe, expect, it } from 'vitest';
import { compile, formatErrors } from '../../control/index.js';
import { createRegistry } from '../../src/builtin-codecs.js';
import { Proxy } from '../../src/proxy.js';
import type { RedisProxyConfig } from '../../src/redis/types.js';
import { compileYaml, docs } from '../control/helpers.js';

const SE = (host: string, port: number, portName = 'tcp-redis', extraPorts = '') => `
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: ${host.split('.')[0]}, namespace: redis}
spec:
  hosts: [${host}]
  ports:
    - {number: ${port}, name: ${portName}, protocol: TCP}${extraPorts}
  resolution: STATIC
  endpoints:
    - {address: 10.0.0.1}
    - {address: 10.0.0.2, ports: {${portName}: 7000}}
`;

const RS = (name: string, spec: string) => `
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisService
metadata: {name: ${name}, namespace: redis}
spec:
${spec}`;

const RD = (name: string, spec: string) => `
apiVersion: redis.aeraki.io/v1alpha1
kind: RedisDestination
metadata: {name: ${name}, namespace: redis}
spec:
${spec}`;

const CLUSTER = 'redis-cluster.redis.svc.cluster.local';
const SINGLE = 'redis-single.redis.svc.cluster.local';

async function errorsOf(yaml: string): Promise<string[]> {
  const r = await compileYaml(yaml, { knownCodecs: createRegistry().names() });
  return r.errors.map((e) => e.format().replaceAll(r.file, '@'));
}

async function warningsOf(yaml: string): Promise<string[]> {
  const r = await compileYaml(yaml);
  expect(formatErrors(r.errors)).toBe('');
  return r.warnings.map((w) => w.replaceAll(r.file, '@'));
}

describe('translation', () => {
  it('builds Aeraki\'s redis_proxy listener, prefix routes, mirrors, faults, auth and the cluster\'s protocol options', async () => {
    const r = await compileYaml(
      docs(
        SE(CLUSTER, 6379),
        SE(SINGLE, 6380),
        RS(
          'routing',
          `  host: [${CLUSTER}]
  settings:
    opTimeout: 2s
    caseInsensitive: true
    enableHashtagging: true
    maxBufferSizeBeforeFlush: 1024
    bufferFlushTimeout: 5ms
    auth: {plain: {username: app, password: client-pass}}
  redis:
    - match: {key: {prefix: cluster, removePrefix: true}}
      route: {host: ${CLUSTER}}
      mirror:
        - route: {host: ${SINGLE}}
          percentage: {value: 25}
          excludeReadCommands: true
    - route: {host: ${SINGLE}}
  faults:
    - {type: ERROR, percentage: {value: 50}, commands: [GET]}
    - {type: DELAY, delay: 100ms, percentage: {value: 10}}`,
        ),
        RD(
          'single',
          `  host: ${SINGLE}
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 20, connectTimeout: 3s}
      redis: {mode: PROXY, auth: {plain: {username: proxy, password: server-pass}}}`,
        ),
      ),
    );
    expect(formatErrors(r.errors)).toBe('');
    const snap = r.snapshot!;
    const listener = snap.listeners.find((l) => l.name === '127.0.0.1_6379')!;
    expect(listener.address).toEqual({ socket_address: { address: '127.0.0.1', port_value: 6379 } });
    const filter = listener.filter_chains![0]!.filters[0]!;
    expect(filter.name).toBe('envoy.filters.network.redis_proxy');
    expect(filter.typed_config as unknown as RedisProxyConfig).toEqual({
      '@type': 'type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy',
      stat_prefix: `outbound|6379||${CLUSTER}`,
      settings: { op_timeout: '2s', enable_hashtagging: true, max_buffer_size_before_flush: 1024, buffer_flush_timeout: '0.005s' },
      prefix_routes: {
        case_insensitive: true,
        routes: [
          {
            prefix: 'cluster',
            remove_prefix: true,
            cluster: `outbound|6379||${CLUSTER}`,
            request_mirror_policy: [
              { cluster: `outbound|6380||${SINGLE}`, runtime_fraction: { default_value: { numerator: 250000, denominator: 'MILLION' } }, exclude_read_commands: true },
            ],
          },
        ],
        catch_all_route: { cluster: `outbound|6380||${SINGLE}` },
      },
      faults: [
        { fault_type: 'ERROR', fault_enabled: { default_value: { numerator: 500000, denominator: 'MILLION' } }, commands: ['GET'] },
        { fault_type: 'DELAY', fault_enabled: { default_value: { numerator: 100000, denominator: 'MILLION' } }, delay: '0.1s' },
      ],
      downstream_auth_passwords: [{ inline_string: 'client-pass' }],
      downstream_auth_username: { inline_string: 'app' },
    });
    // The single service has no RedisService: everything to its own cluster, Aeraki's 60s op timeout.
    const single = snap.listeners.find((l) => l.name === '127.0.0.1_6380')!.filter_chains![0]!.filters[0]!.typed_config as unknown as RedisProxyConfig;
    expect(single.prefix_routes).toEqual({ catch_all_route: { cluster: `outbound|6380||${SINGLE}` } });
    expect(single.settings).toEqual({ op_timeout: '60s' });

    const cluster = snap.clusters.find((c) => c.name === `outbound|6380||${SINGLE}`)!;
    expect(cluster).toMatchObject({
      type: 'EDS',
      lb_policy: 'MAGLEV',
      connect_timeout: '3s',
      circuit_breakers: { thresholds: [{ max_connections: 20 }] },
      typed_extension_protocol_options: {
        'envoy.filters.network.redis_proxy': {
          '@type': 'type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProtocolOptions',
          auth_password: { inline_string: 'server-pass' },
          auth_username: { inline_string: 'proxy' },
        },
      },
    });
    const cla = snap.endpoints.find((e) => e.cluster_name === `outbound|6379||${CLUSTER}`)!;
    expect(cla.endpoints[0]!.lb_endpoints.map((e) => e.endpoint.address.socket_address)).toEqual([
      { address: '10.0.0.1', port_value: 6379 },
      { address: '10.0.0.2', port_value: 7000 },
    ]);
    // And the data plane accepts it as is.
    const proxy = new Proxy({ codecs: createRegistry() });
    await expect(proxy.apply({ ...snap, listeners: [] })).resolves.toBeUndefined();
    await proxy.close();
  });

  it('translates Aeraki\'s own demo and e2e documents', async () => {
    const r = await compileYaml(
      docs(
        SE(CLUSTER, 6379),
        SE(SINGLE, 6379, 'tcp-redis').replace('127.0.0.1', '10.0.0.9').replace('resolution: STATIC', 'addresses: [10.0.0.9]\n  resolution: STATIC'),
        RS('redis-cluster', `  host:\n    - ${CLUSTER}\n  redis:\n    - match:\n        key:\n          prefix: cluster\n      route:\n        host: ${CLUSTER}\n    - route:\n        host: ${SINGLE}`),
        RS('redis-single', `  host:\n    - ${SINGLE}\n  redis:\n    - route:\n        host: ${SINGLE}`),
        RD('redis-single', `  host: ${SINGLE}\n  trafficPolicy:\n    connectionPool:\n      redis:\n        auth:\n          plain:\n            password: testredis`),
        RD('redis-cluster', `  host: ${CLUSTER}\n  trafficPolicy:\n    connectionPool:\n      redis:\n        mode: CLUSTER`),
      ),
    );
    expect(formatErrors(r.errors)).toBe('');
    expect(r.snapshot!.listeners.map((l) => l.name)).toEqual(['127.0.0.1_6379', '10.0.0.9_6379']);
    expect(r.snapshot!.clusters.map((c) => [c.name, c.cluster_type?.name ?? c.type])).toEqual([
      [`outbound|6379||${CLUSTER}`, 'envoy.clusters.redis'],
      [`outbound|6379||${SINGLE}`, 'EDS'],
    ]);
  });
});

describe('Redis Cluster (mode CLUSTER)', () => {
  it('carries allowScripts (Waypost\'s extension) to the route as allow_scripts, on prefix and catch-all routes', async () => {
    const r = await compileYaml(
      docs(
        SE(CLUSTER, 6379),
        RS('s', `  host: [${CLUSTER}]\n  redis:\n    - {match: {key: {prefix: "lua:"}}, route: {host: ${CLUSTER}}, allowScripts: true}\n    - {match: {key: {prefix: "x:"}}, route: {host: ${CLUSTER}}, allowScripts: false}\n    - {route: {host: ${CLUSTER}}, allowScripts: true}`),
      ),
    );
    expect(formatErrors(r.errors)).toBe('');
    const proxy = r.snapshot!.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config as unknown as RedisProxyConfig;
    expect(proxy.prefix_routes!.routes!.map((x) => [x.prefix, x.allow_scripts])).toEqual([
      ['lua:', true],
      ['x:', undefined],
    ]);
    expect(proxy.prefix_routes!.catch_all_route!.allow_scripts).toBe(true);
  });

  it('becomes Envoy\'s envoy.clusters.redis cluster with the seed nodes inline', async () => {
    const r = await compileYaml(
      docs(
        SE(CLUSTER, 6379),
        RD('c', `  host: ${CLUSTER}\n  trafficPolicy:\n    connectionPool:\n      redis: {mode: CLUSTER, discoveryEndpoints: ["10.1.0.1:7000", "seed.example.com", "[fd00::1]:7001"]}`),
      ),
    );
    expect(formatErrors(r.errors)).toBe('');
    const cluster = r.snapshot!.clusters.find((c) => c.name === `outbound|6379||${CLUSTER}`)!;
    expect(cluster).toEqual({
      '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
      name: `outbound|6379||${CLUSTER}`,
      cluster_type: { name: 'envoy.clusters.redis' },
      connect_timeout: '10s',
      load_assignment: {
        cluster_name: `outbound|6379||${CLUSTER}`,
        endpoints: [
          {
            lb_endpoints: [
              { endpoint: { address: { socket_address: { address: '10.1.0.1', port_value: 7000 } } }, health_status: 'HEALTHY' },
              { endpoint: { address: { socket_address: { address: 'seed.example.com', port_value: 6379 } } }, health_status: 'HEALTHY' },
              { endpoint: { address: { socket_address: { address: 'fd00::1', port_value: 7001 } } }, health_status: 'HEALTHY' },
            ],
          },
        ],
      },
    });
    expect(r.snapshot!.endpoints.some((e) => e.cluster_name === cluster.name)).toBe(false);
    // Without discoveryEndpoints, the entry's endpoints are the seeds.
    const plain = await compileYaml(docs(SE(CLUSTER, 6379), RD('c', `  host: ${CLUSTER}\n  trafficPolicy:\n    connectionPool:\n      redis: {mode: CLUSTER}`)));
    const seeds = plain.snapshot!.clusters[0]!.load_assignment!.endpoints[0]!.lb_endpoints.map((e) => e.endpoint.address.socket_address);
    expect(seeds).toEqual([
      { address: '10.0.0.1', port_value: 6379 },
      { address: '10.0.0.2', port_value: 7000 },
    ]);
  });
});

describe('validation', () => {
  it('reports RedisService problems at their field paths', async () => {
    const errors = await errorsOf(
      docs(
        SE(CLUSTER, 6379),
        RS(
          'bad',
          `  host: [${CLUSTER}, "bad host"]
  settings:
    opTimeout: soon
    readPolicy: NEAREST
    auth: {secret: {name: redis-secret}}
  redis:
    - match: {key: {prefix: a}}
      route: {host: ${CLUSTER}}
    - match: {key: {prefix: a}}
      route: {host: ${CLUSTER}}
    - route: {host: ${CLUSTER}}
    - route: {host: ${CLUSTER}}
    - match: {key: {prefix: b}}
      route: {host: nowhere.example.com}
    - match: {key: {prefix: c}}
      route: {host: ${CLUSTER}, port: 6380}
    - match: {key: {prefix: d}}
      route: {host: ${CLUSTER}}
      allowScripts: "yes"
  faults:
    - {type: ABORT}`,
        ),
      ),
    );
    expect(errors).toEqual([
      '@:1: RedisService/bad: spec.host[1]: domain name "bad host" is invalid (label "bad host")',
      '@:1: RedisService/bad: spec.settings.opTimeout: "soon" is not a duration: write a number and a unit (ns, us, ms, s, m, h), e.g. "1s", "500ms", "1.5s", "2m"',
      '@:1: RedisService/bad: spec.settings.readPolicy: must be one of MASTER, PREFER_MASTER, REPLICA, PREFER_REPLICA, ANY (got "NEAREST")',
      '@:1: RedisService/bad: spec.settings.auth.secret: Waypost reads no Kubernetes Secrets: give the credentials with auth.plain',
      '@:1: RedisService/bad: spec.redis[1].match.key.prefix: prefix "a" is already routed by spec.redis[0]',
      '@:1: RedisService/bad: spec.redis[3]: only one route may have no match.key (the catch-all route): spec.redis[2] already is one',
      '@:1: RedisService/bad: spec.redis[6].allowScripts: must be true or false (got string "yes")',
      '@:1: RedisService/bad: spec.faults[0].type: must be DELAY or ERROR (got "ABORT")',
      '@:1: RedisService/bad: spec.redis[4].route.host: host "nowhere.example.com" is not defined by any ServiceEntry',
      '@:1: RedisService/bad: spec.redis[5].route.port: host "redis-cluster.redis.svc.cluster.local" has no Redis port 6380 (its Redis ports: 6379)',
    ]);
  });

  it('reports RedisDestination problems, clashes between documents, and listener clashes with MetaProtocol ports', async () => {
    const errors = await errorsOf(
      docs(
        SE(CLUSTER, 6379),
        SE(SINGLE, 20880, 'tcp-metaprotocol-dubbo', '\n    - {number: 6379, name: tcp-redis-cache}'),
        RD('cluster', `  host: ${CLUSTER}\n  trafficPolicy:\n    connectionPool:\n      redis: {mode: SHARDED, auth: {plain: {username: u}}, discoveryEndpoints: ["a:1", "b:99999"]}`),
        RD('again', `  host: ${CLUSTER}`),
        RS('one', `  host: [${CLUSTER}]`),
        RS('two', `  host: [${CLUSTER}]`),
      ),
    );
    expect(errors).toEqual([
      '@:1: ServiceEntry/redis-single: spec.ports[1].number: 127.0.0.1:6379 is already bound by ServiceEntry/redis-cluster (@:0) port tcp-redis',
      '@:2: RedisDestination/cluster: spec.trafficPolicy.connectionPool.redis.mode: must be PROXY or CLUSTER (got "SHARDED")',
      '@:2: RedisDestination/cluster: spec.trafficPolicy.connectionPool.redis.auth.plain.password: required',
      '@:2: RedisDestination/cluster: spec.trafficPolicy.connectionPool.redis.discoveryEndpoints[1]: "b:99999" is not host or host:port',
      '@:3: RedisDestination/again: spec.host: host "redis-cluster.redis.svc.cluster.local" already has RedisDestination/cluster (@:2): at most one RedisDestination per host',
      '@:5: RedisService/two: spec.host[0]: host "redis-cluster.redis.svc.cluster.local" already has RedisService/one (@:4): at most one RedisService per host',
    ]);
  });

  it('warns about settings Waypost does not act on and services that are not used', async () => {
    const warnings = await warningsOf(
      docs(
        SE(CLUSTER, 6379),
        RS('w', `  host: [${CLUSTER}, other.example.com]\n  settings: {enableRedirection: true, readPolicy: REPLICA}`),
        RD('d', `  host: ${CLUSTER}\n  trafficPolicy:\n    connectionPool:\n      redis: {discoveryEndpoints: [10.0.0.1]}`),
      ),
    );
    expect(warnings).toEqual([
      '@:1: RedisService/w: spec.settings.readPolicy: Waypost reads from masters only: ignored',
      '@:1: RedisService/w: spec.host[1]: no ServiceEntry defines host "other.example.com": the RedisService is not used for it',
      '@:2: RedisDestination/d: spec.trafficPolicy.connectionPool.redis.discoveryEndpoints: only used with mode CLUSTER: ignored',
    ]);
  });

  it('is what `compile` gives a directory, and the data plane accepts the listener', async () => {
    const r = await compileYaml(docs(SE(CLUSTER, 0 + 6390)));
    const proxy = new Proxy({ codecs: createRegistry() });
    try {
      await proxy.apply({ ...r.snapshot!, listeners: r.snapshot!.listeners.map((l) => ({ ...l, address: { socket_address: { address: '127.0.0.1', port_value: 0 } } })) });
      expect(proxy.listenerPort('127.0.0.1_6390')).toBeGreaterThan(0);
      expect((proxy.listenersDump() as Array<{ network_filter: string; codec: string; protocol: string }>)[0]).toMatchObject({
        network_filter: 'envoy.filters.network.redis_proxy',
        codec: 'waypost.codec.redis',
        protocol: 'redis',
      });
    } finally {
      await proxy.close();
    }
    expect(compile).toBeTypeOf('function');
  });
});

describe('the data plane rejects unusable redis_proxy configs naming the field', () => {
  it('reports listener and field', async () => {
    const proxy = new Proxy({ codecs: createRegistry() });
    const listener = (typed: unknown) => ({
      version: 'x',
      clusters: [],
      endpoints: [],
      routes: [],
      listeners: [
        {
          name: 'l1',
          address: { socket_address: { address: '127.0.0.1', port_value: 0 } },
          filter_chains: [{ filters: [{ name: 'envoy.filters.network.redis_proxy', typed_config: typed as never }] }],
        },
      ],
    });
    await expect(proxy.apply(listener({ stat_prefix: 'x' }))).rejects.toThrow('listener l1: redis_proxy prefix_routes: needs at least one route or a catch_all_route');
    await expect(proxy.apply(listener({ stat_prefix: 'x', settings: { op_timeout: 'soon' }, prefix_routes: { catch_all_route: { cluster: 'c' } } }))).rejects.toThrow(
      'listener l1: redis_proxy settings.op_timeout: invalid duration "soon"',
    );
    await expect(
      proxy.apply(listener({ stat_prefix: 'x', prefix_routes: { routes: [{ prefix: 'a', cluster: 'c' }, { prefix: 'a', cluster: 'd' }] } })),
    ).rejects.toThrow('listener l1: redis_proxy prefix_routes.routes: duplicate prefix "a"');
    await expect(proxy.apply(listener({ stat_prefix: 'x', prefix_routes: { catch_all_route: {} } }))).rejects.toThrow(
      'listener l1: redis_proxy prefix_routes.catch_all_route.cluster: required',
    );
    await proxy.close();
  });
});
