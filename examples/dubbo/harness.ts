/**
 * Process and config helpers shared by the demo, the bench and the example tests: locate the project, find free
 * ports, render proxy configs, spawn `node dist/src/cli.js proxy --config DIR --admin HOST:PORT` and wait for its
 * admin `GET /ready` to answer 200.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';

export const DEMO_HOST = 'org.apache.dubbo.samples.basic.api.demoservice';
export const DEMO_PORT_NAME = 'tcp-metaprotocol-dubbo';

let rootCache: string | undefined;

/** The project root: the nearest ancestor of this module holding the `waypost` package.json (works from src and dist). */
export function projectRoot(): string {
  if (rootCache) return rootCache;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'waypost') return (rootCache = dir);
      } catch {
        // keep looking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the waypost project root (package.json) above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
}

/** dist/src/cli.js, or `$WAYPOST_CLI` when set (to run the demo/bench against another build). */
export function cliPath(): string {
  return process.env.WAYPOST_CLI ? path.resolve(process.env.WAYPOST_CLI) : path.join(projectRoot(), 'dist', 'src', 'cli.js');
}

export function demoConfigDir(): string {
  return path.join(projectRoot(), 'examples', 'dubbo', 'config');
}

/** A port that was free a moment ago on `host` (the OS picks it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** `n` distinct free ports (all held open at once while they are picked). */
export async function freePorts(n: number, host = '127.0.0.1'): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = net.createServer();
      srv.unref();
      servers.push(srv);
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, host, () => resolve());
      });
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => (s.listening ? s.close(() => r()) : r()))));
  }
}

/** Whether something accepts connections on host:port. */
export function isListening(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (v: boolean): void => {
      clearTimeout(t);
      s.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

// ---- configs ------------------------------------------------------------------------------------------------------

export interface DemoPorts {
  /** The port the proxy listens on (the ServiceEntry port number). */
  listen: number;
  v1: number;
  v2: number;
}

/** The demo config (examples/dubbo/config/demo.yaml) with its ports replaced; comments are kept. */
export function renderDemoConfig(ports: DemoPorts, template = path.join(demoConfigDir(), 'demo.yaml')): string {
  const docs = YAML.parseAllDocuments(readFileSync(template, 'utf8'));
  for (const doc of docs) {
    if (doc.get('kind') !== 'ServiceEntry') continue;
    doc.setIn(['spec', 'ports', 0, 'number'], ports.listen);
    const endpoints = doc.getIn(['spec', 'endpoints']) as YAML.YAMLSeq | undefined;
    endpoints?.items.forEach((_item, i) => {
      const v = doc.getIn(['spec', 'endpoints', i, 'labels', 'version']);
      if (v === 'v1' || v === 'v2') doc.setIn(['spec', 'endpoints', i, 'ports', DEMO_PORT_NAME], ports[v]);
    });
  }
  const text = docs.map((d) => d.toString().replace(/^---\n/, '')).join('---\n');
  return `# Generated from ${path.basename(template)} with ports ${ports.listen} (proxy), ${ports.v1} (v1), ${ports.v2} (v2).\n${text}`;
}

/** The weights of the demo's split route, by subset name (`{v1: 20, v2: 80}`), read from the config. */
export function demoSplitWeights(template = path.join(demoConfigDir(), 'demo.yaml')): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    for (const doc of YAML.parseAllDocuments(readFileSync(template, 'utf8'))) {
      const js = doc.toJS() as { kind?: string; spec?: { routes?: { name?: string; route?: { destination?: { subset?: string }; weight?: number }[] }[] } };
      if (js?.kind !== 'MetaRouter') continue;
      const split = js.spec?.routes?.find((r) => r.name === 'split');
      for (const d of split?.route ?? []) if (d.destination?.subset) out[d.destination.subset] = d.weight ?? 0;
    }
  } catch {
    // fall through to the default
  }
  return Object.keys(out).length > 0 ? out : { v1: 20, v2: 80 };
}

/** A one-service, one-endpoint config (no subsets) for the bench: listener on `listen`, provider on `provider`. */
export function renderSingleEndpointConfig(opts: { listen: number; provider: number; providerHost?: string }): string {
  const host = DEMO_HOST;
  const docs = [
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'dubbo-bench', namespace: 'default' },
      spec: {
        hosts: [host],
        ports: [{ number: opts.listen, name: DEMO_PORT_NAME, protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: [{ address: opts.providerHost ?? '127.0.0.1', ports: { [DEMO_PORT_NAME]: opts.provider }, labels: { version: 'v1' } }],
      },
    },
    {
      apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
      kind: 'MetaRouter',
      metadata: { name: 'dubbo-bench', namespace: 'default' },
      spec: { hosts: [host], routes: [{ name: 'all', route: [{ destination: { host } }] }] },
    },
  ];
  return docs.map((d) => YAML.stringify(d)).join('---\n');
}

