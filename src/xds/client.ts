/**
 * The data plane as an xDS client: one state-of-the-world ADS stream (insecure gRPC) to `--xds HOST:PORT`.
 *
 * - Subscribes to Listeners and Clusters (wildcard), then to the ClusterLoadAssignments of the EDS clusters
 *   (by `eds_cluster_config.service_name`, else the cluster name) and to the MetaProtocol RouteConfigurations the
 *   listeners name (`rds.route_config_name`).
 * - Each response is decoded into the resource JSON of src/xds/resources.ts (src/xds/convert.ts) and its numbers
 *   checked (src/xds/validate.ts: ports, weights, durations, percentages, the protos' validation rules); a resource
 *   that cannot be decoded or fails a check NACKs the response at once, naming the resource and field.
 * - Warming: decoded responses are held until the whole picture is complete — LDS and CDS received, every EDS
 *   cluster has its ClusterLoadAssignment and every listener its RouteConfiguration — and then applied together
 *   with `proxy.apply`. If that does not happen within `warmingTimeoutMs` (default 5 s), what is there is applied
 *   (a cluster without endpoints answers "no healthy upstream"; a listener without routes answers "no route").
 * - After a successful apply every held response is ACKed; if `proxy.apply` rejects, every held response is NACKed
 *   with the rejection's message and the last good config keeps serving. `waypost_xds_updates_total{type_url,
 *   result="ack"|"nack"}` counts them.
 * - EDS and RDS responses may carry only some of the subscribed resources (the others are kept, as the xDS protocol
 *   allows); LDS and CDS responses are complete sets.
 * - When the stream fails, it reconnects with jittered exponential backoff (`backoff`, default 100 ms → 10 s) and
 *   re-subscribes with the last ACKed versions; the proxy keeps serving its last config meanwhile.
 */
import * as grpc from '@grpc/grpc-js';
import { log } from '../log.js';
import { ConfigRejectedError, type Proxy } from '../proxy.js';
import { openSotwStream, type DiscoveryRequest, type DiscoveryResponse, type NodeMessage } from './ads.js';
import { canonicalJson, decodeResource, resourceLabel, XdsConversionError, type JsonObject } from './convert.js';
import { defaultNodeId } from './options.js';
import { TYPE_SHORT } from './protos.js';
import { validateResource } from './validate.js';
import {
  FILTER_META_PROTOCOL_PROXY,
  TYPE_CLUSTER,
  TYPE_ENDPOINTS,
  TYPE_LISTENER,
  TYPE_META_PROTOCOL_PROXY,
  TYPE_META_ROUTE,
  type Cluster,
  type ClusterLoadAssignment,
  type Listener,
  type MetaProtocolProxyConfig,
  type MetaRouteConfiguration,
  type ResourceSnapshot,
} from './resources.js';

export const DEFAULT_NODE_CLUSTER = 'waypost';
/** gRPC status INVALID_ARGUMENT, the code a NACK carries. */
const INVALID_ARGUMENT = 3;

export interface XdsClientOptions {
  /** `HOST:PORT` of the ADS server. */
  server: string;
  proxy: Proxy;
  /** Default `waypost~<hostname>~<pid>`. */
  nodeId?: string;
  /** Default `waypost`. */
  cluster?: string;
  /** Default 5000 ms. */
  warmingTimeoutMs?: number;
  /** Reconnect delays: the first retry waits about `initialMs`, doubling up to `maxMs` (each jittered to 50–100%). */
  backoff?: { initialMs?: number; maxMs?: number };
}

export { defaultNodeId };

interface Held {
  version: string;
  nonce: string;
  /** The stream it came on (an ACK is sent only on that stream). */
  gen: number;
  resources: Map<string, JsonObject>;
}

interface TypeState {
  readonly typeUrl: string;
  /** Wildcard types (LDS, CDS) are complete in each response; named types (EDS, RDS) are merged. */
  readonly wildcard: boolean;
  /** Current subscription (named types). */
  names: string[];
  /** The names last requested on this stream (to tell when to send a new request). */
  requested: string | undefined;
  /** The last nonce received on this stream. */
  nonce: string;
  /** The version last ACKed (kept across reconnects). */
  ackedVersion: string;
  /** Resources applied to the proxy. */
  applied: Map<string, JsonObject>;
  /** A decoded response not yet applied (waiting for warming or for the apply). */
  held: Held | undefined;
  /** A response of this type has been accepted or is held. */
  received: boolean;
}

