/**
 * Real peers for the Redis suites: redis-server processes on free ports (killed by `stop()`), the proxy in-process
 * on a temporary config directory (CRDs → `compile()` → `Proxy.apply`), and raw RESP sockets for the cases a client
 * library hides (ordering of pipelined bytes, RESP3 types, malformed input).
 */
import type { DownstreamLimits } from '../../src/limits.js';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import YAML from 'yaml';
import { compile, formatErrors } from '../../control/index.js';
import { createRegistry } from '../../src/builtin-codecs.js';
import { Proxy } from '../../src/proxy.js';
import type { ResourceSnapshot } from '../../src/xds/resources.js';
import { freePorts, projectRoot, sleep } from '../../examples/dubbo/harness.js';

export { freePorts, sleep };

/** Installs redis-server and redis-tools from Debian when missing (a fresh CI machine). */
export function ensurePeers(): void {
  execFileSync('bash', [path.join(projectRoot(), 'scripts', 'install-peers.sh'), 'redis-server', 'redis-tools'], { stdio: 'inherit' });
}

export interface RedisServer {
  readonly port: number;
  readonly password: string | undefined;
  /** A direct client (not through the proxy), closed by stop(). */
  direct(): Redis;
  stop(): Promise<void>;
}

/** Starts `redis-server` on a free port, without persistence, and waits until it answers PING. */
export async function startRedis(opts: { password?: string; port?: number; extra?: string[] } = {}): Promise<RedisServer> {
  const port = opts.port ?? (await freePorts(1))[0]!;
  const args = ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--enable-debug-command', 'yes'];
  if (opts.password) args.push('--requirepass', opts.password);
  if (opts.extra) args.push(...opts.extra);
  const child: ChildProcess = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const clients: Redis[] = [];
  const t0 = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}):\n${output}`);
    if (await answersPing(port, opts.password)) break;
    if (Date.now() - t0 > 10_000) {
      child.kill('SIGKILL');
      throw new Error(`redis-server did not answer on ${port}:\n${output}`);
    }
    await sleep(20);
  }
  return {
    port,
    password: opts.password,
    direct() {
      const c = new Redis({ port, host: '127.0.0.1', password: opts.password, lazyConnect: false, maxRetriesPerRequest: 1 });
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.disconnect();
      if (child.exitCode !== null) return;
      const exited = new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

async function answersPing(port: number, password: string | undefined): Promise<boolean> {
  try {
    const c = await RawClient.connect(port);
    try {
      const cmds = password ? [['AUTH', password], ['PING']] : [['PING']];
      const replies = await c.commands(cmds, 1000);
      return replies[replies.length - 1] === '+PONG';
    } finally {
      c.destroy();
    }
  } catch {
    return false;
  }
}

/** The proxy in-process on a config directory of CRD documents. */
export class ProxyFixture {
  readonly proxy: Proxy;
  constructor(limits: Partial<DownstreamLimits> = {}) {
    this.proxy = new Proxy({ codecs: createRegistry(), limits });
  }
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-redis-'));
  private readonly clients: Redis[] = [];
  private readonly raws: RawClient[] = [];

  /** Writes `docs` (objects) as the config and applies it; throws with the validation errors if any. */
  async apply(docs: unknown[]): Promise<ResourceSnapshot> {
    writeFileSync(path.join(this.dir, 'config.yaml'), docs.map((d) => YAML.stringify(d)).join('---\n'));
    const result = await compile([this.dir], { knownCodecs: createRegistry().names() });
    if (!result.snapshot) throw new Error(`config rejected:\n${formatErrors(result.errors)}`);
    await this.proxy.apply(result.snapshot);
    return result.snapshot;
  }

  /** An ioredis client through the proxy listener on `port`. */
  client(port: number, options: RedisOptions = {}): Redis {
    const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1, ...options });
    this.clients.push(c);
    return c;
  }

  async raw(port: number): Promise<RawClient> {
    const c = await RawClient.connect(port);
    this.raws.push(c);
    return c;
  }

  /** Sum of the samples of `/stats/prometheus` whose line matches `pattern`. */
  async metric(pattern: RegExp): Promise<number> {
    const text = await this.proxy.metrics.registry.metrics();
    let sum = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith('#') && pattern.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return sum;
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.disconnect();
    for (const r of this.raws) r.destroy();
    await this.proxy.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A RESP client on a raw socket: writes bytes as given and reads complete top-level values back as their raw text
 * (`+OK`, `:3`, `$5\r\nhello`, …), so tests see exactly what the proxy wrote.
 */
export class RawClient {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  write(bytes: string | Buffer): void {
    this.socket.write(bytes);
  }

  /** Sends each command as an array of bulk strings, all in one write, and reads as many replies. */
  async commands(cmds: ReadonlyArray<ReadonlyArray<string | Buffer>>, timeoutMs = 10_000): Promise<string[]> {
    this.write(Buffer.concat(cmds.map((c) => encode(c))));
    return this.read(cmds.length, timeoutMs);
  }

  /** Reads `n` complete top-level values (each as its raw text without the final CRLF). */
  async read(n: number, timeoutMs = 10_000): Promise<string[]> {
    const out: string[] = [];
    const deadline = Date.now() + timeoutMs;
    while (out.length < n) {
      const end = valueEnd(this.buf, 0);
      if (end >= 0) {
        out.push(this.buf.toString('utf8', 0, end - 2));
        this.buf = this.buf.subarray(end);
        continue;
      }
      if (this.closed) throw new Error(`connection closed after ${out.length} of ${n} replies: ${JSON.stringify(out)}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${out.length} of ${n} replies: ${JSON.stringify(out)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return out;
  }

  /** Resolves when the server closes the connection (with whatever it wrote last). */
  async waitClosed(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.buf.toString('utf8');
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

export function encode(args: ReadonlyArray<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a;
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** End offset (after CRLF) of the complete RESP value at `pos`, or -1. A test-side reader, independent of the codec. */
function valueEnd(buf: Buffer, pos: number): number {
  if (pos >= buf.length) return -1;
  const cr = buf.indexOf('\r\n', pos);
  if (cr < 0) return -1;
  const type = String.fromCharCode(buf[pos]!);
  const n = Number(buf.toString('latin1', pos + 1, cr));
  let at = cr + 2;
  switch (type) {
    case '$':
    case '!':
    case '=':
      if (n < 0) return at;
      return buf.length >= at + n + 2 ? at + n + 2 : -1;
    case '*':
    case '~':
    case '>':
    case '%':
    case '|': {
      const count = type === '%' || type === '|' ? n * 2 : n;
      for (let i = 0; i < count; i++) {
        at = valueEnd(buf, at);
        if (at < 0) return -1;
      }
      return type === '|' ? valueEnd(buf, at) : at;
    }
    default:
      return at;
  }
}

// ---- CRD builders ---------------------------------------------------------------------------------------------------

export interface RedisServiceSpec {
  host: string;
  /** The port clients use (the listener). */
  port: number;
  /** redis-server ports behind it. */
  endpoints: number[];
  portName?: string;
}

export function serviceEntry(s: RedisServiceSpec): unknown {
  const portName = s.portName ?? 'tcp-redis';
  return {
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'ServiceEntry',
    metadata: { name: s.host.split('.')[0], namespace: 'default' },
    spec: {
      hosts: [s.host],
      ports: [{ number: s.port, name: portName, protocol: 'TCP' }],
      resolution: 'STATIC',
      endpoints: s.endpoints.map((p) => ({ address: '127.0.0.1', ports: { [portName]: p } })),
    },
  };
}

export function redisService(name: string, spec: Record<string, unknown>): unknown {
  return { apiVersion: 'redis.aeraki.io/v1alpha1', kind: 'RedisService', metadata: { name, namespace: 'default' }, spec };
}

export function redisDestination(name: string, spec: Record<string, unknown>): unknown {
  return { apiVersion: 'redis.aeraki.io/v1alpha1', kind: 'RedisDestination', metadata: { name, namespace: 'default' }, spec };
}

/** Runs a redis-cli/redis-benchmark style tool and returns its stdout. */
export function runTool(cmd: string, args: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface RedisClusterNodes {
  readonly nodes: RedisServer[];
  /** Node ids by port. */
  readonly ids: Map<number, string>;
  stop(): Promise<void>;
}

/** Starts `n` redis-servers in cluster mode and joins them into one Redis Cluster (no replicas), slots spread. */
export async function startRedisCluster(n = 3): Promise<RedisClusterNodes> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-redis-cluster-'));
  const ports = await freePorts(n);
  const nodes = await Promise.all(
    ports.map((port) =>
      startRedis({ port, extra: ['--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '5000', '--dir', dir] }),
    ),
  );
  const create = await runTool('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
  if (create.code !== 0) throw new Error(`redis-cli --cluster create failed:\n${create.stdout}\n${create.stderr}`);
  const t0 = Date.now();
  for (const node of nodes) {
    const c = await RawClient.connect(node.port);
    try {
      for (;;) {
        const [info] = await c.commands([['CLUSTER', 'INFO']]);
        if (info!.includes('cluster_state:ok')) break;
        if (Date.now() - t0 > 20_000) throw new Error(`cluster not ok on ${node.port}: ${info}`);
        await sleep(50);
      }
    } finally {
      c.destroy();
    }
  }
  const ids = new Map<number, string>();
  for (const node of nodes) {
    const c = await RawClient.connect(node.port);
    const [id] = await c.commands([['CLUSTER', 'MYID']]);
    ids.set(node.port, id!.split('\r\n')[1]!);
    c.destroy();
  }
  return {
    nodes,
    ids,
    async stop() {
      await Promise.all(nodes.map((s) => s.stop()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
