import cluster, { type Worker } from 'node:cluster';
import http from 'node:http';
import { AggregatorRegistry } from 'prom-client';
import { ENDPOINTS, servePageOrIndex } from './admin.js';
import { adminGuard, redactSecrets } from './admin-guard.js';
import { buildSummary, mergeSummaries } from './admin-page.js';
import { log } from './log.js';
import type { Proxy, ProxySummary } from './proxy.js';

/**
 * `waypost proxy --workers N`: one event loop per core (node:cluster). Every worker runs the whole data plane on
 * the same config; the primary owns the listening sockets and hands each new connection to the next worker, so a
 * connection stays on one worker for its life. The primary serves the admin API: metrics summed over the workers
 * (prom-client's AggregatorRegistry), readiness when every worker is ready, dumps from the first worker. A worker
 * that dies is replaced.
 */

type Question = 'ready' | 'config_dump' | 'clusters' | 'listeners' | 'summary';
interface Ask {
  waypost: 'ask';
  id: number;
  question: Question;
}
interface Answer {
  waypost: 'answer';
  id: number;
  value: unknown;
}

export const WORKER_ENV = 'WAYPOST_WORKER';

export function isWorker(): boolean {
  return cluster.isWorker && process.env[WORKER_ENV] === '1';
}

/** In a worker: answers the primary's questions about this worker's proxy and shares its metrics. */
export function serveWorker(proxy: Proxy): void {
  // Constructing an AggregatorRegistry is what installs prom-client's reply to the primary's metrics requests.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([proxy.metrics.registry]);
  process.on('message', (msg: Ask) => {
    if (!msg || msg.waypost !== 'ask') return;
    const value =
      msg.question === 'ready'
        ? proxy.ready
        : msg.question === 'config_dump'
          ? proxy.configDump()
          : msg.question === 'clusters'
            ? proxy.clustersDump()
            : msg.question === 'summary'
              ? proxy.summaryDump()
              : proxy.listenersDump();
    process.send?.({ waypost: 'answer', id: msg.id, value } satisfies Answer);
  });
}

/** In the primary: forks the workers with the same command line and runs the admin API. Resolves with the exit code. */
export async function runPrimary(
  count: number,
  argv: readonly string[],
  admin: { host: string; port: number } | undefined,
  /** How long SIGTERM waits for the workers (their drain) before the primary exits. */
  stopGraceMs = 10_000,
): Promise<number> {
  const aggregator = new AggregatorRegistry();
  let nextId = 1;
  const waiting = new Map<number, (v: unknown) => void>();
  let stopping = false;

  cluster.setupPrimary({ args: [...argv], silent: false });
  const fork = (): Worker => {
    const w = cluster.fork({ [WORKER_ENV]: '1' });
    w.on('message', (msg: Answer) => {
      if (msg?.waypost !== 'answer') return;
      waiting.get(msg.id)?.(msg.value);
      waiting.delete(msg.id);
    });
    return w;
  };
  for (let i = 0; i < count; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    log.error('worker exited; starting another', { worker: worker.id, code, signal });
    setTimeout(fork, 500).unref();
  });

  const ask = (w: Worker, question: Question): Promise<unknown> =>
    new Promise((resolve) => {
      const id = nextId++;
      // A worker still starting has no answer yet: it counts as not ready rather than holding the admin request.
      const timer = setTimeout(() => {
        waiting.delete(id);
        resolve(undefined);
      }, 500);
      waiting.set(id, (v) => {
        clearTimeout(timer);
        resolve(v);
      });
      w.send({ waypost: 'ask', id, question } satisfies Ask);
    });
  const workers = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());

  let server: http.Server | undefined;
  if (admin) {
    const guard = adminGuard(admin.host);
    server = http.createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const json = (status: number, body: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(redactSecrets(body), null, 2) + '\n');
      };
      if (guard(req, res)) return;
      void (async () => {
        const ws = workers();
        switch (path) {
          case '/ready': {
            const answers = await Promise.all(ws.map((w) => ask(w, 'ready')));
            const ready = ws.length === count && answers.every((a) => a === true);
            res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
            res.end(ready ? 'LIVE\n' : `NOT READY (${answers.filter((a) => a === true).length}/${count} workers ready)\n`);
            return;
          }
          case '/stats/prometheus':
          case '/metrics': {
            const text = await aggregator.clusterMetrics();
            res.writeHead(200, { 'content-type': aggregator.contentType });
            res.end(text);
            return;
          }
          case '/config_dump':
          case '/clusters':
          case '/listeners': {
            const first = ws[0];
            if (!first) return json(503, { error: 'no worker is running' });
            return json(200, await ask(first, path.slice(1) as Question));
          }
          case '/stats/summary': {
            // Each worker's picture, summed (src/admin-page.ts mergeSummaries); a worker still starting is left out.
            const dumps = (await Promise.all(ws.map((w) => ask(w, 'summary')))).filter((d): d is ProxySummary => d !== undefined);
            const merged = mergeSummaries(dumps);
            if (!merged) return json(503, { error: 'no worker is running' });
            res.setHeader('cache-control', 'no-store');
            return json(200, { ...buildSummary(merged), workers: { running: ws.length, answered: dumps.length, configured: count } });
          }
          case '/':
          case '/index.html':
            return servePageOrIndex(req, res, path, { workers: count, endpoints: ENDPOINTS });
          default:
            return json(404, { error: `no admin endpoint ${path}` });
        }
      })().catch((err: Error) => json(500, { error: err.message }));
    });
    await new Promise<void>((resolve, reject) => {
      server!.once('error', reject);
      server!.listen({ host: admin.host, port: admin.port }, () => resolve());
    });
    log.info('admin listening (primary)', { address: `${admin.host}:${(server.address() as { port: number }).port}`, workers: count });
  }

  return new Promise<number>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      log.info('stopping workers', { signal });
      server?.close();
      const ws = workers();
      if (ws.length === 0) resolve(0);
      let left = ws.length;
      for (const w of ws) {
        w.once('exit', () => {
          if (--left === 0) resolve(0);
        });
        w.process.kill(signal);
      }
      setTimeout(() => resolve(0), stopGraceMs).unref();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
