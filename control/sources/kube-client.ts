/**
 * Kubernetes list/watch on `@kubernetes/client-node` ({@link KubeClient}), and an informer (a cache kept current by
 * list + watch) built on it. The informer is Waypost's own rather than the library's `makeInformer`/`ListWatch`,
 * which stops at the first error (a dropped stream included) and leaves the restart to its caller, and asks for no
 * bookmarks; the source needs resume with backoff, relist on 410, and to tell a CRD that is not installed (404) from
 * a kind it may not read (403), so that it starts without waiting for either. The wire protocol:
 *
 * - list: `GET /apis/GROUP/VERSION[/namespaces/NS]/PLURAL?limit=500[&continue=…]` (`/api/v1/…` for the core
 *   group) → a List whose `metadata.resourceVersion` is the version the watch starts from;
 * - watch: `GET …/PLURAL?watch=true&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N` → chunked,
 *   newline-delimited JSON events `{type: ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, object}`;
 * - a watch that ends or drops is resumed from the last resourceVersion seen (an event's or a BOOKMARK's); an
 *   HTTP 410 Gone, or an ERROR event whose Status has code 410 (the version was compacted away), means relist.
 */
import http from 'node:http';
import https from 'node:https';
import { KubeConfig, Watch } from '@kubernetes/client-node';
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

/**
 * The API server, through `@kubernetes/client-node`: its `KubeConfig` carries the server, TLS and credentials
 * (applied to every request by the library), its `Watch` reads the watch streams. Lists are plain GETs with the
 * options the same `KubeConfig` applies, because the library's typed list calls exist per kind only (and turn
 * objects into its model classes) while the sources list CRDs and core kinds alike, by collection path.
 */
export class KubeClient {
  private readonly secure: boolean;
  private readonly agent: http.Agent | undefined;
  private config: KubeConfig | undefined;
  private configToken: string | undefined;

  constructor(readonly conn: KubeConnection) {
    this.secure = conn.server.protocol === 'https:';
    // A keep-alive agent for lists; the library's Watch makes its own from the same config.
    this.agent = this.secure ? undefined : new http.Agent({ keepAlive: true });
  }

  /**
   * The library's config for the current credentials. A token from a file is re-read as it rotates (see
   * kube-config.ts), so the config is rebuilt when the token changed.
   */
  private kubeConfig(): KubeConfig {
    const token = this.conn.token?.();
    if (this.config && token === this.configToken) return this.config;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        {
          name: 'waypost',
          server: this.conn.server.href.replace(/\/$/, ''),
          caData: this.conn.ca?.toString('base64'),
          // The library refuses an http: server unless TLS verification is off (there is none to do).
          skipTLSVerify: this.conn.insecure === true || !this.secure,
          tlsServerName: this.conn.serverName,
        },
      ],
      users: [
        {
          name: 'waypost',
          token,
          certData: this.conn.cert?.toString('base64'),
          keyData: this.conn.key?.toString('base64'),
          username: this.conn.basic?.username,
          password: this.conn.basic?.password,
        },
      ],
      contexts: [{ name: 'waypost', cluster: 'waypost', user: 'waypost' }],
      currentContext: 'waypost',
    });
    this.config = kc;
    this.configToken = token;
    return kc;
  }

  /** GET returning the parsed JSON body; non-2xx answers throw {@link KubeApiError}. */
  async getJson(path: string, query: Record<string, string | undefined>, timeoutMs = 30_000): Promise<unknown> {
    const url = new URL(this.conn.server.href.replace(/\/$/, '') + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, v);
    const options: https.RequestOptions = { method: 'GET', headers: { accept: 'application/json', 'user-agent': 'waypost-control' } };
    await this.kubeConfig().applyToHTTPSOptions(options);
    if (this.agent) options.agent = this.agent;
    options.timeout = timeoutMs;
    return new Promise((resolve, reject) => {
      const req = this.secure ? https.request(url, options) : http.request(url, options);
      req.on('timeout', () => req.destroy(new Error(`no data from the API server for ${Math.round(timeoutMs / 1000)} s`)));
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
   * Opens a watch from `resourceVersion` with the library's `Watch`. `onEvent` gets each event; the returned promise
   * resolves when the stream ends (the server's timeout, or a drop: `dropped` then holds the error) and rejects with
   * {@link KubeApiError} for a non-2xx answer or when the server cannot be reached. `abort()` ends it (the promise
   * resolves). Lines that are not JSON are dropped by the library; an event without a type is ignored here.
   */
  watch(
    path: string,
    resourceVersion: string,
    timeoutSeconds: number,
    onEvent: (e: WatchEvent) => void,
  ): { done: Promise<{ events: number; dropped?: Error }>; abort(): void } {
    let controller: AbortController | undefined;
    let aborted = false;
    let events = 0;
    let silence: NodeJS.Timeout | undefined;
    const done = new Promise<{ events: number; dropped?: Error }>((resolve, reject) => {
      let settled = false;
      const onDone = (err: unknown): void => {
        if (settled) return;
        settled = true;
        clearTimeout(silence);
        if (aborted || err === null || err === undefined) {
          resolve({ events });
          return;
        }
        const e = err as Error & { statusCode?: number; code?: string; type?: string };
        if (typeof e.statusCode === 'number') {
          reject(new KubeApiError(e.statusCode, e.message, `GET ${path} (watch): ${e.statusCode} ${e.message}`));
        } else if (events === 0 && e.type === 'system') {
          reject(e); // could not connect (node-fetch's system error: ECONNREFUSED and the like)
        } else {
          resolve({ events, dropped: e });
        }
      };
      // The server ends a watch after timeoutSeconds; a stream silent for a minute longer is a dead connection.
      silence = setTimeout(() => {
        controller?.abort();
        onDone(new Error(`no data from the API server for ${timeoutSeconds + 60} s`));
      }, (timeoutSeconds + 60) * 1000);
      silence.unref();
      const query: Record<string, string> = { allowWatchBookmarks: 'true', timeoutSeconds: String(timeoutSeconds) };
      if (resourceVersion) query.resourceVersion = resourceVersion;
      new Watch(this.kubeConfig())
        .watch(
          path,
          query,
          (type: string, object: unknown) => {
            if (settled || aborted || typeof type !== 'string') return;
            silence?.refresh();
            events++;
            onEvent({ type: type as WatchEvent['type'], object: object as WatchEvent['object'] });
          },
          onDone,
        )
        .then(
          (c) => {
            controller = c;
            if (aborted) c.abort();
          },
          onDone,
        );
    });
    return {
      done,
      abort() {
        aborted = true;
        controller?.abort();
      },
    };
  }

  close(): void {
    this.agent?.destroy();
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
