/**
 * End to end through `waypost proxy --config` (the built CLI, a child process): dubbo2.js as the consumer (a Dubbo
 * client written by others), the demo providers v1 and v2 as backends, and a raw hessian.js client where a test needs
 * to choose request ids or see status codes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { createDemoClient, type DemoClient } from '../../examples/dubbo/consumer.js';
import { freePorts, httpGet, spawnProxy, waitReady, sleep, type ProxyProcess } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { configVersion as adminConfigVersion, metricSum } from '../helpers/admin.js';
import { metaRouterYaml, type RouteSpec as ConfigRouteSpec } from '../helpers/config.js';

const HOST = 'org.apache.dubbo.samples.basic.api.demoservice';

let v1: Provider;
let v2: Provider;
let proxy: ProxyProcess;
let listenPort: number;
let configDir: string;
let address: string;
const clients: DemoClient[] = [];

type Dest = { subset: 'v1' | 'v2'; weight?: number };
type RouteSpec = ConfigRouteSpec<Dest['subset']>;

function serviceYaml(ports: { listen: number; v1: number; v2: number }): string {
  return YAML.stringify({
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'ServiceEntry',
    metadata: { name: 'demo', namespace: 'default' },
    spec: {
      hosts: [HOST],
      ports: [{ number: ports.listen, name: 'tcp-metaprotocol-dubbo', protocol: 'TCP' }],
      resolution: 'STATIC',
      endpoints: [
        { address: '127.0.0.1', ports: { 'tcp-metaprotocol-dubbo': ports.v1 }, labels: { version: 'v1' } },
        { address: '127.0.0.1', ports: { 'tcp-metaprotocol-dubbo': ports.v2 }, labels: { version: 'v2' } },
      ],
    },
  }) + '---\n' + YAML.stringify({
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'DestinationRule',
    metadata: { name: 'demo', namespace: 'default' },
    spec: { host: HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
  });
}

function routerYaml(routes: RouteSpec[]): string {
  return metaRouterYaml('demo', HOST, routes);
}

const configVersion = (): Promise<string> => adminConfigVersion(proxy.adminAddress);

const metric = (pattern: RegExp): Promise<number> => metricSum(proxy.adminAddress, pattern);

/** Writes the router and waits until the proxy applied it; returns ms from the write to the new version. */
async function setRoutes(routes: RouteSpec[]): Promise<number> {
  const before = await configVersion();
  const t0 = Date.now();
  writeFileSync(path.join(configDir, 'router.yaml'), routerYaml(routes));
  for (;;) {
    if ((await configVersion()) !== before) return Date.now() - t0;
    if (Date.now() - t0 > 10_000) throw new Error(`config not applied after 10 s\n${proxy.output()}`);
    await sleep(20);
  }
}

function client(): DemoClient {
  const c = createDemoClient({ address, timeoutSeconds: 5 });
  clients.push(c);
  return c;
}

function versionOf(answer: string | undefined): string {
  const m = /from provider (v\d)@/.exec(answer ?? '');
  if (!m) throw new Error(`unexpected answer ${JSON.stringify(answer)}`);
  return m[1]!;
}

