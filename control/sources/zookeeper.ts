/**
 * `waypost control --zookeeper HOST:PORT`: a Dubbo registry in ZooKeeper as ServiceEntries, as Aeraki's dubbo2istio
 * makes them (the rules are in ./dubbo-registry.ts).
 *
 * It watches `/dubbo` for interfaces and each `/dubbo/<interface>/providers` for providers (ZooKeeper child watches,
 * re-armed on every read), so a provider that registers — or whose ephemeral node goes with its session — changes
 * the documents as soon as ZooKeeper says so; the control plane then recompiles and pushes. Documents are named
 * `zookeeper://HOST:PORT/dubbo/<interface>` (index: the host's position among that interface's hosts).
 *
 * - A service whose providers have all left keeps its ServiceEntry, without endpoints, while `/dubbo/<interface>` is
 *   there: the MetaRouters and DestinationRules naming it stay valid, its listener stays, and calls fail at once
 *   ("no healthy upstream") instead of the config being rejected and the last providers kept.
 * - Waypost has no per-service VIPs: two Dubbo services whose listener port is the same would clash on the bind
 *   address, so the later host (in sorted order) is left out, and logged. (Interfaces exported by one Dubbo app on one
 *   port hit this; give them separate ports, or route them with one ServiceEntry written by hand.)
 * - While ZooKeeper is unreachable the last documents stay; after a reconnect (or a new session, when the old one
 *   expired) everything is read again.
 */
import { log } from '../../src/log.js';
import type { CrdDocument } from '../types.js';
import {
  parseProviderNode,
  providersToServices,
  serviceEntryDocument,
  serviceHost,
  type DubboProvider,
  type DubboService,
} from './dubbo-registry.js';
import type { DocumentSource } from './source.js';
import { createZkClient, zookeeperModule, type ZkClient, type ZkError, type ZkWatcher } from './zk-client.js';

/** Children of the registry root that are not interfaces (Dubbo's config center and metadata). */
const NOT_INTERFACES = new Set(['config', 'metadata', 'mapping']);

export interface ZookeeperSourceOptions {
  /** `HOST:PORT[,HOST:PORT…]` (a ZooKeeper ensemble). */
  address: string;
  /** The registry root (default `/dubbo`, Dubbo's default group). */
  root?: string;
  /** The `registryName` label of the endpoints (default `default`, as dubbo2istio). */
  registryName?: string;
  /** Namespace of ServiceEntries whose providers do not set `aeraki_meta_app_namespace` (default `default`). */
  defaultNamespace?: string;
  /** ZooKeeper session timeout (default 30 s). */
  sessionTimeoutMs?: number;
  /** `start` resolves once the registry is read, or after this long (default 10 s) with nothing yet. */
  startTimeoutMs?: number;
}

export class ZookeeperSource implements DocumentSource {
  readonly name: string;
  private readonly root: string;
  private client: ZkClient | undefined;
  /** Interface znode → its provider znodes ([] when it has no providers/ node). */
  private readonly interfaces = new Map<string, string[]>();
  /** Host → what is needed to keep serving it with no providers, and its listener port. */
  private readonly hosts = new Map<string, { znode: string; interface: string; namespace: string; port: number }>();
  private readonly seq = new Map<string, number>();
  private readonly providerWatchers = new Map<string, ZkWatcher>();
  private readonly rootWatcher: ZkWatcher = () => this.guard(this.readRoot(false), `${this.root}`);
  private docs: CrdDocument[] = [];
  private fingerprint = '';
  private counts = new Map<string, number>();
  private skipped = new Set<string>();
  private clashes = new Set<string>();
  private onChange: (() => void) | undefined;
  private firstSync: (() => void) | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Sessions that reached SYNC_CONNECTED (a new one follows an expired one). */
  private sessions = 0;

  constructor(private readonly opts: ZookeeperSourceOptions) {
    if (!/^[^,\s]+:\d+(,[^,\s]+:\d+)*(\/.*)?$/.test(opts.address)) throw new Error(`zookeeper address must be HOST:PORT[,HOST:PORT…], not "${opts.address}"`);
    this.root = (opts.root ?? '/dubbo').replace(/\/+$/, '') || '/';
    this.name = `zookeeper ${opts.address}`;
  }

