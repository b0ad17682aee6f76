/**
 * Proxyless gRPC translation (control/grpc.ts): the exact xDS resources a sample config becomes, VirtualService
 * validation (errors and warnings at file, document and field path), serving the Envoy RouteConfiguration next to
 * Aeraki's MetaProtocol one over ADS, and the Waypost data plane ignoring the API listener it does not serve.
 */
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRegistry } from '../../src/builtin-codecs.js';
import { setLogSink } from '../../src/log.js';
import { Proxy } from '../../src/proxy.js';
import { decodeResource, encodeResource, type JsonObject } from '../../src/xds/convert.js';
import {
  TYPE_CLUSTER,
  TYPE_ENDPOINTS,
  TYPE_HTTP_CONNECTION_MANAGER,
  TYPE_HTTP_FAULT,
  TYPE_HTTP_ROUTE,
  TYPE_HTTP_ROUTER,
  TYPE_LISTENER,
  TYPE_META_ROUTE,
} from '../../src/xds/resources.js';
import { XdsServer } from '../../control/xds/server.js';
import { compileYaml, docs } from '../control/helpers.js';
import { rawAdsClient } from '../xds/helpers.js';

const HOST = 'greeter.example';
const DUBBO = 'org.apache.dubbo.samples.basic.api.demoservice';

const SE = `
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: greeter}
spec:
  hosts: [${HOST}]
  ports:
    - {number: 50051, name: api, protocol: GRPC}
    - {number: 8080, name: http, protocol: HTTP}
  resolution: STATIC
  endpoints:
    - {address: 10.0.0.1, ports: {api: 9001}, labels: {version: v1}, locality: eu-west/a}
    - {address: 10.0.0.2, labels: {version: v1}, locality: eu-west/b, weight: 3}
    - {address: 10.0.0.3, labels: {version: v2}, locality: eu-west/a}`;

const DR = `
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: greeter}
spec:
  host: ${HOST}
  subsets:
    - {name: v1, labels: {version: v1}}
    - name: v2
      labels: {version: v2}
      trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-session}}}`;

