/**
 * A user protocol end to end: the KV-RPC example codec (examples/custom-codec/) loaded into the real proxy CLI with
 * `--codec`, the example's servers v1 and v2 as backends and its client library as the caller. Nothing in src/ or
 * codecs/ knows KV-RPC: routing, splitting, mutations, local replies, id rewriting and decode errors all come from
 * the codec module.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { freePorts, httpGet, projectRoot, sleep, spawnProxy, waitReady, type ProxyProcess } from '../../examples/dubbo/harness.js';
import { KvClient } from '../../examples/custom-codec/client.js';
import { kvCodecModule, runKvDemo } from '../../examples/custom-codec/demo.js';
import { startServer, type KvServer } from '../../examples/custom-codec/server.js';
import { Status, encodeRequest } from '../../examples/custom-codec/wire.js';
import { configVersion as adminConfigVersion, metricSum } from '../helpers/admin.js';
import { metaRouterYaml, type RouteSpec as ConfigRouteSpec } from '../helpers/config.js';

// The proxy child loads the compiled codec: a missing build must fail, not skip.
if (!existsSync(kvCodecModule())) throw new Error(`${kvCodecModule()} is missing: run npx tsc -p .`);

const HOST = 'kv.demo.svc';
const PORT_NAME = 'tcp-metaprotocol-kvrpc';

let v1: KvServer;
let v2: KvServer;
let proxy: ProxyProcess;
let listenPort: number;
let address: string;
let configDir: string;
const clients: KvClient[] = [];

type Dest = { subset: 'v1' | 'v2'; weight?: number };
type RouteSpec = ConfigRouteSpec<Dest['subset']>;

function serviceYaml(ports: { listen: number; v1: number; v2: number }): string {
  return [
    {
      apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
      kind: 'ApplicationProtocol',
      metadata: { name: 'kvrpc', namespace: 'default' },
      spec: { protocol: 'kvrpc', codec: 'example.codec.kvrpc' },
    },
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'kv', namespace: 'default' },
      spec: {
        hosts: [HOST],
        ports: [{ number: ports.listen, name: PORT_NAME, protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: [
          { address: '127.0.0.1', ports: { [PORT_NAME]: ports.v1 }, labels: { version: 'v1' } },
          { address: '127.0.0.1', ports: { [PORT_NAME]: ports.v2 }, labels: { version: 'v2' } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: 'kv', namespace: 'default' },
      spec: { host: HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    },
  ]
    .map((d) => YAML.stringify(d))
    .join('---\n');
}

function routerYaml(routes: RouteSpec[]): string {
  return metaRouterYaml('kv', HOST, routes);
}

const configVersion = (): Promise<string> => adminConfigVersion(proxy.adminAddress);

/** Writes `file` and waits until the proxy applied a new config version. */
async function apply(file: 'router.yaml' | 'service.yaml', text: string): Promise<void> {
  const before = await configVersion();
  writeFileSync(path.join(configDir, file), text);
  const t0 = Date.now();
  while ((await configVersion()) === before) {
    if (Date.now() - t0 > 10_000) throw new Error(`config not applied after 10 s\n${proxy.output()}`);
    await sleep(20);
  }
}

const setRoutes = (routes: RouteSpec[]): Promise<void> => apply('router.yaml', routerYaml(routes));

const metric = (pattern: RegExp): Promise<number> => metricSum(proxy.adminAddress, pattern);

async function client(): Promise<KvClient> {
  const c = await KvClient.connect(address);
  clients.push(c);
  return c;
}

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

beforeAll(async () => {
  v1 = await startServer({ version: 'v1' });
  v2 = await startServer({ version: 'v2' });
  [listenPort] = await freePorts(1);
  address = `127.0.0.1:${listenPort}`;
  configDir = mkdtempSync(path.join(os.tmpdir(), 'waypost-kvrpc-e2e-'));
  writeFileSync(path.join(configDir, 'service.yaml'), serviceYaml({ listen: listenPort!, v1: v1.port, v2: v2.port }));
  writeFileSync(path.join(configDir, 'router.yaml'), routerYaml([{ name: 'all-v1', to: [{ subset: 'v1' }] }]));
  proxy = await spawnProxy({ configDir, extraArgs: ['--codec', kvCodecModule()] });
  await waitReady(proxy);
});

afterAll(async () => {
  for (const c of clients) c.close();
  await proxy?.stop();
  await v1?.close();
  await v2?.close();
  if (configDir) rmSync(configDir, { recursive: true, force: true });
});