export interface XdsClientStatus {
  server: string;
  node: string;
  connected: boolean;
  warming: boolean;
  types: Record<string, { acked_version: string; subscribed: string[] | '*'; held_version: string | null; resources: number }>;
}

export class XdsClient {
  readonly nodeId: string;
  private readonly cluster: string;
  private readonly warmingTimeoutMs: number;
  private readonly backoffInitial: number;
  private readonly backoffMax: number;
  private readonly types: Map<string, TypeState>;
  private client: grpc.Client | undefined;
  private stream: grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> | undefined;
  private streamOpen = false;
  private attempt = 0;
  /** Increments per stream. */
  private gen = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private warmingTimer: NodeJS.Timeout | undefined;
  private warmingExpired = false;
  private closed = false;
  private applying: Promise<void> | undefined;
  private applyAgain = false;
  private firstApply: { promise: Promise<void>; resolve: () => void };

  constructor(private readonly options: XdsClientOptions) {
    this.nodeId = options.nodeId ?? defaultNodeId();
    this.cluster = options.cluster ?? DEFAULT_NODE_CLUSTER;
    this.warmingTimeoutMs = options.warmingTimeoutMs ?? 5000;
    this.backoffInitial = options.backoff?.initialMs ?? 100;
    this.backoffMax = options.backoff?.maxMs ?? 10_000;
    const mk = (typeUrl: string, wildcard: boolean): TypeState => ({
      typeUrl,
      wildcard,
      names: [],
      requested: undefined,
      nonce: '',
      ackedVersion: '',
      applied: new Map(),
      held: undefined,
      received: false,
    });
    this.types = new Map([
      [TYPE_CLUSTER, mk(TYPE_CLUSTER, true)],
      [TYPE_ENDPOINTS, mk(TYPE_ENDPOINTS, false)],
      [TYPE_LISTENER, mk(TYPE_LISTENER, true)],
      [TYPE_META_ROUTE, mk(TYPE_META_ROUTE, false)],
    ]);
    let resolve!: () => void;
    this.firstApply = { promise: new Promise<void>((r) => (resolve = r)), resolve };
  }

  /** Connects (and keeps reconnecting until `close`). */
  start(): void {
    this.connect();
  }

  /** Resolves once a first config has been applied. */
  whenApplied(): Promise<void> {
    return this.firstApply.promise;
  }

  get connected(): boolean {
    return this.streamOpen;
  }

  status(): XdsClientStatus {
    const types: XdsClientStatus['types'] = {};
    for (const st of this.types.values()) {
      types[st.typeUrl] = {
        acked_version: st.ackedVersion,
        subscribed: st.wildcard ? '*' : [...st.names],
        held_version: st.held?.version ?? null,
        resources: st.applied.size,
      };
    }
    return { server: this.options.server, node: this.nodeId, connected: this.streamOpen, warming: this.warmingTimer !== undefined, types };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.clearWarming();
    this.dropStream();
    if (this.applying) await this.applying.catch(() => undefined);
  }

  // ---- connection ---------------------------------------------------------------------------------------------