beforeAll(async () => {
  v1 = await startProvider({ version: 'v1' });
  v2 = await startProvider({ version: 'v2' });
  [listenPort] = await freePorts(1);
  address = `127.0.0.1:${listenPort}`;
  configDir = mkdtempSync(path.join(os.tmpdir(), 'waypost-e2e-'));
  writeFileSync(path.join(configDir, 'service.yaml'), serviceYaml({ listen: listenPort!, v1: v1.port, v2: v2.port }));
  writeFileSync(path.join(configDir, 'router.yaml'), routerYaml([{ name: 'all-v1', to: [{ subset: 'v1' }] }]));
  proxy = await spawnProxy({ configDir });
  await waitReady(proxy);
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await proxy?.stop();
  await v1?.close();
  await v2?.close();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

describe('Dubbo through waypost proxy --config', () => {
  it('routes by attachment to a version subset (dubbo2.js consumer)', async () => {
    await setRoutes([
      { name: 'jason', attributes: { user: { exact: 'jason' } }, to: [{ subset: 'v2' }] },
      { name: 'rest', to: [{ subset: 'v1' }] },
    ]);
    const c = client();
    for (let i = 0; i < 10; i++) {
      const jason = await c.sayHello(`jason-${i}`, { user: 'jason' });
      expect(jason.err).toBeUndefined();
      expect(jason.res).toMatch(new RegExp(`^Hello jason-${i}, response from provider v2@`));
      const other = await c.sayHello(`other-${i}`, { user: 'tom' });
      expect(versionOf(other.res)).toBe('v1');
    }
    expect(v2.requests.some((r) => r.attachments.user === 'jason')).toBe(true);
    expect(v1.requests.some((r) => r.attachments.user === 'jason')).toBe(false);
  });

  it('matches exact, prefix, regex and presence, top to bottom, first match wins', async () => {
    await setRoutes([
      { name: 'decoy', attributes: { user: { exact: 'jason2' } }, to: [{ subset: 'v1' }] },
      { name: 'exact', attributes: { user: { exact: 'jason' } }, to: [{ subset: 'v2' }] },
      // Would also match "jason", but comes after the exact rule.
      { name: 'prefix-shadowed', attributes: { user: { prefix: 'ja' } }, to: [{ subset: 'v1' }] },
      { name: 'prefix', attributes: { tier: { prefix: 'gold' } }, to: [{ subset: 'v2' }] },
      { name: 'regex', attributes: { region: { regex: 'eu-(west|north)-[0-9]+' } }, to: [{ subset: 'v2' }] },
      { name: 'presence', attributes: { canary: {} }, to: [{ subset: 'v2' }] },
      { name: 'two-keys', attributes: { method: { exact: 'sayHello' }, lane: { exact: 'blue' } }, to: [{ subset: 'v2' }] },
      { name: 'rest', to: [{ subset: 'v1' }] },
    ]);
    const c = client();
    const cases: Array<[Record<string, string>, string]> = [
      [{ user: 'jason' }, 'v2'],
      [{ user: 'jason2' }, 'v1'],
      [{ user: 'jack' }, 'v1'],
      [{ tier: 'golden' }, 'v2'],
      [{ tier: 'silver' }, 'v1'],
      [{ region: 'eu-west-12' }, 'v2'],
      [{ region: 'xeu-west-1' }, 'v1'],
      [{ region: 'eu-west-1x' }, 'v1'],
      [{ region: 'eu-south-1' }, 'v1'],
      [{ canary: 'yes' }, 'v2'],
      [{ lane: 'blue' }, 'v2'],
      [{ lane: 'green' }, 'v1'],
      [{}, 'v1'],
    ];
    for (const [attachments, want] of cases) {
      const r = await c.sayHello('x', attachments);
      expect(r.err, JSON.stringify(attachments)).toBeUndefined();
      expect(versionOf(r.res), JSON.stringify(attachments)).toBe(want);
    }
    // The route that answered is visible in the metrics.
    expect(await metric(/^waypost_requests_total\{.*route="exact".*outcome="success"/)).toBeGreaterThanOrEqual(1);
    expect(await metric(/^waypost_requests_total\{.*route="prefix-shadowed".*outcome="success"/)).toBeGreaterThanOrEqual(1);
  });

  it('splits 20/80 by weight within binomial bounds over 200 calls', async () => {
    await setRoutes([{ name: 'split', to: [{ subset: 'v1', weight: 20 }, { subset: 'v2', weight: 80 }] }]);
    const c = client();
    const counts = { v1: 0, v2: 0 } as Record<string, number>;
    for (let i = 0; i < 200; i++) {
      const r = await c.sayHello(`n${i}`);
      expect(r.err).toBeUndefined();
      counts[versionOf(r.res)]!++;
    }
    // n = 200, p = 0.2: mean 40, sd 5.66; 4 sd either side (a false failure about once in 16,000 runs).
    expect(counts.v1! + counts.v2!).toBe(200);
    expect(counts.v1).toBeGreaterThanOrEqual(18);
    expect(counts.v1).toBeLessThanOrEqual(62);
  });

  it('applies request and response mutations (seen at the provider and by the client)', async () => {
    await setRoutes([
      {
        name: 'mutate',
        to: [{ subset: 'v1' }],
        requestMutation: [{ key: 'x-lane', value: 'gray' }, { key: 'user', value: 'rewritten' }],
        responseMutation: [{ key: 'x-served-by', value: 'waypost' }],
      },
    ]);
    const c = client();
    const r = await c.echoAttachments({ user: 'original', keep: 'me' });
    expect(r.err).toBeUndefined();
    expect(r.res).toMatchObject({ 'x-lane': 'gray', user: 'rewritten', keep: 'me' });
    const raw = await RawDubboConnection.connect(address);
    try {
      const res = await raw.call({ id: 41, method: 'sayHello', args: ['m'] });
      expect(res.status).toBe(20);
      expect(res.value).toMatch(/^Hello m, response from provider v1@/);
      expect(res.attachments).toMatchObject({ 'x-served-by': 'waypost' });
      expect(res.id).toBe(41);
    } finally {
      raw.destroy();
    }
  });

  it('answers status 60 SERVICE_NOT_FOUND with the reason when no route matches', async () => {
    await setRoutes([{ name: 'only-jason', attributes: { user: { exact: 'jason' } }, to: [{ subset: 'v2' }] }]);
    const raw = await RawDubboConnection.connect(address);
    try {
      const before = v1.requests.length + v2.requests.length;
      const res = await raw.call({ id: 5, method: 'sayHello', args: ['nobody'] });
      expect(res.status).toBe(60);
      expect(res.id).toBe(5);
      expect(res.error?.message).toMatch(/no route/);
      expect(res.error?.message).toContain('sayHello');
      expect(v1.requests.length + v2.requests.length).toBe(before);
      // The connection stays usable.
      const ok = await raw.call({ id: 6, method: 'sayHello', args: ['j'], attachments: { user: 'jason' } });
      expect(ok.status).toBe(20);
    } finally {
      raw.destroy();
    }
    expect(await metric(/^waypost_requests_total\{.*route="none".*outcome="local_reply"/)).toBeGreaterThanOrEqual(1);
  });

  it('re-routes an already-open connection within 1 s of a MetaRouter change, without dropping in-flight calls', async () => {
    await setRoutes([{ name: 'to-v1', to: [{ subset: 'v1' }] }]);
    const raw = await RawDubboConnection.connect(address);
    try {
      const first = await raw.call({ id: 1, method: 'sayHello', args: ['a'] });
      expect(versionOf(first.value as string)).toBe('v1');
      // A slow call is in flight while the config changes.
      const inflight = raw.call({ id: 2, method: 'slow', args: [{ $class: 'int', $: 600 }], timeoutMs: 5000 });
      await sleep(50);
      const written = Date.now();
      writeFileSync(path.join(configDir, 'router.yaml'), routerYaml([{ name: 'to-v2', to: [{ subset: 'v2' }] }]));
      let id = 10;
      let seen = 'v1';
      while (Date.now() - written < 1000) {
        const r = await raw.call({ id: id++, method: 'sayHello', args: ['b'] });
        seen = versionOf(r.value as string);
        if (seen === 'v2') break;
        await sleep(25);
      }
      expect(seen).toBe('v2');
      const slow = await inflight;
      expect(slow.status).toBe(20);
      expect(String(slow.value)).toContain('v1');
    } finally {
      raw.destroy();
    }
  });

  it('rejects an invalid change with file, document and field path and keeps serving the last good config', async () => {
    await setRoutes([{ name: 'good', to: [{ subset: 'v2' }] }]);
    const version = await configVersion();
    const rejectedBefore = await metric(/^waypost_config_applies_total\{result="rejected"\}/);
    writeFileSync(
      path.join(configDir, 'router.yaml'),
      routerYaml([{ name: 'bad', to: [{ subset: 'v1', weight: 30 }, { subset: 'v2', weight: 30 }] }]),
    );
    const t0 = Date.now();
    while (!/router\.yaml:0: MetaRouter\/demo: spec\.routes\[0\]\.route/.test(proxy.output())) {
      if (Date.now() - t0 > 5000) throw new Error(`no rejection logged:\n${proxy.output()}`);
      await sleep(50);
    }
    expect(proxy.output()).toMatch(/weights?.*100/i);
    expect(await configVersion()).toBe(version);
    expect(await metric(/^waypost_config_applies_total\{result="rejected"\}/)).toBeGreaterThan(rejectedBefore);
    const r = await client().sayHello('still');
    expect(versionOf(r.res)).toBe('v2');
    // Fixing the file is picked up again.
    await setRoutes([{ name: 'good-again', to: [{ subset: 'v1' }] }]);
    expect(versionOf((await client().sayHello('again')).res)).toBe('v1');
  });

  it('keeps two consumers that use the same request ids apart', async () => {
    await setRoutes([{ name: 'split', to: [{ subset: 'v1', weight: 50 }, { subset: 'v2', weight: 50 }] }]);
    const a = await RawDubboConnection.connect(address);
    const b = await RawDubboConnection.connect(address);
    try {
      for (const base of [7, 2n ** 60n + 3n]) {
        const calls = [];
        const ids: Array<number | bigint> = [];
        for (let i = 0; i < 20; i++) {
          // The same ids on both connections at once, all in flight together over the shared upstream connections.
          const id = typeof base === 'bigint' ? base + BigInt(i) : base + i;
          ids.push(id, id);
          calls.push(a.call({ id, method: 'sayHello', args: [`alice-${i}`] }));
          calls.push(b.call({ id, method: 'sayHello', args: [`bob-${i}`] }));
        }
        const results = await Promise.all(calls);
        results.forEach((r, i) => {
          const who = i % 2 === 0 ? 'alice' : 'bob';
          expect(r.status).toBe(20);
          expect(r.id).toBe(ids[i]);
          expect(String(r.value)).toMatch(new RegExp(`^Hello ${who}-${Math.floor(i / 2)},`));
        });
      }
      // The upstream saw proxy-assigned ids, not the clients'.
      const upstreamIds = new Set([...v1.requests, ...v2.requests].slice(-80).map((r) => String(r.id)));
      expect(upstreamIds.size).toBe(80);
    } finally {
      a.destroy();
      b.destroy();
    }
  });

  it('shares upstream connections across downstream connections', async () => {
    await setRoutes([{ name: 'all-v1', to: [{ subset: 'v1' }] }]);
    const conns = await Promise.all(Array.from({ length: 5 }, () => RawDubboConnection.connect(address)));
    try {
      const before = v1.connections().accepted;
      await Promise.all(conns.map((c, i) => c.call({ id: 1, method: 'sayHello', args: [`c${i}`] })));
      expect(v1.connections().accepted - before).toBeLessThanOrEqual(1);
    } finally {
      conns.forEach((c) => c.destroy());
    }
  });

  it('passes oneway calls through and answers heartbeats itself', async () => {
    const raw = await RawDubboConnection.connect(address);
    try {
      const before = v1.requests.length;
      raw.oneway({ id: 99, method: 'sayHello', args: ['oneway'] });
      const t0 = Date.now();
      while (v1.requests.length === before && Date.now() - t0 < 3000) await sleep(20);
      const got = v1.requests[v1.requests.length - 1]!;
      expect(got.twoWay).toBe(false);
      expect(got.args).toEqual(['oneway']);
      const heartbeatsBefore = v1.heartbeats + v2.heartbeats;
      const hb = await raw.heartbeat(123);
      expect(hb.event).toBe(true);
      expect(hb.status).toBe(20);
      expect(v1.heartbeats + v2.heartbeats).toBe(heartbeatsBefore);
      await sleep(100);
      expect(raw.unexpected).toHaveLength(0);
    } finally {
      raw.destroy();
    }
  });

  it('closes only the connection that sent a malformed frame, and counts it', async () => {
    const before = await metric(/^waypost_decode_errors_total\{.*direction="downstream"/);
    const good = await RawDubboConnection.connect(address);
    const bad = await RawDubboConnection.connect(address);
    try {
      let closed = false;
      bad['socket'].on('close', () => (closed = true));
      bad.writeRaw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      const t0 = Date.now();
      while (!closed && Date.now() - t0 < 3000) await sleep(20);
      expect(closed).toBe(true);
      const r = await good.call({ id: 3, method: 'sayHello', args: ['fine'] });
      expect(r.status).toBe(20);
      expect(await metric(/^waypost_decode_errors_total\{.*direction="downstream"/)).toBe(before + 1);
      expect(proxy.output()).toMatch(/malformed downstream frame.*reason=bad_magic/);
    } finally {
      good.destroy();
      bad.destroy();
    }
  });

  it('answers 70 SERVICE_ERROR naming the cluster when the upstream is down', async () => {
    const [deadPort] = await freePorts(1);
    writeFileSync(
      path.join(configDir, 'service.yaml'),
      serviceYaml({ listen: listenPort, v1: deadPort!, v2: v2.port }),
    );
    await setRoutes([{ name: 'to-dead', to: [{ subset: 'v1' }] }]);
    const raw = await RawDubboConnection.connect(address);
    try {
      const r = await raw.call({ id: 8, method: 'sayHello', args: ['x'] });
      expect(r.status).toBe(70);
      expect(r.error?.message).toMatch(/outbound\|\d+\|v1\|/);
      expect(r.error?.message).toMatch(/connect failure|ECONNREFUSED/);
    } finally {
      raw.destroy();
      writeFileSync(path.join(configDir, 'service.yaml'), serviceYaml({ listen: listenPort, v1: v1.port, v2: v2.port }));
      await setRoutes([{ name: 'all-v1', to: [{ subset: 'v1' }] }]);
    }
  });

  it('serves the admin API: ready, clusters with labels, config dump, prometheus metrics', async () => {
    expect((await httpGet(proxy.adminAddress, '/ready')).status).toBe(200);
    const clusters = JSON.parse((await httpGet(proxy.adminAddress, '/clusters')).body) as Array<{
      name: string;
      endpoints: Array<{ address: string; labels: Record<string, string>; health: string }>;
    }>;
    const v2Cluster = clusters.find((c) => c.name === `outbound|${listenPort}|v2|${HOST}`);
    expect(v2Cluster?.endpoints).toEqual([
      expect.objectContaining({ address: `127.0.0.1:${v2.port}`, labels: { version: 'v2' }, health: 'HEALTHY' }),
    ]);
    const dump = JSON.parse((await httpGet(proxy.adminAddress, '/config_dump')).body) as {
      version: string;
      resources: { listeners: Array<{ name: string }> };
    };
    expect(dump.resources.listeners.map((l) => l.name)).toEqual([`127.0.0.1_${listenPort}`]);
    const text = (await httpGet(proxy.adminAddress, '/stats/prometheus')).body;
    for (const name of [
      'waypost_requests_total',
      'waypost_request_duration_seconds_bucket',
      'waypost_decode_errors_total',
      'waypost_downstream_connections_active',
      'waypost_config_applies_total',
    ]) {
      expect(text).toContain(name);
    }
    expect(await metric(/^waypost_downstream_connections_active\{/)).toBeGreaterThanOrEqual(0);
  });
});
