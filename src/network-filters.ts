import { metaProtocolProxy } from './meta-protocol.js';
import type { NetworkFilterFactory } from './network-filter.js';
import { redisProxy } from './redis/index.js';

/** Network filters by name. */
export const networkFilters: ReadonlyMap<string, NetworkFilterFactory> = new Map([[metaProtocolProxy.name, metaProtocolProxy], [redisProxy.name, redisProxy]]);
