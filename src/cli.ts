import type http from 'node:http';
import { parseArgs } from 'node:util';
import { compile } from '../control/index.js';
import type { DocumentSource } from '../control/sources/source.js';
import { DEFAULT_CONTROL_ADMIN } from '../control/xds/defaults.js';
import { AccessLog } from './access-log.js';
import { startAdmin } from './admin.js';
import { createRegistry } from './builtin-codecs.js';
import type { CodecRegistry } from './codec-registry.js';
import { createFilterRegistry, type FilterRegistry } from './filters/index.js';
import { ConfigWatcher } from './config-watch.js';
import { countFlag, DEFAULT_DRAIN_TIMEOUT_MS, DEFAULT_LIMITS, defaultMemoryBudget, durationFlag, MIN_MEMORY_BUDGET, sizeFlag, type DownstreamLimits, type TracingMode } from './limits.js';
import { log, setLogLevel } from './log.js';
import { setDefaultMeshCerts } from './tls.js';
import { isWorker, runPrimary, serveWorker } from './workers.js';
import { ConfigRejectedError, Proxy } from './proxy.js';
import { defaultNodeId, grpcAddress, parseXdsAddress, splitHostPort, type XdsAddress } from './xds/options.js';

/** `waypost` — the command line (docs/configuration.md). Exit codes: 0 ok, 1 invalid input, 2 usage. */

const USAGE = `Usage: waypost <command> [options]

Commands:
  proxy --config PATH...      run the data plane from CRD YAML files or directories (watched)
  proxy --xds HOST:PORT       run the data plane from an xDS server (ADS over gRPC); or --xds unix:PATH
  control --config PATH... --xds-listen HOST:PORT
                              serve the CRDs' xDS resources over gRPC ADS (files watched); or unix:PATH
    [--kubernetes [--kubeconfig PATH]]   also the CRDs, Services and EndpointSlices of a Kubernetes API server
    [--zookeeper HOST:PORT]              also the Dubbo providers registered in ZooKeeper (as ServiceEntries)
  validate PATH...            check CRDs; one line per problem: file:doc: Kind/name: field.path: what is wrong
  translate PATH...           print the xDS resources (JSON) the CRDs produce

Common options:
  --admin HOST:PORT|off       admin API address (default 127.0.0.1:15000; control: 127.0.0.1:15014)
  --node ID                   proxy --xds: the xDS node id (default waypost~<hostname>~<pid>)
  --codec MODULE              load a user codec module (repeatable)
  --filter MODULE             proxy: load a user MetaProtocol filter module (repeatable; docs/filters.md)
  --bind ADDRESS              address for ServiceEntries without addresses (default 127.0.0.1)
  --max-frame-size BYTES      largest frame accepted (default 8388608)
  --workers N                 proxy: event loops (processes) sharing the listeners (default 1)
  --log-level LEVEL           error, warn, info (default), debug
  --mesh-certs DIR            proxy: Istio's cert-chain.pem, key.pem, root-cert.pem for ISTIO_MUTUAL and
                              PeerAuthentication mTLS (docs/security.md)

Proxy limits and operations (docs/operations-limits.md):
  --max-connections-per-listener N   close new connections over N at once (default: no limit)
  --max-pending-per-connection N     requests in flight per connection; more are answered over_limit (default 1024)
  --idle-timeout DURATION            close connections idle this long, 0 = never (default 1h)
  --frame-timeout DURATION           close a connection whose frame stays incomplete this long, 0 = never (default 30s)
  --per-connection-buffer-limit BYTES  unwritten bytes per connection before its feeders are paused (default 1048576)
  --memory-budget SIZE               bytes all connection buffers may hold (e.g. 256Mi; split across --workers); near it
                                     new connections are closed and the biggest holders shed (default: half the
                                     memory limit, at most 512Mi)
  --drain-timeout DURATION           SIGTERM: time for in-flight requests before the rest is closed (default 5s)
  --access-log PATH|-                one JSON line per request, to a file or stdout (default off)
  --tracing off|propagate|start      W3C traceparent: leave alone, re-parent to the proxy's span (default), or also start traces
  --help                      this text
`;

class UsageError extends Error {}

const OPTIONS = {
  config: { type: 'string', multiple: true },
  admin: { type: 'string' },
  codec: { type: 'string', multiple: true },
  filter: { type: 'string', multiple: true },
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
  'mesh-certs': { type: 'string' },
  'max-connections-per-listener': { type: 'string' },
  'max-pending-per-connection': { type: 'string' },
  'idle-timeout': { type: 'string' },
  'frame-timeout': { type: 'string' },
  'per-connection-buffer-limit': { type: 'string' },
  'memory-budget': { type: 'string' },
  'drain-timeout': { type: 'string' },
  'access-log': { type: 'string' },
  tracing: { type: 'string' },
} as const;

