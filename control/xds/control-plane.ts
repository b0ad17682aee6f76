/**
 * `waypost control`: compiles the CRD files (control/compile.ts), serves the result over ADS (./server.ts), and
 * recompiles when the files change (src/config-watch.ts). An invalid change is logged with every error and pushes
 * nothing: the last good snapshot keeps being served. The admin HTTP API serves `/ready` and `/debug/syncz`.
 */
import http from 'node:http';
import { adminGuard, redactSecrets } from '../../src/admin-guard.js';
import { ConfigWatcher } from '../../src/config-watch.js';
import { log } from '../../src/log.js';
import { grpcAddress, type XdsAddress } from '../../src/xds/options.js';
import { TYPE_SHORT } from '../../src/xds/protos.js';
import type { ResourceSnapshot } from '../../src/xds/resources.js';
import type { DocumentSource } from '../sources/source.js';
import { compile } from '../compile.js';
import { XdsServer, type XdsServerOptions } from './server.js';

export { DEFAULT_CONTROL_ADMIN } from './defaults.js';

export interface ControlPlaneOptions extends XdsServerOptions {
  /** CRD files or directories. */
  paths: string[];
  /** `host:port` (port 0 picks one) or a Unix socket path. */
  xds: XdsAddress;
  /** Admin HTTP address; undefined: none. */
  admin?: { host: string; port: number };
  /** Listener address for ServiceEntries without addresses (translate's `bind`). */
  bind?: string;
  knownCodecs?: string[];
  /** Config file poll interval (default 200 ms). */
  watchIntervalMs?: number;
  /** Other CRD sources (Kubernetes, Zookeeper), merged with the files. */
  sources?: DocumentSource[];
}

export interface ControlPlane {
  readonly server: XdsServer;
  readonly xdsPort: number;
  /** `host:port` of the admin API, when enabled. */
  readonly adminAddress: string | undefined;
  /** The snapshot being served. */
  readonly snapshot: ResourceSnapshot | undefined;
  /** Recompiles now; resolves false when the config was rejected. */
  reload(): Promise<boolean>;
  close(): Promise<void>;
}

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const server = new XdsServer(opts);
  let snapshot: ResourceSnapshot | undefined;
  let listening = false;

  const load = async (initial: boolean): Promise<boolean> => {
    const extraDocuments = (opts.sources ?? []).flatMap((src) => src.documents());
    const result = await compile(opts.paths, { bind: opts.bind, knownCodecs: opts.knownCodecs, extraDocuments });
    for (const w of result.warnings) log.warn(w);
    if (!result.snapshot) {
      for (const e of result.errors) log.error(`invalid config: ${e.format()}`);
      log.error(
        initial
          ? 'no valid config to serve yet; fix it and it will be picked up'
          : `config change rejected; still serving version ${snapshot?.version ?? '(none)'}`,
      );
      return false;
    }
    try {
      const changed = server.setSnapshot(result.snapshot);
      const previous = snapshot?.version;
      snapshot = result.snapshot;
      if (changed.length > 0 || initial) {
        log.info('serving config', {
          version: snapshot.version,
          previous,
          changed: changed.map((t) => `${TYPE_SHORT[t] ?? t}@${server.versions()[t]}`).join(',') || 'none',
        });
      }
      return true;
    } catch (err) {
      log.error(`config cannot be served: ${(err as Error).message}; still serving version ${snapshot?.version ?? '(none)'}`);
      return false;
    }
  };

  // Sources report changes in bursts (a watch replaying a list, many providers registering): recompile once per burst.
  let pending: NodeJS.Timeout | undefined;
  const sourceChanged = (): void => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = undefined;
      void load(false);
    }, 100);
  };
  for (const src of opts.sources ?? []) await src.start(sourceChanged);
  await load(true);
  const xdsPort = await server.listen(opts.xds);
  listening = true;
  log.info('xds listening', { address: opts.xds.path !== undefined ? grpcAddress(opts.xds) : grpcAddress({ host: opts.xds.host, port: xdsPort }) });

  const watcher = new ConfigWatcher(
    opts.paths,
    async () => {
      log.info('config files changed, recompiling');
      await load(false);
    },
    opts.watchIntervalMs,
  );
  await watcher.start();

  let admin: http.Server | undefined;
  let adminAddress: string | undefined;
  if (opts.admin) {
    admin = await startControlAdmin(server, opts.admin.host, opts.admin.port, {
      ready: () => listening && snapshot !== undefined,
      snapshot: () => snapshot,
    });
    const a = admin.address();
    adminAddress = a && typeof a === 'object' ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : String(a);
  }

  return {
    server,
    xdsPort,
    adminAddress,
    get snapshot() {
      return snapshot;
    },
    reload: () => load(false),
    async close() {
      watcher.stop();
      if (pending) clearTimeout(pending);
      await Promise.all((opts.sources ?? []).map((src) => src.close()));
      listening = false;
      server.close();
      if (admin) await new Promise<void>((r) => admin!.close(() => r()));
    },
  };
}

/** The control plane's admin API: `/ready`, `/debug/syncz`, `/config_dump`. Read-only. */
export async function startControlAdmin(
  server: XdsServer,
  host: string,
  port: number,
  state: { ready: () => boolean; snapshot: () => ResourceSnapshot | undefined },
): Promise<http.Server> {
  // Host check and read-only (src/admin-guard.ts); the resources dumped have their secrets redacted.
  const guard = adminGuard(host);
  const httpServer = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(redactSecrets(body), null, 2) + '\n');
    };
    if (guard(req, res)) return;
    switch (path) {
      case '/ready': {
        const ok = state.ready();
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(ok ? 'LIVE\n' : 'NOT READY\n');
        return;
      }
      case '/debug/syncz':
        json(200, { version: server.snapshotVersion ?? null, types: server.versions(), nodes: server.status.list() });
        return;
      case '/config_dump':
        json(200, { version: server.snapshotVersion ?? null, types: server.versions(), resources: state.snapshot() ?? null });
        return;
      case '/':
        json(200, { endpoints: ['/ready', '/debug/syncz', '/config_dump'] });
        return;
      default:
        json(404, { error: `no admin endpoint ${path}` });
    }
  });
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen({ host, port }, () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  const a = httpServer.address();
  log.info('control admin listening', { address: a && typeof a === 'object' ? `${a.address}:${a.port}` : String(a) });
  return httpServer;
}
