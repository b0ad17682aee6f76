import type net from 'node:net';
import type { CodecFactory } from './codec.js';
import type { CodecRegistry } from './codec-registry.js';
import type { FilterDeps, MetaFilter } from './filters/filter.js';
import type { FilterRegistry } from './filters/registry.js';
import type { ListenerRuntime } from './listener.js';
import type { RouteTable } from './router.js';

/**
 * Network filters: what a listener does with its connections, chosen by the filter name in the Listener resource
 * (`envoy.filters.network.meta_protocol_proxy`, `envoy.filters.network.redis_proxy`, …), as in Envoy.
 */

/** One accepted downstream connection, as the listener tracks it. */
export interface ConnectionHandler {
  /** Closes at once. */
  close(): void;
  /** Closes once nothing is in flight. */
  closeWhenIdle(): void;
}

/** A network filter's reading of its typed_config, ready to serve connections. */
export interface NetworkFilterConfig {
  /** Protocol name for metric labels and dumps. */
  readonly protocol: string;
  readonly codec: CodecFactory;
  /** RDS name whose RouteTable the proxy keeps current on the listener. */
  readonly routeConfigName?: string;
  /** Routes given inline instead of by RDS. */
  readonly inlineRoutes?: RouteTable;
  /** MetaProtocol filter chain (router last). */
  readonly filters: readonly MetaFilter[];
  /** Takes over an accepted socket. */
  accept(socket: net.Socket, listener: ListenerRuntime): ConnectionHandler;
}

export interface NetworkFilterContext {
  readonly codecs: CodecRegistry;
  /** MetaProtocol filters by config name (built-in and `--filter`). */
  readonly filters: FilterRegistry;
  /** Handed to every MetaProtocol filter factory. */
  readonly filterDeps: FilterDeps;
}

export interface NetworkFilterFactory {
  readonly name: string;
  /** Reads `typedConfig`; throws an Error naming the listener and field when it is unusable. */
  prepare(listenerName: string, typedConfig: unknown, ctx: NetworkFilterContext): NetworkFilterConfig;
}
