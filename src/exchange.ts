import { routeMatchKeys } from './access-log.js';
import { now as clockNow } from './clock.js';
import { CodecError, NEWER_LOCAL_REPLY_KINDS, type CodecSession, type Frame, type KeyValue, type LocalReplyKind, type Metadata } from './codec.js';
import type { Cluster, Endpoint } from './cluster.js';
import { recordContained, type Continuation } from './contain.js';
import type { DownstreamConnection } from './downstream.js';
import type { FilterContext, FilterPeer } from './filters/filter.js';
import type { ListenerRuntime } from './listener.js';
import type { Route } from './router.js';
import type { Expirable } from './timer-wheel.js';
import { childTraceparent, newSpanId, parseTraceparent, rootTraceparent } from './trace-context.js';
import type { UpstreamConnection, UpstreamRequest } from './upstream.js';

/** Why an upstream attempt failed, in the words of `retries.retryOn`. */
export type RetryCondition = 'connect-failure' | 'reset' | 'unavailable' | 'timeout' | 'error';

type Phase = 'filters' | 'delayed' | 'upstream' | 'done';

/** The header name, as bytes, for a cheap "does this frame carry one at all" test. */
const TRACEPARENT_KEY = Buffer.from('traceparent');

/** How long a mirrored request may wait for the answer nobody reads before its slot is freed. */
const MIRROR_EXPIRY_MS = 30_000;

/**
 * One request's journey: decoded downstream, walked through the filter chain, sent upstream (again on a retry),
 * answered by the upstream or locally, recorded. It is its own upstream callback and timer item, so no closure or
 * promise is made per request.
 */
export class Exchange implements UpstreamRequest, Expirable, FilterContext {
  route: Route | undefined;
  clusterName: string | undefined;
  mutation: readonly KeyValue[] | undefined;
  readonly expectsResponse: boolean;
  copyOnEncode = false;
  upstreamId = 0;
  wheelTick = -1;
  wheelIndex = -1;
  /** Owned by the downstream connection: its frame is counted as held there until sent upstream. */
  holdsFrame = false;
  private phase: Phase = 'filters';
  private filterIndex = 0;
  private routeMatched = false;
  private cluster: Cluster | undefined;
  private endpoint: Endpoint | undefined;
  private upstream: UpstreamConnection | undefined;
  private attempt = 0;
  private tried: Set<Endpoint> | undefined;
  private isRetry = false;
  /** Absolute deadlines (performance.now() ms); Infinity when unset. */
  private deadline = Number.POSITIVE_INFINITY;
  private tryDeadline = Number.POSITIVE_INFINITY;
  private readonly start = clockNow();
  /** For the access log: the local reply's cause, the traceparent sent upstream, upstream attempts made. */
  private localReplyKind: LocalReplyKind | undefined;
  private traceparent: string | undefined;
  private attempts = 0;

  constructor(
    readonly frame: Frame,
    readonly session: CodecSession,
    readonly downstream: DownstreamConnection,
    readonly listener: ListenerRuntime,
  ) {
    this.expectsResponse = frame.type !== 'oneway';
  }

  get metadata(): Metadata {
    return this.frame.metadata;
  }

  /** The peer's SPIFFE identity (from its TLS client certificate), for filters. */
  get peer(): FilterPeer | undefined {
    return this.downstream.peer;
  }

  get finished(): boolean {
    return this.phase === 'done';
  }

  /** The route for this request (matched once; filters before the router may ask first). */
  matchRoute(): Route | undefined {
    if (!this.routeMatched) {
      this.routeMatched = true;
      this.route = this.listener.routeTable?.match(this.frame.metadata);
    }
    return this.route;
  }

  /** Runs the filter chain from where it stopped. */
  next(): void {
    const filters = this.listener.filters;
    while (this.phase === 'filters' && this.filterIndex < filters.length) {
      if (filters[this.filterIndex++]!.onRequest(this) === 'stop') return;
    }
  }

  /** Holds the request for a fault delay, then sends it. */
  delayThenSend(ms: number): void {
    this.phase = 'delayed';
    this.listener.wheel.schedule(this, ms);
  }

  /** Starts the upstream part: the route's timeout runs from here. */
  send(): void {
    const timeout = this.route?.timeoutMs;
    if (timeout !== undefined && this.expectsResponse) this.deadline = clockNow() + timeout;
    if (this.listener.tracing !== 'off') this.applyTraceContext();
    this.phase = 'upstream';
    this.attemptUpstream();
  }

