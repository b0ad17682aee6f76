/**
 * Redis Cluster behind the proxy (Envoy's `envoy.clusters.redis` cluster type, Aeraki's RedisDestination
 * `mode: CLUSTER`): the cluster's endpoints are seed nodes; the slot map (which node serves each of the 16384 hash
 * slots) is read from a seed with `CLUSTER SLOTS`, on first use, after a MOVED answer, and every few seconds while
 * the cluster is in use. A key goes to the node of its slot (CRC16 of the key, or of its `{hash tag}`); MOVED and ASK
 * answers are followed (see connection.ts).
 *
 * Nodes that are not seeds get Endpoint objects of their own (with their own pools), made when the slot map or a
 * redirection names them, and closed when the slot map drops them or the cluster has no seeds any more.
 */
import { CodecError, type Frame, type LocalReplyKind } from '../codec.js';
import { Endpoint, type Cluster } from '../cluster.js';
import { reenter } from '../contain.js';
import { log } from '../log.js';
import type { UpstreamConnection } from '../upstream.js';
import { redisCodec } from '../../codecs/redis/index.js';
import { ARRAY, BULK, CR, encodeCommand, INTEGER, parseInteger } from '../../codecs/redis/resp.js';
import { skipValue } from '../../codecs/redis/reply.js';
import { upstreamCodec } from './upstream.js';

export const REDIS_CLUSTER_TYPE = 'envoy.clusters.redis';
export const SLOTS = 16384;
/** How often a cluster in use re-reads its slot map (Envoy's `cluster_refresh_rate` default is 5 s). */
const REFRESH_MS = 5000;
/** The least time between two slot-map reads triggered by redirections. */
const MIN_REFRESH_GAP_MS = 200;

export function isRedisCluster(cluster: Cluster): boolean {
  return cluster.settings.clusterType === REDIS_CLUSTER_TYPE;
}

// CRC16-CCITT (XMODEM), as Redis Cluster's key slot function.
const CRC_TABLE = new Uint16Array(256);
for (let i = 0; i < 256; i++) {
  let c = i << 8;
  for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
  CRC_TABLE[i] = c;
}

/** The hash slot of a key given as a latin1 string (one char per byte): CRC16 of its `{tag}` if any, mod 16384. */
export function keySlot(key: string): number {
  let start = 0;
  let end = key.length;
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) {
      start = open + 1;
      end = close;
    }
  }
  let crc = 0;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ CRC_TABLE[((crc >> 8) ^ key.charCodeAt(i)) & 0xff]!;
  return crc & (SLOTS - 1);
}

/** A MOVED or ASK answer: where the slot lives (now, or for this one command). */
export interface Redirection {
  readonly ask: boolean;
  readonly slot: number;
  readonly host: string;
  readonly port: number;
}

/**
 * A host named by a server (MOVED/ASK, CLUSTER SLOTS): a DNS name or an IPv4/IPv6 address, nothing else (no
 * spaces, no control bytes, no URL), at most 253 bytes.
 */
const HOST = /^[A-Za-z0-9._:%-]{1,253}$/;

/** Why a port, slot or host from a server cannot be used, or undefined when it can. */
export function nodeProblem(host: string, port: number, slot?: number): string | undefined {
  if (!HOST.test(host)) return `invalid host "${host.slice(0, 64).replace(/[^\x20-\x7e]/g, '?')}"`;
  if (!Number.isInteger(port) || port < 1 || port > 65535) return `port ${port} is not 1..65535`;
  if (slot !== undefined && (!Number.isInteger(slot) || slot < 0 || slot >= SLOTS)) return `slot ${slot} is not 0..${SLOTS - 1}`;
  return undefined;
}

/**
 * Reads `-MOVED 3999 127.0.0.1:6381` / `-ASK …` (IPv6 hosts keep their colons). Throws a CodecError
 * (`bad_redirection`) when it names a slot, port or host that cannot be: the server is broken or hostile.
 */
export function redirectionOf(raw: Buffer): Redirection | undefined {
  if (raw[0] !== 0x2d) return undefined;
  const text = raw.toString('latin1', 1, raw.indexOf(CR));
  const m = /^(MOVED|ASK) (\d{1,18}) (.*):(\d{1,18})$/.exec(text);
  if (!m) return undefined;
  const r = { ask: m[1] === 'ASK', slot: Number(m[2]), host: m[3]!, port: Number(m[4]) };
  const problem = nodeProblem(r.host, r.port, r.slot);
  if (problem !== undefined) throw new CodecError('bad_redirection', `${m[1]} names ${problem}`);
  return r;
}

