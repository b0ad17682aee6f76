/**
 * The global rate limit: the proxy asks a rate limit service over Envoy's RateLimitService gRPC protocol (the one
 * envoyproxy/ratelimit serves). The service here is a small @grpc/grpc-js server on the real protobuf messages with
 * a fixed quota per descriptor, so each test knows exactly which calls are over the limit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Provider } from '../../examples/dubbo/provider.js';
import { RateLimitService } from '../helpers/ratelimit.js';
import { PolicyFixture, routeAll } from './fixture.js';

const fx = new PolicyFixture();
const rls = new RateLimitService();
let provider: Provider;

function config(limit: Record<string, unknown>): Parameters<PolicyFixture['apply']>[0] {
  return {
    endpoints: [{ provider }],
    metaRouter: { ...routeAll(), globalRateLimit: { domain: 'waypost-test', rateLimitService: 'outbound|8081||rls.example', ...limit } },
    extra: [
      {
        apiVersion: 'networking.istio.io/v1beta1',
        kind: 'ServiceEntry',
        metadata: { name: 'rls' },
        spec: {
          hosts: ['rls.example'],
          ports: [{ number: 8081, name: 'grpc', protocol: 'GRPC' }],
          resolution: 'STATIC',
          endpoints: [{ address: '127.0.0.1', ports: { grpc: rls.port } }],
        },
      },
    ],
  };
}

beforeAll(async () => {
  await rls.start();
  [provider] = await fx.start(['v1']);
});
afterAll(async () => {
  await fx.stop();
  rls.server.forceShutdown();
});

describe('global rate limit (Envoy RateLimitService)', () => {
  it('limits matching calls per descriptor, lets others through unasked', async () => {
    rls.reset();
    await fx.apply(
      config({
        match: { attributes: { method: { exact: 'sayHello' } } },
        requestTimeout: '2s',
        descriptors: [{ property: 'user', descriptorKey: 'user' }, { property: 'method', descriptorKey: 'method' }],
      }),
    );
    const conn = await fx.connect();
    const alice = [];
    for (let i = 0; i < 5; i++) alice.push((await fx.call(conn, 'sayHello', ['a'], { user: 'alice' })).status);
    expect(alice).toEqual([20, 20, 20, 100, 100]);
    expect((await fx.call(conn, 'sayHello', ['b'], { user: 'bob' })).status).toBe(20);
    expect(rls.seen[0]).toEqual([{ key: 'user', value: 'alice' }, { key: 'method', value: 'sayHello' }]);
    const asked = rls.seen.length;
    // Not matched: never asked about, never limited.
    for (let i = 0; i < 5; i++) expect((await fx.call(conn, 'whoami', [], { user: 'alice' })).status).toBe(20);
    expect(rls.seen.length).toBe(asked);
    const over = await fx.call(conn, 'sayHello', ['a'], { user: 'alice' });
    expect(over.error?.message).toMatch(/rate limited by the global rate limit service \(domain waypost-test\)/);
    expect(await fx.metric(/^waypost_rate_limited_total\{.*route="all"/)).toBeGreaterThanOrEqual(3);
  });

  it('without a match it limits every call (unlike Aeraki, whose empty match limits nothing)', async () => {
    rls.reset();
    await fx.apply(config({ requestTimeout: '2s', descriptors: [{ property: 'method', descriptorKey: 'm' }] }));
    const conn = await fx.connect();
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await fx.call(conn, 'whoami')).status);
    expect(statuses).toEqual([20, 20, 20, 100]);
  });

  it('honours requestTimeout and denyOnFail when the service is too slow', async () => {
    rls.reset();
    rls.delayMs = 500;
    await fx.apply(config({ requestTimeout: '50ms', denyOnFail: true, descriptors: [{ property: 'method', descriptorKey: 'm' }] }));
    const conn = await fx.connect();
    const denied = await fx.call(conn, 'sayHello', ['x']);
    expect(denied.status).toBe(100);
    expect(denied.error?.message).toMatch(/denyOnFail/);

    rls.reset();
    rls.delayMs = 500;
    await fx.apply(config({ requestTimeout: '50ms', denyOnFail: false, descriptors: [{ property: 'method', descriptorKey: 'm' }] }));
    const passed = await fx.call(conn, 'sayHello', ['y']);
    expect(passed.status).toBe(20);
  });
});
