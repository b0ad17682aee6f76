import http from 'node:http';
import { adminGuard, redactSecrets } from './admin-guard.js';
import { ADMIN_PAGE_CSP, ADMIN_PAGE_HTML, buildSummary } from './admin-page.js';
import { log } from './log.js';
import type { Proxy } from './proxy.js';

/** The JSON index of `GET /` for clients that do not ask for HTML. */
export const ENDPOINTS = ['/ready', '/config_dump', '/clusters', '/listeners', '/stats/prometheus', '/metrics', '/stats/summary'];

/** Whether a request for `/` wants the page: a browser (Accept names text/html before any JSON), or `?format=html`. */
function wantsHtml(req: http.IncomingMessage): boolean {
  const query = new URLSearchParams((req.url ?? '').split('?')[1] ?? '');
  const format = query.get('format');
  if (format === 'html') return true;
  if (format === 'json') return false;
  const accept = String(req.headers.accept ?? '').toLowerCase();
  const html = accept.indexOf('text/html');
  if (html < 0) return false;
  const json = accept.indexOf('application/json');
  return json < 0 || html < json;
}

/**
 * `GET /` and `/index.html`: the live page for a browser, else the JSON index (`index`). Shared by a proxy's admin
 * and the `--workers` primary's.
 */
export function servePageOrIndex(req: http.IncomingMessage, res: http.ServerResponse, path: string, index: unknown): void {
  if (path === '/index.html' || wantsHtml(req)) {
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': ADMIN_PAGE_CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cache-control': 'no-store',
      vary: 'accept',
    });
    res.end(ADMIN_PAGE_HTML);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json', vary: 'accept' });
  res.end(JSON.stringify(index, null, 2) + '\n');
}

/** Anything but GET and HEAD: 405 (the admin API changes nothing). True when answered. */
export function refuseWrites(req: http.IncomingMessage, res: http.ServerResponse): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return false;
  res.writeHead(405, { allow: 'GET' }).end('the admin API is read-only\n');
  return true;
}

/**
 * The admin HTTP API (docs/configuration.md, "Admin API"). Read-only: nothing here changes the proxy's state. Binds loopback by default.
 * `GET /` from a browser is a live page (src/admin-page.ts) polling `GET /stats/summary`; other clients get the JSON
 * index of the endpoints. Every request passes src/admin-guard.ts first (Host check, read-only), and every JSON body
 * has its secrets redacted.
 */
export async function startAdmin(proxy: Proxy, host: string, port: number): Promise<http.Server> {
  const guard = adminGuard(host, proxy.metrics.registry);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(redactSecrets(body), null, 2) + '\n');
    };
    if (guard(req, res)) return;
    switch (path) {
      case '/ready':
        res.writeHead(proxy.ready ? 200 : 503, { 'content-type': 'text/plain' });
        res.end(proxy.ready ? 'LIVE\n' : 'NOT READY\n');
        return;
      case '/config_dump':
        json(200, proxy.configDump());
        return;
      case '/clusters':
        json(200, proxy.clustersDump());
        return;
      case '/listeners':
        json(200, proxy.listenersDump());
        return;
      case '/stats/prometheus':
      case '/metrics':
        proxy.metrics.registry.metrics().then(
          (text) => {
            res.writeHead(200, { 'content-type': proxy.metrics.registry.contentType });
            res.end(text);
          },
          (err: Error) => json(500, { error: err.message }),
        );
        return;
      case '/stats/summary':
        res.setHeader('cache-control', 'no-store');
        try {
          json(200, buildSummary(proxy.summaryDump()));
        } catch (err) {
          log.error('admin: cannot build /stats/summary', { error: (err as Error).message });
          json(500, { error: (err as Error).message });
        }
        return;
      case '/':
      case '/index.html':
        servePageOrIndex(req, res, path, { endpoints: ENDPOINTS });
        return;
      default:
        json(404, { error: `no admin endpoint ${path}` });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address();
  log.info('admin listening', { address: a && typeof a === 'object' ? `${a.address}:${a.port}` : String(a) });
  return server;
}
