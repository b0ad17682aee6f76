/**
 * A minimal Kubernetes list/watch client on node:http / node:https, and an informer (a cache kept current by
 * list + watch) built on it.
 *
 * Why not `@kubernetes/client-node`: it is not a dependency of this project (and this change may not add one), and
 * the part the control plane needs — list, watch, resume and relist — is a small, stable wire protocol:
 *
 * - list: `GET /apis/GROUP/VERSION[/namespaces/NS]/PLURAL?limit=500[&continue=…]` (`/api/v1/…` for the core
 *   group) → a List whose `metadata.resourceVersion` is the version the watch starts from;
 * - watch: `GET …/PLURAL?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N` → chunked,
 *   newline-delimited JSON events `{type: ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, object}`;
 * - a watch that ends or drops is resumed from the last resourceVersion seen (an event's or a BOOKMARK's); an
 *   HTTP 410 Gone, or an ERROR event whose Status has code 410 (the version was compacted away), means relist.
 *
 * The informer API (`Informer`: `items`, `start`, `stop`, a change callback) is close to the library's
 * `makeInformer`/`ListWatch`, so swapping this file for `@kubernetes/client-node` later is local to it.
 */
import http from 'node:http';
import https from 'node:https';
import { log } from '../../src/log.js';
import type { KubeConnection } from './kube-config.js';

/** A Kubernetes object as JSON (only what the sources read is typed). */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
    labels?: Record<string, string>;
    [k: string]: unknown;
  };
  spec?: unknown;
  [k: string]: unknown;
}

export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: KubeObject & { code?: number; reason?: string; message?: string };
}

/** A resource type to list and watch. */
export interface ResourceType {
  /** '' for the core group. */
  group: string;
  version: string;
  plural: string;
  kind: string;
}

export function apiVersionOf(r: ResourceType): string {
  return r.group ? `${r.group}/${r.version}` : r.version;
}

/** The collection path of `r`, in one namespace or cluster-wide. */
export function collectionPath(r: ResourceType, namespace?: string): string {
  const base = r.group ? `/apis/${r.group}/${r.version}` : `/api/${r.version}`;
  return namespace ? `${base}/namespaces/${encodeURIComponent(namespace)}/${r.plural}` : `${base}/${r.plural}`;
}

/** An API server answer other than 2xx: `status` is the HTTP status, `reason`/`message` the Status object's. */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

export class KubeClient {
  private readonly agent: http.Agent;
  private readonly secure: boolean;

  constructor(readonly conn: KubeConnection) {
    this.secure = conn.server.protocol === 'https:';
    this.agent = this.secure
      ? new https.Agent({
          keepAlive: true,
          ca: conn.ca,
          cert: conn.cert,
          key: conn.key,
          rejectUnauthorized: !conn.insecure,
          servername: conn.serverName,
        })
      : new http.Agent({ keepAlive: true });
  }