  async start(onChange: () => void): Promise<void> {
    this.onChange = onChange;
    const synced = new Promise<void>((r) => (this.firstSync = r));
    this.connect();
    const timeoutMs = this.opts.startTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const ok = await Promise.race([synced.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))]);
    clearTimeout(timer);
    if (!ok) log.warn(`zookeeper: ${this.opts.address} not read after ${timeoutMs} ms; starting without its services, they follow when it answers`);
    else log.info('zookeeper: registry read', { address: this.opts.address, interfaces: this.interfaces.size, services: this.docs.length });
  }

  documents(): readonly CrdDocument[] {
    return this.docs;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.client?.close();
    this.client = undefined;
  }

  // ---- ZooKeeper session ----------------------------------------------------------------------------------------

  private connect(): void {
    const client = createZkClient(this.opts.address, {
      sessionTimeout: this.opts.sessionTimeoutMs ?? 30_000,
      spinDelay: 1000,
      retries: 0,
    });
    this.client = client;
    client.on('protocolError', (err: Error) => {
      if (client === this.client && !this.closed) log.warn(`zookeeper: undecodable data from the server (${err.message}); reconnecting`, { address: this.opts.address });
    });
    let wasConnected = false;
    client.on('state', (state: { name: string }) => {
      if (client !== this.client || this.closed) return;
      switch (state.name) {
        case 'SYNC_CONNECTED':
          if (wasConnected) log.info('zookeeper: reconnected; reading the registry again', { address: this.opts.address });
          else if (this.sessions > 0) log.info('zookeeper: reconnected with a new session; reading the registry again', { address: this.opts.address });
          else log.info('zookeeper: connected', { address: this.opts.address });
          wasConnected = true;
          this.sessions++;
          this.guard(this.readRoot(true), this.root);
          break;
        case 'DISCONNECTED':
          log.warn('zookeeper: disconnected; keeping the last providers until it is back', { address: this.opts.address });
          break;
        case 'EXPIRED':
          log.warn('zookeeper: session expired; connecting with a new one', { address: this.opts.address });
          client.close();
          this.connect();
          break;
        case 'AUTH_FAILED':
          log.error('zookeeper: authentication failed', { address: this.opts.address });
          break;
      }
    });
    client.connect();
  }

  /** Runs a read; when it fails (connection loss…) the whole registry is read again a second later. */
  private guard(p: Promise<void>, what: string): void {
    p.catch((err: Error) => {
      if (this.closed) return;
      log.warn(`zookeeper: cannot read ${what}: ${err.message}; reading the registry again in 1 s`);
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => {
        if (!this.closed && this.client?.getState().name === 'SYNC_CONNECTED') this.guard(this.readRoot(true), this.root);
      }, 1000);
    });
  }

  /** The children of `path`, watching it; null when it does not exist (then its creation is watched). */
  private async children(path: string, watcher: ZkWatcher): Promise<string[] | null> {
    const client = this.client;
    if (!client) throw new Error('not connected');
    const NO_NODE = zookeeperModule().Exception.NO_NODE;
    for (;;) {
      const got = await new Promise<string[] | null>((resolve, reject) => {
        client.getChildren(path, watcher, (err: ZkError | null, children: string[]) => {
          if (!err) resolve(children);
          else if (err.getCode() === NO_NODE) resolve(null);
          else reject(err);
        });
      });
      if (got) return got;
      const exists = await new Promise<boolean>((resolve, reject) => {
        client.exists(path, watcher, (err, stat) => (err ? reject(err) : resolve(stat !== null)));
      });
      if (!exists) return null; // its creation fires `watcher`
    }
  }

  private nextSeq(path: string): number {
    const n = (this.seq.get(path) ?? 0) + 1;
    this.seq.set(path, n);
    return n;
  }

  private async readRoot(all: boolean): Promise<void> {
    const seq = this.nextSeq(this.root);
    const children = await this.children(this.root, this.rootWatcher);
    if (this.closed || seq !== this.seq.get(this.root)) return;
    const present = new Set((children ?? []).filter((n) => !NOT_INTERFACES.has(n)));
    const reads: Array<Promise<void>> = [];
    for (const iface of present) {
      if (all || !this.interfaces.has(iface)) {
        if (!this.interfaces.has(iface)) this.interfaces.set(iface, []);
        reads.push(this.readProviders(iface));
      }
    }
    for (const iface of [...this.interfaces.keys()]) {
      if (present.has(iface)) continue;
      this.interfaces.delete(iface);
      this.providerWatchers.delete(iface);
      for (const [host, h] of this.hosts) if (h.znode === iface) this.hosts.delete(host);
    }
    await Promise.all(reads);
    this.update();
    if (all) this.firstSync?.();
  }

  private async readProviders(iface: string): Promise<void> {
    const path = `${this.root === '/' ? '' : this.root}/${iface}/providers`;
    let watcher = this.providerWatchers.get(iface);
    if (!watcher) {
      watcher = () => this.guard(this.readProviders(iface), path);
      this.providerWatchers.set(iface, watcher);
    }
    const seq = this.nextSeq(path);
    const nodes = await this.children(path, watcher);
    if (this.closed || seq !== this.seq.get(path) || !this.interfaces.has(iface)) return;
    this.interfaces.set(iface, nodes ?? []);
    this.update();
  }

  // ---- documents ------------------------------------------------------------------------------------------------

  private update(): void {
    const docs = this.build();
    const fingerprint = JSON.stringify(docs);
    if (fingerprint === this.fingerprint) return;
    this.docs = docs;
    this.fingerprint = fingerprint;
    this.onChange?.();
  }

  private build(): CrdDocument[] {
    const providers: DubboProvider[] = [];
    const znodeOf = new Map<string, string>();
    const skipped = new Set<string>();
    for (const [iface, nodes] of [...this.interfaces.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      for (const node of [...nodes].sort()) {
        const p = parseProviderNode(node, (why) => {
          const msg = `zookeeper: ignoring provider ${iface}/providers/${node}: ${why}`;
          skipped.add(msg);
          if (!this.skipped.has(msg)) log.warn(msg);
        });
        if (!p) continue;
        providers.push(p);
        const host = serviceHost(p.interface, p.params);
        if (!znodeOf.has(host)) znodeOf.set(host, iface);
      }
    }
    const known = new Map([...this.hosts].map(([h, v]) => [h, v.port]));
    const services = providersToServices(providers, {
      registryName: this.opts.registryName ?? 'default',
      defaultNamespace: this.opts.defaultNamespace ?? 'default',
      known,
      skip: (p, why) => {
        const msg = `zookeeper: ignoring provider ${p.ip}:${p.port} of ${p.interface}: ${why}`;
        skipped.add(msg);
        if (!this.skipped.has(msg)) log.warn(msg);
      },
    });
    this.skipped = skipped;

    const byHost = new Map<string, DubboService>(services.map((s) => [s.host, s]));
    // Services whose providers all left: kept without endpoints while their interface is registered.
    for (const [host, h] of this.hosts) {
      if (byHost.has(host)) continue;
      if (this.interfaces.has(h.znode)) byHost.set(host, { host, interface: h.interface, namespace: h.namespace, port: h.port, endpoints: [] });
      else this.hosts.delete(host);
    }

    const ports = new Map<number, string>();
    const clashes = new Set<string>();
    const perFile = new Map<string, number>();
    const docs: CrdDocument[] = [];
    const counts = new Map<string, number>();
    for (const svc of [...byHost.values()].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0))) {
      const owner = ports.get(svc.port);
      if (owner) {
        const msg = `zookeeper: ${svc.host} is not served: its port ${svc.port} is already the listener of ${owner} (Waypost has no per-service VIPs)`;
        clashes.add(msg);
        if (!this.clashes.has(msg)) log.error(msg);
        this.hosts.delete(svc.host); // not given a listener port, so none to keep
        continue;
      }
      ports.set(svc.port, svc.host);
      const znode = znodeOf.get(svc.host) ?? this.hosts.get(svc.host)!.znode;
      this.hosts.set(svc.host, { znode, interface: svc.interface, namespace: svc.namespace, port: svc.port });
      const file = `zookeeper://${this.opts.address}${this.root === '/' ? '' : this.root}/${znode}`;
      const index = perFile.get(file) ?? 0;
      perFile.set(file, index + 1);
      docs.push(serviceEntryDocument(svc, file, index));
      counts.set(svc.host, svc.endpoints.length);
      if (this.counts.get(svc.host) !== svc.endpoints.length) {
        log.info(`zookeeper: ${svc.host} has ${svc.endpoints.length} provider(s)`, {
          port: svc.port,
          providers: svc.endpoints.map((e) => `${e.address}:${Object.values(e.ports ?? {})[0]}`).join(',') || 'none',
        });
      }
    }
    this.clashes = clashes;
    this.counts = counts;
    return docs;
  }
}
