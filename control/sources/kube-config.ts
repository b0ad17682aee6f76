/**
 * Where the Kubernetes API server is and how to authenticate to it: in-cluster config (the pod's service account)
 * or a kubeconfig file, resolved in the order controller-runtime uses — an explicit `--kubeconfig PATH`, then
 * `$KUBECONFIG` (a `:`-separated list, merged: the first file to set a value wins), then in-cluster config, then
 * `~/.kube/config`.
 *
 * Supported in a kubeconfig: `server` (https or http), `certificate-authority` / `-data`,
 * `insecure-skip-tls-verify`, `tls-server-name`, user `token` / `tokenFile`, `client-certificate` / `-data` +
 * `client-key` / `-data`, `username` / `password`. Not supported (a clear error): `exec` and `auth-provider`
 * credential plugins.
 */
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';

/** The in-cluster service account files (token, ca.crt, namespace). */
export const IN_CLUSTER_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeConnection {
  /** `https://host:port` (or http), without a trailing slash; may carry a path prefix. */
  server: URL;
  /** PEM CA bundle to verify the server with; undefined: the system CAs. */
  ca?: Buffer;
  /** Client certificate + key (PEM). */
  cert?: Buffer;
  key?: Buffer;
  /** Skip server certificate verification (kubeconfig `insecure-skip-tls-verify`). */
  insecure?: boolean;
  /** SNI / name to verify (kubeconfig `tls-server-name`). */
  serverName?: string;
  /** The bearer token, read for each request (in-cluster tokens are rotated on disk). */
  token?: () => string | undefined;
  /** `Authorization: Basic …` credentials. */
  basic?: { username: string; password: string };
  /** The context's namespace (informational: the source watches every namespace unless told one). */
  namespace?: string;
  /** Where it came from, for logs: `in-cluster`, `kubeconfig /path (context x)`. */
  origin: string;
}

export interface ResolveOptions {
  /** `--kubeconfig PATH`. */
  kubeconfig?: string;
  /** Context to use instead of `current-context`. */
  context?: string;
  /** Defaults to `process.env`. */
  env?: NodeJS.ProcessEnv;
  /** The service account directory (tests). */
  inClusterDir?: string;
}

/** Resolves the connection as described above; throws with a message saying what was tried. */
export function resolveKubeConnection(opts: ResolveOptions = {}): KubeConnection {
  const env = opts.env ?? process.env;
  if (opts.kubeconfig) return fromKubeconfig([opts.kubeconfig], opts.context);
  const list = (env.KUBECONFIG ?? '').split(path.delimiter).filter((p) => p !== '');
  if (list.length > 0) return fromKubeconfig(list, opts.context);
  if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) return inCluster(env, opts.inClusterDir ?? IN_CLUSTER_DIR);
  const home = path.join(env.HOME ?? os.homedir(), '.kube', 'config');
  if (existsSync(home)) return fromKubeconfig([home], opts.context);
  throw new Error(
    'no Kubernetes configuration: pass --kubeconfig PATH, set KUBECONFIG, run in a pod (KUBERNETES_SERVICE_HOST), or create ~/.kube/config',
  );
}

/** In-cluster config: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`, the service account token and CA. */
export function inCluster(env: NodeJS.ProcessEnv, dir: string = IN_CLUSTER_DIR): KubeConnection {
  const host = env.KUBERNETES_SERVICE_HOST!;
  const port = env.KUBERNETES_SERVICE_PORT!;
  const tokenFile = path.join(dir, 'token');
  if (!existsSync(tokenFile)) throw new Error(`in-cluster config: ${tokenFile} is missing (no service account token mounted?)`);
  const caFile = path.join(dir, 'ca.crt');
  const nsFile = path.join(dir, 'namespace');
  return {
    server: new URL(`https://${host.includes(':') ? `[${host}]` : host}:${port}`),
    ca: existsSync(caFile) ? readFileSync(caFile) : undefined,
    token: fileToken(tokenFile),
    namespace: existsSync(nsFile) ? readFileSync(nsFile, 'utf8').trim() : undefined,
    origin: 'in-cluster',
  };
}

type Named<T> = { name?: string } & Record<string, T | unknown>;

interface KubeconfigFile {
  file: string;
  doc: Record<string, unknown>;
}

