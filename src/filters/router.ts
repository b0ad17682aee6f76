import type { Exchange } from '../exchange.js';
import type { FilterStatus, MetaFilter, MetaFilterFactory } from './filter.js';

/** The terminal filter: picks the route, the cluster, an endpoint, and hands the request to its pool. */
class RouterFilter implements MetaFilter {
  readonly name = 'aeraki.meta_protocol.filters.router';

  onRequest(ex: Exchange): FilterStatus {
    const listener = ex.listener;
    const table = listener.routeTable;
    const route = table?.match(ex.frame.metadata);
    if (!route) {
      ex.localReply('no_route', `no route for ${describeRequest(ex)} on listener ${listener.name}`);
      return 'stop';
    }
    ex.route = route;
    const clusterName = route.pickCluster();
    ex.clusterName = clusterName;
    const cluster = listener.clusters.get(clusterName);
    if (!cluster) {
      ex.localReply('no_route', `route ${route.name}: unknown cluster ${clusterName}`);
      return 'stop';
    }
    const endpoint = cluster.pick();
    if (!endpoint) {
      ex.localReply('no_healthy_upstream', `route ${route.name}: no healthy upstream in cluster ${clusterName}`);
      return 'stop';
    }
    ex.mutation = route.requestMutation;
    ex.sendUpstream(cluster.pool(endpoint, listener.codec, listener.protocol));
    return 'stop';
  }
}

function describeRequest(ex: Exchange): string {
  const md = ex.frame.metadata;
  const parts: string[] = [];
  for (const key of ['interface', 'service', 'method', 'command']) {
    const v = md.get(key);
    if (v !== undefined) parts.push(`${key}=${v}`);
  }
  return parts.length ? parts.join(' ') : 'request';
}

export const routerFilter: MetaFilterFactory = {
  name: 'aeraki.meta_protocol.filters.router',
  create: () => new RouterFilter(),
};
