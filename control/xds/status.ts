/**
 * What each connected (and recently disconnected) node was sent and answered, per type URL — the control plane's
 * `GET /debug/syncz`. A node is keyed by its xDS node id; its records survive a reconnect, so a NACK stays visible.
 */
import type { NodeMessage } from '../../src/xds/ads.js';

export interface SentRecord {
  version: string;
  nonce: string;
  at: string;
  /** Resources in the response (delta: added or changed ones). */
  resources: number;
  /** Delta only: names in removed_resources. */
  removed?: number;
}

export interface AckRecord {
  version: string;
  nonce: string;
  at: string;
}

export interface NackRecord {
  /** The version the client rejected. */
  version: string;
  nonce: string;
  message: string;
  at: string;
}

export interface TypeSync {
  /** `*` for a wildcard subscription, else the names. */
  subscribed: string[] | '*';
  last_sent: SentRecord | null;
  last_acked: AckRecord | null;
  last_nack: NackRecord | null;
  /** Whether the client has ACKed the last version sent. */
  synced: boolean;
}

export interface NodeSync {
  node_id: string;
  cluster: string;
  user_agent: string;
  protocol: 'sotw' | 'delta';
  connected: boolean;
  /** Ids of the node's open streams. */
  streams: number[];
  connected_at: string;
  disconnected_at: string | null;
  types: Record<string, TypeSync>;
}

const MAX_DISCONNECTED = 500;

export class SyncStatus {
  private readonly nodes = new Map<string, NodeSync>();

  connected(node: NodeMessage, streamId: number, protocol: 'sotw' | 'delta'): void {
    let n = this.nodes.get(node.id);
    if (!n) {
      n = {
        node_id: node.id,
        cluster: node.cluster ?? '',
        user_agent: [node.user_agent_name, node.user_agent_version].filter(Boolean).join('/'),
        protocol,
        connected: true,
        streams: [],
        connected_at: now(),
        disconnected_at: null,
        types: {},
      };
      this.nodes.set(node.id, n);
    }
    n.protocol = protocol;
    n.connected = true;
    n.connected_at = now();
    n.disconnected_at = null;
    if (!n.streams.includes(streamId)) n.streams.push(streamId);
  }

  disconnected(nodeId: string, streamId: number): void {
    const n = this.nodes.get(nodeId);
    if (!n) return;
    n.streams = n.streams.filter((s) => s !== streamId);
    if (n.streams.length === 0) {
      n.connected = false;
      n.disconnected_at = now();
      this.prune();
    }
  }

  subscribed(nodeId: string, typeUrl: string, names: string[] | '*'): void {
    const t = this.type(nodeId, typeUrl);
    if (t) t.subscribed = names;
  }

  sent(nodeId: string, typeUrl: string, r: Omit<SentRecord, 'at'>): void {
    const t = this.type(nodeId, typeUrl);
    if (!t) return;
    t.last_sent = { ...r, at: now() };
    t.synced = false;
  }

  ack(nodeId: string, typeUrl: string, r: Omit<AckRecord, 'at'>): void {
    const t = this.type(nodeId, typeUrl);
    if (!t) return;
    t.last_acked = { ...r, at: now() };
    t.synced = t.last_sent === null || t.last_sent.version === r.version;
  }

  nack(nodeId: string, typeUrl: string, r: Omit<NackRecord, 'at'>): void {
    const t = this.type(nodeId, typeUrl);
    if (!t) return;
    t.last_nack = { ...r, at: now() };
    t.synced = false;
  }

  /** One node's record (a copy). */
  node(nodeId: string): NodeSync | undefined {
    const n = this.nodes.get(nodeId);
    return n ? (JSON.parse(JSON.stringify(n)) as NodeSync) : undefined;
  }

  /** Every node, connected ones first, then by id. */
  list(): NodeSync[] {
    return [...this.nodes.values()]
      .sort((a, b) => Number(b.connected) - Number(a.connected) || a.node_id.localeCompare(b.node_id))
      .map((n) => JSON.parse(JSON.stringify(n)) as NodeSync);
  }

  private type(nodeId: string, typeUrl: string): TypeSync | undefined {
    const n = this.nodes.get(nodeId);
    if (!n) return undefined;
    return (n.types[typeUrl] ??= { subscribed: [], last_sent: null, last_acked: null, last_nack: null, synced: false });
  }

  private prune(): void {
    const gone = [...this.nodes.values()].filter((n) => !n.connected);
    if (gone.length <= MAX_DISCONNECTED) return;
    gone.sort((a, b) => (a.disconnected_at ?? '').localeCompare(b.disconnected_at ?? ''));
    for (const n of gone.slice(0, gone.length - MAX_DISCONNECTED)) this.nodes.delete(n.node_id);
  }
}

function now(): string {
  return new Date().toISOString();
}
