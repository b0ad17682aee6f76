import type { CodecSession, Frame, KeyValue, LocalReplyKind } from './codec.js';
import type { DownstreamConnection } from './downstream.js';
import type { ListenerRuntime } from './listener.js';
import type { Route } from './router.js';
import type { EndpointPool, UpstreamConnection, UpstreamRequest } from './upstream.js';

/**
 * One request's journey: decoded downstream, walked through the filter chain, sent upstream, answered (by the
 * upstream or locally), recorded. It is its own upstream callback object, so no closure is made per request.
 */
export class Exchange implements UpstreamRequest {
  route: Route | undefined;
  clusterName: string | undefined;
  mutation: readonly KeyValue[] | undefined;
  readonly expectsResponse: boolean;
  private filterIndex = 0;
  private upstream: UpstreamConnection | undefined;
  private done = false;
  private readonly start = performance.now();

  constructor(
    readonly frame: Frame,
    readonly session: CodecSession,
    readonly downstream: DownstreamConnection,
    readonly listener: ListenerRuntime,
  ) {
    this.expectsResponse = frame.type !== 'oneway';
  }

  get finished(): boolean {
    return this.done;
  }

  /** Runs the filter chain from where it stopped. */
  next(): void {
    const filters = this.listener.filters;
    while (!this.done && this.filterIndex < filters.length) {
      if (filters[this.filterIndex++]!.onRequest(this) === 'stop') return;
    }
  }

  sendUpstream(pool: EndpointPool): void {
    this.upstream = pool.send(this);
    if (!this.expectsResponse) this.finish('success');
  }

  onResponse(frame: Frame, upstreamSession: CodecSession): void {
    if (this.done) return;
    const mutation = this.route?.responseMutation;
    const bytes = upstreamSession.encode(frame, { requestId: this.frame.requestId, mutation });
    this.downstream.write(bytes);
    this.finish(frame.status === 'business_exception' ? 'business_exception' : frame.status === 'error' ? 'error' : 'success');
  }

  onFailure(kind: LocalReplyKind, message: string): void {
    this.localReply(kind, message);
  }

  /** Answers in the protocol's own format (CONTRACT §6) and ends the exchange. */
  localReply(kind: LocalReplyKind, message: string, code?: number): void {
    if (this.done) return;
    const bytes = this.session.localReply(this.frame, code === undefined ? { kind, message } : { kind, message, code });
    if (bytes) this.downstream.write(bytes);
    this.finish('local_reply');
  }

  /** The downstream went away: drop the answer when it comes. */
  abandon(): void {
    if (this.done) return;
    this.done = true;
    this.upstream?.forget(this);
  }

  private finish(outcome: 'success' | 'error' | 'business_exception' | 'local_reply'): void {
    this.done = true;
    this.downstream.completed(this);
    const stats = this.listener.stats(this.route?.name ?? 'none', this.clusterName ?? 'none');
    stats[outcome].inc();
    stats.duration.observe((performance.now() - this.start) / 1000);
  }
}
