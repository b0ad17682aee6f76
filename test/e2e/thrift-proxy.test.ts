/**
 * Thrift end to end through `waypost proxy --config` (the built CLI, a child process, on a config directory this
 * suite rewrites), with real Thrift peers on both sides, code generated at test time from
 * test/fixtures/thrift/greeter.thrift by Debian's `thrift` compiler.
 *
 * Which peer plays which part, over which transport/protocol (every cell below is exercised):
 *
 * | peer                    | as client through the proxy                     | as server behind the proxy                   |
 * |-------------------------|-------------------------------------------------|----------------------------------------------|
 * | python3-thrift (Debian) | framed+binary, buffered+binary, framed+compact, | framed+binary, buffered+binary,              |
 * |                         | THeader (binary and compact payloads, headers)  | framed+compact (TThreadedServer), THeader    |
 * |                         |                                                 | (accepts every client type; the v1/v2 pair)  |
 * | npm thrift 0.24         | framed+binary, buffered+binary, framed+compact  | framed+binary, buffered+binary,              |
 * |                         |                                                 | framed+compact                               |
 *
 * npm has no THeader peer: its THeaderProtocol client writes plain binary without a header, and its THeaderProtocol
 * server answers THeader requests with plain unframed binary (python's THeader client then switches the connection
 * to unframed binary, which a THeader connection through the proxy refuses: the transport holds per connection).
 *
 * The service `greeter.waypost.test` (python THeader servers v1 and v2, and a dead endpoint as subset `dead`) carries
 * the routing, mutation, local-reply and multiplexing tests; one extra service per server of the matrix above.
 * The proxy forwards bytes as they are (it does not translate transports), so a client always talks the transport
 * of the server behind the listener it calls.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { freePorts, httpGet, sleep, spawnProxy, waitReady, type ProxyProcess } from '../../examples/dubbo/harness.js';
import {
  PythonSession,
  ensureThriftPeers,
  generate,
  npmClient,
  pythonCall,
  startNpmServer,
  startPythonServer,
  type Generated,
  type NpmClient,
  type NpmServer,
  type PyCall,
  type PyResult,
  type PythonServer,
} from '../fixtures/thrift/peers.js';
import { configVersion as adminConfigVersion, metricSum } from '../helpers/admin.js';
import { metaRouterYaml, type RouteSpec as ConfigRouteSpec } from '../helpers/config.js';

const HOST = 'greeter.waypost.test';
const PORT_NAME = 'tcp-metaprotocol-thrift';
/** TApplicationException types. */
const UNKNOWN_METHOD = 1;
const INTERNAL_ERROR = 6;
/** A name of 300,000 characters: its message spans many socket reads. */
const BIG = 'x'.repeat(300_000);

/** The transport/protocol pairs both peers speak as plain Thrift (THeader is tested on its own). */
const COMBOS = [
  { key: 'framed-binary', transport: 'framed', protocol: 'binary' },
  { key: 'buffered-binary', transport: 'buffered', protocol: 'binary' },
  { key: 'framed-compact', transport: 'framed', protocol: 'compact' },
] as const;
type Combo = (typeof COMBOS)[number];

interface MatrixServer {
  host: string;
  listen: number;
  port: number;
  /** What `server()` answers. */
  identity: string;
  /** Whether the server has seen a oneway ping with this note. */
  pinged(note: string): boolean;
  /** The TApplicationException type its processor gives an unknown method (npm 0.24 writes none: 0 UNKNOWN). */
  unknownMethodType: number;
}

let gen: Generated;
let proxy: ProxyProcess;
let configDir: string;
let mainPort: number;
let deadPort: number;
let v1: PythonServer;
let v2: PythonServer;
const pythonServers: PythonServer[] = [];
const npmServers: NpmServer[] = [];
/** Matrix servers by `${impl}-${combo key}` (`python-framed-binary`, `npm-header`, …). */
const matrix = new Map<string, MatrixServer>();
const npmClients: NpmClient[] = [];
const sessions: PythonSession[] = [];
/** The main service's MetaRouter as last written. */
let routerText = '';

type Subset = 'v1' | 'v2' | 'dead';
type RouteSpec = ConfigRouteSpec<Subset>;

function serviceEntry(name: string, host: string, listen: number, endpoints: Array<{ port: number; labels: Record<string, string> }>): object {
  return {
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'ServiceEntry',
    metadata: { name, namespace: 'default' },
    spec: {
      hosts: [host],
      ports: [{ number: listen, name: PORT_NAME, protocol: 'TCP' }],
      resolution: 'STATIC',
      endpoints: endpoints.map((e) => ({ address: '127.0.0.1', ports: { [PORT_NAME]: e.port }, labels: e.labels })),
    },
  };
}

