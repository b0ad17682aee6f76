import type { Counter } from 'prom-client';
import { MetadataMatch } from '../router.js';
import { durationMs } from '../duration.js';
import { META_FILTER_LOCAL_RATELIMIT, type LocalRateLimitConfig, type TokenBucketJson } from '../xds/resources.js';
import type { FilterContext, FilterDeps, FilterStatus, MetaFilter, MetaFilterFactory } from './filter.js';
import { RATE_LIMITED } from './metrics.js';

/** A token bucket refilled lazily on use: no timer per bucket. */
export class TokenBucket {
  private tokens: number;
  private lastFill = performance.now();
  private readonly max: number;
  private readonly perFill: number;
  private readonly intervalMs: number;

  constructor(cfg: TokenBucketJson, where: string) {
    this.max = cfg.max_tokens;
    this.perFill = cfg.tokens_per_fill ?? cfg.max_tokens;
    this.intervalMs = durationMs(cfg.fill_interval);
    if (!(this.max > 0) || !(this.perFill > 0) || !(this.intervalMs > 0)) {
      throw new Error(`${where}: max_tokens, tokens_per_fill and fill_interval must be positive`);
    }
    this.tokens = this.max;
  }

  take(): boolean {
    const now = performance.now();
    const fills = Math.floor((now - this.lastFill) / this.intervalMs);
    if (fills > 0) {
      this.tokens = Math.min(this.max, this.tokens + fills * this.perFill);
      this.lastFill += fills * this.intervalMs;
    }
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}

/**
 * Aeraki's local rate limit: the first condition whose match fits the request uses its bucket; a request no
 * condition takes uses the default bucket, or passes when there is none. Buckets start full at every config apply.
 */
class LocalRateLimitFilter implements MetaFilter {
  readonly name = META_FILTER_LOCAL_RATELIMIT;
  private readonly conditions: Array<{ match: MetadataMatch; bucket: TokenBucket }>;
  private readonly fallback: TokenBucket | undefined;
  private readonly limited: Counter<'listener' | 'route'>;

  constructor(cfg: LocalRateLimitConfig, deps: FilterDeps) {
    this.limited = deps.counter(RATE_LIMITED);
    const where = `${META_FILTER_LOCAL_RATELIMIT}`;
    this.conditions = (cfg.conditions ?? []).map((c, i) => ({
      match: new MetadataMatch(c.match?.metadata, `${where}.conditions[${i}].match.metadata`),
      bucket: new TokenBucket(c.token_bucket, `${where}.conditions[${i}].token_bucket`),
    }));
    this.fallback = cfg.token_bucket ? new TokenBucket(cfg.token_bucket, `${where}.token_bucket`) : undefined;
  }

  onRequest(ex: FilterContext): FilterStatus {
    let bucket = this.fallback;
    for (const c of this.conditions) {
      if (c.match.matches(ex.metadata)) {
        bucket = c.bucket;
        break;
      }
    }
    if (!bucket || bucket.take()) return 'continue';
    const route = ex.matchRoute()?.name ?? 'none';
    this.limited.labels(ex.listener.name, route).inc();
    ex.localReply('over_limit', `rate limited by the local rate limit of listener ${ex.listener.name} (route ${route})`);
    return 'stop';
  }
}

export const localRateLimitFilter: MetaFilterFactory = {
  name: META_FILTER_LOCAL_RATELIMIT,
  create: (config, deps) => new LocalRateLimitFilter(unwrap(config), deps),
};

/** Accepts the config as the resource JSON or as a TypedStruct-style `{type_url, value}` wrapper. */
function unwrap(config: unknown): LocalRateLimitConfig {
  const c = (config ?? {}) as { value?: unknown };
  return (c.value && typeof c.value === 'object' ? c.value : config ?? {}) as LocalRateLimitConfig;
}
