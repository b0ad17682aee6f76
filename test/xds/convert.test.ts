/**
 * Resource JSON ↔ protobuf (src/xds/convert.ts): what the translator emits survives the wire, Waypost's route policy
 * rides in Route fields 1000+, Aeraki's local rate limit filter config is a registered Any, TypedStructs are read as
 * the message they name, and bad input is reported at its field path.
 */
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { compile } from '../../control/index.js';
import {
  anyToJson,
  decodeResource,
  encodeResource,
  jsonToAny,
  messageToJson,
  parseDurationJson,
  formatDurationParts,
  XdsConversionError,
  type JsonObject,
} from '../../src/xds/convert.js';
import { messageType, TYPE_XDS_TYPED_STRUCT } from '../../src/xds/protos.js';
import { TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER, TYPE_LOCAL_RATELIMIT, TYPE_META_ROUTE } from '../../src/xds/resources.js';
import { HOST, routerYaml, serviceYaml, TempConfig } from './helpers.js';

const roundTrip = (typeUrl: string, json: JsonObject): JsonObject => decodeResource(typeUrl, encodeResource(typeUrl, json), 0).json;

describe('resource conversion', () => {
  it('round-trips everything the translator emits for a config with route policy and a local rate limit', async () => {
    const cfg = new TempConfig();
    try {
      cfg.write('service.yaml', serviceYaml({ listen: 20880, v1: 20881, v2: 20882 }));
      const router = routerYaml('v1', { jasonTo: 'v2' })
        .replace(
          '    - name: all\n',
          '    - name: all\n      timeout: 1500ms\n      retries: { attempts: 2, perTryTimeout: 250ms, retryOn: "reset,timeout" }\n      fault: { abort: { errorCode: 70, percentage: { value: 5 } }, delay: { fixedDelay: 1.000001s } }\n',
        )
        .replace('  routes:\n', `  localRateLimit:\n    tokenBucket: { maxTokens: 10, tokensPerFill: 5, fillInterval: 1s }\n    conditions:\n      - match: { attributes: { method: { prefix: say } } }\n        tokenBucket: { maxTokens: 2, tokensPerFill: 1, fillInterval: 60s }\n  routes:\n`);
      cfg.write('router.yaml', router);
      const { snapshot, errors } = await compile([cfg.dir]);
      expect(errors.map((e) => e.format())).toEqual([]);
      const s = snapshot!;
      const route = s.routes[0]!.routes.find((r) => r.name === 'all')!;
      expect(route.timeout).toBe('1.5s');
      expect(route.retry_policy).toBeDefined();
      expect(route.fault?.abort?.error_code).toBe(70);

      for (const [t, list] of [
        [TYPE_LISTENER, s.listeners],
        [TYPE_ENDPOINTS, s.endpoints],
        [TYPE_META_ROUTE, s.routes],
      ] as const) {
        for (const r of list) expect(roundTrip(t, r as unknown as JsonObject)).toEqual(JSON.parse(JSON.stringify(r)));
      }
      for (const c of s.clusters) {
        // ROUND_ROBIN is the proto3 default (0): not on the wire, and the data plane's default too.
        const { lb_policy, ...rest } = c;
        expect(lb_policy).toBe('ROUND_ROBIN');
        expect(roundTrip(TYPE_CLUSTER, c as unknown as JsonObject)).toEqual(JSON.parse(JSON.stringify(rest)));
      }
      const filters = (s.listeners[0]!.filter_chains[0]!.filters[0]!.typed_config as { meta_protocol_filters: Array<{ name: string; config?: JsonObject }> })
        .meta_protocol_filters;
      expect(filters[0]!.config!['@type']).toBe(TYPE_LOCAL_RATELIMIT);
      expect(filters[0]!.config!.stat_prefix).toBe(HOST);
    } finally {
      cfg.remove();
    }
  });

  it('carries Waypost route policy in Route fields 1000-1002, which a reader of Aeraki\'s message skips', () => {
    const json = {
      name: 'r',
      routes: [
        {
          name: 'a',
          route: { cluster: 'c' },
          timeout: '2s',
          retry_policy: { num_retries: 3, per_try_timeout: '0.5s', retry_on: 'reset' },
          fault: { abort: { error_code: 'SERVICE_NOT_FOUND', message: 'x' } },
        },
      ],
    };
    const bytes = encodeResource(TYPE_META_ROUTE, json).value;
    expect(roundTrip(TYPE_META_ROUTE, json)).toEqual({ '@type': TYPE_META_ROUTE, ...json });
    // Aeraki's Route as published (no fields 1000+): the rest decodes the same.
    const aeraki = protobuf.parse(`syntax = "proto3"; package a;
      message RouteConfiguration { string name = 1; repeated Route routes = 2; }
      message Route { string name = 1; RouteAction route = 3; }
      message RouteAction { string cluster = 1; }`, { keepCase: true }).root.lookupType('a.RouteConfiguration');
    expect(aeraki.toObject(aeraki.decode(bytes))).toEqual({ name: 'r', routes: [{ name: 'a', route: { cluster: 'c' } }] });
    // The raw wire has field 1000 (tag 1000<<3|2 = 8002, varint c2 3e).
    expect(Buffer.from(bytes).includes(Buffer.from([0xc2, 0x3e]))).toBe(true);
  });

  it('formats and parses durations exactly', () => {
    expect(parseDurationJson('1.5s', 'd')).toEqual({ seconds: 1, nanos: 500_000_000 });
    expect(parseDurationJson('0.000000001s', 'd')).toEqual({ seconds: 0, nanos: 1 });
    expect(parseDurationJson('1m30s', 'd')).toEqual({ seconds: 90, nanos: 0 });
    expect(formatDurationParts(1n, 500_000_000)).toBe('1.5s');
    expect(formatDurationParts(10n, 0)).toBe('10s');
    expect(formatDurationParts(0n, 1000)).toBe('0.000001s');
    expect(() => parseDurationJson('soon', 'x.timeout')).toThrow(/x\.timeout: "soon" is not a duration/);
  });

  it('reports bad JSON at its field path', () => {
    const bad = (json: JsonObject): string => {
      try {
        encodeResource(TYPE_CLUSTER, json);
      } catch (err) {
        expect(err).toBeInstanceOf(XdsConversionError);
        return (err as Error).message;
      }
      throw new Error('no error');
    };
    expect(bad({ name: 'c', conect_timeout: '1s' })).toBe('Cluster "c".conect_timeout: unknown field of envoy.config.cluster.v3.Cluster');
    expect(bad({ name: 'c', lb_policy: 'FASTEST' })).toMatch(/^Cluster "c"\.lb_policy: expected one of ROUND_ROBIN, /);
    expect(bad({ name: 'c', circuit_breakers: { thresholds: [{ max_connections: -1 }] } })).toBe(
      'Cluster "c".circuit_breakers.thresholds[0].max_connections: expected a non-negative integer, got -1',
    );
    expect(bad({ name: 'c', connect_timeout: 5 })).toMatch(/^Cluster "c"\.connect_timeout: expected a duration string/);
  });

  it('sends an @type it has no message for as an xds.type.v3.TypedStruct, and reads it back', () => {
    const cfg = { '@type': 'type.googleapis.com/example.v1.Unknown', a: 'x', b: { c: [1, true, null] } };
    const any = jsonToAny(cfg, 'f');
    expect(any.type_url).toBe(TYPE_XDS_TYPED_STRUCT);
    expect(anyToJson(any, 'f')).toEqual(cfg);
  });

  it('reads wrappers, Struct metadata and enums as plain JSON', () => {
    const type = messageType('envoy.config.endpoint.v3.LbEndpoint');
    const msg = type.decode(
      type
        .encode({
          load_balancing_weight: { value: 7 },
          health_status: 2,
          metadata: { filter_metadata: { istio: { fields: { labels: { structValue: { fields: { version: { stringValue: 'v1' } } } } } } } },
        })
        .finish(),
    );
    expect(messageToJson(type, msg, 'e')).toEqual({
      load_balancing_weight: 7,
      health_status: 'UNHEALTHY',
      metadata: { filter_metadata: { istio: { labels: { version: 'v1' } } } },
    });
  });
});

