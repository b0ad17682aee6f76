/**
 * Shared pieces of the security suites: CRD documents → a snapshot (validated, translated), an in-process Proxy
 * with mesh certificates, Dubbo clients over plaintext or TLS, and a TLS terminator (node:tls) in front of a
 * plaintext provider that records the client certificates it sees.
 */
import type { DownstreamLimits } from '../../src/limits.js';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import YAML from 'yaml';
import { checkDocuments, formatErrors, parseDocuments, translate } from '../../control/index.js';
import type { WaypostSnapshot } from '../../control/index.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { createRegistry } from '../../src/builtin-codecs.js';
import { Proxy } from '../../src/proxy.js';
import { subjectAltNames } from '../../src/tls.js';
import type { Leaf } from './pki.js';

export const HOST = 'org.apache.dubbo.samples.basic.api.demoservice';
export const DEMO_INTERFACE = 'org.apache.dubbo.samples.basic.api.DemoService';

/** YAML text of `docs` as one multi-document file. */
export function yamlOf(docs: unknown[]): string {
  return docs.map((d) => YAML.stringify(d)).join('---\n');
}

/** Validates and translates `docs` (throws with the formatted problems). */
export function snapshotOf(docs: unknown[], file = 'security.yaml'): WaypostSnapshot {
  const parsed = parseDocuments(yamlOf(docs), file);
  if (parsed.errors.length) throw new Error(formatErrors(parsed.errors));
  const checked = checkDocuments(parsed.docs);
  if (checked.errors.length) throw new Error(formatErrors(checked.errors));
  return translate(parsed.docs);
}

/** The validation errors of `docs`, formatted (`file:doc: Kind/name: field.path: message`). */
export function problemsOf(docs: unknown[], file = 'security.yaml'): { errors: string[]; warnings: string[] } {
  const parsed = parseDocuments(yamlOf(docs), file);
  const checked = checkDocuments(parsed.docs);
  return { errors: [...parsed.errors, ...checked.errors].map((e) => e.format()), warnings: checked.warnings.map((w) => w.format()) };
}

/** A Dubbo ServiceEntry on `listen` with one endpoint per port (labels `app: provider` on all). */
export function serviceEntry(listen: number, endpoints: number[], opts: { namespace?: string; protocol?: string; host?: string } = {}): unknown {
  const portName = `tcp-metaprotocol-${opts.protocol ?? 'dubbo'}`;
  return {
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'ServiceEntry',
    metadata: { name: 'svc', ...(opts.namespace ? { namespace: opts.namespace } : {}) },
    spec: {
      hosts: [opts.host ?? HOST],
      ports: [{ number: listen, name: portName, protocol: 'TCP' }],
      resolution: 'STATIC',
      endpoints: endpoints.map((p) => ({ address: '127.0.0.1', ports: { [portName]: p }, labels: { app: 'provider' } })),
    },
  };
}

export function newProxy(meshCerts?: string, limits?: Partial<DownstreamLimits>): Proxy {
  return new Proxy({ codecs: createRegistry(), ...(meshCerts ? { meshCerts } : {}), ...(limits ? { limits } : {}) });
}

/** Sum of the samples of metric `name` whose labels include `labels`. */
export async function metricValue(proxy: Proxy, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await proxy.metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  if (!metric) return 0;
  let sum = 0;
  for (const v of metric.values as Array<{ value: number; labels: Record<string, string | number> }>) {
    if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)) sum += v.value;
  }
  return sum;
}

const wrap = RawDubboConnection as unknown as new (socket: net.Socket) => RawDubboConnection;

/** A plaintext Dubbo client. */
export function dubboPlain(port: number): Promise<RawDubboConnection> {
  return RawDubboConnection.connect(`127.0.0.1:${port}`);
}

/**
 * A Dubbo client over TLS to `port`, presenting `client` (none: no certificate) and trusting `ca`. Rejects when the
 * handshake fails.
 */
export function dubboTls(port: number, ca: string, client?: Leaf): Promise<{ conn: RawDubboConnection; socket: tls.TLSSocket }> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca: readPem(ca),
      ...(client ? { cert: readPem(client.cert), key: readPem(client.key) } : {}),
      checkServerIdentity: () => undefined,
    });
    socket.once('error', reject);
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      resolve({ conn: new wrap(socket), socket });
    });
  });
}

function readPem(file: string): Buffer {
  return readFileSync(file);
}

/**
 * Whether a request over `conn` gets an answer, or the connection is closed first (a refused TLS peer). Resolves
 * 'closed' or the answer's status.
 */
export async function callOrClosed(conn: RawDubboConnection, id: number, method = 'sayHello', args: unknown[] = ['x']): Promise<number | 'closed'> {
  try {
    const r = await conn.call({ id, method, args, timeoutMs: 10_000 });
    return r.status;
  } catch (err) {
    if (conn.isClosed) return 'closed';
    throw err;
  }
}

export interface Terminator {
  port: number;
  /** The SPIFFE URI SANs of the client certificates seen, one per accepted connection ('' when none). */
  readonly clientIds: string[];
  close(): Promise<void>;
}

/** A TLS server on a free port that pipes each connection to `127.0.0.1:target`. */
export function startTlsTerminator(opts: { leaf: Leaf; ca?: string; requireClientCert?: boolean; target: number }): Promise<Terminator> {
  const clientIds: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = tls.createServer(
    {
      cert: readPem(opts.leaf.cert),
      key: readPem(opts.leaf.key),
      ...(opts.ca ? { ca: readPem(opts.ca) } : {}),
      requestCert: opts.requireClientCert === true,
      rejectUnauthorized: opts.requireClientCert === true,
    },
    (socket) => {
      const uri = subjectAltNames(socket.getPeerCertificate()).find((s) => s.type === 'URI')?.value ?? '';
      clientIds.push(uri);
      const upstream = net.connect({ host: '127.0.0.1', port: opts.target });
      sockets.add(socket).add(upstream);
      socket.pipe(upstream).pipe(socket);
      const end = (): void => {
        socket.destroy();
        upstream.destroy();
      };
      socket.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
    },
  );
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({
        port,
        clientIds,
        close: () =>
          new Promise<void>((r) => {
            for (const s of sockets) s.destroy();
            server.close(() => r());
          }),
      });
    });
  });
}
