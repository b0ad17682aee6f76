/**
 * The live admin page in a real browser: Debian's chromium driven by playwright-core, against `waypost proxy` with
 * real Dubbo providers. The page must show the listener, the routes with their match rules and destinations, the
 * clusters with their endpoints, per-route request and error rates that follow live traffic, and an endpoint that
 * outlier detection ejected — loading nothing but the admin API (the machine has no network).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGet, projectRoot, sleep } from '../../examples/dubbo/harness.js';
import type { Provider } from '../../examples/dubbo/provider.js';
import type { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { PolicyFixture } from '../policy/fixture.js';
import { adminConfig, clusterNames } from './config.js';

const CHROMIUM = '/usr/bin/chromium';
/** This machine has no network: nothing that phones home, no QUIC, no GPU. */
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** The little of the browser's DOM the page functions below use (the test program has no DOM lib; they run in Chromium). */
interface DomElement {
  readonly dataset: Record<string, string | undefined>;
  readonly textContent: string | null;
  getAttribute(name: string): string | null;
  querySelector(selector: string): DomElement | null;
}
declare const document: {
  getElementById(id: string): DomElement | null;
  querySelector(selector: string): DomElement | null;
  querySelectorAll(selector: string): Iterable<DomElement>;
};

interface RouteRow {
  route: string;
  rps: number;
  eps: number;
  total: number;
  errors: number;
  match: string;
  dest: string;
}
interface Sample {
  at: number;
  polls: number;
  routes: RouteRow[];
}

function say(line: string): void {
  process.stdout.write(`[admin-page] ${line}\n`);
}

async function readPage(page: Page): Promise<Sample> {
  return page.evaluate(() => ({
    at: Date.now(),
    polls: Number(document.getElementById('status')?.getAttribute('data-polls') ?? 0),
    routes: [...document.querySelectorAll('tr[data-route]')].map((r) => ({
      route: r.dataset.route ?? '',
      rps: Number(r.dataset.rps),
      eps: Number(r.dataset.eps),
      total: Number(r.dataset.total),
      errors: Number(r.dataset.errors),
      match: r.querySelector('.match')?.textContent ?? '',
      dest: r.querySelector('.dest')?.textContent ?? '',
    })),
  }));
}

function row(s: Sample, name: string): RouteRow {
  const r = s.routes.find((x) => x.route.endsWith(`/${name}`));
  if (!r) throw new Error(`no route row ${name} on the page (rows: ${s.routes.map((x) => x.route).join(', ')})`);
  return r;
}