describe('KV-RPC through waypost proxy --codec', () => {
  it('loads the codec module and serves its protocol on the tcp-metaprotocol-kvrpc port', async () => {
    expect(proxy.output()).toMatch(/codec loaded .*codecs=example\.codec\.kvrpc/);
    expect(proxy.output()).toMatch(new RegExp(`listener bound .*127\\.0\\.0\\.1:${listenPort} protocol=kvrpc`));
    const r = await (await client()).call({ method: 'whoami' });
    expect(r.status).toBe(Status.OK);
    expect(r.text()).toBe('v1');
  });

  it('routes by a header to v2, and everything else to the default v1', async () => {
    await setRoutes([
      { name: 'jason', attributes: { user: { exact: 'jason' } }, to: [{ subset: 'v2' }] },
      { name: 'rest', to: [{ subset: 'v1' }] },
    ]);
    const c = await client();
    const v1Before = v1.requests.length;
    const v2Before = v2.requests.length;
    for (let i = 0; i < 10; i++) {
      const jason = await c.call({ service: 'kv.Demo', method: 'echo', headers: { user: 'jason' }, body: `j${i}` });
      expect([jason.status, jason.headers['served-by'], jason.text()]).toEqual([Status.OK, 'v2', `j${i}`]);
      const tom = await c.call({ service: 'kv.Demo', method: 'echo', headers: { user: 'tom' }, body: `t${i}` });
      expect([tom.status, tom.headers['served-by'], tom.text()]).toEqual([Status.OK, 'v1', `t${i}`]);
      const nobody = await c.call({ service: 'kv.Demo', method: 'whoami' });
      expect(nobody.text()).toBe('v1');
    }
    expect(v2.requests.slice(v2Before).map((r) => r.headers.user)).toEqual(Array(10).fill('jason'));
    expect(v1.requests.slice(v1Before).filter((r) => r.headers.user === 'jason')).toEqual([]);
    expect(v1.requests.length - v1Before).toBe(20);
    expect(await metric(/^waypost_requests_total\{.*protocol="kvrpc".*route="jason".*outcome="success"/)).toBeGreaterThanOrEqual(10);
  });

  it('splits 20/80 by weight within binomial bounds over 200 calls', async () => {
    await setRoutes([{ name: 'split', to: [{ subset: 'v1', weight: 20 }, { subset: 'v2', weight: 80 }] }]);
    const c = await client();
    const counts: Record<string, number> = { v1: 0, v2: 0 };
    for (let i = 0; i < 200; i++) {
      const r = await c.call({ method: 'whoami' });
      expect(r.status).toBe(Status.OK);
      counts[r.text()]!++;
    }
    // n = 200, p = 0.2: mean 40, sd 5.66; 4 sd either side.
    expect(counts.v1! + counts.v2!).toBe(200);
    expect(counts.v1).toBeGreaterThanOrEqual(18);
    expect(counts.v1).toBeLessThanOrEqual(62);
  });

  it('applies a request mutation the server sees, and a response mutation the client sees', async () => {
    await setRoutes([
      {
        name: 'mutate',
        to: [{ subset: 'v2' }],
        requestMutation: [
          { key: 'x-lane', value: 'gray' },
          { key: 'User', value: 'rewritten' },
        ],
        responseMutation: [{ key: 'x-served-via', value: 'waypost' }],
      },
    ]);
    const c = await client();
    const r = await c.call({ service: 'kv.Demo', method: 'headers', headers: { user: 'original', keep: 'me' }, body: 'payload' });
    expect(r.status).toBe(Status.OK);
    expect(JSON.parse(r.text())).toEqual({ service: 'kv.Demo', method: 'headers', keep: 'me', 'x-lane': 'gray', user: 'rewritten' });
    expect(r.headers).toEqual({ 'served-by': 'v2', 'x-served-via': 'waypost' });
    const seen = v2.requests[v2.requests.length - 1]!;
    expect(seen.headers).toMatchObject({ user: 'rewritten', 'x-lane': 'gray', keep: 'me' });
    expect(seen.body).toBe('payload'); // the body passes through the rewritten header section untouched
  });

  it('answers NOT_FOUND with error-kind no_route and the client id when no route matches', async () => {
    await setRoutes([{ name: 'only-jason', attributes: { user: { exact: 'jason' } }, to: [{ subset: 'v2' }] }]);
    const c = await client();
    const before = v1.requests.length + v2.requests.length;
    const r = await c.call({ id: 4242, service: 'kv.Demo', method: 'echo', body: 'lost' });
    expect(r.id).toBe(4242);
    expect(r.status).toBe(Status.NOT_FOUND);
    expect(r.headers['error-kind']).toBe('no_route');
    expect(r.text()).toMatch(/no route/);
    expect(r.text()).toContain('method=echo');
    expect(v1.requests.length + v2.requests.length).toBe(before);
    // The connection stays usable.
    const ok = await c.call({ id: 4243, method: 'whoami', headers: { user: 'jason' } });
    expect([ok.id, ok.status, ok.text()]).toEqual([4243, Status.OK, 'v2']);
    expect(await metric(/^waypost_requests_total\{.*protocol="kvrpc".*route="none".*outcome="local_reply"/)).toBeGreaterThanOrEqual(1);
  });

  it('keeps two clients that use the same request ids apart, answers arriving out of order', async () => {
    await setRoutes([{ name: 'split', to: [{ subset: 'v1', weight: 50 }, { subset: 'v2', weight: 50 }] }]);
    const a = await client();
    const b = await client();
    const v1Before = v1.requests.length;
    const v2Before = v2.requests.length;
    const calls: Array<Promise<{ who: string; i: number; id: number; status: number; text: string }>> = [];
    for (let i = 1; i <= 20; i++) {
      for (const [who, c] of [['alice', a], ['bob', b]] as const) {
        // Later calls answer sooner: upstream answers come back in another order than the requests went out.
        const delay = String((20 - i) * 3);
        calls.push(
          c.call({ id: i, method: 'echo', headers: { 'delay-ms': delay }, body: `${who}-${i}` }).then((r) => ({ who, i, id: r.id, status: r.status, text: r.text() })),
        );
      }
    }
    const results = await Promise.all(calls);
    for (const r of results) expect(r).toEqual({ who: r.who, i: r.i, id: r.i, status: Status.OK, text: `${r.who}-${r.i}` });
    expect(a.unexpected).toEqual([]);
    expect(b.unexpected).toEqual([]);
    // Each server saw proxy-assigned ids: never the same id twice on one connection, though both clients sent 1..20.
    const seen = [...v1.requests.slice(v1Before).map((r) => ['v1', r]), ...v2.requests.slice(v2Before).map((r) => ['v2', r])] as Array<
      [string, (typeof v1.requests)[number]]
    >;
    expect(seen).toHaveLength(40);
    const perConnection = new Set(seen.map(([v, r]) => `${v}/${r.connection}/${r.id}`));
    expect(perConnection.size).toBe(40);
  });

  it('passes oneway calls through unanswered and answers heartbeats itself', async () => {
    await setRoutes([{ name: 'all-v1', to: [{ subset: 'v1' }] }]);
    const c = await client();
    const before = v1.requests.length;
    c.oneway({ id: 77, method: 'log', body: 'fire and forget' });
    await waitFor(() => v1.requests.length > before, 'the oneway call at v1');
    expect(v1.requests[v1.requests.length - 1]).toMatchObject({ oneway: true, method: 'log', body: 'fire and forget' });
    const heartbeatsBefore = v1.heartbeats + v2.heartbeats;
    const hb = await c.heartbeat(9001);
    expect([hb.id, hb.status]).toEqual([9001, Status.OK]);
    expect(v1.heartbeats + v2.heartbeats).toBe(heartbeatsBefore);
    // Nothing came back for the oneway call.
    const after = await c.call({ method: 'whoami' });
    expect(after.status).toBe(Status.OK);
    expect(c.unexpected).toEqual([]);
  });

  it('closes only the connection that sent a malformed frame (counted in waypost_decode_errors_total); a frame whose headers lie is answered BAD_REQUEST alone', async () => {
    await setRoutes([
      { name: 'jason', attributes: { user: { exact: 'jason' } }, to: [{ subset: 'v2' }] },
      { name: 'rest', to: [{ subset: 'v1' }] },
    ]);
    const errors = /^waypost_decode_errors_total\{.*protocol="kvrpc".*direction="downstream"/;
    const good = await client();
    // 1. Not KV-RPC at all: refused from its first byte.
    const before = await metric(errors);
    const bad = await client();
    bad.writeRaw(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await bad.closed;
    expect((await good.call({ method: 'whoami' })).status).toBe(Status.OK);
    expect(await metric(errors)).toBe(before + 1);
    expect(proxy.output()).toMatch(/malformed downstream frame.*protocol=kvrpc.*reason=bad_magic/);
    // 2. A whole frame whose header section lies about an entry's length: found when routing reads the `user`
    //    header (lazily). That request alone is answered BAD_REQUEST, counted as contained; its connection stays
    //    open, and nothing reached a server.
    const frame = encodeRequest(5, { method: 'echo', user: 'jason' }, 'x');
    frame[16] = 200; // the first key's length runs past the section
    const served = v1.requests.length + v2.requests.length;
    const contained = /^waypost_contained_errors_total\{.*where="request".*reason="bad_header"/;
    const containedBefore = await metric(contained);
    const lying = await client();
    const answer = await lying.callRaw(5, frame);
    expect(answer.status).toBe(Status.BAD_REQUEST);
    expect(answer.id).toBe(5);
    expect(await metric(contained)).toBe(containedBefore + 1);
    expect(await metric(errors)).toBe(before + 1);
    expect(lying.isClosed).toBe(false);
    expect((await lying.call({ method: 'whoami' })).status).toBe(Status.OK);
    expect(v1.requests.length + v2.requests.length).toBe(served + 1);
    expect((await good.call({ method: 'whoami', headers: { user: 'jason' } })).text()).toBe('v2');
    expect(good.isClosed).toBe(false);
  });

  it('answers UNAVAILABLE naming the cluster when the upstream is down', async () => {
    const [deadPort] = await freePorts(1);
    await apply('service.yaml', serviceYaml({ listen: listenPort, v1: deadPort!, v2: v2.port }));
    try {
      await setRoutes([{ name: 'to-dead', to: [{ subset: 'v1' }] }]);
      const r = await (await client()).call({ id: 31, method: 'whoami' });
      expect([r.id, r.status, r.headers['error-kind']]).toEqual([31, Status.UNAVAILABLE, 'no_healthy_upstream']);
      expect(r.text()).toMatch(/outbound\|\d+\|v1\|kv\.demo\.svc/);
    } finally {
      await apply('service.yaml', serviceYaml({ listen: listenPort, v1: v1.port, v2: v2.port }));
    }
  });
});

describe('the KV-RPC demo', () => {
  it('runs end to end on free ports: jason → v2, split within bounds, mutation seen, heartbeat answered', async () => {
    const lines: string[] = [];
    const report = await runKvDemo({ ports: 'auto', print: (l) => lines.push(l) });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.jason).toEqual(Array(10).fill('v2'));
    expect(report.split.errors).toBe(0);
    expect(report.split.v1 + report.split.v2).toBe(100);
    expect(report.seenByServer).toMatchObject({ user: 'jason', 'x-routed-by': 'v2-for-jason' });
    expect(report.heartbeatAnsweredByProxy).toBe(true);
    expect(lines.join('\n')).toMatch(/--codec .*dist\/examples\/custom-codec\/codec\.js/);
  });
});

/**
 * Two problems in src/ found while writing this example, fixed since: these tests keep them fixed.
 */
describe('user codec loading (src/)', () => {
  const root = projectRoot();

  it('--codec takes a relative path without ./ (dist/x.js), as node does (src/codec-registry.ts load)', () => {
    const r = spawnSync(
      process.execPath,
      ['bin/waypost.js', 'validate', '--codec', 'dist/examples/custom-codec/codec.js', 'examples/custom-codec/config'],
      { cwd: root, encoding: 'utf8', timeout: 20_000 },
    );
    expect(r.stderr).not.toMatch(/Cannot find package/);
    expect(r.status).toBe(0);
  });

  it('a codec whose CodecError comes from another copy of the API closes the connection, not the proxy', async () => {
    // What a codec package with its own `waypost` dependency (a second copy of src/codec.ts) amounts to.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-dup-codec-'));
    const [port, admin] = await freePorts(2);
    writeFileSync(
      path.join(dir, 'codec.mjs'),
      `class CodecError extends Error {
  constructor(reason, message) { super(message); this.name = 'CodecError'; this.reason = reason; }
}
export default {
  name: 'example.codec.dup', protocol: 'dup', multiplexing: 'id',
  create: () => ({
    buffered: 0,
    decode() { throw new CodecError('bad_magic', 'never a frame'); },
    encode: (f) => f.raw, localReply: () => undefined, heartbeatReply: () => undefined,
  }),
};
`,
    );
    writeFileSync(
      path.join(dir, 'dup.yaml'),
      `apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: ApplicationProtocol
metadata: { name: dup }
spec: { protocol: dup, codec: example.codec.dup }
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: { name: dup }
spec:
  hosts: [dup.example]
  ports: [{ number: ${port}, name: tcp-metaprotocol-dup, protocol: TCP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, ports: { tcp-metaprotocol-dup: ${admin} } }]
`,
    );
    const dup = await spawnProxy({ configDir: dir, extraArgs: ['--codec', path.join(dir, 'codec.mjs')] });
    try {
      await waitReady(dup);
      const socket = net.connect(port!, '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      socket.on('error', () => undefined);
      socket.write('GET / HTTP/1.1\r\n\r\n');
      await new Promise<void>((resolve) => socket.once('close', () => resolve()));
      await sleep(200);
      expect(dup.child.exitCode, `the proxy died:\n${dup.output()}`).toBeNull();
      expect((await httpGet(dup.adminAddress, '/ready')).status).toBe(200);
      expect(dup.output()).toMatch(/malformed downstream frame.*reason=bad_magic/);
    } finally {
      await dup.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
