/**
 * The access log and W3C traceparent propagation, against real Dubbo calls through `waypost proxy`, and a user codec
 * (KV-RPC, loaded with --codec) for a protocol whose headers are its own.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvClient } from '../../examples/custom-codec/client.js';
import { kvCodecModule } from '../../examples/custom-codec/demo.js';
import { startServer, type KvServer } from '../../examples/custom-codec/server.js';
import { spawnProxy, waitReady, type ProxyProcess } from '../../examples/dubbo/harness.js';
import { HOST, OpsFixture, freePorts, report, servicesYaml, until } from '../limits/helpers.js';

interface Line {
  time: string;
  listener: string;
  protocol: string;
  route: string | null;
  cluster: string | null;
  upstream_host: string | null;
  outcome: string;
  local_reply: string | null;
  duration_ms: number;
  request_id: string;
  attributes: Record<string, string>;
  traceparent: string | null;
  attempts: number;
}

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const INCOMING = `00-${TRACE_ID}-00f067aa0ba902b7-01`;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** Routes exercising every outcome: a header route, a timeout, a fault abort; anything else has no route. */
const routes = {
  routes: [
    { name: 'jason', match: { attributes: { method: { exact: 'sayHello' }, user: { exact: 'jason' } } }, route: [{ destination: { host: HOST, subset: 'v1' } }] },
    { name: 'slow', match: { attributes: { method: { exact: 'slow' } } }, route: [{ destination: { host: HOST, subset: 'v1' } }], timeout: '200ms' },
    {
      name: 'aborted',
      match: { attributes: { method: { exact: 'whoami' } } },
      route: [{ destination: { host: HOST, subset: 'v1' } }],
      fault: { abort: { percentage: { value: 100 }, errorCode: 80, message: 'aborted by the access log test' } },
    },
  ],
};

function readLines(file: string): Line[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Line);
}

describe('access log (--access-log FILE) and traceparent (default --tracing propagate)', () => {
  const fx = new OpsFixture();
  let address = '';
  let listenPort = 0;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-accesslog-'));
  const file = path.join(dir, 'access.log');
  beforeAll(async () => {
    [listenPort] = await freePorts(1);
    address = `127.0.0.1:${listenPort}`;
    await fx.start({
      args: ['--access-log', file],
      config: ([p]) => servicesYaml([{ listenPort, endpoints: [{ port: p!.port, version: 'v1' }], metaRouter: routes }]),
    });
  });
  afterAll(async () => {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes one JSON line per request: success, no route, timeout and fault abort, with route, cluster, upstream and matched attributes', async () => {
    const provider = fx.providers[0]!;
    const c = await fx.connect(address);
    const ok = await c.call({ id: 101, method: 'sayHello', args: ['j'], attachments: { user: 'jason', traceparent: INCOMING } });
    expect(ok.status).toBe(20);
    const none = await c.call({ id: 102, method: 'sayHello', args: ['nobody'] });
    expect(none.status).toBe(60);
    const slow = await c.call({ id: 103, method: 'slow', args: [{ $class: 'int', $: 2000 }], timeoutMs: 10_000 });
    expect(slow.status).toBe(31);
    const aborted = await c.call({ id: 104, method: 'whoami', args: [] });
    expect(aborted.status).toBe(80);

    await until(() => readLines(file).length >= 4, 10_000, () => `4 access log lines in ${file}`);
    const lines = readLines(file);
    const byId = new Map(lines.map((l) => [l.request_id, l]));
    report(`access log line (success): ${JSON.stringify(byId.get('101'))}`);

    const s = byId.get('101')!;
    expect(Number.isNaN(Date.parse(s.time))).toBe(false);
    expect(s).toMatchObject({ protocol: 'dubbo', route: 'jason', outcome: 'success', local_reply: null, upstream_host: `127.0.0.1:${provider.port}`, attempts: 1 });
    expect(s.listener).toContain(String(listenPort));
    expect(s.cluster).toMatch(/^outbound\|\d+\|v1\|/);
    expect(s.attributes).toEqual({ method: 'sayHello', user: 'jason' });
    expect(s.duration_ms).toBeGreaterThan(0);

    expect(byId.get('102')).toMatchObject({ route: null, cluster: null, upstream_host: null, outcome: 'local_reply', local_reply: 'no_route', attributes: {}, attempts: 0 });
    const t = byId.get('103')!;
    expect(t).toMatchObject({ route: 'slow', outcome: 'local_reply', local_reply: 'timeout', upstream_host: `127.0.0.1:${provider.port}`, attributes: { method: 'slow' } });
    expect(t.duration_ms).toBeGreaterThanOrEqual(190);
    expect(byId.get('104')).toMatchObject({ route: 'aborted', outcome: 'local_reply', local_reply: 'fault_abort', upstream_host: null, attempts: 0 });
  });

  it('sends traceparent upstream with the same trace id and flags and the proxy span as the new parent; logs it', async () => {
    const provider = fx.providers[0]!;
    const c = await fx.connect(address);
    const before = provider.requests.length;
    expect((await c.call({ id: 201, method: 'sayHello', args: ['t'], attachments: { user: 'jason', traceparent: INCOMING, tracestate: 'k=v' } })).status).toBe(20);
    expect((await c.call({ id: 202, method: 'sayHello', args: ['u'], attachments: { user: 'jason' } })).status).toBe(20);
    const [traced, plain] = provider.requests.slice(before);
    const sent = String(traced!.attachments.traceparent);
    const m = TRACEPARENT.exec(sent);
    report(`traceparent in: ${INCOMING} → upstream: ${sent}`);
    expect(m).not.toBeNull();
    expect(m![1]).toBe(TRACE_ID);
    expect(m![3]).toBe('01');
    expect(m![2]).not.toBe('00f067aa0ba902b7');
    expect(traced!.attachments.tracestate).toBe('k=v');
    expect(traced!.attachments.user).toBe('jason');
    // Without one, nothing is started by default.
    expect(plain!.attachments.traceparent).toBeUndefined();
    await until(() => readLines(file).some((l) => l.request_id === '201'), 10_000, () => 'the traced line');
    expect(readLines(file).find((l) => l.request_id === '201')!.traceparent).toBe(sent);
    expect(readLines(file).find((l) => l.request_id === '202')!.traceparent).toBeNull();
    // Each hop is a new span: a second request of the same trace gets another parent id.
    await c.call({ id: 203, method: 'sayHello', args: ['t'], attachments: { user: 'jason', traceparent: INCOMING } });
    expect(String(provider.requests.at(-1)!.attachments.traceparent)).not.toBe(sent);
  });
});