  /** Starts a GET; the caller reads the response. */
  get(path: string, query: Record<string, string | undefined>, timeoutMs: number): http.ClientRequest {
    const url = new URL(this.conn.server.href.replace(/\/$/, '') + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    const headers: http.OutgoingHttpHeaders = { accept: 'application/json', 'user-agent': 'waypost-control' };
    const token = this.conn.token?.();
    if (token) headers.authorization = `Bearer ${token}`;
    else if (this.conn.basic) {
      headers.authorization = `Basic ${Buffer.from(`${this.conn.basic.username}:${this.conn.basic.password}`).toString('base64')}`;
    }
    const options: https.RequestOptions = { method: 'GET', headers, agent: this.agent, timeout: timeoutMs };
    const req = this.secure ? https.request(url, options) : http.request(url, options);
    req.on('timeout', () => req.destroy(new Error(`no data from the API server for ${Math.round(timeoutMs / 1000)} s`)));
    return req;
  }

  /** GET returning the parsed JSON body; non-2xx answers throw {@link KubeApiError}. */
  getJson(path: string, query: Record<string, string | undefined>, timeoutMs = 30_000): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const req = this.get(path, query, timeoutMs);
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status < 200 || status > 299) {
            reject(statusError(status, text, path));
            return;
          }
          try {
            resolve(JSON.parse(text));
          } catch {
            reject(new Error(`GET ${path}: the API server answered something that is not JSON`));
          }
        });
      });
      req.end();
    });
  }

  /** Lists a collection, following `continue` tokens. */
  async list(path: string, pageSize = 500): Promise<{ items: KubeObject[]; resourceVersion: string }> {
    const items: KubeObject[] = [];
    let cont: string | undefined;
    for (;;) {
      const page = (await this.getJson(path, { limit: String(pageSize), continue: cont })) as {
        items?: KubeObject[];
        metadata?: { resourceVersion?: string; continue?: string };
      };
      if (Array.isArray(page.items)) items.push(...page.items);
      cont = page.metadata?.continue || undefined;
      if (!cont) return { items, resourceVersion: page.metadata?.resourceVersion ?? '' };
    }
  }

  /**
   * Opens a watch from `resourceVersion`. `onEvent` gets each event; the returned promise resolves when the stream
   * ends (the server's timeout, or a drop: `dropped` then holds the error) and rejects with {@link KubeApiError} for a
   * non-2xx answer. `abort()` ends it (the promise resolves).
   */
  watch(
    path: string,
    resourceVersion: string,
    timeoutSeconds: number,
    onEvent: (e: WatchEvent) => void,
  ): { done: Promise<{ events: number; dropped?: Error }>; abort(): void } {
    let req: http.ClientRequest | undefined;
    let aborted = false;
    const done = new Promise<{ events: number; dropped?: Error }>((resolve, reject) => {
      req = this.get(
        path,
        { watch: '1', resourceVersion: resourceVersion || undefined, allowWatchBookmarks: 'true', timeoutSeconds: String(timeoutSeconds) },
        (timeoutSeconds + 60) * 1000,
      );
      let events = 0;
      let settled = false;
      let responded = false;
      const finish = (dropped?: Error): void => {
        if (settled) return;
        settled = true;
        resolve({ events, dropped: aborted ? undefined : dropped });
      };
      req.on('error', (err) => {
        if (settled) return;
        if (!responded && !aborted) {
          settled = true;
          reject(err); // could not connect
          return;
        }
        finish(err);
      });
      req.on('response', (res) => {
        responded = true;
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 299) {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            settled = true;
            reject(statusError(status, Buffer.concat(chunks).toString('utf8'), path));
          });
          res.on('error', (err) => finish(err));
          return;
        }
        res.setEncoding('utf8');
        let buffered = '';
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let nl: number;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (line === '') continue;
            let event: WatchEvent;
            try {
              event = JSON.parse(line) as WatchEvent;
            } catch {
              log.warn('kubernetes: undecodable watch event, dropping the watch', { path });
              req!.destroy();
              finish(new Error('undecodable watch event'));
              return;
            }
            events++;
            onEvent(event);
          }
        });
        res.on('end', () => finish(res.complete ? undefined : new Error('the watch stream was cut')));
        res.on('aborted', () => finish(new Error('the watch stream was cut')));
        res.on('error', (err) => finish(err));
        res.on('close', () => finish(res.complete ? undefined : new Error('the watch stream was cut')));
      });
      req.end();
    });
    return {
      done,
      abort() {
        aborted = true;
        req?.destroy();
      },
    };
  }

  close(): void {
    this.agent.destroy();
  }
}

function statusError(status: number, body: string, path: string): KubeApiError {
  let reason: string | undefined;
  let message = body.trim().slice(0, 300);
  try {
    const s = JSON.parse(body) as { reason?: string; message?: string };
    reason = s.reason;
    if (s.message) message = s.message;
  } catch {
    // not a Status object
  }
  return new KubeApiError(status, reason, `GET ${path}: ${status}${reason ? ` ${reason}` : ''}${message ? `: ${message}` : ''}`);
}

// ---- informer -----------------------------------------------------------------------------------------------------

export type InformerState = 'pending' | 'synced' | 'missing' | 'forbidden' | 'failing';

export interface InformerOptions {
  /** Watch one namespace (default: all). */
  namespace?: string;
  /** First retry delay after a failure (doubles up to 30 s; default 500 ms). */
  retryMs?: number;
  /** How often a kind the API server does not serve (404: CRD not installed) is listed again (default 30 s). */
  missingRetryMs?: number;
  /** The server-side watch timeout (default: random 300–600 s, as client-go). */
  watchTimeoutSeconds?: () => number;
  /** Keeps only what is needed of each object (memory for big collections such as Pods). */
  transform?: (o: KubeObject) => KubeObject;
}