/** Everything but the main service's MetaRouter: service entries, the subsets, and a route per matrix service. */
function servicesYaml(): string {
  const docs: object[] = [
    serviceEntry('greeter', HOST, mainPort, [
      { port: v1.port, labels: { version: 'v1' } },
      { port: v2.port, labels: { version: 'v2' } },
      { port: deadPort, labels: { version: 'dead' } },
    ]),
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: 'greeter', namespace: 'default' },
      spec: {
        host: HOST,
        subsets: (['v1', 'v2', 'dead'] as const).map((v) => ({ name: v, labels: { version: v } })),
      },
    },
  ];
  for (const [name, m] of matrix) {
    docs.push(serviceEntry(name, m.host, m.listen, [{ port: m.port, labels: { version: 'v1' } }]));
    docs.push({
      apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
      kind: 'MetaRouter',
      metadata: { name, namespace: 'default' },
      spec: {
        hosts: [m.host],
        routes: [{ name: 'all', route: [{ destination: { host: m.host } }] }],
      },
    });
  }
  return docs.map((d) => YAML.stringify(d)).join('---\n');
}

function routerYaml(routes: RouteSpec[], specExtra?: Record<string, unknown>): string {
  return metaRouterYaml('greeter', HOST, routes, specExtra);
}

/**
 * Replaces a config file by rename, as editors and ConfigMap updates do. A plain rewrite (truncate, then write) can be
 * read half-way by the proxy's watcher, which then applies the config without that file for a moment (see
 * thrift-config-reload.test.ts).
 */
function writeAtomically(file: string, text: string): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

const configVersion = (): Promise<string> => adminConfigVersion(proxy.adminAddress);

/** Writes the main service's MetaRouter and waits until the proxy reports a new config version. */
async function setRoutes(routes: RouteSpec[], specExtra?: Record<string, unknown>): Promise<void> {
  const text = routerYaml(routes, specExtra);
  if (text === routerText) return; // the same config has the same version: nothing to wait for
  const before = await configVersion();
  routerText = text;
  writeAtomically(path.join(configDir, 'router.yaml'), text);
  const t0 = Date.now();
  while ((await configVersion()) === before) {
    if (Date.now() - t0 > 10_000) throw new Error(`config not applied after 10 s\n${proxy.output()}`);
    await sleep(20);
  }
}

const metric = (pattern: RegExp): Promise<number> => metricSum(proxy.adminAddress, pattern);