  onResponse(frame: Frame, upstreamSession: CodecSession): void {
    if (this.phase !== 'upstream') return;
    const failed = frame.status === 'error';
    if (failed) this.cluster?.reportError(this.endpoint!);
    else this.cluster?.reportSuccess(this.endpoint!);
    if (failed && this.retry('error')) return;
    this.endAttempt();
    const mutation = this.route?.responseMutation;
    if (mutation !== undefined && frame.mutable === false) this.listener.mutationDropped(this.route!.name, 'response');
    const bytes = upstreamSession.encode(frame, { requestId: this.frame.requestId, mutation });
    this.downstream.write(bytes);
    this.finish(frame.status === 'business_exception' ? 'business_exception' : failed ? 'error' : 'success');
  }

  onFailure(kind: LocalReplyKind, message: string): void {
    if (this.phase !== 'upstream') return;
    if (this.endpoint) this.cluster?.reportError(this.endpoint);
    const condition: RetryCondition = kind === 'no_healthy_upstream' ? 'connect-failure' : kind === 'timeout' ? 'timeout' : 'reset';
    if (this.retry(condition)) return;
    this.endAttempt();
    this.localReply(kind, message);
  }

  onDeadline(): void {
    if (this.phase === 'delayed') {
      this.send();
      return;
    }
    if (this.phase !== 'upstream') return;
    const now = performance.now();
    if (now >= this.deadline) {
      this.upstream?.forget(this);
      this.endAttempt();
      this.localReply('timeout', `timeout after ${this.route!.timeoutMs} ms on route ${this.route!.name} (cluster ${this.clusterName})`);
      return;
    }
    // The per-try timeout fired: withdraw this attempt (a late answer is dropped) and retry or give up.
    this.upstream?.forget(this);
    if (this.endpoint) this.cluster?.reportError(this.endpoint);
    if (this.retry('timeout')) return;
    this.endAttempt();
    this.localReply('timeout', `timeout after ${this.route!.perTryTimeoutMs} ms (per try) on route ${this.route!.name} (cluster ${this.clusterName})`);
  }

  /** Answers in the protocol's own format (docs/configuration.md, "Local replies") and ends the exchange. */
  localReply(kind: LocalReplyKind, message: string, code?: number): void {
    if (this.phase === 'done') return;
    this.localReplyKind = kind;
    let bytes: Buffer | undefined;
    try {
      bytes = this.session.localReply(this.frame, code === undefined ? { kind, message } : { kind, message, code });
    } catch (err) {
      if (!NEWER_LOCAL_REPLY_KINDS.has(kind)) throw err;
    }
    // A user codec built before a kind existed may not answer it: use its generic error instead.
    if (!bytes && NEWER_LOCAL_REPLY_KINDS.has(kind) && this.expectsResponse) bytes = this.session.localReply(this.frame, { kind: 'fault_abort', message });
    if (bytes) this.downstream.write(bytes);
    this.finish('local_reply');
  }

  /**
   * Whatever a step of this request threw — a part of the frame that does not decode, a bug — ends this request
   * alone: its upstream attempt is withdrawn, its client gets the protocol's native error, the cause is counted and
   * logged (rate-limited). If even the error cannot be encoded, only this client's connection closes.
   */
  contain(thrown: unknown, where: Continuation): void {
    const reason = recordContained(thrown, where, this.listener.name, { route: this.route?.name, cluster: this.clusterName });
    this.listener.containedError(where, reason);
    if (this.phase === 'done') return;
    if (this.phase === 'upstream') {
      this.upstream?.forget(this);
      this.endAttempt();
    }
    const kind: LocalReplyKind = where === 'response' ? 'bad_response' : thrown instanceof CodecError ? 'bad_request' : 'internal_error';
    const why = thrown instanceof Error ? thrown.message : String(thrown);
    try {
      this.localReply(kind, kind === 'internal_error' ? 'internal error in the proxy' : why);
    } catch {
      if (!this.finished) this.finish('local_reply');
      this.downstream.close();
    }
  }

