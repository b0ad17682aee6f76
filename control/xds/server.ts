/**
 * An xDS server: Envoy's Aggregated Discovery Service over gRPC, state of the world (StreamAggregatedResources) and
 * incremental (DeltaAggregatedResources), serving whatever resources it is given per type URL.
 *
 * - Resources are held per type URL, encoded once (`setResources` / `setSnapshot`). A type's version is a hash of its
 *   resources, so it changes only when that type does and is the same after a restart; a delta resource's version is
 *   the hash of that resource.
 * - LDS and CDS (`wildcardTypes`) may be subscribed as a wildcard (no names, or `*`); other types are served by the
 *   names requested (EDS by cluster/service name, RDS by route config name).
 * - A change is pushed after `debounceMs`, per stream in the order CDS → EDS → LDS → RDS (then any other type), and
 *   only for the types whose resources *that stream subscribes to* changed. Requests arriving together are answered
 *   in that same order.
 * - ACK (a request echoing the last nonce, no error_detail) and NACK (error_detail set) are recorded per node and
 *   type (see `status`); a NACKed version is never resent — only a newer one is sent. A request with a stale nonce is
 *   ignored (SotW), as the xDS protocol says.
 */
import { createHash } from 'node:crypto';
import { lstatSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { log } from '../../src/log.js';
import { grpcAddress, type XdsAddress } from '../../src/xds/options.js';
import {
  adsServiceDefinition,
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  type DeltaResource,
  type DiscoveryRequest,
  type DiscoveryResponse,
  type NodeMessage,
} from '../../src/xds/ads.js';
import { encodeResource, resourceName, type AnyMessage, type JsonObject } from '../../src/xds/convert.js';
import { TYPE_SHORT, XDS_TYPES } from '../../src/xds/protos.js';
import { TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_HTTP_ROUTE, TYPE_LISTENER, TYPE_META_ROUTE, type ResourceSnapshot } from '../../src/xds/resources.js';
import { canonicalJson } from '../version.js';
import { SyncStatus } from './status.js';

export interface XdsServerOptions {
  /** Coalesces changes for this long before pushing (default 100 ms). */
  debounceMs?: number;
  /** Types that may be subscribed to as a wildcard (default LDS and CDS). */
  wildcardTypes?: readonly string[];
  /** `control_plane.identifier` in responses. */
  identifier?: string;
  /**
   * A new stream's first answer waits this long (default 50 ms) so that the subscriptions a client sends together
   * when it connects are answered in push order too.
   */
  initialGatherMs?: number;
}

interface StoredResource {
  name: string;
  /** Hash of the resource's canonical JSON: its delta version, and part of a SotW view's digest. */
  hash: string;
  any: AnyMessage;
}

interface TypeTable {
  version: string;
  resources: Map<string, StoredResource>;
}

/** Where each ResourceSnapshot list goes (`http_routes`, proxyless gRPC's, is optional). */
export const SNAPSHOT_TYPES: ReadonlyArray<{ typeUrl: string; key: 'listeners' | 'clusters' | 'endpoints' | 'routes' | 'http_routes' }> = [
  { typeUrl: TYPE_CLUSTER, key: 'clusters' },
  { typeUrl: TYPE_ENDPOINTS, key: 'endpoints' },
  { typeUrl: TYPE_LISTENER, key: 'listeners' },
  { typeUrl: TYPE_META_ROUTE, key: 'routes' },
  { typeUrl: TYPE_HTTP_ROUTE, key: 'http_routes' },
];

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 12);
}

export class XdsServer {
  readonly status = new SyncStatus();
  private readonly tables = new Map<string, TypeTable>();
  private readonly streams = new Set<AdsStream>();
  private readonly debounceMs: number;
  readonly initialGatherMs: number;
  private readonly wildcardTypes: Set<string>;
  readonly identifier: string;
  private pushTimer: NodeJS.Timeout | undefined;
  private grpcServer: grpc.Server | undefined;
  private nextStreamId = 1;
  /** The version of the whole snapshot last set (for logs and delta's system_version_info). */
  snapshotVersion: string | undefined;