/** The proxy's limits and operations flags, read once (workers get the same command line). */
interface OpsOptions {
  readonly limits: DownstreamLimits;
  readonly drainTimeoutMs: number;
  readonly accessLog: string | undefined;
  readonly tracing: TracingMode;
  /** `--memory-budget` for the whole proxy (each worker takes its share). */
  readonly memoryBudget: number;
}

function opsOptions(values: Record<string, string | boolean | string[] | undefined>): OpsOptions {
  const str = (name: string): string | undefined => values[name] as string | undefined;
  return usageCheck(() => {
    const maxConn = str('max-connections-per-listener');
    const maxPending = str('max-pending-per-connection');
    const idle = str('idle-timeout');
    const frame = str('frame-timeout');
    const buffer = str('per-connection-buffer-limit');
    const drain = str('drain-timeout');
    const budget = str('memory-budget');
    const tracing = str('tracing') ?? 'propagate';
    if (tracing !== 'off' && tracing !== 'propagate' && tracing !== 'start') throw new Error(`--tracing wants off, propagate or start, not "${tracing}"`);
    const accessLog = str('access-log');
    if (accessLog === '') throw new Error('--access-log wants a file path or - (stdout)');
    return {
      limits: {
        maxConnectionsPerListener: maxConn === undefined ? DEFAULT_LIMITS.maxConnectionsPerListener : countFlag(maxConn, '--max-connections-per-listener', 1),
        maxPendingPerConnection: maxPending === undefined ? DEFAULT_LIMITS.maxPendingPerConnection : countFlag(maxPending, '--max-pending-per-connection', 1),
        idleTimeoutMs: idle === undefined ? DEFAULT_LIMITS.idleTimeoutMs : durationFlag(idle, '--idle-timeout'),
        frameTimeoutMs: frame === undefined ? DEFAULT_LIMITS.frameTimeoutMs : durationFlag(frame, '--frame-timeout'),
        bufferLimitBytes: buffer === undefined ? DEFAULT_LIMITS.bufferLimitBytes : countFlag(buffer, '--per-connection-buffer-limit', 1024),
      },
      drainTimeoutMs: drain === undefined ? DEFAULT_DRAIN_TIMEOUT_MS : durationFlag(drain, '--drain-timeout'),
      accessLog,
      tracing,
      memoryBudget: budget === undefined ? defaultMemoryBudget() : sizeFlag(budget, '--memory-budget', MIN_MEMORY_BUDGET),
    };
  });
}

