/**
 * A rate limit service for tests: a small @grpc/grpc-js server speaking Envoy's RateLimitService protocol (the one
 * envoyproxy/ratelimit serves) on the real protobuf messages, with a fixed quota per descriptor, so each test knows
 * exactly which calls are over the limit.
 */
import * as grpc from '@grpc/grpc-js';
import { messageType } from '../../src/xds/protos.js';

export interface Entry {
  key: string;
  value: string;
}

/** A rate limit service: `quota` hits per distinct descriptor, then OVER_LIMIT; `delayMs` before answering. */
export class RateLimitService {
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
