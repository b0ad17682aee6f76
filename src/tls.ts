/**
 * TLS on listeners and to upstreams, as Envoy's `envoy.transport_sockets.tls` configures it (docs/security.md):
 *
 * - A listener filter chain's DownstreamTlsContext becomes a {@link ListenerTls}: accepted sockets are wrapped in a
 *   server-side TLS socket (STRICT), or — when a plaintext chain sits beside the TLS one, Istio's PERMISSIVE — the
 *   first byte decides (0x16, a TLS handshake record, → TLS; anything else → plaintext).
 * - A cluster's UpstreamTlsContext becomes an {@link UpstreamTls}: its connections use tls.connect.
 * - Certificates come from files (`filename`), inline PEM, or Istio's SDS secret names `default` (the workload
 *   certificate) and `ROOTCA` (the mesh root), which the proxy reads from its `--mesh-certs` directory
 *   (cert-chain.pem, key.pem, root-cert.pem — the files Istio mounts).
 * - Files are read when a config is applied: a missing or bad file rejects the config (the last good one keeps
 *   serving). Afterwards they are checked for changes at most every few seconds, on use, and reloaded; a reload that
 *   fails is logged and the previous certificates stay.
 * - The peer's SPIFFE identity (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>` URI SAN) gives `source.principal`
 *   (`<trust-domain>/ns/<ns>/sa/<sa>`, Istio's form) and `source.namespace`.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { log } from './log.js';
import { compileRegex, type ConfigRegex } from './regex.js';
import {
  SDS_SECRET_DEFAULT,
  SDS_SECRET_ROOTCA,
  TRANSPORT_SOCKET_TLS,
  TYPE_DOWNSTREAM_TLS_CONTEXT,
  TYPE_UPSTREAM_TLS_CONTEXT,
  type Cluster,
  type CommonTlsContextJson,
  type DataSourceJson,
  type DownstreamTlsContext,
  type Listener,
  type ResourceSnapshot,
  type StringMatcherJson,
  type TransportSocket,
  type UpstreamTlsContext,
} from './xds/resources.js';

/** The files of Istio's mounted mesh certificates, as `--mesh-certs DIR` holds them. */
export const MESH_CERT_CHAIN = 'cert-chain.pem';
export const MESH_KEY = 'key.pem';
export const MESH_ROOT_CERT = 'root-cert.pem';

/** How long a TLS handshake (and, PERMISSIVE, the first byte) may take before the connection is closed. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** Certificate files are checked for changes at most this often. */
const RELOAD_CHECK_MS = 2_000;

let defaultMeshCerts: string | undefined;

/** `--mesh-certs DIR` (the CLI): used when a Proxy is given no `meshCerts` of its own. Throws when DIR is not a directory. */
export function setDefaultMeshCerts(dir: string): void {
  let isDir = false;
  try {
    isDir = fs.statSync(dir).isDirectory();
  } catch {
    /* reported below */
  }
  if (!isDir) throw new Error(`--mesh-certs ${dir}: not a directory`);
  defaultMeshCerts = path.resolve(dir);
}

export interface TlsOptions {
  /** The `--mesh-certs` directory: resolves the SDS secrets `default` and `ROOTCA`. */
  readonly meshCerts?: string | undefined;
}

/** The peer identity a client certificate proves. */
export interface PeerIdentity {
  /** `<trust-domain>/ns/<ns>/sa/<sa>` (the SPIFFE URI without `spiffe://`). */
  readonly principal: string;
  /** `<ns>` of a SPIFFE id of Istio's form, if it is one. */
  readonly namespace: string | undefined;
}

type SanMatcher = (san: string) => boolean;

/** One data source read into bytes, remembering the file it came from (for reloads and messages). */
interface Source {
  readonly what: string;
  readonly file?: string;
  readonly inline?: Buffer;
}

/**
 * Certificate, key and CA of one TLS context, turned into a SecureContext; rebuilt when its files change.
 */
class TlsMaterial {
  private ctx: tls.SecureContext;
  private stamps: string;
  private checkedAt = Date.now();