const PROXY_ONLY_FLAGS = [
  'max-connections-per-listener',
  'max-pending-per-connection',
  'idle-timeout',
  'frame-timeout',
  'per-connection-buffer-limit',
  'memory-budget',
  'drain-timeout',
  'access-log',
  'tracing',
] as const;

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
  const filters = createFilterRegistry();
  for (const m of values.filter ?? []) {
    if (command !== 'proxy') throw new UsageError('--filter is an option of proxy');
    try {
      const loaded = await filters.load(m);
      log.info('filter loaded', { module: m, filters: loaded.map((f) => f.name).join(',') });
    } catch (err) {
      process.stderr.write(`waypost: cannot load filter module ${m}: ${(err as Error).message}\n`);
      return 1;
    }
  }
  const paths = [...(values.config ?? []), ...positionals];
  if (values['mesh-certs'] !== undefined) {
    if (command !== 'proxy') throw new UsageError('--mesh-certs is an option of proxy');
    usageCheck(() => setDefaultMeshCerts(values['mesh-certs']!));
  }
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
      const all = opsOptions(values);
      // Each worker is a process of its own with its own buffers: it gets its share of the budget.
      const ops = isWorker() ? { ...all, memoryBudget: Math.floor(all.memoryBudget / workers) } : all;
      let admin = values.admin ?? '127.0.0.1:15000';
      if (workers > 1 && !isWorker()) {
        // The primary only forks and serves the admin API; every worker runs this same command (limits, access log,
        // tracing flags included) without an admin. On SIGTERM it waits for the workers' drain.
        const adminAddress = admin === 'off' ? undefined : usageCheck(() => splitHostPort(admin, '--admin'));
        return runPrimary(workers, [...process.argv.slice(2), '--admin', 'off'], adminAddress, ops.drainTimeoutMs + 5_000);
      }
      const onProxy = isWorker() ? serveWorker : undefined;
      if (isWorker()) admin = 'off';
      if (values.xds !== undefined) {
        const server = grpcAddress(usageCheck(() => parseXdsAddress(values.xds!, '--xds')));
        if (values.node === '') throw new UsageError('--node must not be empty');
        return runXdsProxy(server, { node: values.node ?? defaultNodeId(), admin, registry, filters, maxFrameSize, onProxy, ops });
      }
      return runProxy(paths, { bind, admin, registry, filters, maxFrameSize, onProxy, ops });
    }
    case 'control': {
      const misplaced = PROXY_ONLY_FLAGS.find((f) => values[f] !== undefined);
      if (misplaced) throw new UsageError(`--${misplaced} is an option of proxy`);
      if (values.xds !== undefined || values.node !== undefined) throw new UsageError('--xds and --node are options of proxy (control takes --xds-listen)');
      if (values.kubeconfig !== undefined && !values.kubernetes) throw new UsageError('--kubeconfig goes with --kubernetes');
      if (values.zookeeper !== undefined && !/^[^,\s]+:\d+(,[^,\s]+:\d+)*(\/\S*)?$/.test(values.zookeeper)) {
        throw new UsageError(`--zookeeper wants HOST:PORT[,HOST:PORT…], not "${values.zookeeper}"`);
      }
      if (paths.length === 0 && !values.kubernetes && values.zookeeper === undefined) {
        throw new UsageError('control needs --config PATH (files or directories of CRD YAML), --kubernetes or --zookeeper HOST:PORT');
      }
      if (values['xds-listen'] === undefined) throw new UsageError('control needs --xds-listen HOST:PORT (the gRPC ADS address)');
      const xds = usageCheck(() => parseXdsAddress(values['xds-listen']!, '--xds-listen'));
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
  opts: { node: string; admin: string; registry: CodecRegistry; filters: FilterRegistry; maxFrameSize: number | undefined; onProxy: ((p: Proxy) => void) | undefined; ops: OpsOptions },
): Promise<number> {
  const accessLog = await openAccessLog(opts.ops);
  if (accessLog === null) return 1;
  const proxy = new Proxy({ codecs: opts.registry, filters: opts.filters, maxFrameSize: opts.maxFrameSize, limits: opts.ops.limits, accessLog, tracing: opts.ops.tracing, memoryBudget: opts.ops.memoryBudget });
  opts.onProxy?.(proxy);
  const admin = await startProxyAdmin(proxy, opts.admin);
  const { XdsClient } = await import('./xds/client.js'); // gRPC is loaded only for --xds
  const client = new XdsClient({ server, proxy, nodeId: opts.node });
  log.info('xds client starting', { server, node: client.nodeId });
  client.start();
  return onStopSignals(proxy, opts.ops, accessLog, async () => {
    await client.close();
    admin?.close();
  });
}

/** Opens `--access-log` (undefined when off); null, with the reason on stderr, when it cannot be opened. */
async function openAccessLog(ops: OpsOptions): Promise<AccessLog | undefined | null> {
  if (ops.accessLog === undefined) return undefined;
  try {
    return await AccessLog.open(ops.accessLog);
  } catch (err) {
    process.stderr.write(`waypost: ${(err as Error).message}\n`);
    return null;
  }
}

/**
 * SIGTERM / SIGINT: graceful drain (stop accepting, answer what is in flight, close idle connections) within
 * `--drain-timeout`, then exit 0. A second signal closes everything at once.
 */
function onStopSignals(proxy: Proxy, ops: OpsOptions, accessLog: AccessLog | undefined, stopSources: () => Promise<void>): Promise<number> {
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        log.warn('second signal: closing at once', { signal });
        void proxy.close().then(() => accessLog?.close()).then(() => resolve(0));
        return;
      }
      stopping = true;
      log.info('shutting down', { signal, drain_timeout_ms: ops.drainTimeoutMs });
      void (async () => {
        // Config sources stop first: a config change must not re-open a listener being drained.
        await stopSources();
        const result = await proxy.drain(ops.drainTimeoutMs);
        await accessLog?.close();
        log.info('stopped', { drained: result.drained, closed_at_timeout: result.leftOpen });
        resolve(0);
      })();
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
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
    xds: XdsAddress;
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
  opts: { bind: string; admin: string; registry: CodecRegistry; filters: FilterRegistry; maxFrameSize: number | undefined; onProxy: ((p: Proxy) => void) | undefined; ops: OpsOptions },
): Promise<number> {
  const accessLog = await openAccessLog(opts.ops);
  if (accessLog === null) return 1;
  const proxy = new Proxy({ codecs: opts.registry, filters: opts.filters, maxFrameSize: opts.maxFrameSize, limits: opts.ops.limits, accessLog, tracing: opts.ops.tracing, memoryBudget: opts.ops.memoryBudget });
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

  return onStopSignals(proxy, opts.ops, accessLog, async () => {
    watcher.stop();
    admin?.close();
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