  private connect(): void {
    if (this.closed) return;
    this.dropStream();
    // A fresh channel per attempt, so reconnect timing is ours (not the channel's own backoff).
    const client = new grpc.Client(this.options.server, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      'grpc.initial_reconnect_backoff_ms': this.backoffInitial,
      'grpc.max_reconnect_backoff_ms': this.backoffMax,
    });
    this.client = client;
    this.gen++;
    const stream = openSotwStream(client);
    this.stream = stream;
    let failed = false;
    const fail = (why: string): void => {
      if (failed || this.stream !== stream) return;
      failed = true;
      this.onStreamLost(why);
    };
    stream.on('data', (resp: DiscoveryResponse) => {
      if (this.stream !== stream) return;
      if (!this.streamOpen) {
        this.streamOpen = true;
        log.info('xds connected', { server: this.options.server, node: this.nodeId });
      }
      this.attempt = 0;
      this.onResponse(resp);
    });
    stream.on('error', (err: grpc.ServiceError) => fail(err.details || err.message));
    stream.on('end', () => fail('the server ended the stream'));
    stream.on('close', () => fail('stream closed'));
    // Subscribe: CDS then LDS (wildcard), and the named types we already know we need.
    for (const st of this.types.values()) st.requested = undefined;
    this.updateNames();
    for (const st of this.types.values()) this.sendSubscription(st);
  }

  private dropStream(): void {
    const stream = this.stream;
    const client = this.client;
    this.stream = undefined;
    this.client = undefined;
    this.streamOpen = false;
    if (stream) {
      stream.removeAllListeners('data');
      stream.on('error', () => undefined);
      stream.cancel();
    }
    client?.close();
  }

  private onStreamLost(why: string): void {
    const wasOpen = this.streamOpen;
    this.dropStream();
    // Held responses die with the stream; the server sends them again after we re-subscribe.
    for (const st of this.types.values()) {
      st.held = undefined;
      st.nonce = '';
      st.requested = undefined;
      st.received = st.applied.size > 0 || st.ackedVersion !== '';
    }
    this.clearWarming();
    if (this.closed) return;
    const base = Math.min(this.backoffMax, this.backoffInitial * 2 ** Math.min(this.attempt, 30));
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    this.attempt++;
    const fields = { server: this.options.server, reason: why, retry_in_ms: delay };
    if (wasOpen) log.warn('xds stream lost; the last config keeps serving', fields);
    else if (this.attempt <= 1 || this.attempt % 10 === 0) log.warn('xds server unreachable', { ...fields, attempt: this.attempt });
    // Not unref'd: with no listener and no admin server, this timer is what keeps the process alive.
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      this.connect();
    }, delay);
  }

  private node(): NodeMessage {
    return { id: this.nodeId, cluster: this.cluster, user_agent_name: 'waypost' };
  }

  private send(req: DiscoveryRequest): void {
    if (!this.stream) return;
    this.stream.write({ ...req, node: this.node() });
  }

  /** Sends the type's subscription if it differs from the last one sent on this stream. */
  private sendSubscription(st: TypeState): void {
    const names = st.wildcard ? [] : st.names;
    const key = names.join('\n');
    if (st.requested === key) return;
    // A named type with nothing to ask for is not requested until there is (an empty first request means wildcard).
    if (!st.wildcard && names.length === 0 && st.requested === undefined) return;
    st.requested = key;
    this.send({ type_url: st.typeUrl, version_info: st.ackedVersion, resource_names: names, response_nonce: st.nonce });
  }

  // ---- responses ----------------------------------------------------------------------------------------------

  private onResponse(resp: DiscoveryResponse): void {
    const st = this.types.get(resp.type_url);
    if (!st) {
      log.warnLimited('xds_unsubscribed_type', 'xds: response for a type not subscribed, ignored', { type_url: resp.type_url });
      return;
    }
    st.nonce = resp.nonce;
    const short = TYPE_SHORT[st.typeUrl] ?? st.typeUrl;
    let decoded: Map<string, JsonObject>;
    try {
      decoded = new Map();
      (resp.resources ?? []).forEach((any, i) => {
        const { name, json } = decodeResource(st.typeUrl, any, i);
        if (!name) throw new XdsConversionError(`${short} resource #${i}`, 'has no name');
        const label = resourceLabel(st.typeUrl, name);
        if (decoded.has(name)) throw new XdsConversionError(label, 'appears twice in the response');
        // Numbers from the server are checked before anything uses them (a bad port or duration is NACKed here).
        validateResource(st.typeUrl, json, label);
        decoded.set(name, st.typeUrl === TYPE_LISTENER ? normalizeListener(json) : json);
      });
    } catch (err) {
      const message = err instanceof XdsConversionError ? err.message : `cannot decode: ${(err as Error).message}`;
      log.error('xds update rejected', { type: short, version: resp.version_info, error: message });
      this.nack(st, resp.version_info, resp.nonce, message);
      return;
    }
    let resources: Map<string, JsonObject>;
    if (st.wildcard) resources = decoded;
    else {
      resources = new Map(st.held?.resources ?? st.applied);
      for (const [k, v] of decoded) resources.set(k, v);
    }
    st.held = { version: resp.version_info, nonce: resp.nonce, gen: this.gen, resources };
    st.received = true;
    log.debug('xds update received', { type: short, version: resp.version_info, resources: decoded.size });
    this.updateNames();
    // A subscription change sent while this response was on its way carried an older nonce, and the server drops a
    // request with a stale nonce: if names are still missing, ask again with this response's nonce.
    if (!st.wildcard && st.names.some((n) => !resources.has(n))) st.requested = undefined;
    for (const t of this.types.values()) if (!t.wildcard) this.sendSubscription(t);
    this.maybeApply();
  }

  private current(typeUrl: string): Map<string, JsonObject> {
    const st = this.types.get(typeUrl)!;
    return st.held?.resources ?? st.applied;
  }

  /** EDS names from the clusters, RDS names from the listeners (held or applied). */
  private updateNames(): void {
    const eds = new Set<string>();
    for (const c of this.current(TYPE_CLUSTER).values()) {
      const name = edsServiceName(c as unknown as Cluster);
      if (name) eds.add(name);
    }
    const rds = new Set<string>();
    for (const l of this.current(TYPE_LISTENER).values()) for (const n of routeConfigNames(l as unknown as Listener)) rds.add(n);
    this.types.get(TYPE_ENDPOINTS)!.names = [...eds].sort();
    this.types.get(TYPE_META_ROUTE)!.names = [...rds].sort();
  }

  /** What is still missing for the current picture to be complete. */
  private missing(): string[] {
    const out: string[] = [];
    for (const t of [TYPE_CLUSTER, TYPE_LISTENER]) if (!this.types.get(t)!.received) out.push(`${TYPE_SHORT[t]} (nothing received yet)`);
    const cla = this.current(TYPE_ENDPOINTS);
    for (const n of this.types.get(TYPE_ENDPOINTS)!.names) if (!cla.has(n)) out.push(`ClusterLoadAssignment ${JSON.stringify(n)}`);
    const routes = this.current(TYPE_META_ROUTE);
    for (const n of this.types.get(TYPE_META_ROUTE)!.names) if (!routes.has(n)) out.push(`RouteConfiguration ${JSON.stringify(n)}`);
    return out;
  }

  private maybeApply(): void {
    if (this.applying) {
      this.applyAgain = true;
      return;
    }
    const held = [...this.types.values()].filter((t) => t.held);
    if (held.length === 0) return;
    const missing = this.missing();
    if (missing.length > 0 && !this.warmingExpired) {
      if (!this.warmingTimer) {
        log.debug('xds warming', { waiting_for: missing.join(', ') });
        this.warmingTimer = setTimeout(() => {
          this.warmingTimer = undefined;
          this.warmingExpired = true;
          log.warn(`xds warming timed out after ${this.warmingTimeoutMs} ms; applying without: ${this.missing().join(', ')}`);
          this.maybeApply();
        }, this.warmingTimeoutMs);
        this.warmingTimer.unref();
      }
      return;
    }
    this.clearWarming();
    this.applying = this.applyHeld(held).finally(() => {
      this.applying = undefined;
      if (this.applyAgain) {
        this.applyAgain = false;
        this.maybeApply();
      }
    });
  }

  private clearWarming(): void {
    if (this.warmingTimer) clearTimeout(this.warmingTimer);
    this.warmingTimer = undefined;
    this.warmingExpired = false;
  }

  private buildSnapshot(): ResourceSnapshot {
    const edsNames = new Set(this.types.get(TYPE_ENDPOINTS)!.names);
    const rdsNames = new Set(this.types.get(TYPE_META_ROUTE)!.names);
    const versions = [...this.types.values()].map((t) => `${TYPE_SHORT[t.typeUrl]}:${t.held?.version ?? t.ackedVersion ?? ''}`);
    return {
      version: versions.join(','),
      clusters: [...this.current(TYPE_CLUSTER).values()] as unknown as Cluster[],
      endpoints: [...this.current(TYPE_ENDPOINTS).entries()].filter(([n]) => edsNames.has(n)).map(([, v]) => v) as unknown as ClusterLoadAssignment[],
      listeners: [...this.current(TYPE_LISTENER).values()] as unknown as Listener[],
      routes: [...this.current(TYPE_META_ROUTE).entries()].filter(([n]) => rdsNames.has(n)).map(([, v]) => v) as unknown as MetaRouteConfiguration[],
    };
  }

  private async applyHeld(held: TypeState[]): Promise<void> {
    // Responses that arrive while the proxy applies are held for the next round.
    const batch = held.map((st) => ({ st, h: st.held! }));
    const snapshot = this.buildSnapshot();
    const proxy = this.options.proxy;
    const before = proxy.version;
    const key = resourcesKey(snapshot);
    const unchanged = before !== undefined && this.appliedKey === key;
    let error: string | undefined;
    if (!unchanged) {
      try {
        await proxy.apply(snapshot);
      } catch (err) {
        error = err instanceof ConfigRejectedError ? err.message : `apply failed: ${(err as Error).message}`;
        if (!(err instanceof ConfigRejectedError)) log.error('xds apply failed', { error: (err as Error).stack ?? String(err) });
      }
    }
    // A listener that cannot bind is reported as a rejection, but everything else was applied and that listener is
    // retried on the next apply: keep it as applied (the update is still NACKed, as Envoy does).
    const installed = error === undefined || (proxy.version === snapshot.version && proxy.version !== before);
    if (installed) this.appliedKey = key;
    for (const { st, h } of batch) {
      if (st.held === h) st.held = undefined;
      if (installed) st.applied = st.wildcard ? h.resources : pick(h.resources, st.names);
      if (error === undefined) {
        st.ackedVersion = h.version;
        this.ack(st, h);
      } else {
        this.options.proxy.metrics.xdsUpdates.labels(st.typeUrl, 'nack').inc();
        if (h.gen === this.gen) this.nack(st, h.version, h.nonce, error, false);
      }
    }
    if (error === undefined) {
      if (!unchanged) log.info('xds config applied', { version: snapshot.version });
      this.firstApply.resolve();
    } else {
      log.error('xds update rejected; the last good config keeps serving', { error });
      // A rejected update may have changed what we subscribe to: go back to what is applied.
      this.updateNames();
      for (const t of this.types.values()) if (!t.wildcard) this.sendSubscription(t);
    }
  }

  private appliedKey: string | undefined;

  private ack(st: TypeState, h: Held): void {
    this.options.proxy.metrics.xdsUpdates.labels(st.typeUrl, 'ack').inc();
    if (h.gen !== this.gen) return; // that stream is gone; the new one re-subscribed with the versions we had
    st.requested = (st.wildcard ? [] : st.names).join('\n');
    this.send({ type_url: st.typeUrl, version_info: h.version, resource_names: st.wildcard ? [] : st.names, response_nonce: h.nonce });
  }

  /** `version` is the rejected one (logged); the NACK carries the last ACKed version, as the protocol says. */
  private nack(st: TypeState, version: string, nonce: string, message: string, count = true): void {
    if (count) this.options.proxy.metrics.xdsUpdates.labels(st.typeUrl, 'nack').inc();
    log.debug('xds NACK', { type: TYPE_SHORT[st.typeUrl] ?? st.typeUrl, rejected_version: version, nonce });
    st.requested = (st.wildcard ? [] : st.names).join('\n');
    this.send({
      type_url: st.typeUrl,
      version_info: st.ackedVersion,
      resource_names: st.wildcard ? [] : st.names,
      response_nonce: nonce,
      error_detail: { code: INVALID_ARGUMENT, message },
    });
  }
}

