import { DownstreamConnection } from './downstream.js';
import type { MetaFilter } from './filters/filter.js';
import type { NetworkFilterConfig, NetworkFilterContext, NetworkFilterFactory } from './network-filter.js';
import { RouteTable } from './router.js';
import { FILTER_META_PROTOCOL_PROXY, META_FILTER_ROUTER, type MetaProtocolProxyConfig } from './xds/resources.js';

/** Aeraki's MetaProtocol proxy: any registered codec, a MetaProtocol filter chain, routes by RDS or inline. */
export const metaProtocolProxy: NetworkFilterFactory = {
  name: FILTER_META_PROTOCOL_PROXY,
  prepare(listener: string, typedConfig: unknown, ctx: NetworkFilterContext): NetworkFilterConfig {
    const cfg = typedConfig as MetaProtocolProxyConfig;
    const codecName = cfg.protocol?.codec?.name;
    if (!codecName) throw new Error(`listener ${listener}: protocol.codec.name is required`);
    const codec = ctx.codecs.get(codecName);
    if (!codec) {
      throw new Error(
        `listener ${listener}: codec "${codecName}" is not registered (known: ${ctx.codecs.names().join(', ')}; load others with --codec)`,
      );
    }
    const filters: MetaFilter[] = [];
    for (const f of cfg.meta_protocol_filters ?? [{ name: META_FILTER_ROUTER }]) {
      const factory = ctx.filters.get(f.name);
      if (!factory) {
        throw new Error(
          `listener ${listener}: unknown meta_protocol_filter "${f.name}" (known: ${ctx.filters.names().join(', ')}; load others with --filter)`,
        );
      }
      filters.push(factory.create(f.config, ctx.filterDeps));
    }
    if (filters.length === 0 || filters[filters.length - 1]!.name !== META_FILTER_ROUTER) {
      throw new Error(`listener ${listener}: the router must be the last meta_protocol_filter`);
    }
    return {
      protocol: cfg.protocol?.name ?? codec.protocol,
      codec,
      routeConfigName: cfg.rds?.route_config_name ?? cfg.route_config?.name ?? '',
      ...(cfg.route_config ? { inlineRoutes: RouteTable.compile(cfg.route_config) } : {}),
      filters,
      accept: (socket, runtime) => new DownstreamConnection(socket, runtime),
    };
  },
};