describe('the admin page in headless Chromium', () => {
  const fx = new PolicyFixture();
  let a: Provider;
  let b: Provider;
  let browser: Browser;
  let page: Page;
  let names: ReturnType<typeof clusterNames>;
  const requested: string[] = [];
  const consoleProblems: string[] = [];

  beforeAll(async () => {
    // Debian's chromium (a minute or two the first time on a fresh machine).
    execFileSync('bash', [path.join(projectRoot(), 'scripts', 'install-peers.sh'), 'chromium'], { stdio: 'inherit' });
    [a, b] = await fx.start(['v1', 'v2']);
    await fx.apply(adminConfig(a!, b!));
    names = clusterNames(fx.listenPort);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('request', (r) => requested.push(r.url()));
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') consoleProblems.push(m.text());
    });
    page.on('pageerror', (e) => consoleProblems.push(`page error: ${e.message}`));
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    await fx.stop();
  });

  it('shows the listener, the routes with their match rules and destinations, and the clusters with their endpoints', async () => {
    const response = await page.goto(`http://${fx.proxy.adminAddress}/`);
    expect(response?.status()).toBe(200);
    expect(await page.title()).toBe('Waypost admin');
    await page.waitForFunction(() => Number(document.getElementById('status')?.getAttribute('data-polls') ?? 0) >= 1, undefined, { timeout: 15_000 });

    const listeners = JSON.parse((await httpGet(fx.proxy.adminAddress, '/listeners')).body) as Array<{ name: string; address: string }>;
    const shownListeners = await page.$$eval('#listeners tr[data-listener]', (rows) => rows.map((r) => [...r.querySelectorAll('td')].map((td) => td.textContent)));
    expect(shownListeners.map((cells) => cells.slice(0, 3))).toEqual(listeners.map((l) => [l.name, l.address, 'dubbo']));
    expect(await page.textContent('#ready')).toBe('ready');

    const s = await readPage(page);
    expect(s.routes.map((r) => [r.route.slice(r.route.lastIndexOf('/') + 1), r.match])).toEqual([
      ['jason', 'user exact "jason"'],
      ['hello', 'method prefix "say"'],
      ['split', 'method regex "who.*|fail"'],
      ['(no route)', 'nothing above matched'],
    ]);
    expect(row(s, 'jason').dest).toBe(names.v2);
    expect(row(s, 'hello').dest).toBe(names.all);
    expect(row(s, 'split').dest).toBe(`${names.v1}  50%${names.v2}  50%`);

    const clusters = await page.$$eval('#clusters h3[data-cluster]', (hs) => hs.map((h) => h.getAttribute('data-cluster')));
    expect(clusters.sort()).toEqual([names.all, names.v1, names.v2].sort());
    const endpoints = await page.$$eval('#clusters tr[data-endpoint]', (rows) => rows.map((r) => [r.getAttribute('data-endpoint'), r.getAttribute('data-health'), r.querySelector('td:nth-child(2)')?.textContent]));
    expect(endpoints).toEqual(
      expect.arrayContaining([
        [`${names.all} 127.0.0.1:${a.port}`, 'healthy', 'version=v1'],
        [`${names.all} 127.0.0.1:${b.port}`, 'healthy', 'version=v2'],
        [`${names.v1} 127.0.0.1:${a.port}`, 'healthy', 'version=v1'],
        [`${names.v2} 127.0.0.1:${b.port}`, 'healthy', 'version=v2'],
      ]),
    );
    expect(endpoints).toHaveLength(4);
  });

  it('shows per-route request and error rates that follow live traffic, and the endpoint outlier detection ejected', async () => {
    // Traffic on every route and some with no route, until told to stop.
    const conns: RawDubboConnection[] = [await fx.connect(), await fx.connect()];
    let stop = false;
    let calls = 0;
    let failures = 0;
    const drive = async (conn: RawDubboConnection, calls_: Array<[string, unknown[], Record<string, string> | undefined]>): Promise<void> => {
      while (!stop) {
        for (const [method, args, att] of calls_) {
          try {
            const r = await fx.call(conn, method, args, att, 10_000);
            calls++;
            if (r.status !== 20) failures++;
          } catch {
            failures++;
          }
        }
        await sleep(25);
      }
    };
    const drivers = [
      drive(conns[0]!, [['sayHello', ['j'], { user: 'jason' }], ['sayHello', ['h'], undefined]]),
      drive(conns[1]!, [['whoami', [], undefined], ['nosuch', [], undefined]]),
    ];
    const samples: Sample[] = [];
    const sampler = (async () => {
      while (!stop) {
        samples.push(await readPage(page));
        await sleep(150);
      }
    })();
    const waitSample = async (what: string, ok: (s: Sample) => boolean, timeoutMs = 30_000): Promise<Sample> => {
      const t0 = Date.now();
      for (;;) {
        const s = samples[samples.length - 1];
        if (s && ok(s)) return s;
        if (Date.now() - t0 > timeoutMs) throw new Error(`the page never showed ${what}; last rows: ${JSON.stringify(s?.routes)}\n${fx.proxy.output().slice(-2000)}`);
        await sleep(100);
      }
    };

    try {
      // 1. Healthy providers: every route has traffic; only the unrouted calls fail.
      const healthy = await waitSample('traffic on every route', (s) => ['jason', 'hello', 'split', '(no route)'].every((r) => row(s, r).rps > 0));
      for (const r of ['jason', 'hello', 'split']) expect(row(healthy, r).eps, r).toBe(0);
      expect(row(healthy, '(no route)').eps).toBeGreaterThan(0);
      expect(row(healthy, '(no route)').eps).toBe(row(healthy, '(no route)').rps);
      say(`healthy, poll ${healthy.polls}: ${['jason', 'hello', 'split', '(no route)'].map((r) => `${r} ${row(healthy, r).rps.toFixed(1)} req/s ${row(healthy, r).eps.toFixed(1)} err/s`).join('; ')}`);
      // The figures update: later polls show higher totals.
      const later = await waitSample('a later poll with more requests', (s) => s.polls >= healthy.polls + 2);
      expect(row(later, 'hello').total).toBeGreaterThan(row(healthy, 'hello').total);
      expect(row(later, 'jason').total).toBeGreaterThan(row(healthy, 'jason').total);

      // 2. Provider v1 fails every call: the routes reaching it show errors until outlier detection ejects it from
      // the whole-host cluster (a minute); `hello` then recovers, while `split`'s 20% to the v1 subset keeps failing.
      const firstFailingSample = samples.length;
      a.mode = 'error';
      await page.waitForFunction(
        (key) => document.querySelector(`tr[data-endpoint="${key}"]`)?.getAttribute('data-health') === 'ejected',
        `${names.all} 127.0.0.1:${a.port}`,
        { timeout: 30_000, polling: 100 },
      );
      const ejectedCell = await page.textContent(`tr[data-endpoint="${names.all} 127.0.0.1:${a.port}"] td.health`);
      expect(ejectedCell).toMatch(/^ejected until .+ \((\d+) s\)$/);
      const seconds = Number(/\((\d+) s\)/.exec(ejectedCell!)![1]);
      expect(seconds).toBeGreaterThan(30);
      expect(seconds).toBeLessThanOrEqual(60);
      expect(await page.getAttribute(`tr[data-endpoint="${names.all} 127.0.0.1:${b.port}"]`, 'data-health')).toBe('healthy');
      say(`ejected: ${names.all} 127.0.0.1:${a.port} shown as "${ejectedCell}"`);

      const recovered = await waitSample('hello recovered after the ejection', (s) => s.polls > 0 && row(s, 'hello').rps > 0 && row(s, 'hello').eps === 0 && samples.slice(firstFailingSample).some((x) => row(x, 'hello').eps > 0));
      const failing = samples.slice(firstFailingSample).filter((x) => row(x, 'hello').eps > 0);
      const peak = failing.reduce((m, x) => Math.max(m, row(x, 'hello').eps), 0);
      say(`hello: errors shown in ${new Set(failing.map((x) => x.polls)).size} poll(s), peak ${peak.toFixed(2)} err/s; then ${row(recovered, 'hello').rps.toFixed(1)} req/s, 0 err/s at poll ${recovered.polls}`);
      expect(peak).toBeGreaterThan(0);

      // `split` keeps failing now: its half to the v1 subset gets local replies (no healthy endpoint left there).
      const splitPolls = new Map<number, RouteRow>();
      await waitSample('split on 3 more polls', (s) => {
        if (s.polls > recovered.polls) splitPolls.set(s.polls, row(s, 'split'));
        return splitPolls.size >= 3;
      });
      const split = [...splitPolls.values()];
      say(`split after the failure: ${split.map((r) => `${r.rps.toFixed(1)} req/s ${r.eps.toFixed(1)} err/s`).join(' | ')}`);
      for (const r of split) {
        expect(r.rps).toBeGreaterThan(0);
        expect(r.eps).toBeLessThanOrEqual(r.rps);
      }
      // Each poll has ~half of its split calls failing; a poll with none is a 2^-n event (n calls per poll).
      expect(split.filter((r) => r.eps > 0).length).toBeGreaterThanOrEqual(2);
      expect(split[split.length - 1]!.errors).toBeGreaterThan(split[0]!.errors);
      // The page's totals agree with the proxy's own counters for the route.
      const jason = row(samples[samples.length - 1]!, 'jason');
      expect(jason.errors).toBe(0);
      expect(jason.total).toBeGreaterThan(0);
    } finally {
      stop = true;
      await Promise.all([...drivers, sampler]);
      a.mode = 'ok';
    }
    say(`traffic: ${calls} calls answered (${failures} not OK) over ${samples.length} page samples`);

    // A screenshot of the page as an operator sees it.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-admin-page-'));
    const file = path.join(dir, 'admin-page.png');
    await page.screenshot({ path: file, fullPage: true });
    const png = readFileSync(file);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    expect(statSync(file).size).toBeGreaterThan(10_000);
    say(`screenshot: ${file} (${statSync(file).size} bytes)`);
  }, 180_000);

  it('loaded nothing but the admin API, and the browser reported no errors (CSP violations included)', () => {
    const origin = `http://${fx.proxy.adminAddress}/`;
    expect(requested.length).toBeGreaterThan(3);
    expect(requested.filter((u) => !u.startsWith(origin))).toEqual([]);
    expect(new Set(requested.map((u) => new URL(u).pathname))).toEqual(new Set(['/', '/stats/summary']));
    expect(consoleProblems).toEqual([]);
  });
});
