import type http from 'node:http';
import { parseArgs } from 'node:util';
import { compile } from '../control/index.js';
import type { DocumentSource } from '../control/sources/source.js';
import { DEFAULT_CONTROL_ADMIN } from '../control/xds/defaults.js';
import { startAdmin } from './admin.js';
import { createRegistry } from './builtin-codecs.js';
import type { CodecRegistry } from './codec-registry.js';
import { ConfigWatcher } from './config-watch.js';
import { log, setLogLevel } from './log.js';
import { isWorker, runPrimary, serveWorker } from './workers.js';
import { ConfigRejectedError, Proxy } from './proxy.js';
import { defaultNodeId, splitHostPort } from './xds/options.js';

/** `waypost` — the command line (CONTRACT §1). Exit codes: 0 ok, 1 invalid input, 2 usage. */

const USAGE = `Usage: waypost <command> [options]

Commands:
  proxy --config PATH...      run the data plane from CRD YAML files or directories (watched)
  proxy --xds HOST:PORT       run the data plane from an xDS server (ADS over gRPC)
  control --config PATH... --xds-listen HOST:PORT
                              serve the CRDs' xDS resources over gRPC ADS (files watched)
    [--kubernetes [--kubeconfig PATH]]   also the CRDs, Services and EndpointSlices of a Kubernetes API server
    [--zookeeper HOST:PORT]              also the Dubbo providers registered in ZooKeeper (as ServiceEntries)
  validate PATH...            check CRDs; one line per problem: file:doc: Kind/name: field.path: what is wrong
  translate PATH...           print the xDS resources (JSON) the CRDs produce

Common options:
  --admin HOST:PORT|off       admin API address (default 127.0.0.1:15000; control: 127.0.0.1:15014)
  --node ID                   proxy --xds: the xDS node id (default waypost~<hostname>~<pid>)
  --codec MODULE              load a user codec module (repeatable)
  --bind ADDRESS              address for ServiceEntries without addresses (default 127.0.0.1)
  --max-frame-size BYTES      largest frame accepted (default 8388608)
  --workers N                 proxy: event loops (processes) sharing the listeners (default 1)
  --log-level LEVEL           error, warn, info (default), debug
  --help                      this text
`;

class UsageError extends Error {}

