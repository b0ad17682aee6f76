import type { Exchange } from '../exchange.js';

/**
 * The MetaProtocol filter chain (Aeraki's `meta_protocol_filters`). Each listener builds its chain from config;
 * every request walks it in order and the router is last. A filter either lets the request go on (`continue`), or
 * takes it over (`stop`): it has answered it locally, or it resumes the chain later with `exchange.next()`.
 */
export type FilterStatus = 'continue' | 'stop';

export interface MetaFilter {
  readonly name: string;
  onRequest(exchange: Exchange): FilterStatus;
}

export interface MetaFilterFactory {
  /** As in config: `aeraki.meta_protocol.filters.router`. */
  readonly name: string;
  create(config: unknown): MetaFilter;
}
