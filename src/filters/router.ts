import { META_FILTER_ROUTER } from '../xds/resources.js';
import { MirrorRequest, type Exchange } from '../exchange.js';
import type { FilterContext, FilterStatus, MetaFilter, MetaFilterFactory } from './filter.js';

/**
 * The terminal filter: matches the route, applies its fault injection and mirrors, and starts the upstream part
 * (cluster, endpoint, retries and timeouts live in the exchange).
 */
class RouterFilter implements MetaFilter {
  readonly name = META_FILTER_ROUTER;

  onRequest(ctx: FilterContext): FilterStatus {
    // The terminal filter drives the upstream part of the proxy's own request object, which is what every chain
    // is walked with; it is the one filter that needs more than the filter context.
    const ex = ctx as Exchange;
    const listener = ex.listener;
    const route = ex.matchRoute();
    if (!route) {
      ex.localReply('no_route', `no route for ${describeRequest(ex)} on listener ${listener.name}`);
      return 'stop';
    }
    const fault = route.fault;
    if (fault?.abort && (fault.abort.fraction >= 1 || Math.random() < fault.abort.fraction)) {
      listener.faultCounter(route.name, 'abort').inc();
      ex.localReply('fault_abort', fault.abort.message ?? `fault injected by route ${route.name}`, fault.abort.code);
      return 'stop';
    }
    ex.mutation = route.requestMutation;
    if (ex.mutation !== undefined && ex.frame.mutable === false) listener.mutationDropped(route.name, 'request');
    for (const m of route.mirrors) {
      // Mirrors go first: they encode a copy, while the primary request may patch its own bytes in place.
      if (m.fraction >= 1 || Math.random() < m.fraction) new MirrorRequest(ex.frame, ex.session, ex.mutation, listener).send(m.cluster);
    }
    if (fault?.delay && (fault.delay.fraction >= 1 || Math.random() < fault.delay.fraction)) {
      listener.faultCounter(route.name, 'delay').inc();
      ex.delayThenSend(fault.delay.ms);
      return 'stop';
    }
    ex.send();
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
  name: META_FILTER_ROUTER,
  create: () => new RouterFilter(),
};
