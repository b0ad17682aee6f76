import http from 'node:http';
import { log } from './log.js';
import type { Proxy } from './proxy.js';

/**
 * The admin HTTP API (CONTRACT §4). Read-only: nothing here changes the proxy's state. Binds loopback by default.
 */
export async function startAdmin(proxy: Proxy, host: string, port: number): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body, null, 2) + '\n');
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET' }).end('the admin API is read-only\n');
      return;
    }
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
      case '/':
        json(200, { endpoints: ['/ready', '/config_dump', '/clusters', '/listeners', '/stats/prometheus', '/metrics'] });
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
