import type http from 'node:http';
import { parseArgs } from 'node:util';
import { compile } from '../control/index.js';
import { startAdmin } from './admin.js';
import { createRegistry } from './builtin-codecs.js';
import type { CodecRegistry } from './codec-registry.js';
import { ConfigWatcher } from './config-watch.js';
import { log, setLogLevel } from './log.js';
import { ConfigRejectedError, Proxy } from './proxy.js';

/** `waypost` — the command line (CONTRACT §1). Exit codes: 0 ok, 1 invalid input, 2 usage. */

const USAGE = `Usage: waypost <command> [options]

Commands:
  proxy --config PATH...      run the data plane from CRD YAML files or directories (watched)
  validate PATH...            check CRDs; one line per problem: file:doc: Kind/name: field.path: what is wrong
  translate PATH...           print the xDS resources (JSON) the CRDs produce

Common options:
  --admin HOST:PORT|off       admin API address (default 127.0.0.1:15000)
  --codec MODULE              load a user codec module (repeatable)
  --bind ADDRESS              address for ServiceEntries without addresses (default 127.0.0.1)
  --max-frame-size BYTES      largest frame accepted (default 8388608)
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
      if (paths.length === 0) throw new UsageError('proxy needs --config PATH (files or directories of CRD YAML)');
      const maxFrameSize = values['max-frame-size'] ? Number(values['max-frame-size']) : undefined;
      if (maxFrameSize !== undefined && !(Number.isInteger(maxFrameSize) && maxFrameSize > 16)) {
        throw new UsageError('--max-frame-size must be a positive integer number of bytes');
      }
      return runProxy(paths, { bind, admin: values.admin ?? '127.0.0.1:15000', registry, maxFrameSize });
    }
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

async function runProxy(
  paths: string[],
  opts: { bind: string; admin: string; registry: CodecRegistry; maxFrameSize: number | undefined },
): Promise<number> {
  const proxy = new Proxy({ codecs: opts.registry, maxFrameSize: opts.maxFrameSize });
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