  constructor(
    private readonly where: string,
    private readonly cert: Source | undefined,
    private readonly key: Source | undefined,
    private readonly ca: Source | undefined,
  ) {
    this.stamps = this.fileStamps();
    this.ctx = this.build();
  }

  get hasCa(): boolean {
    return this.ca !== undefined;
  }
  get hasCertificate(): boolean {
    return this.cert !== undefined;
  }
  /** The files it reads (for messages and dumps). */
  get files(): string[] {
    return [this.cert, this.key, this.ca].flatMap((s) => (s?.file ? [s.file] : []));
  }

  /** The current context, rebuilt first if a file changed since it was built (checked every few seconds). */
  context(): tls.SecureContext {
    const now = Date.now();
    if (now - this.checkedAt >= RELOAD_CHECK_MS) {
      this.checkedAt = now;
      const stamps = this.fileStamps();
      if (stamps !== this.stamps) {
        this.stamps = stamps;
        try {
          this.ctx = this.build();
          log.info('TLS certificates reloaded', { where: this.where, files: this.files.join(',') });
        } catch (err) {
          log.error('TLS certificate reload failed; the previous certificates stay in use', { where: this.where, error: (err as Error).message });
        }
      }
    }
    return this.ctx;
  }

  private build(): tls.SecureContext {
    const opts: tls.SecureContextOptions = { minVersion: 'TLSv1.2' };
    if (this.cert) opts.cert = read(this.where, this.cert);
    if (this.key) opts.key = read(this.where, this.key);
    if (this.ca) opts.ca = read(this.where, this.ca);
    try {
      return tls.createSecureContext(opts);
    } catch (err) {
      const files = this.files.length ? ` (${this.files.join(', ')})` : '';
      throw new Error(`${this.where}: unusable certificate, key or CA${files}: ${(err as Error).message}`);
    }
  }

  private fileStamps(): string {
    return this.files
      .map((f) => {
        try {
          const st = fs.statSync(f);
          return `${st.mtimeMs}:${st.size}:${st.ino}`;
        } catch {
          return 'missing';
        }
      })
      .join('|');
  }
}

function read(where: string, s: Source): Buffer {
  if (s.inline) return s.inline;
  try {
    return fs.readFileSync(s.file!);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`${where}: cannot read ${s.what} file "${s.file}": ${e.code ?? e.message}`);
  }
}

/** What a listener's TLS settings are; read per accepted connection, so a config change applies to new connections. */
export interface ListenerTls {
  /** STRICT: TLS only. PERMISSIVE: TLS and plaintext on the same port. */
  readonly mode: 'STRICT' | 'PERMISSIVE';
  readonly requireClientCertificate: boolean;
  /** Whether client certificates are verified (a trusted CA is configured). */
  readonly verifiesClients: boolean;
  readonly sanMatchers: readonly SanMatcher[];
  readonly material: TlsMaterial;
}

/** A cluster's TLS settings. */
export interface UpstreamTls {
  readonly sni: string | undefined;
  readonly sanMatchers: readonly SanMatcher[];
  readonly material: TlsMaterial;
  /** Whether the server certificate is verified (a trusted CA is configured). */
  readonly verifiesServer: boolean;
}

// ---- resolving xDS resources ----------------------------------------------------------------------------------------

const listenerCache = new WeakMap<Listener, ListenerTls | null>();
const clusterCache = new WeakMap<Cluster, UpstreamTls | null>();

/**
 * Reads every TLS context of `snapshot` (its files too), before any of it is applied: throws an Error naming the
 * resource and the file on the first problem. The results are kept for {@link listenerTlsOf} / {@link upstreamTlsOf}.
 */
export function resolveSnapshotTls(snapshot: ResourceSnapshot, opts: TlsOptions = {}): void {
  for (const l of snapshot.listeners) {
    if (l.api_listener && !l.address) continue;
    listenerCache.set(l, resolveListener(l, opts) ?? null);
  }
  for (const c of snapshot.clusters) clusterCache.set(c, resolveCluster(c, opts) ?? null);
}