  /** The downstream went away: drop the answer when it comes. */
  abandon(): void {
    if (this.phase === 'done') return;
    if (this.phase === 'upstream') {
      this.upstream?.forget(this);
      this.endAttempt();
    }
    this.phase = 'done';
    this.listener.wheel.cancel(this);
    const ms = clockNow() - this.start;
    this.listener.stats(this.route?.name ?? 'none', this.clusterName ?? 'none').record('downstream_closed', ms / 1000);
    if (this.listener.accessLog) this.logAccess('downstream_closed', ms);
  }

  /**
   * W3C trace context: a valid incoming `traceparent` goes upstream with the proxy's own span id as the parent (same
   * trace id and flags); without one, `--tracing start` begins a trace. Set through the request mutation, so the
   * codec re-encodes only the headers/attachments.
   */
  private applyTraceContext(): void {
    // A byte search first: reading one header can cost a scan of the whole body (Dubbo attachments follow the
    // arguments), and most requests carry no traceparent.
    const frame = this.frame;
    const parent = frame.raw.indexOf(TRACEPARENT_KEY) >= 0 ? parseTraceparent(frame.metadata.get('traceparent')) : undefined;
    let value: string;
    if (parent) value = childTraceparent(parent, newSpanId());
    else if (this.listener.tracing === 'start') value = rootTraceparent(newSpanId());
    else return;
    this.traceparent = value;
    const base = this.mutation;
    const entry = { key: 'traceparent', value };
    this.mutation = base ? [...base.filter((kv) => kv.key.toLowerCase() !== 'traceparent'), entry] : [entry];
  }

  /** One attempt: pick a cluster endpoint (avoiding ones already tried) and hand the request to its pool. */
  private attemptUpstream(): void {
    const route = this.route!;
    const clusterName = this.attempt === 0 ? route.pickCluster() : this.clusterName!;
    this.clusterName = clusterName;
    const cluster = this.listener.clusters.get(clusterName);
    if (!cluster) {
      this.localReply('no_route', `route ${route.name}: unknown cluster ${clusterName}`);
      return;
    }
    this.cluster = cluster;
    if (!cluster.hasRequestCapacity) {
      this.listener.overflowCounter(clusterName, 'requests').inc();
      this.localReply('over_limit', `cluster ${clusterName} is at its limit of ${cluster.settings.maxRequests} requests in flight`);
      return;
    }
    const endpoint = cluster.pick(this.hashKey(route), this.tried);
    if (!endpoint) {
      this.localReply('no_healthy_upstream', `route ${route.name}: no healthy upstream in cluster ${clusterName}`);
      return;
    }
    this.endpoint = endpoint;
    const conn = cluster.pool(endpoint, this.listener.codec, this.listener.protocol, this.frame.upstreamKey).send(this);
    if (!conn) {
      this.listener.overflowCounter(clusterName, 'connections').inc();
      this.localReply('over_limit', `cluster ${clusterName} is at its limit of ${cluster.settings.maxConnections} connections`);
      return;
    }
    this.upstream = conn;
    this.attempts++;
    if (this.holdsFrame) this.downstream.released(this);
    // Backpressure: this upstream connection is not keeping up; stop reading this client until it drains.
    if (conn.congested) this.downstream.blockOn(conn);
    if (!this.expectsResponse) {
      this.finish('success');
      return;
    }
    cluster.active++;
    endpoint.active++;
    if (this.isRetry) cluster.activeRetries++;
    const perTry = route.perTryTimeoutMs;
    if (perTry !== undefined) this.tryDeadline = clockNow() + perTry;
    this.armTimer();
  }

  /** Starts another attempt when the route's retry policy, the deadline and the retry budget all allow it. */
  private retry(condition: RetryCondition): boolean {
    const policy = this.route?.retry;
    if (!policy || !this.expectsResponse || this.attempt >= policy.attempts || !policy.on.has(condition)) return false;
    if (performance.now() >= this.deadline) return false;
    const cluster = this.cluster!;
    this.endAttempt();
    if (!cluster.retryBudgetAllows) return false;
    (this.tried ??= new Set()).add(this.endpoint!);
    this.attempt++;
    this.isRetry = true;
    this.copyOnEncode = true;
    this.listener.retryCounter(this.route!.name, this.clusterName!).inc();
    this.attemptUpstream();
    return true;
  }

