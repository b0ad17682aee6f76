/**
 * A resilience-test fixture to copy: real Dubbo providers, `waypost proxy --config` as a child process on a config
 * directory this fixture rewrites, and helpers to call through it and read its metrics. Swap the providers for your
 * own service and the YAML for your own, and the suites in this folder test your service's behaviour under faults.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { freePorts, httpGet, sleep, spawnProxy, waitReady, type ProxyProcess } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider, type ProviderVersion } from '../../examples/dubbo/provider.js';
import { RawDubboConnection, type RawResult } from '../../examples/dubbo/raw-client.js';
import { configVersion, metricSum } from '../helpers/admin.js';

export const HOST = 'org.apache.dubbo.samples.basic.api.demoservice';

export interface EndpointSpec {
  provider: Provider;
  labels?: Record<string, string>;
  weight?: number;
  /** Use this port instead of the provider's (a dead endpoint). */
  port?: number;
}

export interface PolicyConfig {
  endpoints: EndpointSpec[];
  /** DestinationRule spec minus `host` (subsets, trafficPolicy). */
  destinationRule?: Record<string, unknown>;
  /** MetaRouter spec minus `hosts`. */
  metaRouter?: Record<string, unknown>;
  /** More documents, as written. */
  extra?: unknown[];
}

export class PolicyFixture {
  proxy!: ProxyProcess;
  address = '';
  listenPort = 0;
  private dir = '';
  private readonly providers: Provider[] = [];
  private readonly conns: RawDubboConnection[] = [];
  private nextId = 1;

  /** Starts `versions.length` providers (their `version` is what they answer with). */
  async start(versions: ProviderVersion[]): Promise<Provider[]> {
    for (const version of versions) this.providers.push(await startProvider({ version }));
    [this.listenPort] = await freePorts(1);
    this.address = `127.0.0.1:${this.listenPort}`;
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-policy-'));
    this.write({ endpoints: this.providers.map((provider) => ({ provider })) });
    this.proxy = await spawnProxy({ configDir: this.dir });
    await waitReady(this.proxy);
    return this.providers;
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy();
    await this.proxy?.stop();
    await Promise.all(this.providers.map((p) => p.close()));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  /** Writes a new config and waits until the proxy serves it. */
  async apply(cfg: PolicyConfig): Promise<void> {
    const before = await this.version();
    this.write(cfg);
    const t0 = Date.now();
    while ((await this.version()) === before) {
      if (Date.now() - t0 > 10_000) throw new Error(`config not applied after 10 s:\n${this.proxy.output()}`);
      await sleep(20);
    }
  }

  /** A fresh client connection to the proxy (closed by stop()). */
  async connect(): Promise<RawDubboConnection> {
    const c = await RawDubboConnection.connect(this.address);
    this.conns.push(c);
    return c;
  }

  /** A two-way call with a fresh id. */
  call(conn: RawDubboConnection, method: string, args: unknown[] = [], attachments?: Record<string, string>, timeoutMs = 10_000): Promise<RawResult> {
    return conn.call({ id: this.nextId++, method, args, ...(attachments ? { attachments } : {}), timeoutMs });
  }

  /** Sum of the Prometheus samples whose line matches `pattern`. */
  metric(pattern: RegExp): Promise<number> {
    return metricSum(this.proxy.adminAddress, pattern);
  }

  async clusters(): Promise<Array<{ name: string; endpoints: Array<{ address: string; health: string }> }>> {
    return JSON.parse((await httpGet(this.proxy.adminAddress, '/clusters')).body);
  }

  private version(): Promise<string> {
    return configVersion(this.proxy.adminAddress);
  }

  private write(cfg: PolicyConfig): void {
    const docs: unknown[] = [
      {
        apiVersion: 'networking.istio.io/v1beta1',
        kind: 'ServiceEntry',
        metadata: { name: 'svc' },
        spec: {
          hosts: [HOST],
          ports: [{ number: this.listenPort, name: 'tcp-metaprotocol-dubbo', protocol: 'TCP' }],
          resolution: 'STATIC',
          endpoints: cfg.endpoints.map((e) => ({
            address: '127.0.0.1',
            ports: { 'tcp-metaprotocol-dubbo': e.port ?? e.provider.port },
            labels: e.labels ?? { version: e.provider.version },
            ...(e.weight !== undefined ? { weight: e.weight } : {}),
          })),
        },
      },
    ];
    if (cfg.destinationRule) {
      docs.push({ apiVersion: 'networking.istio.io/v1beta1', kind: 'DestinationRule', metadata: { name: 'svc' }, spec: { host: HOST, ...cfg.destinationRule } });
    }
    if (cfg.metaRouter) {
      docs.push({ apiVersion: 'metaprotocol.aeraki.io/v1alpha1', kind: 'MetaRouter', metadata: { name: 'svc' }, spec: { hosts: [HOST], ...cfg.metaRouter } });
    }
    docs.push(...(cfg.extra ?? []));
    writeFileSync(path.join(this.dir, 'config.yaml'), docs.map((d) => YAML.stringify(d)).join('---\n'));
  }
}

/** Which provider version answered a sayHello/slow/whoami call. */
export function answeredBy(r: RawResult): string | undefined {
  return /\b(v\d)@/.exec(String(r.value ?? ''))?.[1];
}

/**
 * Bounds for a binomial count (n trials, probability p) that a correct implementation leaves only with probability
 * about 1e-5 (4.5 standard deviations each side).
 */
export function binomialBounds(n: number, p: number): [number, number] {
  const mean = n * p;
  const sd = Math.sqrt(n * p * (1 - p));
  return [Math.max(0, Math.floor(mean - 4.5 * sd)), Math.min(n, Math.ceil(mean + 4.5 * sd))];
}

/** A route sending everything to `subset` (or the whole service), with extra route fields. */
export function routeAll(extra: Record<string, unknown> = {}, subset?: string): Record<string, unknown> {
  return {
    routes: [{ name: 'all', route: [{ destination: { host: HOST, ...(subset ? { subset } : {}) } }], ...extra }],
  };
}

/**
 * Prints a measured outcome of a resilience test (`[resilience] abort 30%: 118/400 aborted …`), so that a run
 * shows what was measured, not only that the bounds held.
 */
export function report(line: string): void {
  process.stdout.write(`[resilience] ${line}\n`);
}
