/**
 * Both planes as child processes for the end-to-end xDS suites: `waypost control` (the built CLI) on a config
 * directory, `waypost proxy --xds` fed by it, and what their admin APIs say — the control plane's `/debug/syncz`
 * (per node and type: last sent, last ACKed, last NACK) and the proxy's `/config_dump`.
 */
import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { httpGet } from '../../examples/dubbo/harness.js';
import { TYPE_CLUSTER, TYPE_ENDPOINTS, TYPE_LISTENER, TYPE_META_ROUTE } from '../../src/xds/resources.js';
import { spawnCli, until, type CliProcess } from './helpers.js';

/** The four types the data plane subscribes to, in the order of its `/config_dump` version. */
export const DATA_PLANE_TYPES = [
  ['CDS', TYPE_CLUSTER],
  ['EDS', TYPE_ENDPOINTS],
  ['LDS', TYPE_LISTENER],
  ['RDS', TYPE_META_ROUTE],
] as const;

export interface SentRecord {
  version: string;
  nonce: string;
  resources: number;
}
export interface AckRecord {
  version: string;
  nonce: string;
}
export interface NackRecord {
  version: string;
  nonce: string;
  message: string;
}
export interface TypeSync {
  subscribed: string[] | '*';
  last_sent: SentRecord | null;
  last_acked: AckRecord | null;
  last_nack: NackRecord | null;
  synced: boolean;
}
export interface NodeSync {
  node_id: string;
  connected: boolean;
  streams: number[];
  types: Record<string, TypeSync>;
}
export interface Syncz {
  version: string | null;
  /** Served version per type URL. */
  types: Record<string, string>;
  nodes: NodeSync[];
}

export async function syncz(controlAdmin: string): Promise<Syncz> {
  const r = await httpGet(controlAdmin, '/debug/syncz');
  if (r.status !== 200) throw new Error(`/debug/syncz answered ${r.status}: ${r.body}`);
  return JSON.parse(r.body) as Syncz;
}

export async function nodeSync(controlAdmin: string, nodeId: string): Promise<{ node: NodeSync | undefined; served: Record<string, string> }> {
  const s = await syncz(controlAdmin);
  return { node: s.nodes.find((n) => n.node_id === nodeId), served: s.types };
}

/**
 * Whether `node` is connected and has ACKed the served version of every type it subscribes to (of the four a data
 * plane uses), with nothing sent after that ACK.
 */
export function isSynced(node: NodeSync | undefined, served: Record<string, string>): boolean {
  if (!node?.connected) return false;
  let seen = 0;
  for (const [, t] of DATA_PLANE_TYPES) {
    const ts = node.types[t];
    if (!ts || served[t] === undefined) continue;
    seen++;
    if (ts.last_acked?.version !== served[t]) return false;
    if (ts.last_sent && ts.last_sent.version !== served[t]) return false;
  }
  return seen >= 2; // at least LDS and CDS
}

/** Waits until `nodeId` has ACKed everything the control plane serves; returns that syncz view. */
export async function waitSynced(controlAdmin: string, nodeId: string, what: string, timeoutMs = 10_000): Promise<{ node: NodeSync; served: Record<string, string> }> {
  return until(async () => {
    const s = await nodeSync(controlAdmin, nodeId);
    return isSynced(s.node, s.served) ? (s as { node: NodeSync; served: Record<string, string> }) : undefined;
  }, what, timeoutMs, 25);
}

/** The proxy's `/config_dump` version (`CDS:<v>,EDS:<v>,LDS:<v>,RDS:<v>`, the versions applied) and when it applied it. */
export async function proxyApplied(proxyAdmin: string): Promise<{ version: string | null; applied_at: string | null }> {
  const r = await httpGet(proxyAdmin, '/config_dump');
  return JSON.parse(r.body) as { version: string | null; applied_at: string | null };
}

/** The `/config_dump` version a proxy has once it applied what the control plane serves (types it uses only). */
export function expectedProxyVersion(served: Record<string, string>, node: NodeSync): string {
  return DATA_PLANE_TYPES.map(([short, t]) => `${short}:${node.types[t] ? (served[t] ?? '') : ''}`).join(',');
}

/** Replaces a config file by rename (a watcher never reads it half-written). */
export function writeAtomically(dir: string, name: string, text: string): void {
  const tmp = path.join(dir, `.${name}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path.join(dir, name));
}

export interface ControlOptions {
  configDir: string;
  xdsPort: number;
  adminPort: number;
  codecs?: string[];
}

/** `waypost control` on `configDir`, waited for until its `/ready` answers 200. */
export async function startControl(o: ControlOptions): Promise<CliProcess> {
  const admin = `127.0.0.1:${o.adminPort}`;
  const args = ['control', '--config', o.configDir, '--xds-listen', `127.0.0.1:${o.xdsPort}`, '--admin', admin];
  for (const c of o.codecs ?? []) args.push('--codec', c);
  const cp = await spawnCli(args);
  try {
    await until(async () => (await httpGet(admin, '/ready')).status === 200, 'the control plane to be ready', 15_000, 25);
  } catch (err) {
    await cp.stop();
    throw new Error(`${(err as Error).message}\n--- control:\n${cp.output()}`);
  }
  return cp;
}

/** `waypost proxy --xds 127.0.0.1:<xdsPort> --node <node>`, waited for until its `/ready` answers 200. */
export async function startXdsProxy(o: { xdsPort: number; adminPort: number; node: string; extra?: string[] }): Promise<CliProcess> {
  const admin = `127.0.0.1:${o.adminPort}`;
  const p = await spawnCli(['proxy', '--xds', `127.0.0.1:${o.xdsPort}`, '--node', o.node, '--admin', admin, ...(o.extra ?? [])]);
  try {
    await until(async () => (await httpGet(admin, '/ready')).status === 200, 'the proxy to be ready', 15_000, 25);
  } catch (err) {
    await p.stop();
    throw new Error(`${(err as Error).message}\n--- proxy:\n${p.output()}`);
  }
  return p;
}