  /** Releases what an attempt holds: circuit-breaker counts and the per-try deadline. */
  private endAttempt(): void {
    if (this.cluster && this.endpoint && this.upstream && this.expectsResponse) {
      this.cluster.active--;
      this.endpoint.active--;
      if (this.isRetry) this.cluster.activeRetries--;
    }
    this.upstream = undefined;
    this.tryDeadline = Number.POSITIVE_INFINITY;
  }

  private armTimer(): void {
    const at = Math.min(this.deadline, this.tryDeadline);
    if (at === Number.POSITIVE_INFINITY) this.listener.wheel.cancel(this);
    else this.listener.wheel.schedule(this, at - clockNow());
  }

  private hashKey(route: Route): string | undefined {
    const keys = route.hashKeys;
    if (keys.length === 0) return undefined;
    if (keys.length === 1) return this.frame.metadata.get(keys[0]!);
    let out: string | undefined;
    for (const k of keys) {
      const v = this.frame.metadata.get(k);
      if (v !== undefined) out = out === undefined ? v : `${out}\u0000${v}`;
    }
    return out;
  }

  private finish(outcome: 'success' | 'error' | 'business_exception' | 'local_reply'): void {
    this.phase = 'done';
    if (this.wheelTick >= 0) this.listener.wheel.cancel(this);
    this.downstream.completed(this);
    const ms = clockNow() - this.start;
    this.listener.stats(this.route?.name ?? 'none', this.clusterName ?? 'none').record(outcome, ms / 1000);
    if (this.listener.accessLog) this.logAccess(outcome, ms);
  }

  /** One access log line (only called when the log is on: nothing is formatted otherwise). */
  private logAccess(outcome: string, ms: number): void {
    const route = this.route;
    const attributes: Record<string, string> = {};
    if (route) {
      const md = this.frame.metadata;
      try {
        for (const k of routeMatchKeys(route)) {
          const v = md.get(k);
          if (v !== undefined) attributes[k] = v;
        }
      } catch {
        // The frame's metadata does not decode (that request was answered bad_request): log what was read.
      }
    }
    this.listener.accessLog!.record({
      time: new Date().toISOString(),
      listener: this.listener.name,
      protocol: this.listener.protocol,
      route: route?.name ?? null,
      cluster: this.clusterName ?? null,
      upstream_host: this.endpoint?.key ?? null,
      outcome,
      local_reply: this.localReplyKind ?? null,
      duration_ms: Math.round(ms * 1000) / 1000,
      request_id: String(this.frame.requestId),
      attributes,
      traceparent: this.traceparent ?? null,
      attempts: this.attempts,
    });
  }
}

/**
 * A mirrored copy of a request: sent to the mirror cluster, its answer discarded. It never touches the primary
 * request's timing or outcome; an answer that never comes is given up after a while.
 */
export class MirrorRequest implements UpstreamRequest, Expirable {
  readonly expectsResponse: boolean;
  readonly copyOnEncode = true;
  upstreamId = 0;
  wheelTick = -1;
  wheelIndex = -1;
  private upstream: UpstreamConnection | undefined;

  constructor(
    readonly frame: Frame,
    readonly session: CodecSession,
    readonly mutation: readonly KeyValue[] | undefined,
    private readonly listener: ListenerRuntime,
  ) {
    this.expectsResponse = frame.type !== 'oneway';
  }

  /** Sends the copy; a copy that cannot be encoded is counted and dropped, and never touches the primary request. */
  send(clusterName: string): void {
    const listener = this.listener;
    const cluster = listener.clusters.get(clusterName);
    const endpoint = cluster?.pick(undefined, undefined);
    if (!cluster || !endpoint) return;
    try {
      this.upstream = cluster.pool(endpoint, listener.codec, listener.protocol, this.frame.upstreamKey).send(this);
    } catch (thrown) {
      this.contain(thrown, 'mirror');
      return;
    }
    if (this.upstream && this.expectsResponse) this.listener.wheel.schedule(this, MIRROR_EXPIRY_MS);
  }

  contain(thrown: unknown, where: Continuation): void {
    this.listener.containedError(where, recordContained(thrown, where, this.listener.name));
    this.listener.wheel.cancel(this);
    this.upstream?.forget(this);
  }

  onResponse(): void {
    this.listener.wheel.cancel(this);
  }

  onFailure(): void {
    this.listener.wheel.cancel(this);
  }

  onDeadline(): void {
    this.upstream?.forget(this);
  }
}
