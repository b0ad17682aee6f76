/**
 * Helpers for the xDS suites: a raw ADS client and server built with @grpc/proto-loader from the same proto/ files
 * (so the wire format is checked by a loader other than the one the code under test uses), temp CRD configs, and
 * small waiting utilities.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import YAML from 'yaml';
import { protoDir } from '../../src/xds/protos.js';

export const HOST = 'org.apache.dubbo.samples.basic.api.demoservice';

export interface AnyJson {
  type_url: string;
  value: Buffer;
}

export interface RawRequest {
  version_info?: string;
  node?: { id: string; cluster?: string };
  resource_names?: string[];
  type_url: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string };
}

export interface RawResponse {
  version_info?: string;
  resources?: AnyJson[];
  type_url: string;
  nonce?: string;
}

export interface RawDeltaRequest {
  node?: { id: string };
  type_url: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string };
}

export interface RawDeltaResponse {
  system_version_info?: string;
  resources?: Array<{ name: string; version: string; resource?: AnyJson }>;
  type_url: string;
  removed_resources?: string[];
  nonce?: string;
}

type AdsCtor = grpc.ServiceClientConstructor;

let adsCache: AdsCtor | undefined;

/** The generated ADS client constructor (its `.service` is the service definition for a server). */
export function adsService(): AdsCtor {
  if (adsCache) return adsCache;
  const def = protoLoader.loadSync('envoy/service/discovery/v3/ads.proto', {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: false,
    oneofs: true,
    includeDirs: [protoDir()],
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    envoy: { service: { discovery: { v3: { AggregatedDiscoveryService: AdsCtor } } } };
  };
  return (adsCache = pkg.envoy.service.discovery.v3.AggregatedDiscoveryService);
}

/** A bidi stream with a queue of what arrived: `next()` takes the oldest, `none()` asserts silence. */
export class RawStream<Req, Res> {
  readonly received: Res[] = [];
  private readonly waiters: Array<(r: Res) => void> = [];
  error: Error | undefined;
  ended = false;

  constructor(readonly call: grpc.ClientDuplexStream<Req, Res>) {
    call.on('data', (r: Res) => {
      const w = this.waiters.shift();
      if (w) w(r);
      else this.received.push(r);
    });
    call.on('error', (e: Error) => (this.error = e));
    call.on('end', () => (this.ended = true));
  }

  send(req: Req): void {
    this.call.write(req);
  }

  next(timeoutMs = 3000): Promise<Res> {
    const r = this.received.shift();
    if (r) return Promise.resolve(r);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`no response within ${timeoutMs} ms${this.error ? ` (stream error: ${this.error.message})` : ''}`));
      }, timeoutMs);
      const w = (x: Res): void => {
        clearTimeout(t);
        resolve(x);
      };
      this.waiters.push(w);
    });
  }

  /** Resolves with whatever arrives within `ms` (expected: nothing). */
  async none(ms = 400): Promise<Res[]> {
    await sleep(ms);
    return this.received.splice(0);
  }

  close(): void {
    this.call.cancel();
  }
}

export interface RawAdsClient {
  sotw(): RawStream<RawRequest, RawResponse>;
  delta(): RawStream<RawDeltaRequest, RawDeltaResponse>;
  close(): void;
}

export function rawAdsClient(port: number): RawAdsClient {
  const Ctor = adsService();
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & {
    StreamAggregatedResources(): grpc.ClientDuplexStream<RawRequest, RawResponse>;
    DeltaAggregatedResources(): grpc.ClientDuplexStream<RawDeltaRequest, RawDeltaResponse>;
  };
  const streams: Array<RawStream<unknown, unknown>> = [];
  return {
    sotw() {
      const s = new RawStream(client.StreamAggregatedResources());
      streams.push(s as RawStream<unknown, unknown>);
      return s;
    },
    delta() {
      const s = new RawStream(client.DeltaAggregatedResources());
      streams.push(s as RawStream<unknown, unknown>);
      return s;
    },
    close() {
      for (const s of streams) s.close();
      client.close();
    },
  };
}

// ---- configs ------------------------------------------------------------------------------------------------------

export interface DemoPorts {
  listen: number;
  v1: number;
  v2: number;
}

export function serviceYaml(p: DemoPorts): string {
  return (
    YAML.stringify({
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'demo', namespace: 'default' },
      spec: {
        hosts: [HOST],
        ports: [{ number: p.listen, name: 'tcp-metaprotocol-dubbo', protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: [
          { address: '127.0.0.1', ports: { 'tcp-metaprotocol-dubbo': p.v1 }, labels: { version: 'v1' } },
          { address: '127.0.0.1', ports: { 'tcp-metaprotocol-dubbo': p.v2 }, labels: { version: 'v2' } },
        ],
      },
    }) +
    '---\n' +
    YAML.stringify({
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: 'demo', namespace: 'default' },
      spec: { host: HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    })
  );
}

/** A MetaRouter sending everything to one subset (or, with `jasonTo`, user=jason there and the rest to `to`). */
export function routerYaml(to: 'v1' | 'v2', opts: { jasonTo?: 'v1' | 'v2'; subsetOverride?: string } = {}): string {
  const routes: unknown[] = [];
  if (opts.jasonTo) {
    routes.push({ name: 'jason', match: { attributes: { user: { exact: 'jason' } } }, route: [{ destination: { host: HOST, subset: opts.jasonTo } }] });
  }
  routes.push({ name: 'all', route: [{ destination: { host: HOST, subset: opts.subsetOverride ?? to } }] });
  return YAML.stringify({
    apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
    kind: 'MetaRouter',
    metadata: { name: 'demo', namespace: 'default' },
    spec: { hosts: [HOST], routes },
  });
}

export const clusterOf = (port: number, subset = ''): string => `outbound|${port}|${subset}|${HOST}`;
export const routeNameOf = (port: number): string => `${HOST}_${port}`;

export class TempConfig {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-xds-'));

  write(name: string, text: string): void {
    writeFileSync(path.join(this.dir, name), text);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// ---- waiting ------------------------------------------------------------------------------------------------------

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns a truthy value (returned) or `timeoutMs` passes (throws `what`). */
export async function until<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 10_000, everyMs = 25): Promise<Exclude<NonNullable<T>, false>> {
  const start = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as Exclude<NonNullable<T>, false>;
    } catch (err) {
      last = err;
    }
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    await sleep(everyMs);
  }
}

// ---- child processes ----------------------------------------------------------------------------------------------

export interface CliProcess {
  child: import('node:child_process').ChildProcess;
  output(): string;
  exited: Promise<number | string | null>;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** Runs `node dist/src/cli.js ARGS…` (the built CLI), collecting its output. */
export async function spawnCli(args: string[]): Promise<CliProcess> {
  const { spawn } = await import('node:child_process');
  const { existsSync } = await import('node:fs');
  const { cliPath } = await import('../../examples/dubbo/harness.js');
  const cli = cliPath();
  if (!existsSync(cli)) throw new Error(`the CLI is not built: ${cli} is missing (run \`npx tsc -p .\`)`);
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const collect = (chunk: Buffer): void => {
    lines.push(...chunk.toString('utf8').split('\n').filter((l) => l.length > 0));
    if (lines.length > 500) lines.splice(0, lines.length - 500);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal)));
  process.once('exit', () => child.kill('SIGKILL'));
  return {
    child,
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
