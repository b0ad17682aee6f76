/**
 * Peers for the proxyless gRPC suites: @grpc/grpc-js servers as the backends (each answers with its version), a
 * @grpc/grpc-js-xds client in a child process (xds-client.cjs; each gets its own bootstrap, as a real client reads it
 * from its environment once), and the CRDs they are routed by. The service is `/waypost.test.Greeter/Who` with JSON
 * messages, so no .proto is needed on either side.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import YAML from 'yaml';

export const GRPC_HOST = 'greeter.waypost.test';
export const METHOD_PATH = '/waypost.test.Greeter/Who';

const serialize = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const deserialize = (b: Buffer): unknown => JSON.parse(b.toString('utf8'));

const GREETER: grpc.ServiceDefinition = {
  Who: {
    path: METHOD_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: serialize,
    requestDeserialize: deserialize,
    responseSerialize: serialize,
    responseDeserialize: deserialize,
  },
};

export interface Backend {
  version: string;
  port: number;
  /** Calls it answered (not the ones it failed on purpose). */
  answered: number;
  /** Calls it failed with UNAVAILABLE because of `x-fail-first`. */
  failed: number;
  close(): Promise<void>;
}

/**
 * A gRPC server answering `{version, user}` (`user`: the `x-user` metadata). Metadata `x-fail-first: <id>` makes it
 * fail the first call carrying that id with UNAVAILABLE (for retries); `x-delay-ms: <n>` makes it answer late.
 */
export async function startBackend(version: string): Promise<Backend> {
  const server = new grpc.Server();
  const seen = new Set<string>();
  const backend: Backend = {
    version,
    port: 0,
    answered: 0,
    failed: 0,
    close: () => new Promise((resolve) => server.tryShutdown(() => resolve())),
  };
  server.addService(GREETER, {
    Who: (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const first = call.metadata.get('x-fail-first')[0];
      if (typeof first === 'string' && !seen.has(first)) {
        seen.add(first);
        backend.failed++;
        callback({ code: grpc.status.UNAVAILABLE, details: `${version} fails the first call of ${first}` });
        return;
      }
      const delay = Number(call.metadata.get('x-delay-ms')[0] ?? 0);
      const answer = (): void => {
        backend.answered++;
        callback(null, { version, user: call.metadata.get('x-user')[0] ?? null });
      };
      if (delay > 0) setTimeout(answer, delay);
      else answer();
    },
  });
  backend.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => (err ? reject(err) : resolve(port))),
  );
  return backend;
}

export interface CallResult {
  ok: boolean;
  version?: string;
  user?: string | null;
  code?: number;
  details?: string;
}

/** The xDS bootstrap a proxyless client reads (`GRPC_XDS_BOOTSTRAP_CONFIG`). */
export function bootstrap(xdsPort: number, nodeId: string): string {
  return JSON.stringify({
    xds_servers: [{ server_uri: `127.0.0.1:${xdsPort}`, channel_creds: [{ type: 'insecure' }], server_features: ['xds_v3'] }],
    node: { id: nodeId, cluster: 'waypost-test', locality: {} },
  });
}

/** A @grpc/grpc-js-xds client process with one channel to `xds:///<target>`. */
export class XdsGrpcClient {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, (r: CallResult[]) => void>();
  private nextId = 1;
  private stderr = '';
  private readonly exited: Promise<void>;

  constructor(
    target: string,
    xdsPort: number,
    readonly nodeId: string,
  ) {
    const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'xds-client.cjs');
    this.child = spawn(process.execPath, [script, `xds:///${target}`], {
      env: { ...process.env, GRPC_XDS_BOOTSTRAP_CONFIG: bootstrap(xdsPort, nodeId) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    this.child.stderr!.on('data', (c: Buffer) => (this.stderr = (this.stderr + c.toString()).slice(-4000)));
    readline.createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line) as { id: number; results: CallResult[] };
      this.pending.get(msg.id)?.(msg.results);
      this.pending.delete(msg.id);
    });
    process.once('exit', () => this.child.kill('SIGKILL'));
  }

  /** `count` calls one after another on the channel, with `metadata`. */
  call(count = 1, metadata: Record<string, string> = {}, deadlineMs = 5000): Promise<CallResult[]> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer to ${count} calls from the client process\n${this.stderr}`)), 20_000 + count * 100);
      this.pending.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.child.stdin!.write(JSON.stringify({ id, count, metadata, deadlineMs }) + '\n');
    });
  }

  /** The versions that answered `count` calls (`ERR<code>` for a failed call). */
  async versions(count = 1, metadata: Record<string, string> = {}): Promise<string[]> {
    return (await this.call(count, metadata)).map((r) => (r.ok ? r.version! : `ERR${r.code}`));
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.stdin!.write(JSON.stringify({ op: 'close' }) + '\n');
      const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
      await this.exited;
      clearTimeout(t);
    }
  }
}

// ---- CRDs ----------------------------------------------------------------------------------------------------------

/** The gRPC service on `port` with endpoints v1 and v2 (labels `version`), and a DestinationRule with both subsets. */
export function serviceYaml(port: number, v1: Backend, v2: Backend): string {
  return (
    YAML.stringify({
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'greeter', namespace: 'default' },
      spec: {
        hosts: [GRPC_HOST],
        ports: [{ number: port, name: 'api', protocol: 'GRPC' }],
        resolution: 'STATIC',
        endpoints: [
          { address: '127.0.0.1', ports: { api: v1.port }, labels: { version: 'v1' } },
          { address: '127.0.0.1', ports: { api: v2.port }, labels: { version: 'v2' } },
        ],
      },
    }) +
    '---\n' +
    YAML.stringify({
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: 'greeter', namespace: 'default' },
      spec: { host: GRPC_HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    })
  );
}

/** A VirtualService for the gRPC host with these `http` routes. */
export function virtualServiceYaml(http: unknown[]): string {
  return YAML.stringify({
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'VirtualService',
    metadata: { name: 'greeter', namespace: 'default' },
    spec: { hosts: [GRPC_HOST], http },
  });
}

/** One destination: the subset. */
export const to = (subset: string, weight?: number): Record<string, unknown> => ({
  destination: { host: GRPC_HOST, subset },
  ...(weight !== undefined ? { weight } : {}),
});