/** The TLS settings of listener `l` (resolved by {@link resolveSnapshotTls}, or now without mesh certificates). */
export function listenerTlsOf(l: Listener): ListenerTls | undefined {
  const cached = listenerCache.get(l);
  if (cached !== undefined) return cached ?? undefined;
  const resolved = resolveListener(l, {});
  listenerCache.set(l, resolved ?? null);
  return resolved;
}

/** The TLS settings of cluster `c` (resolved by {@link resolveSnapshotTls}, or now without mesh certificates). */
export function upstreamTlsOf(c: Cluster): UpstreamTls | undefined {
  const cached = clusterCache.get(c);
  if (cached !== undefined) return cached ?? undefined;
  const resolved = resolveCluster(c, {});
  clusterCache.set(c, resolved ?? null);
  return resolved;
}

function resolveListener(l: Listener, opts: TlsOptions): ListenerTls | undefined {
  const chains = l.filter_chains ?? [];
  let tlsChain = -1;
  let plain = false;
  chains.forEach((chain, i) => {
    if (chain.transport_socket && isTlsSocket(chain.transport_socket, `listener ${l.name}: filter_chains[${i}].transport_socket`)) {
      if (tlsChain < 0) tlsChain = i;
    } else plain = true;
  });
  if (tlsChain < 0) return undefined;
  const where = `listener ${l.name}: filter_chains[${tlsChain}].transport_socket`;
  const ctx = chains[tlsChain]!.transport_socket!.typed_config as DownstreamTlsContext;
  if (ctx?.['@type'] !== TYPE_DOWNSTREAM_TLS_CONTEXT) {
    throw new Error(`${where}: typed_config must be a DownstreamTlsContext (got ${(ctx as { '@type'?: string } | undefined)?.['@type'] ?? 'none'})`);
  }
  const common = commonContext(ctx.common_tls_context, `${where}.typed_config.common_tls_context`, opts);
  if (!common.material.hasCertificate) throw new Error(`${where}: a listener needs a certificate (common_tls_context.tls_certificates or the SDS secret "default")`);
  const require = ctx.require_client_certificate === true;
  if (require && !common.material.hasCa) {
    throw new Error(`${where}: require_client_certificate needs a validation context with a trusted CA (validation_context.trusted_ca or the SDS secret "ROOTCA")`);
  }
  return {
    mode: plain ? 'PERMISSIVE' : 'STRICT',
    requireClientCertificate: require,
    verifiesClients: common.material.hasCa,
    sanMatchers: common.sans,
    material: common.material,
  };
}

function resolveCluster(c: Cluster, opts: TlsOptions): UpstreamTls | undefined {
  const where = `cluster ${c.name}: transport_socket`;
  if (!c.transport_socket || !isTlsSocket(c.transport_socket, where)) return undefined;
  const ctx = c.transport_socket.typed_config as UpstreamTlsContext;
  if (ctx?.['@type'] !== TYPE_UPSTREAM_TLS_CONTEXT) {
    throw new Error(`${where}: typed_config must be an UpstreamTlsContext (got ${(ctx as { '@type'?: string } | undefined)?.['@type'] ?? 'none'})`);
  }
  const common = commonContext(ctx.common_tls_context, `${where}.typed_config.common_tls_context`, opts);
  return { sni: ctx.sni || undefined, sanMatchers: common.sans, material: common.material, verifiesServer: common.material.hasCa };
}

/** True for the TLS transport socket; a raw_buffer one is plaintext; anything else is unsupported. */
function isTlsSocket(ts: TransportSocket, where: string): boolean {
  if (ts.name === TRANSPORT_SOCKET_TLS) return true;
  if (ts.name === 'envoy.transport_sockets.raw_buffer' || ts.name === 'raw_buffer') return false;
  throw new Error(`${where}: transport socket "${ts.name}" is not supported (use ${TRANSPORT_SOCKET_TLS})`);
}

