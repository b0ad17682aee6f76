import { authzFilter } from './authz.js';
import type { MetaFilterFactory } from './filter.js';
import { globalRateLimitFilter } from './global-ratelimit.js';
import { localRateLimitFilter } from './local-ratelimit.js';
import { routerFilter } from './router.js';

/** MetaProtocol filters by config name. */
export const builtinFilters: ReadonlyMap<string, MetaFilterFactory> = new Map(
  [routerFilter, localRateLimitFilter, globalRateLimitFilter, authzFilter].map((f) => [f.name, f]),
);

export type { MetaFilter, MetaFilterFactory, FilterStatus } from './filter.js';