describe('--tracing start and off; the access log on stdout', () => {
  it('start: a request without traceparent gets a new sampled trace; off: an incoming traceparent passes untouched', async () => {
    const seen: Record<string, string[]> = {};
    for (const mode of ['start', 'off'] as const) {
      const fx = new OpsFixture();
      const [port] = await freePorts(1);
      try {
        await fx.start({
          args: ['--tracing', mode, '--access-log', '-'],
          config: ([p]) => servicesYaml([{ listenPort: port!, endpoints: [{ port: p!.port, version: 'v1' }] }]),
        });
        const c = await fx.connect(`127.0.0.1:${port}`);
        expect((await c.call({ id: 1, method: 'sayHello', args: ['a'] })).status).toBe(20);
        expect((await c.call({ id: 2, method: 'sayHello', args: ['b'], attachments: { traceparent: INCOMING } })).status).toBe(20);
        seen[mode] = fx.providers[0]!.requests.map((r) => String(r.attachments.traceparent));
        // The access log goes to stdout, one JSON object per line.
        await until(() => fx.proxy.output().split('\n').filter((l) => l.startsWith('{"time"')).length >= 2, 10_000, () => 'access log lines on stdout');
        const logged = fx.proxy.output().split('\n').filter((l) => l.startsWith('{"time"')).map((l) => JSON.parse(l) as Line);
        expect(logged.map((l) => l.request_id)).toEqual(['1', '2']);
      } finally {
        await fx.stop();
      }
    }
    report(`--tracing start: ${seen.start!.join(', ')}; --tracing off: ${seen.off!.join(', ')}`);
    const [fresh, child] = seen.start!;
    expect(fresh).toMatch(TRACEPARENT);
    expect(fresh!.endsWith('-01')).toBe(true);
    expect(fresh!.slice(3, 35)).not.toBe(TRACE_ID);
    expect(child!.slice(3, 35)).toBe(TRACE_ID);
    expect(seen.off).toEqual(['undefined', INCOMING]);
  });
});

describe('traceparent over a user codec (KV-RPC headers)', () => {
  let server: KvServer;
  let proxy: ProxyProcess;
  let dir = '';
  let listen = 0;
  beforeAll(async () => {
    if (!existsSync(kvCodecModule())) throw new Error(`${kvCodecModule()} is missing: run npx tsc -p .`);
    server = await startServer({ version: 'v1' });
    [listen] = await freePorts(1);
    dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-kvtrace-'));
    const host = 'kv.trace.test';
    const docs = [
      { apiVersion: 'metaprotocol.aeraki.io/v1alpha1', kind: 'ApplicationProtocol', metadata: { name: 'kvrpc' }, spec: { protocol: 'kvrpc', codec: 'example.codec.kvrpc' } },
      {
        apiVersion: 'networking.istio.io/v1beta1',
        kind: 'ServiceEntry',
        metadata: { name: 'kv' },
        spec: {
          hosts: [host],
          ports: [{ number: listen, name: 'tcp-metaprotocol-kvrpc', protocol: 'TCP' }],
          resolution: 'STATIC',
          endpoints: [{ address: '127.0.0.1', ports: { 'tcp-metaprotocol-kvrpc': server.port } }],
        },
      },
      { apiVersion: 'metaprotocol.aeraki.io/v1alpha1', kind: 'MetaRouter', metadata: { name: 'kv' }, spec: { hosts: [host], routes: [{ name: 'all', route: [{ destination: { host } }] }] } },
    ];
    writeFileSync(path.join(dir, 'kv.yaml'), docs.map((d) => YAML.stringify(d)).join('---\n'));
    proxy = await spawnProxy({ configDir: dir, extraArgs: ['--codec', kvCodecModule()] });
    await waitReady(proxy);
  });
  afterAll(async () => {
    await proxy?.stop();
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the server sees the same trace id with the proxy span as parent', async () => {
    const c = await KvClient.connect(`127.0.0.1:${listen}`);
    try {
      const r = await c.call({ method: 'echo', headers: { traceparent: INCOMING }, body: 'hi' });
      expect(r.status).toBe(0);
      const sent = server.requests.at(-1)!.headers.traceparent!;
      report(`KV-RPC traceparent in: ${INCOMING} → upstream: ${sent}`);
      const m = TRACEPARENT.exec(sent);
      expect(m?.[1]).toBe(TRACE_ID);
      expect(m?.[2]).not.toBe('00f067aa0ba902b7');
      expect(m?.[3]).toBe('01');
    } finally {
      c.close();
    }
  });
});