const VS = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter}
spec:
  hosts: [${HOST}]
  http:
    - name: jason
      match:
        - headers: {x-user: {exact: jason}}
        - headers: {x-team: {regex: "core|infra"}, x-canary: {}}
      route: [{destination: {host: ${HOST}, subset: v2}}]
      fault:
        delay: {fixedDelay: 50ms, percentage: {value: 10}}
        abort: {grpcStatus: UNAVAILABLE}
    - name: hello
      match: [{uri: {prefix: /waypost.test.Greeter/}}]
      route:
        - {destination: {host: ${HOST}, subset: v1, port: {number: 50051}}, weight: 20}
        - {destination: {host: ${HOST}, subset: v2}, weight: 80}
        - {destination: {host: ${HOST}}, weight: 0}
      timeout: 1.5s
      retries: {attempts: 3, perTryTimeout: 500ms}
    - route: [{destination: {host: ${HOST}, subset: v1}}]
      retries: {attempts: 0}`;

/** A Dubbo service beside it: its MetaProtocol resources are not touched. */
const DUBBO_SE = `
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: dubbo}
spec:
  hosts: [${DUBBO}]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {tcp-metaprotocol-dubbo: 20881}}]`;

beforeAll(() => setLogSink(() => undefined));
afterAll(() => setLogSink((line) => process.stderr.write(line + '\n')));

const cluster = (subset = ''): string => `outbound|50051|${subset}|${HOST}`;
const labels = (version: string) => ({ filter_metadata: { istio: { labels: { version } } } });
const ep = (address: string, port: number, version: string, weight?: number) => ({
  endpoint: { address: { socket_address: { address, port_value: port } } },
  ...(weight ? { load_balancing_weight: weight } : {}),
  metadata: labels(version),
  health_status: 'HEALTHY',
});

describe('translation', () => {
  it('turns a GRPC port, its subsets and a VirtualService into an API listener, an Envoy RouteConfiguration and EDS clusters', async () => {
    const { snapshot, errors, warnings } = await compileYaml(docs(DUBBO_SE, SE, DR, VS));
    expect(errors).toEqual([]);
    expect(warnings).toEqual([expect.stringContaining('spec.http[1].retries.perTryTimeout: gRPC\'s xDS clients do not support a per-try timeout')]);
    const snap = snapshot!;

    // The Dubbo service keeps its socket listener and MetaProtocol routes; the HTTP port is not served.
    expect(snap.listeners.map((l) => l.name)).toEqual(['127.0.0.1_20880', `${HOST}:50051`]);
    expect(snap.routes.map((r) => r.name)).toEqual([`${DUBBO}_20880`]);

    expect(snap.listeners[1]).toEqual({
      '@type': TYPE_LISTENER,
      name: `${HOST}:50051`,
      filter_chains: [],
      api_listener: {
        api_listener: {
          '@type': TYPE_HTTP_CONNECTION_MANAGER,
          stat_prefix: cluster(),
          rds: { config_source: { ads: {}, resource_api_version: 'V3' }, route_config_name: `${HOST}:50051` },
          http_filters: [
            { name: 'envoy.filters.http.fault', typed_config: { '@type': TYPE_HTTP_FAULT } },
            { name: 'envoy.filters.http.router', typed_config: { '@type': TYPE_HTTP_ROUTER } },
          ],
        },
      },
    });

    const fault = {
      '@type': TYPE_HTTP_FAULT,
      delay: { fixed_delay: '0.05s', percentage: { numerator: 100_000, denominator: 'MILLION' } },
      abort: { percentage: { numerator: 1_000_000, denominator: 'MILLION' }, grpc_status: 14 },
    };
    const jasonAction = { cluster: cluster('v2'), hash_policy: [{ header: { header_name: 'x-session' } }] };
    expect(snap.http_routes).toEqual([
      {
        '@type': TYPE_HTTP_ROUTE,
        name: `${HOST}:50051`,
        virtual_hosts: [
          {
            name: `${HOST}:50051`,
            domains: [HOST, `${HOST}:50051`],
            routes: [
              {
                name: 'jason',
                match: { prefix: '/', headers: [{ name: 'x-user', string_match: { exact: 'jason' } }] },
                route: jasonAction,
                typed_per_filter_config: { 'envoy.filters.http.fault': fault },
              },
              {
                name: 'jason',
                match: {
                  prefix: '/',
                  headers: [
                    { name: 'x-team', string_match: { safe_regex: { regex: 'core|infra' } } },
                    { name: 'x-canary', present_match: true },
                  ],
                },
                route: jasonAction,
                typed_per_filter_config: { 'envoy.filters.http.fault': fault },
              },
              {
                name: 'hello',
                match: { prefix: '/waypost.test.Greeter/' },
                route: {
                  weighted_clusters: {
                    clusters: [
                      { name: cluster('v1'), weight: 20 },
                      { name: cluster('v2'), weight: 80 },
                    ],
                  },
                  timeout: '1.5s',
                  max_stream_duration: { max_stream_duration: '1.5s' },
                  retry_policy: {
                    retry_on: 'connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes',
                    num_retries: 3,
                    per_try_timeout: '0.5s',
                  },
                  hash_policy: [{ header: { header_name: 'x-session' } }],
                },
              },
              { name: 'route-2', match: { prefix: '/' }, route: { cluster: cluster('v1') } },
            ],
          },
        ],
      },
    ]);

    const grpcClusters = snap.clusters.filter((c) => c.name.endsWith(`|${HOST}`));
    expect(grpcClusters).toEqual(
      [['', 'ROUND_ROBIN'], ['v1', 'ROUND_ROBIN'], ['v2', 'RING_HASH']].map(([subset, lb]) => ({
        '@type': TYPE_CLUSTER,
        name: cluster(subset),
        type: 'EDS',
        eds_cluster_config: { eds_config: { ads: {}, resource_api_version: 'V3' }, service_name: cluster(subset) },
        connect_timeout: '10s',
        lb_policy: lb,
      })),
    );

    // Per locality, each with its weight (the sum of its endpoints'); gRPC skips a locality without one.
    const endpoints = snap.endpoints.filter((e) => e.cluster_name.endsWith(`|${HOST}`));
    expect(endpoints).toEqual([
      {
        '@type': TYPE_ENDPOINTS,
        cluster_name: cluster(),
        endpoints: [
          { locality: { region: 'eu-west', zone: 'a' }, load_balancing_weight: 2, lb_endpoints: [ep('10.0.0.1', 9001, 'v1'), ep('10.0.0.3', 50051, 'v2')] },
          { locality: { region: 'eu-west', zone: 'b' }, load_balancing_weight: 3, lb_endpoints: [ep('10.0.0.2', 50051, 'v1', 3)] },
        ],
      },
      {
        '@type': TYPE_ENDPOINTS,
        cluster_name: cluster('v1'),
        endpoints: [
          { locality: { region: 'eu-west', zone: 'a' }, load_balancing_weight: 1, lb_endpoints: [ep('10.0.0.1', 9001, 'v1')] },
          { locality: { region: 'eu-west', zone: 'b' }, load_balancing_weight: 3, lb_endpoints: [ep('10.0.0.2', 50051, 'v1', 3)] },
        ],
      },
      {
        '@type': TYPE_ENDPOINTS,
        cluster_name: cluster('v2'),
        endpoints: [{ locality: { region: 'eu-west', zone: 'a' }, load_balancing_weight: 1, lb_endpoints: [ep('10.0.0.3', 50051, 'v2')] }],
      },
    ]);
  });

  it('without a VirtualService: one default route to the whole service; without gRPC ports: no http_routes at all', async () => {
    const { snapshot } = await compileYaml(docs(SE));
    expect(snapshot!.http_routes![0]!.virtual_hosts[0]!.routes).toEqual([{ name: 'default', match: { prefix: '/' }, route: { cluster: cluster() } }]);
    const dubboOnly = await compileYaml(docs(DUBBO_SE));
    expect(dubboOnly.snapshot).toBeDefined();
    expect('http_routes' in dubboOnly.snapshot!).toBe(false);
  });

  it('uses ROUND_ROBIN where the DestinationRule asks for a balancer gRPC clients lack, and warns about what they ignore', async () => {
    const dr = DR.replace('  subsets:', '  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}, outlierDetection: {consecutive5xxErrors: 3}}\n  subsets:');
    const { snapshot, warnings, file } = await compileYaml(docs(SE, dr));
    expect(snapshot!.clusters.map((c) => [c.name, c.lb_policy])).toEqual([
      [cluster(), 'ROUND_ROBIN'],
      [cluster('v1'), 'ROUND_ROBIN'],
      [cluster('v2'), 'RING_HASH'],
    ]);
    expect(warnings.map((w) => w.replaceAll(file, '@'))).toEqual([
      "@:1: DestinationRule/greeter: spec.trafficPolicy.loadBalancer.simple: gRPC's xDS clients balance only ROUND_ROBIN or by consistent hash: the clusters of gRPC port 50051 use ROUND_ROBIN",
      "@:1: DestinationRule/greeter: spec.trafficPolicy.outlierDetection: gRPC's xDS clients eject by success rate only (gRPC A50), not after consecutive errors: consecutive5xxErrors ignored by the clients of gRPC port 50051",
    ]);
  });
});

describe('validation', () => {
  async function lines(yaml: string): Promise<{ errors: string[]; warnings: string[] }> {
    const { errors, warnings, file } = await compileYaml(yaml);
    return { errors: errors.map((e) => e.format().replaceAll(file, '@')), warnings: warnings.map((w) => w.replaceAll(file, '@')) };
  }

  it('reports each problem of a VirtualService for a gRPC host at its field path', async () => {
    const vs = `
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: bad}
spec:
  hosts: [${HOST}, ${DUBBO}]
  http:
    - name: headers
      match:
        - headers: {X-User: {exact: jason}, x-team: {regex: "(?!ops).*"}, x-a: {exact: a, prefix: b}}
        - method: {exact: POST}
      route: [{destination: {host: ${HOST}, subset: v3}}]
    - name: destinations
      route:
        - {destination: {host: ${DUBBO}}, weight: 0}
        - {destination: {host: ${HOST}, port: {number: 8080}}, weight: 0}
        - {destination: {host: nowhere.example}}
    - name: policy
      route: [{destination: {host: ${HOST}}}]
      timeout: soon
      retries: {attempts: 2, retryOn: "unavailable,sometimes"}
      fault: {abort: {grpcStatus: NOPE}, delay: {percentage: {value: 5}}}
    - name: redirect
      redirect: {uri: /elsewhere}
      route: [{destination: {host: ${HOST}}}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: second}