function commonContext(c: CommonTlsContextJson | undefined, where: string, opts: TlsOptions): { material: TlsMaterial; sans: SanMatcher[] } {
  const common = c ?? {};
  let cert: Source | undefined;
  let key: Source | undefined;
  const certs = common.tls_certificates ?? [];
  const sdsCerts = common.tls_certificate_sds_secret_configs ?? [];
  if (certs.length > 0) {
    const first = certs[0]!;
    cert = source(first.certificate_chain, `${where}.tls_certificates[0].certificate_chain`, 'certificate_chain');
    key = source(first.private_key, `${where}.tls_certificates[0].private_key`, 'private_key');
    if (!cert || !key) throw new Error(`${where}.tls_certificates[0]: both certificate_chain and private_key are required`);
  } else if (sdsCerts.length > 0) {
    const name = sdsCerts[0]!.name;
    if (name !== SDS_SECRET_DEFAULT) throw new Error(`${where}.tls_certificate_sds_secret_configs[0]: unknown secret "${name}" (Waypost serves Istio's "${SDS_SECRET_DEFAULT}" from --mesh-certs)`);
    const dir = meshDir(opts, `${where}.tls_certificate_sds_secret_configs[0]`);
    cert = { what: `mesh ${MESH_CERT_CHAIN}`, file: path.join(dir, MESH_CERT_CHAIN) };
    key = { what: `mesh ${MESH_KEY}`, file: path.join(dir, MESH_KEY) };
  }
  const combined = common.combined_validation_context;
  const validation = combined?.default_validation_context ?? common.validation_context;
  const sdsCa = combined?.validation_context_sds_secret_config ?? common.validation_context_sds_secret_config;
  let ca: Source | undefined;
  if (validation?.trusted_ca) ca = source(validation.trusted_ca, `${where}.validation_context.trusted_ca`, 'trusted_ca');
  else if (sdsCa) {
    if (sdsCa.name !== SDS_SECRET_ROOTCA) throw new Error(`${where}: unknown validation secret "${sdsCa.name}" (Waypost serves Istio's "${SDS_SECRET_ROOTCA}" from --mesh-certs)`);
    ca = { what: `mesh ${MESH_ROOT_CERT}`, file: path.join(meshDir(opts, `${where}.validation_context_sds_secret_config`), MESH_ROOT_CERT) };
  }
  const sans = (validation?.match_subject_alt_names ?? []).map((m, i) => sanMatcher(m, `${where}.validation_context.match_subject_alt_names[${i}]`));
  return { material: new TlsMaterial(where.replace(/\.typed_config\.common_tls_context$/, ''), cert, key, ca), sans };
}

function meshDir(opts: TlsOptions, where: string): string {
  const dir = opts.meshCerts ?? defaultMeshCerts;
  if (dir) return dir;
  throw new Error(`${where}: uses the mesh certificates, but the proxy was started without --mesh-certs DIR`);
}

function source(ds: DataSourceJson | undefined, where: string, what: string): Source | undefined {
  if (!ds) return undefined;
  if (ds.filename) return { what, file: ds.filename };
  if (ds.inline_string) return { what, inline: Buffer.from(ds.inline_string, 'utf8') };
  if (ds.inline_bytes) return { what, inline: Buffer.from(ds.inline_bytes, 'base64') };
  throw new Error(`${where}: needs filename, inline_string or inline_bytes`);
}

function sanMatcher(m: StringMatcherJson, where: string): SanMatcher {
  const fold = m.ignore_case === true ? (s: string) => s.toLowerCase() : (s: string) => s;
  if (m.exact !== undefined) {
    const want = fold(m.exact);
    return (san) => fold(san) === want;
  }
  if (m.prefix !== undefined) {
    const want = fold(m.prefix);
    return (san) => fold(san).startsWith(want);
  }
  if (m.suffix !== undefined) {
    const want = fold(m.suffix);
    return (san) => fold(san).endsWith(want);
  }
  if (m.contains !== undefined) {
    const want = fold(m.contains);
    return (san) => fold(san).includes(want);
  }
  if (m.safe_regex?.regex !== undefined) {
    // RE2, whole SAN, linear time (src/regex.ts); ignore_case does not apply to a regex, as in Envoy.
    let re: ConfigRegex;
    try {
      re = compileRegex(m.safe_regex.regex);
    } catch (err) {
      throw new Error(`${where}.safe_regex.regex: ${(err as Error).message}`);
    }
    return (san) => re.test(san);
  }
  throw new Error(`${where}: needs exact, prefix, suffix, contains or safe_regex`);
}