async function waitFor(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function session(transport: 'framed' | 'buffered' | 'header', protocol: 'binary' | 'compact', port = mainPort): PythonSession {
  const s = new PythonSession(gen, transport, protocol, port);
  sessions.push(s);
  return s;
}

function npm(port: number, transport: 'framed' | 'buffered', protocol: 'binary' | 'compact'): NpmClient {
  const c = npmClient(gen, port, transport, protocol);
  npmClients.push(c);
  return c;
}

/** The version (tag) in a tagged server's answer: "hello x from v2", "admin v1", "python header/binary v2". */
function versionOf(r: PyResult | string): string {
  const text = typeof r === 'string' ? r : 'ok' in r ? String(r.ok) : JSON.stringify(r);
  const m = /\b(v[12])$/.exec(text);
  if (!m) throw new Error(`no version in ${JSON.stringify(r)}`);
  return m[1]!;
}

/** Calls made by every client of the matrix, and what a server tagged `m` answers (identity: its `server()`). */
function matrixCalls(note: string): PyCall[] {
  return [
    { method: 'hello', args: ['ann'], seqid: 1 },
    { method: 'hello', args: ['fail'], seqid: 2 },
    { method: 'server', seqid: 3 },
    { method: 'hello', args: ['mux'], service: 'Greeter', seqid: 4 },
    { method: 'whoami', service: 'Admin', seqid: 5 },
    { method: 'ping', args: [note], seqid: 6 },
    { method: 'nothing', seqid: 2 ** 31 - 1 },
    { method: 'whoami', seqid: 8 }, // Greeter has no whoami: the server's own UNKNOWN_METHOD comes back
  ];
}

function matrixAnswers(server: MatrixServer): unknown[] {
  return [
    { ok: 'hello ann from m' },
    { greet: { reason: 'no greeting for you', code: 42 } },
    { ok: server.identity },
    { ok: 'hello mux from m' },
    { ok: 'admin m' },
    { ok: null },
    { ok: null },
    { app: { type: server.unknownMethodType, message: 'Unknown function whoami' } },
  ];
}

beforeAll(async () => {
  ensureThriftPeers();
  gen = await generate();
  const ports = await freePorts(2 + COMBOS.length * 2);
  [mainPort, deadPort] = ports as [number, number];
  let next = 2;
  [v1, v2] = await Promise.all([
    startPythonServer(gen, 'header', 'binary', 'v1'),
    startPythonServer(gen, 'header', 'binary', 'v2'),
  ]);
  pythonServers.push(v1, v2);
  await Promise.all(
    COMBOS.map(async (c) => {
      const py = await startPythonServer(gen, c.transport, c.protocol, 'm');
      pythonServers.push(py);
      matrix.set(`python-${c.key}`, {
        host: `python-${c.key}.waypost.test`,
        listen: ports[next++]!,
        port: py.port,
        identity: `python ${c.transport}/${c.protocol} m`,
        pinged: (note) => py.stderr().includes(`PING ${note}\n`),
        unknownMethodType: UNKNOWN_METHOD,
      });
      const js = await startNpmServer(gen, c.transport, c.protocol, 'm');
      npmServers.push(js);
      matrix.set(`npm-${c.key}`, {
        host: `npm-${c.key}.waypost.test`,
        listen: ports[next++]!,
        port: js.port,
        identity: `npm ${c.transport}/${c.protocol} m`,
        pinged: (note) => js.pings.includes(note),
        unknownMethodType: 0,
      });
    }),
  );
  configDir = mkdtempSync(path.join(os.tmpdir(), 'waypost-thrift-e2e-'));
  writeFileSync(path.join(configDir, 'services.yaml'), servicesYaml());
  routerText = routerYaml([{ name: 'all-v1', to: [{ subset: 'v1' }] }]);
  writeFileSync(path.join(configDir, 'router.yaml'), routerText);
  proxy = await spawnProxy({ configDir });
  await waitReady(proxy);
});

afterAll(async () => {
  for (const c of npmClients) c.close();
  await Promise.all(sessions.map((s) => s.close()));
  await proxy?.stop();
  for (const s of pythonServers) s.stop();
  await Promise.all(npmServers.map((s) => s.stop()));
  if (configDir) rmSync(configDir, { recursive: true, force: true });
  gen?.cleanup();
});

// ---------------------------------------------------------------------------------------------------------------

describe('each peer as client and as server, through waypost proxy --config', () => {
  for (const combo of COMBOS) {
    for (const impl of ['python', 'npm'] as const) {
      it(`python ${combo.transport}/${combo.protocol} client → proxy → ${impl} ${combo.transport}/${combo.protocol} server`, async () => {
        const server = matrix.get(`${impl}-${combo.key}`)!;
        const note = `py→${impl} ${combo.key}`;
        const s = session(combo.transport, combo.protocol, server.listen);
        const results: PyResult[] = [];
        for (const c of matrixCalls(note)) results.push(await s.call(c));
        expect(results).toEqual(matrixAnswers(server));
        // A message far larger than a socket read: the proxy gathers it across chunks (unframed: by parsing it).
        expect(await s.call({ method: 'hello', args: [BIG], seqid: 300 })).toEqual({ ok: `hello ${BIG} from m` });
        await waitFor(`the ping at ${impl}`, () => server.pinged(note));
      });

      it(`npm ${combo.transport}/${combo.protocol} client → proxy → ${impl} ${combo.transport}/${combo.protocol} server`, async () => {
        const server = matrix.get(`${impl}-${combo.key}`)!;
        const note = `npm→${impl} ${combo.key}`;
        const c = npm(server.listen, combo.transport, combo.protocol);
        // One at a time where npm's plain and multiplexed clients would pick the same seqid.
        await expect(c.greeter.hello('ann')).resolves.toBe('hello ann from m');
        await expect(c.greeter.hello('fail')).rejects.toMatchObject({ reason: 'no greeting for you', code: 42 });
        await expect(c.greeter.server()).resolves.toBe(server.identity);
        await expect(c.muxGreeter.hello('mux')).resolves.toBe('hello mux from m');
        await expect(c.admin.whoami()).resolves.toBe('admin m');
        await c.greeter.ping(note);
        await expect(c.greeter.nothing()).resolves.toBeUndefined();
        // Many in flight on the one connection, answered by seqid.
        const names = Array.from({ length: 20 }, (_, i) => `n${i}`);
        await expect(Promise.all(names.map((n) => c.greeter.hello(n)))).resolves.toEqual(names.map((n) => `hello ${n} from m`));
        await expect(c.greeter.hello(BIG)).resolves.toBe(`hello ${BIG} from m`);
        expect(c.errors).toEqual([]);
        await waitFor(`the ping at ${impl}`, () => server.pinged(note));
      });
    }
  }

  // The old binary form without a version word (python's TBinaryProtocol with strictWrite off), which the codec
  // detects from the first bytes. npm's strict-writing server reads it; python's does not (it reads a lax method name
  // as bytes and finds no method: the reason peer.py has a `lax` server of its own).
  for (const transport of ['framed', 'buffered'] as const) {
    for (const impl of ['npm'] as const) {
      it(`python ${transport}/lax-binary client → proxy → ${impl} ${transport}/binary server`, async () => {
        const server = matrix.get(`${impl}-${transport}-binary`)!;
        const note = `py-lax→${impl} ${transport}`;
        const results = await pythonCall(gen, transport, 'lax', server.listen, matrixCalls(note));
        expect(results).toEqual(matrixAnswers(server));
        await waitFor(`the ping at ${impl}`, () => server.pinged(note));
      });
    }
  }

  for (const protocol of ['binary', 'compact'] as const) {
    it(`python THeader (${protocol}) client → proxy → python THeader server, headers intact`, async () => {
      await setRoutes([{ name: 'all-v1', to: [{ subset: 'v1' }] }]);
      const note = `py→py header ${protocol}`;
      const results = await pythonCall(gen, 'header', protocol, mainPort, [
        { method: 'hello', args: ['ann'], seqid: 1 },
        { method: 'hello', args: ['fail'], seqid: 2 },
        { method: 'server', seqid: 3 },
        { method: 'hello', args: ['mux'], service: 'Greeter', seqid: 4 },
        { method: 'whoami', service: 'Admin', seqid: 5 },
        { method: 'ping', args: [note], seqid: 6 },
        { method: 'headers', seqid: 300, headers: { 'X-User': 'alice', 'trace-id': 't-1' } },
      ]);
      expect(results).toEqual([
        { ok: 'hello ann from v1' },
        { greet: { reason: 'no greeting for you', code: 42 } },
        { ok: 'python header/binary v1' },
        { ok: 'hello mux from v1' },
        { ok: 'admin v1' },
        { ok: null },
        { ok: { 'X-User': 'alice', 'trace-id': 't-1' } },
      ]);
      await waitFor('the ping at v1', () => v1.stderr().includes(`PING ${note}\n`));
      expect(v2.stderr()).not.toContain(note);
    });
  }
  it('propagates a W3C traceparent THeader header: same trace id and flags, the proxy as the new parent', async () => {
    await setRoutes([{ name: 'all-v1', to: [{ subset: 'v1' }] }]);
    const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const results = await pythonCall(gen, 'header', 'binary', mainPort, [
      { method: 'headers', seqid: 301, headers: { 'X-User': 'bob', traceparent: incoming, tracestate: 'vendor=1' } },
      { method: 'headers', seqid: 302, headers: { traceparent: incoming } },
    ]);
    const seen = results.map((r) => (r as { ok: Record<string, string> }).ok);
    for (const h of seen) {
      const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/.exec(h.traceparent ?? '');
      expect(m, `traceparent seen by the server: ${h.traceparent}`).not.toBeNull();
      expect(m![1]).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
      expect(m![2]).not.toBe('00f067aa0ba902b7');
      expect(m![3]).toBe('01');
    }
    expect(seen[0]).toMatchObject({ 'X-User': 'bob', tracestate: 'vendor=1' });
    // Each request is its own span.
    expect(seen[0]!.traceparent).not.toBe(seen[1]!.traceparent);
  });
});

describe('routing on greeter.waypost.test (python THeader servers v1 and v2)', () => {
  it('routes by method, by a THeader header and by weight on one open connection, and re-routes it on a MetaRouter change', async () => {
    await setRoutes([
      { name: 'jason', attributes: { 'x-user': { exact: 'jason' } }, to: [{ subset: 'v2' }] },
      { name: 'server-v2', attributes: { method: { exact: 'server' } }, to: [{ subset: 'v2' }] },
      { name: 'hello-v1', attributes: { method: { exact: 'hello' } }, to: [{ subset: 'v1' }] },
      { name: 'split', to: [{ subset: 'v1', weight: 20 }, { subset: 'v2', weight: 80 }] },
    ]);
    const s = session('header', 'binary');
    // By method: two methods, two versions.
    for (let i = 0; i < 5; i++) {
      expect(await s.call({ method: 'hello', args: [`a${i}`] })).toEqual({ ok: `hello a${i} from v1` });
      expect(await s.call({ method: 'server' })).toEqual({ ok: 'python header/binary v2' });
    }
    // By THeader header: x-user jason goes to v2 even for hello (its route comes first); others follow the method.
    for (let i = 0; i < 5; i++) {
      expect(await s.call({ method: 'hello', args: [`j${i}`], headers: { 'x-user': 'jason' } })).toEqual({ ok: `hello j${i} from v2` });
      expect(await s.call({ method: 'hello', args: [`t${i}`], headers: { 'x-user': 'tom' } })).toEqual({ ok: `hello t${i} from v1` });
    }
    // By weight: Admin:whoami matches no method route and is split 20/80.
    const counts: Record<string, number> = { v1: 0, v2: 0 };
    for (let i = 0; i < 200; i++) counts[versionOf(await s.call({ method: 'whoami', service: 'Admin' }))]!++;
    const [lo, hi] = binomialBounds(200, 0.2);
    expect(counts.v1! + counts.v2!).toBe(200);
    expect(counts.v1).toBeGreaterThanOrEqual(lo);
    expect(counts.v1).toBeLessThanOrEqual(hi);
    expect(await metric(/^waypost_requests_total\{.*route="jason".*outcome="success"/)).toBeGreaterThanOrEqual(5);

    // A change on disk re-routes the same open connection: hello now goes to v2, server to v1.
    await setRoutes([
      { name: 'hello-v2', attributes: { method: { exact: 'hello' } }, to: [{ subset: 'v2' }] },
      { name: 'rest-v1', to: [{ subset: 'v1' }] },
    ]);
    for (let i = 0; i < 5; i++) {
      expect(await s.call({ method: 'hello', args: [`b${i}`] })).toEqual({ ok: `hello b${i} from v2` });
      expect(await s.call({ method: 'server' })).toEqual({ ok: 'python header/binary v1' });
      expect(await s.call({ method: 'hello', args: [`c${i}`], headers: { 'x-user': 'jason' } })).toEqual({ ok: `hello c${i} from v2` });
    }
    expect(await metric(/^waypost_requests_total\{.*route="hello-v2".*outcome="success"/)).toBe(10);
  });

  it('routes TMultiplexedProtocol calls by service (python and npm clients)', async () => {
    await setRoutes([
      { name: 'admin', attributes: { service: { exact: 'Admin' } }, to: [{ subset: 'v2' }] },
      { name: 'greeter-mux', attributes: { service: { exact: 'Greeter' } }, to: [{ subset: 'v2' }] },
      { name: 'plain', to: [{ subset: 'v1' }] },
    ]);
    const results = await pythonCall(gen, 'framed', 'compact', mainPort, [
      { method: 'whoami', service: 'Admin' },
      { method: 'hello', args: ['m'], service: 'Greeter' },
      { method: 'hello', args: ['p'] },
    ]);
    expect(results).toEqual([{ ok: 'admin v2' }, { ok: 'hello m from v2' }, { ok: 'hello p from v1' }]);
    const c = npm(mainPort, 'framed', 'binary');
    await expect(c.admin.whoami()).resolves.toBe('admin v2');
    await expect(c.muxGreeter.hello('m')).resolves.toBe('hello m from v2');
    await expect(c.greeter.hello('p')).resolves.toBe('hello p from v1');

    // Service and method together: only Admin's whoami goes to v2 now.
    await setRoutes([
      { name: 'admin-whoami', attributes: { service: { exact: 'Admin' }, method: { exact: 'whoami' } }, to: [{ subset: 'v2' }] },
      { name: 'rest', to: [{ subset: 'v1' }] },
    ]);
    await expect(c.admin.whoami()).resolves.toBe('admin v2');
    await expect(c.muxGreeter.hello('m')).resolves.toBe('hello m from v1');
  });

  it('applies requestMutation and responseMutation to THeader messages (seen by the python server and client), and forwards plain Thrift unchanged', async () => {
    await setRoutes([
      {
        name: 'mutate',
        to: [{ subset: 'v1' }],
        requestMutation: [
          { key: 'x-lane', value: 'gray' },
          { key: 'x-user', value: 'rewritten' },
        ],
        responseMutation: [{ key: 'x-served-by', value: 'waypost' }],
      },
    ]);
    const s = session('header', 'compact');
    expect(await s.call({ method: 'headers', headers: { 'x-user': 'original', keep: 'me' } })).toEqual({
      ok: { keep: 'me', 'x-lane': 'gray', 'x-user': 'rewritten' },
    });
    // Headers are per message: the next call carries only the mutation.
    expect(await s.call({ method: 'headers' })).toEqual({ ok: { 'x-lane': 'gray', 'x-user': 'rewritten' } });
    expect(await s.call({ method: 'hello', args: ['x'] })).toEqual({ ok: 'hello x from v1' });
    // A large THeader message: its header block is rewritten, the payload moved as it is.
    expect(await s.call({ method: 'hello', args: [BIG], headers: { 'x-user': 'big' } })).toEqual({ ok: `hello ${BIG} from v1` });
    // responseMutation: the client reads the header in the reply (python's server sends none of its own).
    expect(await s.call({ method: 'hello', args: ['r'], replyHeaders: true })).toEqual({
      ok: 'hello r from v1',
      headers: { 'x-served-by': 'waypost' },
    });
    expect(await metric(/^waypost_mutations_dropped_total\{[^}]*route="mutate"/)).toBe(0);
    // Framed Thrift has nowhere to carry headers: the call still works, the server sees none, and the dropped
    // mutations are counted (a request and a response mutation per call) and logged once, not ignored in silence.
    expect(await pythonCall(gen, 'framed', 'binary', mainPort, [{ method: 'headers' }, { method: 'hello', args: ['y'] }])).toEqual([
      { ok: {} },
      { ok: 'hello y from v1' },
    ]);
    expect(await metric(/^waypost_mutations_dropped_total\{[^}]*route="mutate"/)).toBe(4);
    const warnings = proxy.output().split('\n').filter((l) => l.includes('route mutate on listener') && l.includes('nowhere to carry it'));
    expect(warnings.length).toBe(2); // once for the request mutation, once for the response mutation
  });
});

describe('local replies', () => {
  it('answers TApplicationException UNKNOWN_METHOD "no route" when no route matches, in each client\'s protocol', async () => {
    await setRoutes([{ name: 'only-jason', attributes: { 'x-user': { exact: 'jason' } }, to: [{ subset: 'v2' }] }]);
    const before = await metric(/^waypost_requests_total\{.*route="none".*outcome="local_reply"/);
    const s = session('header', 'binary');
    const r = await s.call({ method: 'hello', args: ['nobody'], seqid: 77 });
    expect(r).toEqual({ app: { type: UNKNOWN_METHOD, message: expect.stringMatching(/no route/) } });
    expect((r as { app: { message: string } }).app.message).toContain('method=hello');
    // The connection stays usable.
    expect(await s.call({ method: 'hello', args: ['j'], headers: { 'x-user': 'jason' } })).toEqual({ ok: 'hello j from v2' });
    for (const combo of COMBOS) {
      const [res] = await pythonCall(gen, combo.transport, combo.protocol, mainPort, [{ method: 'hello', args: ['x'], seqid: 5 }]);
      expect(res, combo.key).toEqual({ app: { type: UNKNOWN_METHOD, message: expect.stringMatching(/no route/) } });
    }
    const c = npm(mainPort, 'buffered', 'compact');
    const err = await c.greeter.hello('x').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(c.thrift.Thrift.TApplicationException);
    expect(err).toMatchObject({ type: UNKNOWN_METHOD, message: expect.stringMatching(/no route/) });
    expect(await metric(/^waypost_requests_total\{.*route="none".*outcome="local_reply"/)).toBeGreaterThanOrEqual(before + 5);
  });

  it('answers INTERNAL_ERROR naming the cluster when the upstream is down', async () => {
    await setRoutes([
      { name: 'to-dead', attributes: { 'x-user': { exact: 'dead' } }, to: [{ subset: 'dead' }] },
      { name: 'rest', to: [{ subset: 'v1' }] },
    ]);
    const cluster = `outbound|${mainPort}|dead|${HOST}`;
    const s = session('header', 'binary');
    const r = await s.call({ method: 'hello', args: ['x'], headers: { 'x-user': 'dead' } });
    expect(r).toEqual({ app: { type: INTERNAL_ERROR, message: expect.stringContaining(cluster) } });
    expect(await s.call({ method: 'hello', args: ['y'] })).toEqual({ ok: 'hello y from v1' });
    // A plain framed client has no header to send: route it to the dead subset by method instead.
    await setRoutes([
      { name: 'hello-dead', attributes: { method: { exact: 'hello' } }, to: [{ subset: 'dead' }] },
      { name: 'rest', to: [{ subset: 'v1' }] },
    ]);
    const c = npm(mainPort, 'framed', 'binary');
    const err = await c.greeter.hello('x').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(c.thrift.Thrift.TApplicationException);
    expect(err).toMatchObject({ type: INTERNAL_ERROR, message: expect.stringContaining(cluster) });
    await expect(c.greeter.server()).resolves.toBe('python header/binary v1');
  });

  it('passes oneway calls to the server and never answers them, routed or not', async () => {
    await setRoutes([
      { name: 'jason', attributes: { 'x-user': { exact: 'jason' } }, to: [{ subset: 'v2' }] },
      { name: 'to-dead', attributes: { 'x-user': { exact: 'dead' } }, to: [{ subset: 'dead' }] },
    ]);
    const s = session('header', 'binary');
    // A python client does not read after a oneway call: any reply to the pings would be read as the answer to the
    // next hello (and fail it), as it would by every client.
    expect(await s.call({ method: 'ping', args: ['oneway routed'], headers: { 'x-user': 'jason' } })).toEqual({ ok: null });
    expect(await s.call({ method: 'ping', args: ['oneway unrouted'] })).toEqual({ ok: null });
    expect(await s.call({ method: 'ping', args: ['oneway to a dead upstream'], headers: { 'x-user': 'dead' } })).toEqual({ ok: null });
    expect(await s.call({ method: 'hello', args: ['after'], headers: { 'x-user': 'jason' } })).toEqual({ ok: 'hello after from v2' });
    await waitFor('the routed ping at v2', () => v2.stderr().includes('PING oneway routed\n'));
    expect(v1.stderr()).not.toContain('oneway');
    expect(v2.stderr()).not.toContain('unrouted');
    // The same with an npm framed client: the ping is routed by method to v1, the call after it to v2.
    await setRoutes([
      { name: 'ping-v1', attributes: { method: { exact: 'ping' } }, to: [{ subset: 'v1' }] },
      { name: 'rest-v2', to: [{ subset: 'v2' }] },
    ]);
    const c = npm(mainPort, 'framed', 'binary');
    await c.greeter.ping('npm oneway');
    await expect(c.greeter.hello('after')).resolves.toBe('hello after from v2');
    await waitFor('the npm ping at v1', () => v1.stderr().includes('PING npm oneway\n'));
    expect(c.errors).toEqual([]);
  });
});

describe('local replies for policies (timeout, fault abort, rate limit)', () => {
  it('answers INTERNAL_ERROR "timeout" naming the route when the upstream does not answer in time', async () => {
    // Something that accepts and never answers, on the dead endpoint's port, for this test only.
    const held = new Set<net.Socket>();
    const silent = net.createServer((sock) => held.add(sock));
    await new Promise<void>((resolve) => silent.listen(deadPort, '127.0.0.1', resolve));
    try {
      await setRoutes([
        { name: 'slow', attributes: { 'x-user': { exact: 'slow' } }, to: [{ subset: 'dead' }], extra: { timeout: '300ms' } },
        { name: 'rest', to: [{ subset: 'v1' }] },
      ]);
      const s = session('header', 'binary');
      const r = await s.call({ method: 'hello', args: ['t'], headers: { 'x-user': 'slow' }, seqid: 41 });
      expect(r).toEqual({ app: { type: INTERNAL_ERROR, message: expect.stringMatching(/timeout/) } });
      expect((r as { app: { message: string } }).app.message).toContain('slow');
      expect(await s.call({ method: 'hello', args: ['after'] })).toEqual({ ok: 'hello after from v1' });
    } finally {
      for (const sock of held) sock.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  it('answers a fault abort with the errorCode as the TApplicationException type, or INTERNAL_ERROR without one', async () => {
    await setRoutes([
      { name: 'coded', attributes: { 'x-user': { exact: 'coded' } }, to: [{ subset: 'v1' }], extra: { fault: { abort: { errorCode: 7, message: 'injected by the test' } } } },
      { name: 'plain', to: [{ subset: 'v1' }], extra: { fault: { abort: { percentage: { value: 100 } } } } },
    ]);
    const before = await metric(/^waypost_faults_injected_total\{.*type="abort"/);
    const s = session('header', 'compact');
    expect(await s.call({ method: 'hello', args: ['c'], headers: { 'x-user': 'coded' } })).toEqual({ app: { type: 7, message: 'injected by the test' } });
    const [plain] = await pythonCall(gen, 'framed', 'binary', mainPort, [{ method: 'hello', args: ['p'] }]);
    expect(plain).toEqual({ app: { type: INTERNAL_ERROR, message: expect.stringContaining('plain') } });
    expect(await metric(/^waypost_faults_injected_total\{.*type="abort"/)).toBe(before + 2);
  });

  it('answers INTERNAL_ERROR "rate limited" over the localRateLimit bucket, and counts it', async () => {
    await setRoutes([{ name: 'limited', to: [{ subset: 'v1' }] }], {
      localRateLimit: { tokenBucket: { maxTokens: 2, tokensPerFill: 1, fillInterval: '60s' } },
    });
    const before = await metric(/^waypost_rate_limited_total\{.*route="limited"/);
    const s = session('header', 'binary');
    const results: PyResult[] = [];
    for (let i = 0; i < 4; i++) results.push(await s.call({ method: 'hello', args: [`r${i}`] }));
    expect(results.slice(0, 2)).toEqual([{ ok: 'hello r0 from v1' }, { ok: 'hello r1 from v1' }]);
    for (const r of results.slice(2)) expect(r).toEqual({ app: { type: INTERNAL_ERROR, message: expect.stringMatching(/rate limited/) } });
    expect(await metric(/^waypost_rate_limited_total\{.*route="limited"/)).toBe(before + 2);
  });
});

describe('upstream connections', () => {
  it('keeps every transport/protocol on its own upstream connection to a shared server', async () => {
    await setRoutes([{ name: 'all-v1', to: [{ subset: 'v1' }] }]);
    // All at once to the one THeader server (it takes every client type); each client must get its own transport
    // back, which the proxy can only do with one upstream connection per transport/protocol.
    const kinds = [
      ['framed', 'binary'],
      ['buffered', 'binary'],
      ['framed', 'compact'],
      ['buffered', 'compact'],
      ['header', 'binary'],
      ['header', 'compact'],
    ] as const;
    const decodeErrorsBefore = await metric(/^waypost_decode_errors_total\{.*direction="upstream"/);
    // Seqids of every compact varint width, so that rewritten ids change the width both ways.
    const seqids = [0, 2 ** 31 - 1, 5, 300, 70_000, 1, 2 ** 21, 127, 128, 2 ** 28];
    const calls = (who: string): PyCall[] => seqids.map((seqid, i) => ({ method: 'hello', args: [`${who}-${i}`], seqid }));
    const c1 = npm(mainPort, 'framed', 'binary');
    const c2 = npm(mainPort, 'buffered', 'compact');
    const [py, n1, n2] = await Promise.all([
      Promise.all(kinds.map(([t, p]) => pythonCall(gen, t, p, mainPort, calls(`${t}-${p}`)))),
      Promise.all(Array.from({ length: 10 }, (_, i) => c1.greeter.hello(`npm-fb-${i}`))),
      Promise.all(Array.from({ length: 10 }, (_, i) => c2.greeter.hello(`npm-bc-${i}`))),
    ]);
    kinds.forEach(([t, p], k) => {
      expect(py[k], `${t}/${p}`).toEqual(Array.from({ length: 10 }, (_, i) => ({ ok: `hello ${t}-${p}-${i} from v1` })));
    });
    expect(n1).toEqual(Array.from({ length: 10 }, (_, i) => `hello npm-fb-${i} from v1`));
    expect(n2).toEqual(Array.from({ length: 10 }, (_, i) => `hello npm-bc-${i} from v1`));
    expect(await metric(/^waypost_decode_errors_total\{.*direction="upstream"/)).toBe(decodeErrorsBefore);
  });
});

describe('sequence ids', () => {
  it('keeps clients that use the same seqids at the same time apart', async () => {
    await setRoutes([{ name: 'split', to: [{ subset: 'v1', weight: 50 }, { subset: 'v2', weight: 50 }] }]);
    // npm numbers each connection's calls 1, 2, 3…: two clients with 20 calls each in flight share every seqid.
    const a = npm(mainPort, 'framed', 'binary');
    const b = npm(mainPort, 'framed', 'binary');
    const calls: Array<Promise<string>> = [];
    for (let i = 0; i < 20; i++) calls.push(a.greeter.hello(`alice-${i}`), b.greeter.hello(`bob-${i}`));
    const answers = await Promise.all(calls);
    answers.forEach((answer, i) => {
      expect(answer).toMatch(new RegExp(`^hello ${i % 2 === 0 ? 'alice' : 'bob'}-${Math.floor(i / 2)} from v[12]$`));
    });
    expect(new Set(answers.map(versionOf)).size).toBe(2); // both upstreams were shared by both clients
    expect([...a.errors, ...b.errors]).toEqual([]);
    // python clients send the seqid they are given: two THeader clients concurrently, every call seqid 7.
    const [x, y] = await Promise.all(
      ['xavier', 'yvonne'].map((who) =>
        pythonCall(gen, 'header', 'compact', mainPort, Array.from({ length: 30 }, (_, i) => ({ method: 'hello', args: [`${who}-${i}`], seqid: 7 }))),
      ),
    );
    x!.forEach((r, i) => expect(String((r as { ok: string }).ok)).toMatch(new RegExp(`^hello xavier-${i} from v[12]$`)));
    y!.forEach((r, i) => expect(String((r as { ok: string }).ok)).toMatch(new RegExp(`^hello yvonne-${i} from v[12]$`)));
  });

  it('shares one upstream connection between clients by rewriting their seqids, and restores each client\'s own', async () => {
    // npm's framed/binary server records the seqid of every call it receives and counts the connections it accepts.
    const target = matrix.get('npm-framed-binary')!;
    const server = npmServers.find((s) => s.port === target.port)!;
    const acceptedBefore = server.accepted();
    const seen = server.seqids.length;
    const a = npm(target.listen, 'framed', 'binary');
    const b = npm(target.listen, 'framed', 'binary');
    const calls: Array<Promise<string>> = [];
    for (let i = 0; i < 20; i++) calls.push(a.greeter.hello(`alice-${i}`), b.greeter.hello(`bob-${i}`));
    const answers = await Promise.all(calls);
    answers.forEach((answer, i) => expect(answer).toBe(`hello ${i % 2 === 0 ? 'alice' : 'bob'}-${Math.floor(i / 2)} from m`));
    expect([...a.errors, ...b.errors]).toEqual([]);
    // Both clients sent seqids 1..20; upstream, the 40 calls arrived on at most one new connection (the pool's one per
    // endpoint, opened earlier or now), each with a seqid of its own.
    const upstreamSeqids = server.seqids.slice(seen);
    expect(upstreamSeqids).toHaveLength(40);
    expect(new Set(upstreamSeqids).size).toBe(40);
    expect(server.accepted() - acceptedBefore).toBeLessThanOrEqual(1);
    expect(server.accepted()).toBeGreaterThanOrEqual(1);
  });
});

/**
 * Bounds for a binomial count (n trials, probability p) that a correct implementation leaves only with probability
 * about 1e-5 (4.5 standard deviations each side).
 */
function binomialBounds(n: number, p: number): [number, number] {
  const mean = n * p;
  const sd = Math.sqrt(n * p * (1 - p));
  return [Math.max(0, Math.floor(mean - 4.5 * sd)), Math.min(n, Math.ceil(mean + 4.5 * sd))];
}
