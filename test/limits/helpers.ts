/**
 * Shared by test/limits and test/ops: real Dubbo providers and `waypost proxy --config DIR <flags>` as a child
 * process, a config directory it rewrites, metrics and process memory read from outside.
 */
import { readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { freePorts, sleep, spawnProxy, waitReady, type ProxyProcess } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider, type ProviderVersion } from '../../examples/dubbo/provider.js';
import { RawDubboConnection, type RawResult } from '../../examples/dubbo/raw-client.js';
import { configVersion, metricSum } from '../helpers/admin.js';

export const HOST = 'org.apache.dubbo.samples.basic.api.demoservice';

export interface ServiceSpec {
  /** ServiceEntry host (default HOST). */
  host?: string;
  listenPort: number;
  /** Endpoint ports with their version labels. */
  endpoints: Array<{ port: number; version: string }>;
  /** MetaRouter spec minus `hosts` (default: everything to the service). */
  metaRouter?: Record<string, unknown>;
  /** DestinationRule spec minus `host`. */
  destinationRule?: Record<string, unknown>;
}

/** CRD YAML for a set of Dubbo services. */
export function servicesYaml(services: ServiceSpec[]): string {
  const docs: unknown[] = [];
  services.forEach((s, i) => {
    const host = s.host ?? HOST;
    docs.push({
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: `svc${i}` },
      spec: {
        hosts: [host],
        ports: [{ number: s.listenPort, name: 'tcp-metaprotocol-dubbo', protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: s.endpoints.map((e) => ({ address: '127.0.0.1', ports: { 'tcp-metaprotocol-dubbo': e.port }, labels: { version: e.version } })),
      },
    });
    const dr = s.destinationRule ?? { subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] };
    docs.push({ apiVersion: 'networking.istio.io/v1beta1', kind: 'DestinationRule', metadata: { name: `svc${i}` }, spec: { host, ...dr } });
    const mr = s.metaRouter ?? { routes: [{ name: 'all', route: [{ destination: { host } }] }] };
    docs.push({ apiVersion: 'metaprotocol.aeraki.io/v1alpha1', kind: 'MetaRouter', metadata: { name: `svc${i}` }, spec: { hosts: [host], ...mr } });
  });
  return docs.map((d) => YAML.stringify(d)).join('---\n');
}

export class OpsFixture {
  proxy!: ProxyProcess;
  readonly providers: Provider[] = [];
  private dir = '';
  private readonly conns: RawDubboConnection[] = [];
  private nextId = 1;

  get adminAddress(): string {
    return this.proxy.adminAddress;
  }

  /** Starts providers, writes `config(providers)` and spawns the proxy with `args`. */
  async start(opts: { versions?: ProviderVersion[]; args?: string[]; config: (providers: Provider[]) => string }): Promise<void> {
    for (const version of opts.versions ?? ['v1']) this.providers.push(await startProvider({ version }));
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-ops-'));
    this.writeConfig(opts.config(this.providers));
    this.proxy = await spawnProxy({ configDir: this.dir, extraArgs: opts.args ?? [] });
    await waitReady(this.proxy);
  }

  writeConfig(yaml: string): void {
    writeFileSync(path.join(this.dir, 'config.yaml'), yaml);
  }

  /** Writes a new config and waits until the proxy serves it. */
  async apply(yaml: string): Promise<void> {
    const before = await configVersion(this.adminAddress);
    this.writeConfig(yaml);
    await until(async () => (await configVersion(this.adminAddress)) !== before, 15_000, () => `config not applied:\n${this.proxy.output()}`);
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await this.proxy?.stop();
    await Promise.all(this.providers.map((p) => p.close()));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  async connect(address: string): Promise<RawDubboConnection> {
    const c = await RawDubboConnection.connect(address);
    this.conns.push(c);
    return c;
  }

  call(conn: RawDubboConnection, method: string, args: unknown[] = [], attachments?: Record<string, string>, timeoutMs = 15_000): Promise<RawResult> {
    return conn.call({ id: this.nextId++, method, args, ...(attachments ? { attachments } : {}), timeoutMs });
  }

  metric(pattern: RegExp): Promise<number> {
    return metricSum(this.adminAddress, pattern);
  }

  /** Resident memory of the proxy process, bytes (Linux /proc). */
  rss(): number {
    return rssOf(this.proxy.child.pid!);
  }
}

export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** Polls `fn` until it returns true; rejects with `what()` after `timeoutMs`. */
export async function until(fn: () => boolean | Promise<boolean>, timeoutMs = 15_000, what: () => string = () => 'condition'): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (await fn()) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what()}`);
    await sleep(25);
  }
}

/** Resolves true when the connection is closed by the peer within `ms`, false otherwise. */
export function closedWithin(conn: RawDubboConnection, ms: number): Promise<boolean> {
  return Promise.race([conn.closed().then(() => true), sleep(ms).then(() => false)]);
}

/** A plain TCP connect: 'ok', or the error code (ECONNREFUSED …). */
export function tcpConnect(port: number, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const t = setTimeout(() => {
      s.destroy();
      resolve('timeout');
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve('ok');
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve(e.code ?? e.message);
    });
  });
}

export { freePorts, sleep };

/** Prints a measured figure so that a run shows what was measured (`[limits] …`). */
export function report(line: string): void {
  process.stdout.write(`[limits] ${line}\n`);
}
