/**
 * `waypost proxy --workers 2`: two event loops share the listener; the primary's admin API answers for both
 * (readiness of every worker, metrics summed over them), and a worker that dies is replaced.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, httpGet, renderDemoConfig, sleep, spawnProxy, waitReady, type ProxyProcess } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';

let v1: Provider;
let v2: Provider;
let proxy: ProxyProcess;
let address: string;
let dir: string;

beforeAll(async () => {
  v1 = await startProvider({ version: 'v1' });
  v2 = await startProvider({ version: 'v2' });
  const [listen] = await freePorts(1);
  address = `127.0.0.1:${listen}`;
  dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-workers-'));
  writeFileSync(path.join(dir, 'demo.yaml'), renderDemoConfig({ listen: listen!, v1: v1.port, v2: v2.port }));
  proxy = await spawnProxy({ configDir: dir, extraArgs: ['--workers', '2'] });
  await waitReady(proxy);
});

afterAll(async () => {
  await proxy?.stop();
  await v1?.close();
  await v2?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function requestsTotal(): Promise<number> {
  const text = (await httpGet(proxy.adminAddress, '/stats/prometheus')).body;
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith('waypost_requests_total{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

describe('proxy --workers 2', () => {
  it('serves from both workers; the primary sums their metrics and reports readiness', async () => {
    const before = await requestsTotal();
    const conns = await Promise.all(Array.from({ length: 8 }, () => RawDubboConnection.connect(address)));
    try {
      let id = 1;
      for (const c of conns) {
        for (let i = 0; i < 5; i++) {
          const r = await c.call({ id: id++, method: 'sayHello', args: ['w'], attachments: { user: 'jason' } });
          expect(r.status).toBe(20);
          expect(String(r.value)).toContain('v2@');
        }
      }
    } finally {
      conns.forEach((c) => c.destroy());
    }
    expect((await requestsTotal()) - before).toBe(40);
    // Eight connections over two workers: each worker opened its own upstream connection to v2.
    expect(v2.connections().accepted).toBe(2);
    expect((await httpGet(proxy.adminAddress, '/ready')).status).toBe(200);
    const listeners = JSON.parse((await httpGet(proxy.adminAddress, '/listeners')).body) as Array<{ address: string }>;
    expect(listeners.map((l) => l.address)).toEqual([address]);
  });

  it('serves the live page and /stats/summary with the figures of every worker summed, and refuses writes', async () => {
    const total = (): Promise<number> =>
      httpGet(proxy.adminAddress, '/stats/summary').then((r) => {
        const sum = JSON.parse(r.body) as { route_tables: Array<{ routes: Array<{ name: string; requests: { total: number } }> }>; workers: { answered: number } };
        expect(sum.workers.answered).toBe(2);
        return sum.route_tables.flatMap((t) => t.routes).reduce((n, route) => n + route.requests.total, 0);
      });
    const before = await total();
    // Connections spread over both workers; the summary must count the calls of each.
    const conns = await Promise.all(Array.from({ length: 6 }, () => RawDubboConnection.connect(address)));
    try {
      let id = 1;
      for (const c of conns) for (let i = 0; i < 3; i++) expect((await c.call({ id: id++, method: 'sayHello', args: ['s'] })).status).toBe(20);
    } finally {
      conns.forEach((c) => c.destroy());
    }
    expect((await total()) - before).toBe(18);
    const page = await new Promise<{ type: string; body: string }>((resolve, reject) => {
      http
        .get(`http://${proxy.adminAddress}/`, { headers: { accept: 'text/html' }, agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ type: String(res.headers['content-type']), body }));
        })
        .on('error', reject);
    });
    expect(page.type).toMatch(/^text\/html/);
    expect(page.body).toContain('/stats/summary');
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`http://${proxy.adminAddress}/stats/summary`, { method: 'POST', agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(405);
  });

  it('replaces a worker that dies, and keeps serving meanwhile', async () => {
    // Find the workers: children of the primary.
    const { execFileSync } = await import('node:child_process');
    const children = execFileSync('pgrep', ['-P', String(proxy.child.pid)]).toString().trim().split('\n').map(Number);
    expect(children).toHaveLength(2);
    process.kill(children[0]!, 'SIGKILL');
    // Connections the primary handed to the dying worker die with it; once the primary knows, the other serves.
    const t1 = Date.now();
    while (!/worker exited; starting another/.test(proxy.output()) && Date.now() - t1 < 5000) await sleep(20);
    const c = await RawDubboConnection.connect(address);
    try {
      expect((await c.call({ id: 1, method: 'sayHello', args: ['x'] })).status).toBe(20);
    } finally {
      c.destroy();
    }
    const t0 = Date.now();
    let now: number[] = [];
    while (Date.now() - t0 < 10_000) {
      now = execFileSync('pgrep', ['-P', String(proxy.child.pid)]).toString().trim().split('\n').map(Number);
      if (now.length === 2 && !now.includes(children[0]!)) break;
      await sleep(100);
    }
    expect(now).toHaveLength(2);
    expect(now).not.toContain(children[0]);
    expect(proxy.output()).toMatch(/worker exited; starting another/);
    let ready = 0;
    while (Date.now() - t0 < 15_000 && ready !== 200) {
      ready = (await httpGet(proxy.adminAddress, '/ready', 2000)).status;
      await sleep(100);
    }
    expect(ready).toBe(200);
  });
});