spec:
  hosts: [${HOST}]
  http: [{route: [{destination: {host: ${HOST}}}]}]`;
    const { errors } = await lines(docs(DUBBO_SE, SE, DR, vs));
    expect(errors).toEqual([
      '@:3: VirtualService/bad: spec.http[0].match[0].headers.X-User: header name "X-User" must be lower case (gRPC metadata keys are)',
      '@:3: VirtualService/bad: spec.http[0].match[0].headers.x-team.regex: "(?!ops).*" uses lookaround, which RE2 (gRPC\'s regex engine) does not have',
      '@:3: VirtualService/bad: spec.http[0].match[0].headers.x-a: only one of exact, prefix or regex can be set (got exact, prefix)',
      '@:3: VirtualService/bad: spec.http[0].match[1].method: gRPC clients cannot match on "method" (they match headers and uri): the route would match more than it says',
      '@:3: VirtualService/bad: spec.http[0].route[0].destination.subset: subset "v3" is not defined by any DestinationRule for host "greeter.example"',
      `@:3: VirtualService/bad: spec.http[1].route[0].destination.host: host "${DUBBO}" has no gRPC port (ServiceEntry/dubbo has no port with protocol GRPC)`,
      '@:3: VirtualService/bad: spec.http[1].route[1].destination.port.number: host "greeter.example" has no gRPC port 8080 (its gRPC ports: 50051)',
      '@:3: VirtualService/bad: spec.http[1].route[2].destination.host: host "nowhere.example" is not defined by any ServiceEntry',
      '@:3: VirtualService/bad: spec.http[1].route: the weights of several destinations add up to 0: give at least one a weight',
      '@:3: VirtualService/bad: spec.http[2].timeout: "soon" is not a duration: write a number and a unit (ns, us, ms, s, m, h), e.g. "1s", "500ms", "1.5s", "2m"',
      '@:3: VirtualService/bad: spec.http[2].retries.retryOn: unknown retry condition "sometimes" (gRPC clients retry on cancelled, deadline-exceeded, internal, resource-exhausted, unavailable)',
      '@:3: VirtualService/bad: spec.http[2].fault.delay.fixedDelay: required',
      '@:3: VirtualService/bad: spec.http[2].fault.abort.grpcStatus: "NOPE" is not a gRPC status name (one of CANCELLED, UNKNOWN, INVALID_ARGUMENT, DEADLINE_EXCEEDED, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION, ABORTED, OUT_OF_RANGE, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS, UNAUTHENTICATED)',
      '@:3: VirtualService/bad: spec.http[3].redirect: not supported for gRPC clients (Waypost sends them routes to clusters only)',
      '@:4: VirtualService/second: spec.hosts[0]: host "greeter.example" already has VirtualService/bad (@:3): at most one VirtualService per gRPC host',
    ]);
  });

  it('warns about what gRPC clients ignore, and keeps ignoring VirtualServices for other hosts', async () => {
    const vs = `
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: greeter}
spec:
  hosts: [${HOST}, other.example]
  tcp: [{route: [{destination: {host: ${HOST}}}]}]
  http:
    - route: [{destination: {host: ${HOST}}}]
      rewrite: {uri: /v2}
      retries: {attempts: 2, retryOn: 5xx}
    - name: never
      route: [{destination: {host: ${HOST}}}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: web}