/**
 * Keeps `items` (by `namespace/name`) equal to the API server's collection: lists, then watches from the list's
 * resourceVersion; resumes a dropped watch from the last resourceVersion; relists on 410 Gone. Calls `onChange`
 * after every change to `items` (and when its state changes).
 */
export class Informer {
  readonly items = new Map<string, KubeObject>();
  resourceVersion = '';
  state: InformerState = 'pending';
  /** Counters (tests and logs): lists done, watches opened. */
  readonly stats = { lists: 0, watches: 0, relists: 0 };
  private stopped = false;
  private current: { abort(): void } | undefined;
  private sleeper: { timer: NodeJS.Timeout; resolve: () => void } | undefined;
  private firstAttempt!: () => void;
  private readonly firstAttemptDone = new Promise<void>((r) => (this.firstAttempt = r));
  private readonly path: string;
  private lastError = '';

  constructor(
    private readonly client: KubeClient,
    readonly resource: ResourceType,
    private readonly onChange: () => void,
    private readonly opts: InformerOptions = {},
  ) {
    this.path = collectionPath(resource, opts.namespace);
  }

  /** Starts the list/watch loop; resolves after the first list attempt (successful or not). */
  start(): Promise<void> {
    void this.run();
    return this.firstAttemptDone;
  }

  stop(): void {
    this.stopped = true;
    this.current?.abort();
    if (this.sleeper) {
      clearTimeout(this.sleeper.timer);
      this.sleeper.resolve();
    }
  }

  private async run(): Promise<void> {
    let backoff = this.opts.retryMs ?? 500;
    const reset = (): void => void (backoff = this.opts.retryMs ?? 500);
    const nextBackoff = (): number => {
      const d = backoff;
      backoff = Math.min(backoff * 2, 30_000);
      return d * (0.75 + Math.random() * 0.5);
    };
    while (!this.stopped) {
      // ---- list
      try {
        await this.relist();
        reset();
      } catch (err) {
        if (this.stopped) break;
        const e = err as Error;
        if (e instanceof KubeApiError && (e.status === 404 || e.status === 403 || e.status === 401)) {
          const state: InformerState = e.status === 404 ? 'missing' : 'forbidden';
          this.problem(
            state,
            e.status === 404
              ? `kubernetes: ${this.resource.kind} (${apiVersionOf(this.resource)}) is not served by the API server (CRD not installed?); listing again every ${Math.round((this.opts.missingRetryMs ?? 30_000) / 1000)} s`
              : `kubernetes: not allowed to list ${this.resource.plural}: ${e.message}`,
          );
          if (this.items.size > 0) {
            this.items.clear();
            this.onChange();
          }
          this.firstAttempt();
          await this.sleep(e.status === 404 ? (this.opts.missingRetryMs ?? 30_000) : nextBackoff());
        } else {
          this.problem('failing', `kubernetes: cannot list ${this.resource.plural} (keeping the last ${this.items.size}): ${e.message}`);
          this.firstAttempt();
          await this.sleep(nextBackoff());
        }
        continue;
      }
      this.firstAttempt();

      // ---- watch until a relist is needed
      for (;;) {
        if (this.stopped) return;
        const outcome = await this.watchOnce();
        if (this.stopped) return;
        if (outcome === 'gone') {
          this.stats.relists++;
          log.info(`kubernetes: ${this.resource.plural} resourceVersion ${this.resourceVersion} is too old (410 Gone): listing again`);
          break;
        }
        if (outcome === 'ended') {
          reset();
          continue; // the server's timeoutSeconds: resume at once
        }
        if (outcome === 'relist') {
          await this.sleep(nextBackoff());
          break;
        }
        await this.sleep(nextBackoff()); // dropped: resume from the last resourceVersion
      }
    }
  }

