import type * as Grpc from '@grpc/grpc-js';
import type { Counter } from 'prom-client';
import { reenter } from '../contain.js';
import { log } from '../log.js';
import { MetadataMatch } from '../router.js';
import { durationMs } from '../duration.js';
import { META_FILTER_GLOBAL_RATELIMIT, type GlobalRateLimitConfig } from '../xds/resources.js';
import type { FilterContext, FilterDeps, FilterStatus, MetaFilter, MetaFilterFactory } from './filter.js';
import { RATE_LIMITED } from './metrics.js';

/**
 * Aeraki's global rate limit filter: asks a rate limit service speaking Envoy's
 * `envoy.service.ratelimit.v3.RateLimitService` (e.g. envoyproxy/ratelimit) whether a request may pass. The call is
 * asynchronous: other requests on the connection go on meanwhile. Unlike Aeraki's filter, a config without `match`
 * (or with an empty one) limits every request.
 */

const SERVICE = '/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit';
/** Envoy's default timeout for rate limit calls. */
const DEFAULT_TIMEOUT_MS = 20;

interface RateLimitResponse {
  overall_code?: string;
}

/**
 * gRPC and the protobuf definitions load on first use: a proxy whose config has no global rate limit does not pay
 * for them (memory and start-up).
 */
interface Rpc {
  grpc: typeof Grpc;
  serialize(value: unknown): Buffer;
  deserialize(bytes: Buffer): RateLimitResponse;
  /** One client per rate limit service address, shared by every filter instance (config applies recreate filters). */
  clients: Map<string, Grpc.Client>;
}
let rpc: Promise<Rpc> | undefined;

function loadRpc(): Promise<Rpc> {
  rpc ??= Promise.all([import('@grpc/grpc-js'), import('../xds/protos.js')]).then(([grpc, protos]) => {
    const req = protos.messageType('envoy.service.ratelimit.v3.RateLimitRequest');
    const res = protos.messageType('envoy.service.ratelimit.v3.RateLimitResponse');
    return {
      grpc,
      serialize: (value) => Buffer.from(req.encode(req.fromObject(value as Record<string, unknown>)).finish()),
      deserialize: (bytes) => res.toObject(res.decode(bytes), { enums: String, longs: Number }) as RateLimitResponse,
      clients: new Map(),
    };
  });
  return rpc;
}

function clientFor(r: Rpc, address: string): Grpc.Client {
  let c = r.clients.get(address);
  if (!c) {
    c = new r.grpc.Client(address, r.grpc.credentials.createInsecure());
    r.clients.set(address, c);
  }
  return c;
}

class GlobalRateLimitFilter implements MetaFilter {
  readonly name = META_FILTER_GLOBAL_RATELIMIT;
  private readonly match: MetadataMatch;
  private readonly domain: string;
  private readonly timeoutMs: number;
  private readonly denyOnFail: boolean;
  private readonly descriptors: ReadonlyArray<{ property: string; key: string }>;
  /** A cluster name (resolved per call to one of its endpoints) or a direct `host:port` target. */
  private readonly cluster: string | undefined;
  private readonly target: string | undefined;
  private readonly limited: Counter<'listener' | 'route'>;

  constructor(cfg: GlobalRateLimitConfig, deps: FilterDeps) {
    this.limited = deps.counter(RATE_LIMITED);
    const where = META_FILTER_GLOBAL_RATELIMIT;
    if (!cfg.domain) throw new Error(`${where}: domain is required`);
    this.domain = cfg.domain;
    this.match = new MetadataMatch(cfg.match?.metadata, `${where}.match.metadata`);
    this.timeoutMs = cfg.timeout ? durationMs(cfg.timeout) : DEFAULT_TIMEOUT_MS;
    this.denyOnFail = cfg.failure_mode_deny === true;
    this.descriptors = (cfg.descriptors ?? []).map((d) => ({ property: d.property.toLowerCase(), key: d.descriptor_key }));
    if (this.descriptors.length === 0) throw new Error(`${where}: at least one descriptor is required`);
    const grpcService = cfg.rate_limit_service?.grpc_service;
    this.cluster = grpcService?.envoy_grpc?.cluster_name;
    this.target = grpcService?.google_grpc?.target_uri;
    if (!this.cluster && !this.target) {
      throw new Error(`${where}: rate_limit_service.grpc_service needs envoy_grpc.cluster_name or google_grpc.target_uri`);
    }
  }

  onRequest(ex: FilterContext): FilterStatus {
    const md = ex.metadata;
    if (!this.match.matches(md)) return 'continue';
    const entries: Array<{ key: string; value: string }> = [];
    for (const d of this.descriptors) {
      const value = md.get(d.property);
      if (value !== undefined) entries.push({ key: d.key, value });
    }
    // Nothing to describe the request by: the service could not tell it apart, so it is not limited.
    if (entries.length === 0) return 'continue';
    const address = this.address(ex);
    if (!address) return this.onServiceFailure(ex, `rate limit cluster ${this.cluster} has no healthy endpoint`);
    const request = { domain: this.domain, descriptors: [{ entries }], hits_addend: 1 };
    const deadline = Date.now() + this.timeoutMs;
    // Both continuations re-enter through reenter(): the rest of the chain runs in them, and may throw.
    loadRpc().then(
      (r) => reenter(ex, 'filter_callback', () => clientFor(r, address).makeUnaryRequest(
        SERVICE,
        r.serialize,
        r.deserialize,
        request,
        { deadline },
        (err, response) => reenter(ex, 'filter_callback', () => {
          if (ex.finished) return;
          if (err) {
            this.onServiceFailure(ex, `rate limit service ${address}: ${err.details || err.message}`);
            return;
          }
          if (response?.overall_code === 'OVER_LIMIT') {
            this.deny(ex, `rate limited by the global rate limit service (domain ${this.domain})`);
            return;
          }
          ex.next();
        }),
      )),
      (err: Error) => reenter(ex, 'filter_callback', () => this.onServiceFailure(ex, `cannot load the gRPC client: ${err.message}`)),
    );
    return 'stop';
  }

  private address(ex: FilterContext): string | undefined {
    if (this.target) return this.target;
    return ex.listener.pickEndpoint(this.cluster!);
  }

  private onServiceFailure(ex: FilterContext, why: string): FilterStatus {
    log.warnLimited(`ratelimit_failed:${ex.listener.name}`, 'global rate limit check failed', { listener: ex.listener.name, error: why, deny: this.denyOnFail });
    if (this.denyOnFail) this.deny(ex, `rate limited: ${why} (denyOnFail)`);
    else ex.next();
    return 'stop';
  }

  private deny(ex: FilterContext, message: string): void {
    const route = ex.matchRoute()?.name ?? 'none';
    this.limited.labels(ex.listener.name, route).inc();
    ex.localReply('over_limit', `${message}, route ${route}`);
  }
}

export const globalRateLimitFilter: MetaFilterFactory = {
  name: META_FILTER_GLOBAL_RATELIMIT,
  create: (config, deps) => new GlobalRateLimitFilter((config ?? {}) as GlobalRateLimitConfig, deps),
};
