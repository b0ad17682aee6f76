/**
 * A fake Kubernetes API server speaking the real list/watch wire format, for the Kubernetes source's tests:
 *
 * - `GET /apis/GROUP/VERSION[/namespaces/NS]/PLURAL` (`/api/v1/…` for the core group) → a `…List` with
 *   `metadata.resourceVersion`, paginated by `limit` / `continue`; items of core kinds carry no apiVersion/kind (as
 *   the real server sends them), CRD items do;
 * - `…?watch=1&resourceVersion=RV` → 200 with a chunked newline-delimited JSON stream: the recorded events after RV,
 *   then live ones; BOOKMARKs on demand; ends after `timeoutSeconds`. A resourceVersion older than the compacted
 *   history gets an `ERROR` event with a 410 Status (what the real server does), or — `goneAsHttp` — an HTTP 410;
 * - bearer token auth (401 otherwise), 404 for kinds it does not serve, 403 for kinds marked forbidden;
 * - HTTPS with the test CA in ./fixtures (or plain HTTP).
 *
 * Every request is recorded (`requests`) so tests can assert what the client asked for.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Res {
  group: string;
  version: string;
  plural: string;
  kind: string;
}

export type Obj = {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string>; [k: string]: unknown };
  [k: string]: unknown;
};

interface Watch {
  coll: string;
  namespace: string | undefined;
  res: http.ServerResponse;
  timer: NodeJS.Timeout;
}

export interface RecordedRequest {
  path: string;
  query: Record<string, string>;
  auth: string | undefined;
  status: number;
}

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
export const TEST_CA = (): Buffer => readFileSync(path.join(FIXTURES, 'ca.pem'));

export const collKey = (r: Res): string => `${r.group}/${r.version}/${r.plural}`;

export class FakeKubeApi {
  readonly token = 'waypost-test-token';
  readonly requests: RecordedRequest[] = [];
  /** Collections answered with 404 (CRD not installed) / 403 (RBAC). */
  readonly missing = new Set<string>();
  readonly forbidden = new Set<string>();
  /** Answer a too-old watch with HTTP 410 instead of an ERROR event. */
  goneAsHttp = false;
  /** Largest list page returned, whatever `limit` asks. */
  maxPage = Infinity;
  rv = 1000;
  private readonly served = new Map<string, Res>();
  private readonly store = new Map<string, Map<string, Obj>>();
  private history: Array<{ rv: number; coll: string; type: string; object: Obj }> = [];
  /** Watches from a resourceVersion below this are too old. */
  private oldest = 0;
  private readonly watches = new Set<Watch>();
  private readonly sockets = new Set<net.Socket>();
  private server!: http.Server;
  port = 0;

  constructor(
    resources: readonly Res[],
    private readonly tls = true,
  ) {
    for (const r of resources) {
      this.served.set(collKey(r), r);
      this.store.set(collKey(r), new Map());
    }
  }

  get url(): string {
    return `${this.tls ? 'https' : 'http'}://127.0.0.1:${this.port}`;
  }

  async listen(): Promise<void> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => this.handle(req, res);
    this.server = this.tls
      ? https.createServer({ cert: readFileSync(path.join(FIXTURES, 'server.pem')), key: readFileSync(path.join(FIXTURES, 'server.key')) }, handler)
      : http.createServer(handler);
    this.server.on(this.tls ? 'secureConnection' : 'connection', (s: net.Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const w of this.watches) clearTimeout(w.timer);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** Creates or replaces an object (ADDED / MODIFIED to the watches). Returns its new resourceVersion. */
  put(r: Res, obj: Obj): string {
    const coll = collKey(r);
    const items = this.store.get(coll)!;
    const key = `${obj.metadata.namespace ?? ''}/${obj.metadata.name}`;
    const type = items.has(key) ? 'MODIFIED' : 'ADDED';
    const rv = String(++this.rv);
    const stored: Obj = { ...structuredClone(obj), metadata: { ...structuredClone(obj.metadata), resourceVersion: rv } };
    if (r.group !== '') Object.assign(stored, { apiVersion: `${r.group}/${r.version}`, kind: r.kind });
    items.set(key, stored);
    this.emit(coll, type, stored);
    return rv;
  }

  remove(r: Res, namespace: string, name: string): void {
    const coll = collKey(r);
    const items = this.store.get(coll)!;
    const key = `${namespace}/${name}`;
    const old = items.get(key);
    if (!old) throw new Error(`no ${r.kind} ${key}`);
    items.delete(key);
    this.emit(coll, 'DELETED', { ...old, metadata: { ...old.metadata, resourceVersion: String(++this.rv) } });
  }

  /** Changes made while no watch sees them and whose events are compacted away: a watch from before them gets 410. */
  silently(fn: () => void): void {
    const watches = [...this.watches];
    this.watches.clear();
    try {
      fn();
    } finally {
      for (const w of watches) this.watches.add(w);
    }
    this.history = [];
    this.oldest = this.rv;
  }

  get(r: Res, namespace: string, name: string): Obj | undefined {
    return this.store.get(collKey(r))!.get(`${namespace}/${name}`);
  }

  /** Sends a BOOKMARK with the current resourceVersion on every watch. */
  bookmark(): void {
    for (const w of this.watches) {
      const r = this.served.get(w.coll)!;
      w.res.write(JSON.stringify({ type: 'BOOKMARK', object: { apiVersion: `${r.group ? `${r.group}/` : ''}${r.version}`, kind: r.kind, metadata: { resourceVersion: String(this.rv) } } }) + '\n');
    }
  }

  /** Cuts every open watch connection (no chunked terminator: the client sees a dropped stream). */
  dropWatches(): number {
    const n = this.watches.size;
    for (const w of [...this.watches]) {
      clearTimeout(w.timer);
      this.watches.delete(w);
      w.res.socket?.destroy();
    }
    return n;
  }

  openWatches(plural?: string): number {
    return [...this.watches].filter((w) => !plural || w.coll.endsWith(`/${plural}`)).length;
  }

  watchRequests(plural: string): RecordedRequest[] {
    return this.requests.filter((r) => isWatch(r.query) && r.path.endsWith(`/${plural}`));
  }

  listRequests(plural: string): RecordedRequest[] {
    return this.requests.filter((r) => !isWatch(r.query) && r.path.endsWith(`/${plural}`));
  }

  private emit(coll: string, type: string, object: Obj): void {
    this.history.push({ rv: Number(object.metadata.resourceVersion), coll, type, object });
    for (const w of this.watches) {
      if (w.coll !== coll || (w.namespace && w.namespace !== object.metadata.namespace)) continue;
      w.res.write(JSON.stringify({ type, object }) + '\n');
    }
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const query = Object.fromEntries(url.searchParams);
    const record: RecordedRequest = { path: url.pathname, query, auth: req.headers.authorization, status: 200 };
    this.requests.push(record);
    const status = (code: number, reason: string, message: string): void => {
      record.status = code;
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }));
    };
    if (req.headers.authorization !== `Bearer ${this.token}`) return status(401, 'Unauthorized', 'Unauthorized');
    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))(?:\/namespaces\/([^/]+))?\/([^/]+)$/.exec(url.pathname);
    if (!m) return status(404, 'NotFound', 'the server could not find the requested resource');
    const coll = m[1] ? `/v1/${m[5]}` : `${m[2]}/${m[3]}/${m[5]}`;
    const namespace = m[4];
    const r = this.served.get(coll);
    if (!r || this.missing.has(coll)) return status(404, 'NotFound', 'the server could not find the requested resource');
    if (this.forbidden.has(coll)) {
      return status(403, 'Forbidden', `${r.plural} is forbidden: User "system:serviceaccount:waypost:control" cannot list resource "${r.plural}"`);
    }
    const apiVersion = r.group ? `${r.group}/${r.version}` : r.version;
    const visible = (o: Obj): boolean => !namespace || o.metadata.namespace === namespace;

    if (isWatch(query)) {
      const from = Number(query.resourceVersion ?? '0');
      if (from < this.oldest) {
        if (this.goneAsHttp) return status(410, 'Expired', `too old resource version: ${from} (${this.oldest})`);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            type: 'ERROR',
            object: { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: `too old resource version: ${from} (${this.oldest})`, reason: 'Expired', code: 410 },
          }) + '\n',
        );
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.flushHeaders();
      for (const h of this.history) if (h.coll === coll && h.rv > from && visible(h.object)) res.write(JSON.stringify({ type: h.type, object: h.object }) + '\n');
      const seconds = Number(query.timeoutSeconds ?? '1800');
      const w: Watch = {
        coll,
        namespace,
        res,
        timer: setTimeout(() => {
          this.watches.delete(w);
          res.end();
        }, seconds * 1000),
      };
      this.watches.add(w);
      res.on('close', () => {
        clearTimeout(w.timer);
        this.watches.delete(w);
      });
      return;
    }

    const all = [...this.store.get(coll)!.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, o]) => o).filter(visible);
    const offset = query.continue ? Number(Buffer.from(query.continue, 'base64').toString()) : 0;
    const limit = Math.min(query.limit ? Number(query.limit) : all.length, this.maxPage);
    const page = all.slice(offset, offset + limit);
    const more = offset + limit < all.length;
    const items = page.map((o) => {
      if (r.group !== '') return o;
      const { apiVersion: _a, kind: _k, ...rest } = o; // core list items come without apiVersion/kind
      return rest;
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        kind: `${r.kind}List`,
        apiVersion,
        metadata: { resourceVersion: String(this.rv), ...(more ? { continue: Buffer.from(String(offset + limit)).toString('base64') } : {}) },
        items,
      }),
    );
  }
}

/** `watch=1` and `watch=true` both open a watch, as on a real API server (the client library sends `true`). */
function isWatch(query: Record<string, string>): boolean {
  return query.watch === '1' || query.watch === 'true';
}
