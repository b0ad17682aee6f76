import type { MetaFilterFactory } from './filter.js';
import { localRateLimitFilter } from './local-ratelimit.js';
import { routerFilter } from './router.js';

/** MetaProtocol filters by config name. */
export const builtinFilters: ReadonlyMap<string, MetaFilterFactory> = new Map(
  [routerFilter, localRateLimitFilter].map((f) => [f.name, f]),
);

export type { MetaFilter, MetaFilterFactory, FilterStatus } from './filter.js';