/** Counts what a Redis Cluster's nodes sent that could not be used (set by the proxy that uses the map). */
export interface SlotMapSink {
  invalid(cluster: string, what: 'cluster_slots'): void;
}

/** The slot map of one cluster, and the endpoints of its nodes. */
export class SlotMap {
  private slots: Array<Endpoint | undefined> = new Array(SLOTS);
  /** Nodes that are not seeds, by `host:port`. */
  private readonly nodes = new Map<string, Endpoint>();
  private refreshing = false;
  private lastRefresh = 0;
  private used = false;
  private timer: NodeJS.Timeout | undefined;
  sink: SlotMapSink | undefined;

  constructor(private readonly cluster: Cluster) {}

  /** A throw in the refresh timer or in reading an answer: this refresh fails, the map in use stays. */
  contain(thrown: unknown): void {
    this.onSlotsFailed(thrown instanceof Error ? thrown.message : String(thrown));
  }

  /** The node serving `slot`, or a seed while the map does not know it yet. */
  endpointFor(slot: number): Endpoint | undefined {
    this.touch();
    return this.slots[slot] ?? this.cluster.pick(undefined, undefined);
  }

  /** The endpoint of a node named by a redirection (a seed's own when it is one). */
  node(host: string, port: number): Endpoint {
    const key = `${host}:${port}`;
    for (const e of this.cluster.endpoints) if (e.key === key) return e;
    let e = this.nodes.get(key);
    if (!e) {
      e = new Endpoint(host, port, {}, 1);
      this.nodes.set(key, e);
    }
    return e;
  }

  /** A MOVED answer: the slot lives elsewhere now; the whole map is read again soon. */
  moved(r: Redirection): Endpoint {
    const e = this.node(r.host, r.port);
    this.slots[r.slot] = e;
    this.refresh();
    return e;
  }

  private touch(): void {
    this.used = true;
    if (this.lastRefresh === 0) this.refresh();
    if (this.timer === undefined) {
      this.timer = setInterval(() => reenter(this, 'timer', () => this.tick()), REFRESH_MS);
      this.timer.unref();
    }
  }

  private tick(): void {
    if (this.cluster.endpoints.length === 0) {
      // The cluster is gone (or has no seeds): let go of the nodes' connections.
      this.dispose();
      return;
    }
    if (this.used) {
      this.used = false;
      this.refresh();
    }
  }

  /** Reads `CLUSTER SLOTS` from a seed (one read at a time, and not more often than MIN_REFRESH_GAP_MS). */
  refresh(): void {
    const now = Date.now();
    if (this.refreshing || now - this.lastRefresh < MIN_REFRESH_GAP_MS) return;
    const seed = this.cluster.pick(undefined, undefined);
    if (!seed) return;
    this.refreshing = true;
    this.lastRefresh = now;
    const req = new SlotsRequest(this);
    const conn = this.cluster.pool(seed, upstreamCodec(this.cluster, false), 'redis').send(req);
    if (!conn) this.refreshing = false;
  }

  /** The answer to CLUSTER SLOTS: `[[start, end, [host, port, id…], replicas…]…]`. */
  onSlots(raw: Buffer): void {
    this.refreshing = false;
    if (this.cluster.endpoints.length === 0) return; // the cluster went away while the answer was coming
    if (raw[0] !== ARRAY) {
      log.warn('redis cluster: CLUSTER SLOTS failed', { cluster: this.cluster.name, answer: raw.toString('utf8', 0, Math.min(raw.length, 200)).trim() });
      return;
    }
    const next: Array<Endpoint | undefined> = new Array(SLOTS);
    const seen = new Set<Endpoint>();
    try {
      let pos = raw.indexOf(CR) + 2;
      const ranges = parseInteger(raw, 1, pos - 2);
      if (!(ranges >= 0 && ranges <= SLOTS)) throw new CodecError('bad_cluster_slots', `${ranges} slot ranges`);
      // Validated whole before any node is made: one bad range fails the refresh, not half of it.
      const found: Array<[number, number, { host: string; port: number }]> = [];
      for (let i = 0; i < ranges; i++) {
        const end = skipValue(raw, pos);
        const [from, to, master] = readRange(raw, pos);
        pos = end;
        if (!(Number.isInteger(from) && Number.isInteger(to) && from >= 0 && from <= to && to < SLOTS)) {
          throw new CodecError('bad_cluster_slots', `slot range ${from}-${to} is not within 0..${SLOTS - 1}`);
        }
        if (master === undefined) continue;
        const problem = nodeProblem(master.host, master.port);
        if (problem !== undefined) throw new CodecError('bad_cluster_slots', `slots ${from}-${to}: ${problem}`);
        found.push([from, to, master]);
      }
      for (const [from, to, master] of found) {
        const e = this.node(master.host, master.port);
        seen.add(e);
        for (let s = from; s <= to; s++) next[s] = e;
      }
    } catch (err) {
      // Nothing of a bad answer is used: the map in use stays until a good one comes.
      this.sink?.invalid(this.cluster.name, 'cluster_slots');
      log.warnLimited(`redis_cluster_slots:${this.cluster.name}`, 'redis cluster: unusable CLUSTER SLOTS answer, keeping the slot map', {
        cluster: this.cluster.name,
        error: (err as Error).message,
      });
      return;
    }
    this.slots = next;
    for (const [key, e] of this.nodes) {
      if (!seen.has(e)) {
        this.nodes.delete(key);
        e.close();
      }
    }
  }

