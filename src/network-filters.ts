import { metaProtocolProxy } from './meta-protocol.js';
import type { NetworkFilterFactory } from './network-filter.js';

/** Network filters by name. */
export const networkFilters: ReadonlyMap<string, NetworkFilterFactory> = new Map([[metaProtocolProxy.name, metaProtocolProxy]]);