  private problem(state: InformerState, message: string): void {
    const changed = this.state !== state || this.lastError !== message;
    this.state = state;
    if (changed) {
      this.lastError = message;
      (state === 'missing' ? log.warn : log.error)(message);
    }
  }

  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.client.list(this.path);
    this.stats.lists++;
    const next = new Map<string, KubeObject>();
    for (const raw of items) {
      const o = this.normalize(raw);
      next.set(keyOf(o), o);
    }
    let changed = next.size !== this.items.size;
    if (!changed) {
      for (const [k, o] of next) {
        const old = this.items.get(k);
        if (!old || old.metadata?.resourceVersion !== o.metadata?.resourceVersion) {
          changed = true;
          break;
        }
      }
    }
    this.items.clear();
    for (const [k, o] of next) this.items.set(k, o);
    this.resourceVersion = resourceVersion;
    const stateChanged = this.state !== 'synced';
    if (stateChanged && this.state !== 'pending') log.info(`kubernetes: ${this.resource.plural} listed again`, { items: next.size });
    this.state = 'synced';
    this.lastError = '';
    if (changed || stateChanged) this.onChange();
  }

  private normalize(raw: KubeObject): KubeObject {
    const o: KubeObject = { ...raw, apiVersion: raw.apiVersion ?? apiVersionOf(this.resource), kind: raw.kind ?? this.resource.kind };
    return this.opts.transform ? this.opts.transform(o) : o;
  }

  /** One watch: `gone` (relist), `relist` (an error that is not a drop), `ended` (server timeout), `dropped`. */
  private async watchOnce(): Promise<'gone' | 'relist' | 'ended' | 'dropped'> {
    let gone = false;
    let errorEvent: string | undefined;
    const timeout = this.opts.watchTimeoutSeconds?.() ?? 300 + Math.floor(Math.random() * 300);
    const w = this.client.watch(this.path, this.resourceVersion, timeout, (e) => {
      if (gone || errorEvent) return;
      switch (e.type) {
        case 'ADDED':
        case 'MODIFIED': {
          const o = this.normalize(e.object);
          this.items.set(keyOf(o), o);
          this.bump(e.object);
          this.onChange();
          break;
        }
        case 'DELETED':
          if (this.items.delete(keyOf(e.object))) this.onChange();
          this.bump(e.object);
          break;
        case 'BOOKMARK':
          this.bump(e.object);
          break;
        case 'ERROR':
          if (e.object?.code === 410) gone = true;
          else errorEvent = `${e.object?.code ?? '?'} ${e.object?.reason ?? ''} ${e.object?.message ?? ''}`.trim();
          w.abort();
          break;
        default:
          log.debug('kubernetes: unknown watch event type', { type: (e as { type?: string }).type, path: this.path });
      }
    });
    this.current = w;
    this.stats.watches++;
    const openedAt = Date.now();
    try {
      const { events, dropped } = await w.done;
      if (gone) return 'gone';
      if (errorEvent) {
        log.error(`kubernetes: watch of ${this.resource.plural} failed: ${errorEvent}; listing again`);
        return 'relist';
      }
      if (dropped) {
        log.warn(`kubernetes: watch of ${this.resource.plural} dropped (${dropped.message}); resuming from resourceVersion ${this.resourceVersion}`);
        return 'dropped';
      }
      log.debug('kubernetes: watch ended', { resource: this.resource.plural, events });
      // A stream closed at once without a word is not the server's timeout: back off as for a drop.
      return events === 0 && Date.now() - openedAt < 1000 ? 'dropped' : 'ended';
    } catch (err) {
      const e = err as Error;
      if (e instanceof KubeApiError) {
        if (e.status === 410) return 'gone';
        log.error(`kubernetes: cannot watch ${this.resource.plural}: ${e.message}; listing again`);
        return 'relist';
      }
      log.warn(`kubernetes: cannot watch ${this.resource.plural} (${e.message}); retrying from resourceVersion ${this.resourceVersion}`);
      return 'dropped';
    } finally {
      this.current = undefined;
    }
  }

  private bump(o: KubeObject | undefined): void {
    const rv = o?.metadata?.resourceVersion;
    if (rv) this.resourceVersion = rv;
  }

  private sleep(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sleeper = undefined;
        resolve();
      }, ms);
      this.sleeper = { timer, resolve };
    });
  }
}

export function keyOf(o: KubeObject): string {
  return `${o.metadata?.namespace ?? ''}/${o.metadata?.name ?? ''}`;
}