// ---- certificates ---------------------------------------------------------------------------------------------------

/** The SAN values of a certificate (`URI:…`, `DNS:…`, `IP Address:…` entries, without their type prefix). */
export function subjectAltNames(cert: tls.PeerCertificate | undefined): Array<{ type: string; value: string }> {
  const text = cert?.subjectaltname;
  if (!text) return [];
  const out: Array<{ type: string; value: string }> = [];
  // Node quotes a value with special characters as a JSON string.
  const re = /(?:^|,\s*)([A-Za-z ]+):("(?:[^"\\]|\\.)*"|[^,]*)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    let value = m[2]!;
    if (value.startsWith('"')) {
      try {
        value = JSON.parse(value) as string;
      } catch {
        /* keep as is */
      }
    }
    out.push({ type: m[1]!.trim(), value });
  }
  return out;
}

/** The identity of a SPIFFE URI (`spiffe://td/ns/x/sa/y` → principal `td/ns/x/sa/y`, namespace `x`). */
export function spiffeIdentity(uri: string): PeerIdentity | undefined {
  if (!uri.startsWith('spiffe://')) return undefined;
  const principal = uri.slice('spiffe://'.length);
  if (!principal) return undefined;
  const m = /^[^/]+\/ns\/([^/]+)\/sa\/[^/]+$/.exec(principal);
  return { principal, namespace: m ? m[1] : undefined };
}

const identities = new WeakMap<object, PeerIdentity | null>();

/** The SPIFFE identity of a verified client certificate on `socket` (undefined over plaintext or without one). */
export function peerIdentity(socket: net.Socket): PeerIdentity | undefined {
  const cached = identities.get(socket);
  if (cached !== undefined) return cached ?? undefined;
  let id: PeerIdentity | undefined;
  if (socket instanceof tls.TLSSocket && socket.authorized) {
    for (const san of subjectAltNames(socket.getPeerCertificate())) {
      if (san.type !== 'URI') continue;
      id = spiffeIdentity(san.value);
      if (id) break;
    }
  }
  identities.set(socket, id ?? null);
  return id;
}

function sansMatch(cert: tls.PeerCertificate | undefined, matchers: readonly SanMatcher[]): boolean {
  if (matchers.length === 0) return true;
  const values = subjectAltNames(cert).map((s) => s.value);
  return values.some((v) => matchers.some((m) => m(v)));
}

// ---- listeners ------------------------------------------------------------------------------------------------------

export interface TlsAcceptHooks {
  /** A handshake failed or timed out, or a peer was refused; the socket is already destroyed. */
  onHandshakeError(reason: string): void;
}

/**
 * A net.Server connection callback: sockets of a listener without TLS go to `accept` at once; with TLS they go
 * there once the handshake succeeded (PERMISSIVE: a plaintext first byte sends them on as they are).
 */