const OPTIONS = {
  config: { type: 'string', multiple: true },
  admin: { type: 'string' },
  codec: { type: 'string', multiple: true },
  bind: { type: 'string' },
  'max-frame-size': { type: 'string' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  xds: { type: 'string' },
  node: { type: 'string' },
  'xds-listen': { type: 'string' },
  kubernetes: { type: 'boolean' },
  kubeconfig: { type: 'string' },
  zookeeper: { type: 'string' },
  workers: { type: 'string' },
} as const;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE);
    return command ? 0 : 2;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values['log-level']) {
    try {
      setLogLevel(values['log-level']);
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  const registry = createRegistry();
  for (const m of values.codec ?? []) {
    try {
      const loaded = await registry.load(m);
      log.info('codec loaded', { module: m, codecs: loaded.map((c) => c.name).join(',') });
    } catch (err) {
      process.stderr.write(`waypost: cannot load codec module ${m}: ${(err as Error).message}\n`);
      return 1;
    }
  }
  const paths = [...(values.config ?? []), ...positionals];
  const bind = values.bind ?? '127.0.0.1';
  switch (command) {
    case 'validate':
    case 'translate': {
      if (paths.length === 0) throw new UsageError(`${command} needs at least one PATH`);
      const result = await compile(paths, { bind, knownCodecs: registry.names() });
      for (const w of result.warnings) process.stderr.write(`warning: ${w}\n`);
      if (result.errors.length > 0 || !result.snapshot) {
        for (const e of result.errors) process.stdout.write(e.format() + '\n');
        return 1;
      }
      if (command === 'translate') process.stdout.write(JSON.stringify(result.snapshot, null, 2) + '\n');
      else process.stdout.write(`ok: ${paths.join(' ')} (config version ${result.snapshot.version})\n`);
      return 0;
    }
    case 'proxy': {
      if (values['xds-listen'] !== undefined) throw new UsageError('--xds-listen is an option of control (proxy takes --xds)');
      if (values.kubernetes || values.kubeconfig !== undefined || values.zookeeper !== undefined) {
        throw new UsageError('--kubernetes, --kubeconfig and --zookeeper are options of control: run `waypost control` and point proxies at it with --xds');
      }
      if (values.xds !== undefined && paths.length > 0) throw new UsageError('proxy takes either --config PATH... or --xds HOST:PORT, not both');
      if (values.xds === undefined && values.node !== undefined) throw new UsageError('--node goes with --xds');
      if (values.xds !== undefined && values.bind !== undefined) {
        throw new UsageError('--bind goes with --config (with --xds, listener addresses come from the control plane)');
      }
      if (values.xds === undefined && paths.length === 0) {
        throw new UsageError('proxy needs --config PATH (files or directories of CRD YAML) or --xds HOST:PORT');
      }
      const maxFrameSize = values['max-frame-size'] ? Number(values['max-frame-size']) : undefined;
      if (maxFrameSize !== undefined && !(Number.isInteger(maxFrameSize) && maxFrameSize > 16)) {
        throw new UsageError('--max-frame-size must be a positive integer number of bytes');
      }
      const workers = values.workers === undefined ? 1 : Number(values.workers);
      if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new UsageError('--workers wants a whole number from 1 to 64');
      let admin = values.admin ?? '127.0.0.1:15000';
      if (workers > 1 && !isWorker()) {
        // The primary only forks and serves the admin API; every worker runs this same command without an admin.
        const adminAddress = admin === 'off' ? undefined : usageCheck(() => splitHostPort(admin, '--admin'));
        return runPrimary(workers, [...process.argv.slice(2), '--admin', 'off'], adminAddress);
      }
      const onProxy = isWorker() ? serveWorker : undefined;
      if (isWorker()) admin = 'off';
      if (values.xds !== undefined) {
        usageCheck(() => splitHostPort(values.xds!, '--xds'));
        if (values.node === '') throw new UsageError('--node must not be empty');
        return runXdsProxy(values.xds, { node: values.node ?? defaultNodeId(), admin, registry, maxFrameSize, onProxy });
      }
      return runProxy(paths, { bind, admin, registry, maxFrameSize, onProxy });
    }
    case 'control': {
      if (values.xds !== undefined || values.node !== undefined) throw new UsageError('--xds and --node are options of proxy (control takes --xds-listen)');
      if (values.kubeconfig !== undefined && !values.kubernetes) throw new UsageError('--kubeconfig goes with --kubernetes');
      if (values.zookeeper !== undefined && !/^[^,\s]+:\d+(,[^,\s]+:\d+)*(\/\S*)?$/.test(values.zookeeper)) {
        throw new UsageError(`--zookeeper wants HOST:PORT[,HOST:PORT…], not "${values.zookeeper}"`);
      }
      if (paths.length === 0 && !values.kubernetes && values.zookeeper === undefined) {
        throw new UsageError('control needs --config PATH (files or directories of CRD YAML), --kubernetes or --zookeeper HOST:PORT');
      }
      if (values['xds-listen'] === undefined) throw new UsageError('control needs --xds-listen HOST:PORT (the gRPC ADS address)');
      const xds = usageCheck(() => splitHostPort(values['xds-listen']!, '--xds-listen'));
      const adminText = values.admin ?? DEFAULT_CONTROL_ADMIN;
      const admin = adminText === 'off' ? undefined : usageCheck(() => splitHostPort(adminText, '--admin'));
      const sources = await controlSources({ kubernetes: values.kubernetes ?? false, kubeconfig: values.kubeconfig, zookeeper: values.zookeeper });
      if (!sources) return 1;
      return runControl(paths, { xds, admin, bind, knownCodecs: registry.names(), sources });
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

function usageCheck<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

async function startProxyAdmin(proxy: Proxy, address: string): Promise<http.Server | undefined> {
  if (address === 'off') return undefined;
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m) throw new UsageError(`--admin wants HOST:PORT or off, not "${address}"`);
  return startAdmin(proxy, m[1]!.replace(/^\[|\]$/g, ''), Number(m[2]));
}

/** `waypost proxy --xds`: the data plane fed by an xDS server (src/xds/client.ts). */
async function runXdsProxy(
  server: string,
  opts: { node: string; admin: string; registry: CodecRegistry; maxFrameSize: number | undefined; onProxy: ((p: Proxy) => void) | undefined },
): Promise<number> {
  const proxy = new Proxy({ codecs: opts.registry, maxFrameSize: opts.maxFrameSize });
  opts.onProxy?.(proxy);
  const admin = await startProxyAdmin(proxy, opts.admin);
  const { XdsClient } = await import('./xds/client.js'); // gRPC is loaded only for --xds
  const client = new XdsClient({ server, proxy, nodeId: opts.node });
  log.info('xds client starting', { server, node: client.nodeId });
  client.start();
  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      log.info('shutting down', { signal });
      void client
        .close()
        .then(() => {
          admin?.close();
          return proxy.close();
        })
        .then(() => resolve(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

/** `control --kubernetes` / `--zookeeper`: the document sources (control/sources/); undefined (logged) when one cannot be set up. */
async function controlSources(opts: { kubernetes: boolean; kubeconfig: string | undefined; zookeeper: string | undefined }): Promise<DocumentSource[] | undefined> {
  const sources: DocumentSource[] = [];
  try {
    if (opts.kubernetes) {
      const { KubernetesSource } = await import('../control/sources/kubernetes.js');
      sources.push(new KubernetesSource({ kubeconfig: opts.kubeconfig }));
    }
    if (opts.zookeeper !== undefined) {
      const { ZookeeperSource } = await import('../control/sources/zookeeper.js');
      const { zookeeperModule } = await import('../control/sources/zk-client.js');
      zookeeperModule(); // fail now, not at the first connect, when the client library is missing
      sources.push(new ZookeeperSource({ address: opts.zookeeper }));
    }
  } catch (err) {
    process.stderr.write(`waypost: ${(err as Error).message}\n`);
    return undefined;
  }
  return sources;
}

/** `waypost control`: the xDS server (control/xds/). */
async function runControl(
  paths: string[],
  opts: {
    xds: { host: string; port: number };
    admin: { host: string; port: number } | undefined;
    bind: string;
    knownCodecs: string[];
    sources: DocumentSource[];
  },
): Promise<number> {
  const { startControlPlane } = await import('../control/xds/control-plane.js');
  const cp = await startControlPlane({ paths, xds: opts.xds, admin: opts.admin, bind: opts.bind, knownCodecs: opts.knownCodecs, sources: opts.sources });
  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      log.info('shutting down', { signal });
      void cp.close().then(() => resolve(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

async function runProxy(
  paths: string[],
  opts: { bind: string; admin: string; registry: CodecRegistry; maxFrameSize: number | undefined; onProxy: ((p: Proxy) => void) | undefined },
): Promise<number> {
  const proxy = new Proxy({ codecs: opts.registry, maxFrameSize: opts.maxFrameSize });
  opts.onProxy?.(proxy);
  let admin: http.Server | undefined;
  if (opts.admin !== 'off') {
    const m = /^(.*):(\d+)$/.exec(opts.admin);
    if (!m) throw new UsageError(`--admin wants HOST:PORT or off, not "${opts.admin}"`);
    admin = await startAdmin(proxy, m[1]!.replace(/^\[|\]$/g, ''), Number(m[2]));
  }

  let lastVersion: string | undefined;
  /** Compiles and applies; on any problem logs it and keeps the last good config. */
  const load = async (initial: boolean): Promise<boolean> => {
    const result = await compile(paths, { bind: opts.bind, knownCodecs: opts.registry.names() });
    for (const w of result.warnings) log.warn(w);
    if (!result.snapshot) {
      proxy.metrics.configApplies.labels('rejected').inc();
      for (const e of result.errors) log.error(`invalid config: ${e.format()}`);
      log.error(initial ? 'no valid config to start with; fix it and it will be picked up' : 'config change rejected; the last good config keeps serving');
      return false;
    }
    if (result.snapshot.version === lastVersion) return true;
    try {
      await proxy.apply(result.snapshot);
      lastVersion = result.snapshot.version;
      return true;
    } catch (err) {
      if (!(err instanceof ConfigRejectedError)) throw err;
      log.error(err.message);
      return false;
    }
  };
  await load(true);
  const watcher = new ConfigWatcher(paths, async () => {
    log.info('config files changed, reloading');
    await load(false);
  });
  await watcher.start();

  return new Promise<number>((resolve) => {
    const stop = (signal: string): void => {
      log.info('shutting down', { signal });
      watcher.stop();
      admin?.close();
      void proxy.close().then(() => resolve(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`waypost: ${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    process.stderr.write(`waypost: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