/** Writes `files` (name → content) into a fresh temp dir; returns the dir and a remover. */
export function writeTempConfig(files: Record<string, string>, prefix = 'waypost-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

// ---- the proxy process --------------------------------------------------------------------------------------------

export interface ProxyProcess {
  child: ChildProcess;
  /** `host:port` of the admin server. */
  adminAddress: string;
  /** The command line, for messages. */
  command: string;
  /** The last lines the proxy wrote (stdout and stderr). */
  output(): string;
  /** Resolves with the exit code (or signal name) once the process is gone. */
  exited: Promise<number | string | null>;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnProxyOptions {
  configDir: string;
  adminPort?: number;
  logLevel?: string;
  /** Echo the proxy's output to this process's stderr as it comes. */
  echo?: boolean;
  extraArgs?: string[];
  cli?: string;
  /** Run under `ulimit -n` of this many file descriptors (bash sets the limit, then execs node). */
  fileLimit?: number;
}

const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

export async function spawnProxy(opts: SpawnProxyOptions): Promise<ProxyProcess> {
  const cli = opts.cli ?? cliPath();
  if (!existsSync(cli)) {
    throw new Error(`the proxy CLI is not built: ${displayPath(cli)} is missing (run \`npm run build\`)`);
  }
  const adminPort = opts.adminPort ?? (await freePort());
  const adminAddress = `127.0.0.1:${adminPort}`;
  const args = [cli, 'proxy', '--config', opts.configDir, '--admin', adminAddress];
  if (opts.logLevel) args.push('--log-level', opts.logLevel);
  if (opts.extraArgs) args.push(...opts.extraArgs);
  const child =
    opts.fileLimit === undefined
      ? spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('bash', ['-c', `ulimit -n ${opts.fileLimit} && exec "$0" "$@"`, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of liveChildren) c.kill('SIGKILL');
    });
  }
  const lines: string[] = [];
  const collect = (chunk: Buffer): void => {
    const text = chunk.toString('utf8');
    if (opts.echo) process.stderr.write(text.replace(/^(?=.)/gm, '  [proxy] '));
    lines.push(...text.split('\n').filter((l) => l.length > 0));
    if (lines.length > 400) lines.splice(0, lines.length - 400);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | string | null>((resolve) => {
    child.once('exit', (code, signal) => {
      liveChildren.delete(child);
      resolve(code ?? signal);
    });
    child.once('error', (e) => {
      lines.push(`spawn error: ${e.message}`);
      liveChildren.delete(child);
      resolve(null);
    });
  });
  const command = `${opts.fileLimit === undefined ? '' : `ulimit -n ${opts.fileLimit}; `}${['node', ...args].map(displayPath).join(' ')}`;
  return {
    child,
    adminAddress,
    command,
    output: () => lines.join('\n'),
    exited,
    async stop(graceMs = 3000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** GET http://address/path → status code (or an error). */
export function httpGet(address: string, urlPath: string, timeoutMs = 1000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(`http://${address}${urlPath}`, { timeout: timeoutMs, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/**
 * Polls the admin `GET /ready` until it answers 200. Rejects with a message that says what happened (the proxy
 * exited, or never became ready) and the proxy's last output.
 */
export async function waitReady(proxy: ProxyProcess, timeoutMs = 15_000): Promise<number> {
  const start = Date.now();
  let exitedWith: number | string | null | undefined;
  void proxy.exited.then((c) => (exitedWith = c));
  let last = 'no answer yet';
  while (Date.now() - start < timeoutMs) {
    if (exitedWith !== undefined) {
      throw new Error(`the proxy exited (${exitedWith}) before it was ready.\n  command: ${proxy.command}\n${indent(tail(proxy.output()))}`);
    }
    try {
      const r = await httpGet(proxy.adminAddress, '/ready', 1000);
      if (r.status === 200) return Date.now() - start;
      last = `GET /ready answered ${r.status} ${r.body.trim().slice(0, 200)}`;
    } catch (e) {
      last = `GET /ready: ${(e as Error).message}`;
    }
    await sleep(100);
  }
  throw new Error(
    `the proxy was not ready after ${timeoutMs / 1000}s (${last}).\n  command: ${proxy.command}\n${indent(tail(proxy.output()))}`,
  );
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** An absolute path under the working directory, shown relative to it. */
export function displayPath(p: string): string {
  if (!path.isAbsolute(p)) return p;
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith('..') ? rel : p;
}

function tail(text: string, n = 30): string {
  const lines = text.split('\n');
  const t = lines.slice(-n).join('\n').trim();
  return t ? `  last proxy output:\n${t}` : '  (the proxy printed nothing)';
}

function indent(text: string): string {
  return text.replace(/^/gm, '  ');
}

/** `realpath(argv[1]) === this module`, i.e. the module was run with `node file.js`. */
export function isMainModule(moduleUrl: string): boolean {
  const argv1 = process.argv[1];
  if (!argv1) return false;
  try {
    return realpathSync(argv1) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}