describe('Redis resources', () => {
  it('carry Envoy\'s RedisProxy filter and RedisProtocolOptions as registered (binary) Anys', () => {
    const listener = {
      name: 'redis',
      address: { socket_address: { address: '127.0.0.1', port_value: 6380 } },
      filter_chains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.redis_proxy',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy',
                stat_prefix: 'redis',
                settings: { op_timeout: '0.5s', read_policy: 'PREFER_REPLICA' },
                prefix_routes: { routes: [{ prefix: 'user:', cluster: 'users' }], catch_all_route: { cluster: 'rest' } },
                downstream_auth_passwords: [{ inline_string: 'secret' }],
              },
            },
          ],
        },
      ],
    };
    const cluster = {
      name: 'users',
      typed_extension_protocol_options: {
        'envoy.filters.network.redis_proxy': {
          '@type': 'type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProtocolOptions',
          auth_password: { inline_string: 'pw' },
        },
      },
    };
    expect(roundTrip(TYPE_LISTENER, listener)).toEqual({ '@type': TYPE_LISTENER, ...listener });
    expect(roundTrip(TYPE_CLUSTER, cluster)).toEqual({ '@type': TYPE_CLUSTER, ...cluster });
    const filterAny = messageType('envoy.config.listener.v3.Listener').decode(encodeResource(TYPE_LISTENER, listener).value) as unknown as {
      filter_chains: Array<{ filters: Array<{ typed_config: { type_url: string } }> }>;
    };
    expect(filterAny.filter_chains[0]!.filters[0]!.typed_config.type_url).toBe(listener.filter_chains[0]!.filters[0]!.typed_config['@type']);
  });
});