/** Reads and merges kubeconfig files (first file to define a name or `current-context` wins). */
export function fromKubeconfig(files: string[], context?: string): KubeConnection {
  const loaded: KubeconfigFile[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if (files.length > 1 && (err as NodeJS.ErrnoException).code === 'ENOENT') continue; // KUBECONFIG may list missing files
      throw new Error(`cannot read kubeconfig ${file}: ${(err as Error).message}`);
    }
    let doc: unknown;
    try {
      doc = YAML.parse(text);
    } catch (err) {
      throw new Error(`kubeconfig ${file}: not YAML: ${(err as Error).message.split('\n')[0]}`);
    }
    if (doc === null || doc === undefined) continue;
    if (typeof doc !== 'object' || Array.isArray(doc)) throw new Error(`kubeconfig ${file}: not a mapping`);
    loaded.push({ file, doc: doc as Record<string, unknown> });
  }
  if (loaded.length === 0) throw new Error(`no kubeconfig found in ${files.join(', ')}`);

  const ctxName = context ?? (loaded.map((l) => l.doc['current-context']).find((c) => typeof c === 'string' && c !== '') as string | undefined);
  if (!ctxName) throw new Error(`kubeconfig ${files.join(':')}: no current-context`);
  const ctx = findNamed(loaded, 'contexts', 'context', ctxName);
  if (!ctx) throw new Error(`kubeconfig ${files.join(':')}: context "${ctxName}" is not defined`);
  const clusterName = str(ctx.value.cluster);
  const userName = str(ctx.value.user);
  const cluster = clusterName ? findNamed(loaded, 'clusters', 'cluster', clusterName) : undefined;
  if (!cluster) throw new Error(`kubeconfig ${ctx.file}: context "${ctxName}": cluster "${clusterName ?? ''}" is not defined`);
  const user = userName ? findNamed(loaded, 'users', 'user', userName) : undefined;

  const c = cluster.value;
  const where = `kubeconfig ${cluster.file}: cluster "${clusterName}"`;
  const serverText = str(c.server);
  if (!serverText) throw new Error(`${where}: server is missing`);
  let server: URL;
  try {
    server = new URL(serverText);
  } catch {
    throw new Error(`${where}: server "${serverText}" is not a URL`);
  }
  if (server.protocol !== 'https:' && server.protocol !== 'http:') throw new Error(`${where}: server "${serverText}" must be http(s)`);

  const conn: KubeConnection = {
    server,
    ca: pemFrom(c, 'certificate-authority', cluster.file, where),
    insecure: c['insecure-skip-tls-verify'] === true,
    serverName: str(c['tls-server-name']),
    namespace: str(ctx.value.namespace),
    origin: `kubeconfig ${loaded.map((l) => l.file).join(':')} (context ${ctxName})`,
  };
  if (user) {
    const u = user.value;
    const uwhere = `kubeconfig ${user.file}: user "${userName}"`;
    if (u.exec !== undefined || u['auth-provider'] !== undefined) {
      throw new Error(`${uwhere}: exec and auth-provider credential plugins are not supported; use a token, tokenFile or client certificate`);
    }
    const token = str(u.token);
    const tokenFile = str(u.tokenFile);
    if (token) conn.token = () => token;
    else if (tokenFile) conn.token = fileToken(path.resolve(path.dirname(user.file), tokenFile));
    conn.cert = pemFrom(u, 'client-certificate', user.file, uwhere);
    conn.key = pemFrom(u, 'client-key', user.file, uwhere);
    if ((conn.cert === undefined) !== (conn.key === undefined)) throw new Error(`${uwhere}: client-certificate and client-key go together`);
    const username = str(u.username);
    if (username !== undefined) conn.basic = { username, password: str(u.password) ?? '' };
  }
  return conn;
}

function findNamed(
  files: KubeconfigFile[],
  listKey: string,
  itemKey: string,
  name: string,
): { file: string; value: Record<string, unknown> } | undefined {
  for (const f of files) {
    const list = f.doc[listKey];
    if (!Array.isArray(list)) continue;
    for (const entry of list as Array<Named<unknown>>) {
      if (entry && typeof entry === 'object' && entry.name === name) {
        const value = entry[itemKey];
        return { file: f.file, value: value && typeof value === 'object' ? (value as Record<string, unknown>) : {} };
      }
    }
  }
  return undefined;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** `<key>-data` (base64 PEM) or `<key>` (a path, relative to the kubeconfig's directory). */
function pemFrom(m: Record<string, unknown>, key: string, file: string, where: string): Buffer | undefined {
  const data = str(m[`${key}-data`]);
  if (data) return Buffer.from(data, 'base64');
  const p = str(m[key]);
  if (!p) return undefined;
  const full = path.resolve(path.dirname(file), p);
  try {
    return readFileSync(full);
  } catch (err) {
    throw new Error(`${where}: cannot read ${key} ${full}: ${(err as Error).message}`);
  }
}

/** A token read from a file, re-read at most every 60 s (projected service account tokens rotate). */
function fileToken(file: string): () => string | undefined {
  let cached: string | undefined;
  let readAt = 0;
  return () => {
    const now = Date.now();
    if (cached === undefined || now - readAt > 60_000) {
      try {
        cached = readFileSync(file, 'utf8').trim();
        readAt = now;
      } catch {
        // keep the last token: the file is being rotated
      }
    }
    return cached;
  };
}