  constructor(options: XdsServerOptions = {}) {
    this.debounceMs = options.debounceMs ?? 100;
    this.initialGatherMs = options.initialGatherMs ?? 50;
    this.wildcardTypes = new Set(options.wildcardTypes ?? [TYPE_LISTENER, TYPE_CLUSTER]);
    this.identifier = options.identifier ?? `waypost-control@${os.hostname()}`;
  }

  /** Whether any resources were set (streams are answered only after that). */
  get hasResources(): boolean {
    return this.tables.size > 0;
  }

  /** Per type URL: its current version. */
  versions(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [t, table] of this.tables) out[t] = table.version;
    return out;
  }

  /** The type URLs served, push order first. */
  typeOrder(): string[] {
    const known = XDS_TYPES.filter((t) => this.tables.has(t));
    return [...known, ...[...this.tables.keys()].filter((t) => !(XDS_TYPES as readonly string[]).includes(t)).sort()];
  }

  isWildcardType(typeUrl: string): boolean {
    return this.wildcardTypes.has(typeUrl);
  }

  /**
   * Serves `snapshot` (all its types at once). Throws (and changes nothing) when a resource cannot be encoded.
   * Returns the type URLs whose version changed.
   */
  setSnapshot(snapshot: ResourceSnapshot): string[] {
    // An optional list that is absent is served as empty once its type has been served (its resources are gone).
    const encoded = SNAPSHOT_TYPES.filter(({ typeUrl, key }) => snapshot[key] !== undefined || this.tables.has(typeUrl)).map(({ typeUrl, key }) => ({
      typeUrl,
      table: this.encodeTable(typeUrl, (snapshot[key] ?? []) as unknown as JsonObject[]),
    }));
    this.snapshotVersion = snapshot.version;
    const changed: string[] = [];
    for (const { typeUrl, table } of encoded) if (this.install(typeUrl, table)) changed.push(typeUrl);
    if (changed.length > 0) this.schedulePush();
    return changed;
  }

  /** Serves `resources` as the complete set of one type (any type URL the protos know). Returns whether it changed. */
  setResources(typeUrl: string, resources: JsonObject[]): boolean {
    const changed = this.install(typeUrl, this.encodeTable(typeUrl, resources));
    if (changed) this.schedulePush();
    return changed;
  }

  /** The stored resources of a type, by name (read-only view, for debugging). */
  resourceNames(typeUrl: string): string[] {
    return [...(this.tables.get(typeUrl)?.resources.keys() ?? [])];
  }

  private encodeTable(typeUrl: string, resources: JsonObject[]): TypeTable {
    const map = new Map<string, StoredResource>();
    for (const json of resources) {
      const name = resourceName(typeUrl, json);
      if (!name) throw new Error(`a ${TYPE_SHORT[typeUrl] ?? typeUrl} resource has no name`);
      if (map.has(name)) throw new Error(`two ${TYPE_SHORT[typeUrl] ?? typeUrl} resources are named ${JSON.stringify(name)}`);
      const any = encodeResource(typeUrl, json);
      map.set(name, { name, any, hash: hash(canonicalJson(json)) });
    }
    const version = hash([...map.values()].map((r) => `${r.name}\u0000${r.hash}`).join('\n'));
    return { version, resources: map };
  }

  private install(typeUrl: string, table: TypeTable): boolean {
    const old = this.tables.get(typeUrl);
    if (old && old.version === table.version) return false;
    this.tables.set(typeUrl, table);
    return true;
  }

  private schedulePush(): void {
    if (this.pushTimer) return;
    this.pushTimer = setTimeout(() => {
      this.pushTimer = undefined;
      for (const s of this.streams) s.push();
    }, this.debounceMs);
    this.pushTimer.unref();
  }

  /** The current table of a type (for streams). */
  table(typeUrl: string): TypeTable | undefined {
    return this.tables.get(typeUrl);
  }

  /**
   * Starts serving on `host:port` (port 0 picks one) or a Unix socket; resolves with the bound port (0 for a socket).
   * A socket file left by an earlier run is removed first, as a restarted agent would.
   */
  async listen(at: XdsAddress): Promise<number> {
    const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
    server.addService(adsServiceDefinition, {
      StreamAggregatedResources: (call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => this.attach(new SotwStream(this, this.nextStreamId++, call)),
      DeltaAggregatedResources: (call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) =>
        this.attach(new DeltaStream(this, this.nextStreamId++, call)),
    });
    if (at.path !== undefined) removeStaleSocket(at.path);
    const address = grpcAddress(at);
    const bound = await new Promise<number>((resolve, reject) => {
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.grpcServer = server;
    return at.path !== undefined ? 0 : bound;
  }

  private attach(stream: AdsStream): void {
    this.streams.add(stream);
    stream.onClose(() => this.streams.delete(stream));
  }

  /** Number of open ADS streams. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Stops serving: every stream is cancelled (clients see UNAVAILABLE and reconnect elsewhere or later). */
  close(): void {
    if (this.pushTimer) clearTimeout(this.pushTimer);
    this.pushTimer = undefined;
    for (const s of this.streams) s.close();
    this.streams.clear();
    this.grpcServer?.forceShutdown();
    this.grpcServer = undefined;
  }
}

// ---- streams ------------------------------------------------------------------------------------------------------

interface TypeState {
  /** A request for the type has arrived on this stream. */
  subscribed: boolean;
  wildcard: boolean;
  names: Set<string>;
  /** Needs evaluation at the next flush. */
  due: boolean;
  lastNonce?: string;
  lastVersion?: string;
  /**
   * The client NACKed what it was last sent. A client rejects an update as a whole (every type it held), so a type
   * may be rejected for another type's fault: it is sent again at the next config change even if it did not change.
   */
  rejected?: boolean;
}

abstract class AdsStream {
  protected readonly types = new Map<string, TypeState>();
  protected node: NodeMessage | undefined;
  protected nodeId: string;
  private identified = false;
  private nonce = 0;
  private flushScheduled = false;
  private gathered = false;
  private closed = false;
  private readonly closeHandlers: Array<() => void> = [];

  constructor(
    protected readonly server: XdsServer,
    readonly id: number,
    protected readonly call: grpc.ServerDuplexStream<unknown, unknown>,
    readonly protocol: 'sotw' | 'delta',
  ) {
    this.nodeId = `unknown-node-stream-${id}`;
    call.on('data', (req: unknown) => {
      try {
        this.onRequest(req);
      } catch (err) {
        log.error('xds: bad request', { stream: id, node: this.nodeId, error: (err as Error).message });
      }
    });
    call.on('end', () => this.finish('client closed the stream'));
    call.on('cancelled', () => this.finish('cancelled'));
    call.on('error', (err: Error) => this.finish(err.message));
  }

  onClose(fn: () => void): void {
    this.closeHandlers.push(fn);
  }

  close(): void {
    if (this.closed) return;
    try {
      this.call.end();
    } catch {
      // already gone
    }
    this.finish('server closing');
  }

  private finish(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    if (this.identified) this.server.status.disconnected(this.nodeId, this.id);
    log.info('xds stream closed', { node: this.nodeId, stream: this.id, reason });
    for (const fn of this.closeHandlers) fn();
    try {
      this.call.end();
    } catch {
      // already gone
    }
  }

  /** The node is named on a stream's first request (later ones may leave it out). */
  protected identify(node: NodeMessage | null | undefined): void {
    if (this.identified) return;
    this.identified = true;
    if (node && node.id) {
      this.node = node;
      this.nodeId = node.id;
    }
    this.server.status.connected(this.node ?? { id: this.nodeId }, this.id, this.protocol);
    log.info('xds stream opened', { node: this.nodeId, cluster: node?.cluster || undefined, stream: this.id, protocol: this.protocol });
  }

  protected state(typeUrl: string): TypeState {
    let st = this.types.get(typeUrl);
    if (!st) {
      st = { subscribed: false, wildcard: false, names: new Set(), due: false };
      this.types.set(typeUrl, st);
    }
    return st;
  }

  /** Unique across the server's streams: `<stream>.<n>`. */
  protected newNonce(): string {
    return `${this.id}.${++this.nonce}`;
  }

  protected abstract onRequest(req: unknown): void;

  /** Sends what is due for one type; returns nothing. */
  protected abstract flushType(typeUrl: string, st: TypeState): void;

  /** Forgets what the client was sent for a type, so that the next flush sends it again. */
  protected abstract forgetSent(st: TypeState): void;

  /** Marks every subscribed type due and sends what changed, in push order (a snapshot change). */
  push(): void {
    for (const st of this.types.values()) {
      if (!st.subscribed) continue;
      st.due = true;
      if (st.rejected) {
        st.rejected = false;
        this.forgetSent(st);
      }
    }
    this.flush();
  }

  /** Answers requests that arrived together in push order (the first ones after a short gathering window). */
  protected scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const run = (): void => {
      this.flushScheduled = false;
      this.flush();
    };
    if (this.gathered) setImmediate(run);
    else {
      this.gathered = true;
      setTimeout(run, this.server.initialGatherMs).unref();
    }
  }

  private flush(): void {
    if (this.closed || !this.server.hasResources) return;
    const order = [...this.server.typeOrder(), ...[...this.types.keys()].filter((t) => !this.server.table(t))];
    for (const typeUrl of order) {
      const st = this.types.get(typeUrl);
      if (!st || !st.subscribed || !st.due) continue;
      st.due = false;
      this.flushType(typeUrl, st);
    }
  }

  protected write(msg: unknown): void {
    if (this.closed) return;
    this.call.write(msg);
  }

  protected recordAckNack(typeUrl: string, st: TypeState, nonce: string, version: string, error: { code?: number; message?: string } | null | undefined): void {
    if (error) {
      st.rejected = true;
      const message = error.message || `error code ${error.code ?? '?'}`;
      this.server.status.nack(this.nodeId, typeUrl, { version: st.lastVersion ?? '', nonce, message });
      log.warn('xds NACK', { node: this.nodeId, type: TYPE_SHORT[typeUrl] ?? typeUrl, rejected_version: st.lastVersion, nonce, message });
    } else {
      this.server.status.ack(this.nodeId, typeUrl, { version, nonce });
      log.debug('xds ACK', { node: this.nodeId, type: TYPE_SHORT[typeUrl] ?? typeUrl, version, nonce });
    }
  }
}

interface SotwTypeState extends TypeState {
  /** What the client was last sent for this type: names and hashes of the resources in the response. */
  lastDigest?: string;
}

class SotwStream extends AdsStream {
  constructor(server: XdsServer, id: number, call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) {
    super(server, id, call as grpc.ServerDuplexStream<unknown, unknown>, 'sotw');
  }

  protected onRequest(raw: unknown): void {
    const req = raw as DiscoveryRequest;
    this.identify(req.node);
    const typeUrl = req.type_url;
    if (!typeUrl) {
      log.warn('xds: request without type_url ignored', { node: this.nodeId });
      return;
    }
    const st = this.state(typeUrl) as SotwTypeState;
    const nonce = req.response_nonce ?? '';
    const names = req.resource_names ?? [];
    if (nonce !== '') {
      if (nonce !== st.lastNonce) {
        log.debug('xds: stale nonce ignored', { node: this.nodeId, type: TYPE_SHORT[typeUrl] ?? typeUrl, nonce, latest: st.lastNonce });
        return;
      }
      this.recordAckNack(typeUrl, st, nonce, req.version_info ?? '', req.error_detail);
    } else if (!st.subscribed) {
      // A new subscription. A client that already holds the current version of a wildcard type (it reconnected)
      // is not sent it again.
      const table = this.server.table(typeUrl);
      const wildcard = this.server.isWildcardType(typeUrl) && (names.length === 0 || names.includes('*'));
      if (wildcard && table && req.version_info && req.version_info === table.version) {
        st.lastDigest = this.digest(typeUrl, { wildcard: true, names: new Set() });
        st.lastVersion = table.version;
        this.server.status.ack(this.nodeId, typeUrl, { version: req.version_info, nonce: '' });
      }
    }
    const wasSubscribed = st.subscribed;
    this.updateSubscription(typeUrl, st, names, !wasSubscribed);
    st.subscribed = true;
    this.server.status.subscribed(this.nodeId, typeUrl, st.wildcard ? '*' : [...st.names]);
    st.due = true;
    this.scheduleFlush();
  }

  private updateSubscription(typeUrl: string, st: TypeState, names: string[], first: boolean): void {
    const explicitWildcard = names.includes('*');
    if (this.server.isWildcardType(typeUrl)) {
      // Legacy wildcard: an empty first request; it stays wildcard until names are given.
      if (explicitWildcard || (first && names.length === 0) || (st.wildcard && names.length === 0)) st.wildcard = true;
      else st.wildcard = false;
    } else {
      st.wildcard = false;
    }
    st.names = new Set(names.filter((n) => n !== '*'));
  }

  private view(typeUrl: string, st: { wildcard: boolean; names: Set<string> }): StoredResource[] {
    const table = this.server.table(typeUrl);
    if (!table) return [];
    if (st.wildcard) return [...table.resources.values()];
    const out: StoredResource[] = [];
    for (const n of st.names) {
      const r = table.resources.get(n);
      if (r) out.push(r);
    }
    return out;
  }

  private digest(typeUrl: string, st: { wildcard: boolean; names: Set<string> }): string {
    return this.view(typeUrl, st)
      .map((r) => `${r.name}\u0000${r.hash}`)
      .sort()
      .join('\n');
  }

  protected forgetSent(st: TypeState): void {
    (st as SotwTypeState).lastDigest = undefined;
  }

  protected flushType(typeUrl: string, state: TypeState): void {
    const st = state as SotwTypeState;
    const table = this.server.table(typeUrl);
    if (!table) return; // nothing to serve for this type yet
    const resources = this.view(typeUrl, st);
    const digest = resources
      .map((r) => `${r.name}\u0000${r.hash}`)
      .sort()
      .join('\n');
    if (st.lastDigest === digest) return;
    const nonce = this.newNonce();
    st.lastDigest = digest;
    st.lastNonce = nonce;
    st.lastVersion = table.version;
    const response: DiscoveryResponse = {
      version_info: table.version,
      resources: resources.map((r) => r.any),
      type_url: typeUrl,
      nonce,
      control_plane: { identifier: this.server.identifier },
    };
    this.write(response);
    this.server.status.sent(this.nodeId, typeUrl, { version: table.version, nonce, resources: resources.length });
    log.debug('xds sent', { node: this.nodeId, type: TYPE_SHORT[typeUrl] ?? typeUrl, version: table.version, nonce, resources: resources.length });
  }
}

interface DeltaTypeState extends TypeState {
  /** What the client holds: name → version, or null when it was told the resource does not exist. */
  known: Map<string, string | null>;
  /** An answer has been sent since the subscription started (an empty first answer is still sent). */
  answered: boolean;
}

class DeltaStream extends AdsStream {
  constructor(server: XdsServer, id: number, call: grpc.ServerDuplexStream<DeltaDiscoveryRequest, DeltaDiscoveryResponse>) {
    super(server, id, call as grpc.ServerDuplexStream<unknown, unknown>, 'delta');
  }

  protected override state(typeUrl: string): DeltaTypeState {
    const st = super.state(typeUrl) as DeltaTypeState;
    st.known ??= new Map();
    st.answered ??= false;
    return st;
  }

  protected onRequest(raw: unknown): void {
    const req = raw as DeltaDiscoveryRequest;
    this.identify(req.node);
    const typeUrl = req.type_url;
    if (!typeUrl) {
      log.warn('xds: delta request without type_url ignored', { node: this.nodeId });
      return;
    }
    const st = this.state(typeUrl);
    const nonce = req.response_nonce ?? '';
    if (nonce !== '' && nonce === st.lastNonce) this.recordAckNack(typeUrl, st, nonce, st.lastVersion ?? '', req.error_detail);
    const subscribe = req.resource_names_subscribe ?? [];
    const unsubscribe = req.resource_names_unsubscribe ?? [];
    if (!st.subscribed) {
      if (this.server.isWildcardType(typeUrl) && subscribe.length === 0) st.wildcard = true;
      for (const [name, version] of Object.entries(req.initial_resource_versions ?? {})) st.known.set(name, version);
    }
    for (const n of subscribe) {
      if (n === '*') st.wildcard = this.server.isWildcardType(typeUrl);
      else st.names.add(n);
    }
    for (const n of unsubscribe) {
      if (n === '*') st.wildcard = false;
      else {
        st.names.delete(n);
        // The client forgets it; if it stays in a wildcard view it is sent again.
        if (!st.wildcard) st.known.delete(n);
      }
    }
    st.subscribed = true;
    this.server.status.subscribed(this.nodeId, typeUrl, st.wildcard ? ['*', ...st.names] : [...st.names]);
    if (subscribe.length > 0 || unsubscribe.length > 0 || nonce === '') {
      st.due = true;
      this.scheduleFlush();
    }
  }

  protected forgetSent(state: TypeState): void {
    // A version no resource has: every resource the client holds is sent again.
    const st = state as DeltaTypeState;
    for (const [name, v] of st.known) if (v !== null) st.known.set(name, '');
  }

  protected flushType(typeUrl: string, state: TypeState): void {
    const st = state as DeltaTypeState;
    const table = this.server.table(typeUrl);
    if (!table) return;
    const candidates = new Set<string>(st.names);
    if (st.wildcard) {
      for (const n of table.resources.keys()) candidates.add(n);
      for (const n of st.known.keys()) candidates.add(n);
    }
    const resources: DeltaResource[] = [];
    const removed: string[] = [];
    for (const name of candidates) {
      const r = table.resources.get(name);
      if (r) {
        if (st.known.get(name) !== r.hash) {
          resources.push({ name, version: r.hash, resource: r.any });
          st.known.set(name, r.hash);
        }
      } else if (st.known.has(name) ? st.known.get(name) !== null : st.names.has(name)) {
        removed.push(name);
        st.known.set(name, null);
      }
    }
    if (resources.length === 0 && removed.length === 0 && st.answered) return;
    st.answered = true;
    const nonce = this.newNonce();
    st.lastNonce = nonce;
    st.lastVersion = table.version;
    const response: DeltaDiscoveryResponse = {
      system_version_info: table.version,
      resources,
      type_url: typeUrl,
      removed_resources: removed,
      nonce,
      control_plane: { identifier: this.server.identifier },
    };
    this.write(response);
    this.server.status.sent(this.nodeId, typeUrl, { version: table.version, nonce, resources: resources.length, removed: removed.length });
    log.debug('xds delta sent', { node: this.nodeId, type: TYPE_SHORT[typeUrl] ?? typeUrl, nonce, resources: resources.length, removed: removed.length });
  }
}

/** Removes `p` when it is a socket (a stale one from a run that did not clean up); anything else is left alone. */
function removeStaleSocket(p: string): void {
  try {
    if (lstatSync(p).isSocket()) unlinkSync(p);
  } catch {
    // not there
  }
}