  onSlotsFailed(message: string): void {
    this.refreshing = false;
    log.warn('redis cluster: cannot read the slot map', { cluster: this.cluster.name, error: message });
  }

  dispose(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    for (const e of this.nodes.values()) e.close();
    this.nodes.clear();
    this.slots = new Array(SLOTS);
    this.lastRefresh = 0;
  }
}

/** `start, end, [host, port, …]` of one CLUSTER SLOTS range. */
function readRange(raw: Buffer, pos: number): [number, number, { host: string; port: number } | undefined] {
  const count = parseInteger(raw, pos + 1, raw.indexOf(CR, pos));
  let at = raw.indexOf(CR, pos) + 2;
  const ints: number[] = [];
  let master: { host: string; port: number } | undefined;
  for (let i = 0; i < count; i++) {
    const end = skipValue(raw, at);
    if (i < 2 && raw[at] === INTEGER) ints.push(parseInteger(raw, at + 1, raw.indexOf(CR, at)));
    else if (i === 2 && raw[at] === ARRAY) {
      const hAt = raw.indexOf(CR, at) + 2;
      if (raw[hAt] === BULK) {
        const hCr = raw.indexOf(CR, hAt);
        const len = parseInteger(raw, hAt + 1, hCr);
        const host = raw.toString('latin1', hCr + 2, hCr + 2 + len);
        const pAt = hCr + 2 + len + 2;
        if (raw[pAt] !== INTEGER) throw new CodecError('bad_cluster_slots', 'a node port that is not an integer');
        const port = parseInteger(raw, pAt + 1, raw.indexOf(CR, pAt));
        // An empty or `?` host: the node's address is not known (yet); its slots stay with the seed.
        if (host !== '' && host !== '?') master = { host, port };
      }
    }
    at = end;
  }
  if (ints.length < 2) throw new CodecError('bad_cluster_slots', 'a slot range without its start and end');
  return [ints[0]!, ints[1]!, master];
}

const CLUSTER_SLOTS = encodeCommand([Buffer.from('CLUSTER'), Buffer.from('SLOTS')]);

class SlotsRequest {
  readonly frame: Frame = { type: 'request', requestId: 0, raw: CLUSTER_SLOTS, metadata: { get: () => undefined, entries: () => [] } };
  readonly session = redisCodec.create({ maxFrameSize: Number.MAX_SAFE_INTEGER, side: 'downstream' });
  readonly mutation = undefined;
  readonly expectsResponse = true;
  readonly copyOnEncode = false;
  upstreamId = 0;

  constructor(private readonly map: SlotMap) {}

  onResponse(frame: Frame): void {
    reenter(this, 'response', () => this.map.onSlots(frame.raw));
  }

  onFailure(_kind: LocalReplyKind, message: string): void {
    this.map.onSlotsFailed(message);
  }

  /** A CLUSTER SLOTS answer that cannot be used fails this refresh only. */
  contain(thrown: unknown): void {
    this.map.onSlotsFailed(thrown instanceof Error ? thrown.message : String(thrown));
  }

  /** Unused: discovery is never batched. */
  attach(_conn: UpstreamConnection | undefined): void {}
}

const maps = new WeakMap<Cluster, SlotMap>();

export function slotMapOf(cluster: Cluster, sink?: SlotMapSink): SlotMap {
  let m = maps.get(cluster);
  if (!m) {
    m = new SlotMap(cluster);
    maps.set(cluster, m);
  }
  if (sink !== undefined) m.sink = sink;
  return m;
}

/** `ASKING`, sent right before a command redirected by ASK; its `+OK` is dropped. */
export const ASKING = encodeCommand([Buffer.from('ASKING')]);
