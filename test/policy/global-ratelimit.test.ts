/**
 * The global rate limit: the proxy asks a rate limit service over Envoy's RateLimitService gRPC protocol (the one
 * envoyproxy/ratelimit serves). The service here is a small @grpc/grpc-js server on the real protobuf messages with
 * a fixed quota per descriptor, so each test knows exactly which calls are over the limit.
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Provider } from '../../examples/dubbo/provider.js';
import { messageType } from '../../src/xds/protos.js';
import { PolicyFixture, routeAll } from './fixture.js';

interface Entry {
  key: string;
  value: string;
}

/** A rate limit service: `quota` hits per distinct descriptor, then OVER_LIMIT; `delayMs` before answering. */
class RateLimitService {
  readonly server = new grpc.Server();
  readonly seen: Entry[][] = [];
  quota = 3;
  delayMs = 0;
  private readonly hits = new Map<string, number>();
  port = 0;

  async start(): Promise<void> {
    const req = messageType('envoy.service.ratelimit.v3.RateLimitRequest');
    const res = messageType('envoy.service.ratelimit.v3.RateLimitResponse');
    this.server.addService(
      {
        ShouldRateLimit: {
          path: '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit',
          requestStream: false,
          responseStream: false,
          requestSerialize: (v: unknown) => Buffer.from(req.encode(req.fromObject(v as object)).finish()),
          requestDeserialize: (b: Buffer) => req.toObject(req.decode(b), { enums: String }),
          responseSerialize: (v: unknown) => Buffer.from(res.encode(res.fromObject(v as object)).finish()),
          responseDeserialize: (b: Buffer) => res.toObject(res.decode(b), { enums: String }),
        },
      },
      {
        ShouldRateLimit: (
          call: grpc.ServerUnaryCall<{ domain: string; descriptors: Array<{ entries: Entry[] }> }, unknown>,
          callback: grpc.sendUnaryData<unknown>,
        ) => {
          const entries = call.request.descriptors[0]?.entries ?? [];
          this.seen.push(entries);
          const key = `${call.request.domain}/${entries.map((e) => `${e.key}=${e.value}`).join(',')}`;
          const n = (this.hits.get(key) ?? 0) + 1;
          this.hits.set(key, n);
          const answer = { overall_code: n > this.quota ? 'OVER_LIMIT' : 'OK' };
          if (this.delayMs > 0) setTimeout(() => callback(null, answer), this.delayMs);
          else callback(null, answer);
        },
      },
    );
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
    );
  }

  reset(): void {
    this.hits.clear();
    this.seen.length = 0;
    this.delayMs = 0;
  }
}

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