/** The entries of `m` named in `names` (named types keep only what is subscribed). */
function pick(m: Map<string, JsonObject>, names: readonly string[]): Map<string, JsonObject> {
  const out = new Map<string, JsonObject>();
  for (const n of names) {
    const v = m.get(n);
    if (v) out.set(n, v);
  }
  return out;
}

/** The resources of a snapshot, without its version (to skip applying what is already applied). */
function resourcesKey(s: ResourceSnapshot): string {
  return canonicalJson({ l: s.listeners, c: s.clusters, e: s.endpoints, r: s.routes });
}

/** The ClusterLoadAssignment an EDS cluster needs, or undefined (other cluster types carry their endpoints). */
export function edsServiceName(c: Cluster): string | undefined {
  if (c.type !== 'EDS' || c.load_assignment) return undefined;
  return c.eds_cluster_config?.service_name || c.name;
}

/** The route configurations a listener takes by RDS. */
export function routeConfigNames(l: Listener): string[] {
  const out: string[] = [];
  for (const chain of l.filter_chains ?? []) {
    for (const f of chain.filters ?? []) {
      const cfg = f.typed_config as MetaProtocolProxyConfig | undefined;
      if (f.name === FILTER_META_PROTOCOL_PROXY && cfg?.rds?.route_config_name) out.push(cfg.rds.route_config_name);
    }
  }
  return out;
}

/**
 * Aeraki control planes may still send MetaProtocolProxy's deprecated `application_protocol` + `codec` instead of
 * `protocol {name, codec}`: read them as `protocol`.
 */
function normalizeListener(json: JsonObject): JsonObject {
  for (const chain of (json.filter_chains as Array<{ filters?: Array<{ typed_config?: JsonObject }> }> | undefined) ?? []) {
    for (const f of chain.filters ?? []) {
      const cfg = f.typed_config;
      if (!cfg || cfg['@type'] !== TYPE_META_PROTOCOL_PROXY || cfg.protocol) continue;
      if (cfg.codec || cfg.application_protocol) {
        cfg.protocol = { name: cfg.application_protocol ?? '', codec: cfg.codec ?? {} };
      }
    }
  }
  return json;
}
