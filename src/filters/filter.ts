import type { Counter, Registry } from 'prom-client';
import type { Frame, LocalReplyKind, Metadata } from '../codec.js';
import type { Containable, Continuation } from '../contain.js';
import type { Route } from '../router.js';

/**
 * The MetaProtocol filter chain (Aeraki's `meta_protocol_filters`). Each listener builds its chain from config;
 * every request walks it in order and the router is last. A filter either lets the request go on (`continue`), or
 * takes it over (`stop`): it has answered it locally, or it resumes the chain later with `ctx.next()`.
 */
export type FilterStatus = 'continue' | 'stop';

/** The peer's SPIFFE identity from its TLS client certificate. */
export interface FilterPeer {
  /** `<trust-domain>/ns/<ns>/sa/<sa>`. */
  readonly principal: string;
  readonly namespace: string | undefined;
}

/** What a filter may know of its listener. */
export interface FilterListener {
  readonly name: string;
  /** `host:port` of one healthy endpoint of a cluster (by the cluster's load balancing), if it has one. */
  pickEndpoint(cluster: string): string | undefined;
}

/**
 * One request, as a filter sees it. The proxy's own per-request object implements it, so walking the chain
 * allocates nothing.
 */
export interface FilterContext extends Containable {
  readonly frame: Frame;
  /** The request's metadata (`frame.metadata`): interface, method, attachments or headers, by the codec. */
  readonly metadata: Metadata;
  /** The peer's identity; undefined over plaintext or without a client certificate. */
  readonly peer: FilterPeer | undefined;
  readonly listener: FilterListener;
  /** True once the request was answered (locally or by the upstream) or its client went away. */
  readonly finished: boolean;
  /** The route this request takes (matched once, shared with the router); undefined when none matches. */
  matchRoute(): Route | undefined;
  /** Answers in the protocol's own format and ends the request; a filter then returns 'stop'. */
  localReply(kind: LocalReplyKind, message: string, code?: number): void;
  /** Resumes the chain after the filter that returned 'stop' (for asynchronous filters; check `finished` first). */
  next(): void;
  /**
   * Ends this request alone with the protocol's error for a throw in an asynchronous callback (`reenter()` in
   * src/contain.ts wraps a callback in it); a throw while the chain runs synchronously is contained already.
   */
  contain(thrown: unknown, where: Continuation): void;
}

export interface MetaFilter {
  readonly name: string;
  onRequest(ctx: FilterContext): FilterStatus;
}

/** What a factory is handed besides its config. */
export interface FilterDeps {
  /** The proxy's metrics registry (served on the admin `/metrics`). */
  readonly registry: Registry;
  /**
   * A counter in that registry, created on first use and the same one afterwards: filters are created again on
   * every config apply, and a metric may be registered only once.
   */
  counter<L extends string>(spec: { name: string; help: string; labelNames: readonly L[] }): Counter<L>;
}

export interface MetaFilterFactory {
  /** As in config: `aeraki.meta_protocol.filters.router`. */
  readonly name: string;
  create(config: unknown, deps: FilterDeps): MetaFilter;
}
