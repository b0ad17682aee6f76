import { authzFilter } from './authz.js';
import { globalRateLimitFilter } from './global-ratelimit.js';
import { localRateLimitFilter } from './local-ratelimit.js';
import { FilterRegistry } from './registry.js';
import { routerFilter } from './router.js';

/** The one place the built-in MetaProtocol filters join: a registry pre-filled with them. */
export function createFilterRegistry(): FilterRegistry {
  const registry = new FilterRegistry();
  for (const f of [routerFilter, localRateLimitFilter, globalRateLimitFilter, authzFilter]) registry.register(f);
  return registry;
}

export { FilterRegistry, filterDeps } from './registry.js';
export type { FilterContext, FilterDeps, FilterListener, FilterPeer, FilterStatus, MetaFilter, MetaFilterFactory } from './filter.js';