export function tlsAcceptor(
  listener: () => string,
  settings: () => ListenerTls | undefined,
  accept: (socket: net.Socket) => void,
  hooks: TlsAcceptHooks,
): (socket: net.Socket) => void {
  return (socket) => {
    const t = settings();
    if (!t) {
      accept(socket);
      return;
    }
    const timer = setTimeout(() => refuse('handshake_timeout', `no TLS handshake within ${HANDSHAKE_TIMEOUT_MS} ms`), HANDSHAKE_TIMEOUT_MS);
    const onEarlyError = (err: NodeJS.ErrnoException): void => refuse('socket_error', err.code ?? err.message);
    socket.on('error', onEarlyError);
    let done = false;
    function refuse(reason: string, detail: string): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      hooks.onHandshakeError(reason);
      log.debug('TLS connection refused', { listener: listener(), reason, detail, remote: `${socket.remoteAddress}:${socket.remotePort}` });
    }
    function handOver(s: net.Socket): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('error', onEarlyError);
      accept(s);
    }
    function startTls(): void {
      const secure = new tls.TLSSocket(socket, {
        isServer: true,
        secureContext: t!.material.context(),
        requestCert: t!.verifiesClients,
        rejectUnauthorized: t!.requireClientCertificate,
      });
      secure.on('error', (err: NodeJS.ErrnoException) => refuse('handshake_failed', err.code ?? err.message));
      secure.once('secure', () => onSecure(secure));
    }
    /** The handshake is done: check the client's certificate (bytes from the peer), then hand the socket over. */
    function onSecure(secure: tls.TLSSocket): void {
      try {
        const cert = secure.getPeerCertificate();
        const presented = cert !== undefined && Object.keys(cert).length > 0;
        if (t!.requireClientCertificate && !presented) return refuse('no_client_certificate', 'a client certificate is required');
        if (presented && t!.verifiesClients) {
          // What a tls.Server does for its own sockets (onServerSocketSecure), done here for a socket made by hand.
          const ssl = (secure as unknown as { ssl?: { verifyError(): Error | null | undefined } }).ssl;
          const verifyError = ssl ? ssl.verifyError() : new Error('no TLS handle to verify the client certificate with');
          if (verifyError) return refuse('bad_client_certificate', (verifyError as NodeJS.ErrnoException).code ?? verifyError.message);
          secure.authorized = true;
        }
        if (presented && !sansMatch(cert, t!.sanMatchers)) return refuse('san_mismatch', 'the client certificate matches no match_subject_alt_names');
        secure.removeAllListeners('error');
      } catch (err) {
        return refuse('bad_client_certificate', String(err instanceof Error ? err.message : err));
      }
      handOver(secure);
    }
    if (t.mode === 'STRICT') {
      startTls();
      return;
    }
    // PERMISSIVE: peek at the first byte. 0x16 opens a TLS handshake record; no plaintext protocol we carry starts so.
    socket.once('data', (chunk: Buffer) => onFirstBytes(chunk));
    function onFirstBytes(chunk: Buffer): void {
      socket.pause();
      socket.unshift(chunk);
      if (chunk[0] !== 0x16) {
        handOver(socket);
        socket.resume();
        return;
      }
      try {
        startTls();
      } catch (err) {
        refuse('handshake_failed', String(err instanceof Error ? err.message : err));
      }
    }
  };
}

// ---- upstreams ------------------------------------------------------------------------------------------------------

/** Options for tls.connect to `host:port` of a cluster with TLS. */
export function upstreamConnectOptions(t: UpstreamTls, host: string, port: number): tls.ConnectionOptions {
  const opts: tls.ConnectionOptions = {
    host,
    port,
    secureContext: t.material.context(),
    // Without a CA, as Envoy (and Istio's SIMPLE without caCertificates), the server certificate is not verified.
    rejectUnauthorized: t.verifiesServer,
    // As Envoy: the host name is not checked against the certificate; match_subject_alt_names (Istio's
    // subjectAltNames) is, when given.
    checkServerIdentity: (_host, cert) =>
      sansMatch(cert, t.sanMatchers) ? undefined : Object.assign(new Error(`the server certificate of ${host}:${port} matches none of the subjectAltNames`), { code: 'ERR_TLS_SAN_MISMATCH' }),
  };
  if (t.sni) opts.servername = t.sni;
  else if (net.isIP(host) === 0) opts.servername = host;
  return opts;
}

/** A TLS connection to an upstream: `secureConnect` stands for `connect`. */
export function connectTls(t: UpstreamTls, host: string, port: number): tls.TLSSocket {
  const socket = tls.connect(upstreamConnectOptions(t, host, port));
  socket.setNoDelay(true);
  return socket;
}
