import type { MetaFilterFactory } from './filter.js';
import { routerFilter } from './router.js';

/** Filters by config name. Policy filters (rate limit, fault, …) join here. */
export const builtinFilters: ReadonlyMap<string, MetaFilterFactory> = new Map([[routerFilter.name, routerFilter]]);

export type { MetaFilter, MetaFilterFactory, FilterStatus } from './filter.js';