spec: {hosts: [web.example]}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: [${HOST}]
  gateways: [edge-gateway]
  http: [{route: [{destination: {host: ${HOST}}}]}]`;
    const { errors, warnings } = await lines(docs(SE, vs));
    expect(errors).toEqual([]);
    expect(warnings).toEqual([
      '@:1: VirtualService/greeter: spec.hosts[1]: "other.example" is not a gRPC service (a ServiceEntry hosts[0] with a port of protocol GRPC): this host is ignored',
      '@:1: VirtualService/greeter: spec.tcp: tcp routes do not apply to gRPC clients: ignored',
      '@:1: VirtualService/greeter: spec.http[0].rewrite: not translated for gRPC clients: ignored',
      '@:1: VirtualService/greeter: spec.http[0].retries.retryOn: gRPC clients retry only on cancelled, deadline-exceeded, internal, resource-exhausted, unavailable: with none of them, nothing is retried',
      '@:1: VirtualService/greeter: spec.http[1]: unreachable: spec.http[0] matches every call before it',
      '@:2: VirtualService/web: VirtualService is not translated yet: ignored',
      '@:3: VirtualService/edge: spec.gateways: applies to gateways only (no "mesh" in spec.gateways), and Waypost has no gateways: ignored',
    ]);
  });

  it('requires IP endpoints for a gRPC port (gRPC clients do not resolve names from EDS)', async () => {
    const se = `
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: dns}
spec:
  hosts: [${HOST}]
  ports: [{number: 50051, name: grpc-api, protocol: grpc}]
  resolution: DNS
  endpoints: [{address: backend.example}, {address: 10.0.0.9}]
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: dns2}
spec:
  hosts: [other.example]
  ports: [{number: 50052, name: grpc, protocol: GRPC}]
  resolution: DNS`;
    const { errors } = await lines(docs(se));
    expect(errors).toEqual([
      '@:0: ServiceEntry/dns: spec.endpoints[0].address: "backend.example" is not an IP address: gRPC\'s xDS clients take IP endpoints only (gRPC port 50051)',
      "@:1: ServiceEntry/dns2: spec.resolution: DNS without endpoints resolves the host name, but gRPC's xDS clients take IP endpoints only (gRPC port 50052): list the endpoints' IP addresses",
    ]);
  });
});

describe('serving and the Waypost data plane', () => {
  it('serves the Envoy RouteConfiguration beside the MetaProtocol one, each under its own type URL', async () => {
    const { snapshot } = await compileYaml(docs(DUBBO_SE, SE, DR, VS));
    const server = new XdsServer({ debounceMs: 10, initialGatherMs: 10 });
    server.setSnapshot(snapshot!);
    expect(server.resourceNames(TYPE_HTTP_ROUTE)).toEqual([`${HOST}:50051`]);
    expect(server.resourceNames(TYPE_META_ROUTE)).toEqual([`${DUBBO}_20880`]);
    const port = await server.listen({ host: '127.0.0.1', port: 0 });
    const ads = rawAdsClient(port);
    try {
      const stream = ads.sotw();
      stream.send({ node: { id: 'raw' }, type_url: TYPE_HTTP_ROUTE, resource_names: [`${HOST}:50051`, `${DUBBO}_20880`] });
      stream.send({ type_url: TYPE_META_ROUTE, resource_names: [`${DUBBO}_20880`, `${HOST}:50051`] });
      const got = new Map<string, unknown[]>();
      for (let i = 0; i < 2; i++) {
        const r = await stream.next();
        got.set(r.type_url, (r.resources ?? []).map((any, j) => decodeResource(r.type_url, any, j).json));
      }
      // Each type answers only the names it has; the Envoy one decodes back to exactly what was translated.
      expect(got.get(TYPE_HTTP_ROUTE)).toEqual(snapshot!.http_routes);
      expect(got.get(TYPE_META_ROUTE)).toEqual(snapshot!.routes);

      // Without gRPC services the Envoy RouteConfiguration is gone (served empty), not left behind.
      const { snapshot: dubboOnly } = await compileYaml(docs(DUBBO_SE));
      expect(server.setSnapshot(dubboOnly!)).toContain(TYPE_HTTP_ROUTE);
      expect(server.resourceNames(TYPE_HTTP_ROUTE)).toEqual([]);
      const next = await stream.next();
      expect(next.type_url).toBe(TYPE_HTTP_ROUTE);
      expect(next.resources ?? []).toEqual([]);
    } finally {
      ads.close();
      server.close();
    }
  });

  it('encodes every gRPC resource losslessly (what the client decodes is what was translated)', async () => {
    const { snapshot } = await compileYaml(docs(SE, DR, VS));
    const s = snapshot!;
    const roundTrip = (typeUrl: string, r: object): JsonObject => decodeResource(typeUrl, encodeResource(typeUrl, r as JsonObject), 0).json;
    const plain = (r: object): JsonObject => JSON.parse(JSON.stringify(r)) as JsonObject;
    // Proto3 defaults are not on the wire: an empty filter_chains list, lb_policy ROUND_ROBIN.
    for (const l of s.listeners) {
      const { filter_chains, ...rest } = l;
      expect(filter_chains).toEqual([]);
      expect(roundTrip(TYPE_LISTENER, l)).toEqual(plain(rest));
    }
    for (const c of s.clusters) {
      const { lb_policy, ...rest } = c;
      expect(roundTrip(TYPE_CLUSTER, c)).toEqual(plain(lb_policy === 'ROUND_ROBIN' ? rest : c));
    }
    for (const e of s.endpoints) expect(roundTrip(TYPE_ENDPOINTS, e)).toEqual(plain(e));
    for (const r of s.http_routes!) expect(roundTrip(TYPE_HTTP_ROUTE, r)).toEqual(plain(r));
    // An endpoint without a locality still gets one (empty, but present: gRPC rejects a LocalityLbEndpoints without).
    const { snapshot: bare } = await compileYaml(docs(SE.replace(/, locality: eu-west\/[ab]/g, '')));
    const cla = bare!.endpoints[0]!;
    expect(cla.endpoints).toEqual([{ locality: {}, load_balancing_weight: 5, lb_endpoints: expect.any(Array) }]);
    expect(roundTrip(TYPE_ENDPOINTS, cla)).toEqual(plain(cla));
  });

  it("passes gRPC's own resource validation (grpc-js-xds's decoders, as its xDS client runs them on each response)", async () => {
    // grpc-js-xds's per-type decoders (not its public API: build/src/xds-resource-type/*). register() adds the HTTP
    // filters (router, fault) they check the listener's and routes' filter configs against.
    const require = createRequire(import.meta.url);
    require('@grpc/grpc-js-xds').register();
    const dir = '@grpc/grpc-js-xds/build/src/xds-resource-type/';
    type Decoder = { decode(ctx: unknown, any: { type_url: string; value: Buffer }): { name: string; error?: string } };
    const decoders: Record<string, Decoder> = {
      [TYPE_LISTENER]: require(`${dir}listener-resource-type`).ListenerResourceType.get(),
      [TYPE_HTTP_ROUTE]: require(`${dir}route-config-resource-type`).RouteConfigurationResourceType.get(),
      [TYPE_CLUSTER]: require(`${dir}cluster-resource-type`).ClusterResourceType.get(),
      [TYPE_ENDPOINTS]: require(`${dir}endpoint-resource-type`).EndpointResourceType.get(),
    };
    const dr = DR.replace('  subsets:', '  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, maxEjectionPercent: 50}\n    connectionPool: {http: {http2MaxRequests: 10}}\n  subsets:');
    const { snapshot } = await compileYaml(docs(SE, dr, VS));
    const s = snapshot!;
    const lists: Array<[string, object[]]> = [[TYPE_LISTENER, s.listeners], [TYPE_HTTP_ROUTE, s.http_routes!], [TYPE_CLUSTER, s.clusters], [TYPE_ENDPOINTS, s.endpoints]];
    const results = lists.flatMap(([t, list]) =>
      list.map((r) => decoders[t]!.decode({ bootstrap: { certificateProviders: {} } }, { type_url: t, value: Buffer.from(encodeResource(t, r as JsonObject).value) })),
    );
    expect(results.map((r) => r.error ?? 'ok')).toEqual(results.map(() => 'ok'));
    expect(results.map((r) => r.name)).toEqual(lists.flatMap(([t, list]) => list.map((r) => (t === TYPE_ENDPOINTS ? (r as { cluster_name: string }).cluster_name : (r as { name: string }).name))));
  });

  it('a proxy given the snapshot (proxy --config) applies it and binds no listener for the API listener', async () => {
    const { snapshot } = await compileYaml(docs(SE, DR, VS));
    const proxy = new Proxy({ codecs: createRegistry() });
    try {
      await proxy.apply(snapshot!);
      expect(proxy.version).toBe(snapshot!.version);
      expect(proxy.listenersDump()).toEqual([]);
      expect((proxy.clustersDump() as Array<{ name: string }>).map((c) => c.name)).toEqual([cluster(), cluster('v1'), cluster('v2')]);
    } finally {
      await proxy.close();
    }
  });
});
