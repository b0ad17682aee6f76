/**
 * Hostile input against a running `waypost proxy` (a child process with `--workers 2`, ordinary configs): Dubbo,
 * Thrift THeader and Redis, with the real demo Dubbo provider, a python3-thrift THeader server, a redis-server and a
 * rate limit service behind it. Each class of attack runs while a well-formed client keeps calling on each protocol, and asserts:
 *  - the proxy is alive (no worker died: the primary logs and replaces any that does),
 *  - the other clients were served, every call,
 *  - the attack got the protocol's native error (Dubbo status 40, a Thrift TApplicationException) or, where it is
 *    framing the codec cannot cut, only its own connection was closed,
 *  - a metric counted it,
 *  - resident memory stayed under its budget, and the event loop was never blocked for more than 50 ms
 *    (`waypost_event_loop_delay_max_seconds`, reset on each scrape).
 * The figures of each class are printed (`[hostile] …`). Classes with suites of their own, which these do not repeat:
 * numbers from xDS servers and registries (test/xds, test/sources), Redis redirections and AUTH guessing
 * (test/redis/hostile.test.ts), the admin API (test/admin), the 150 x 7 MiB memory attack (test/limits).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import hessian from 'hessian.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { freePorts, sleep, spawnProxy, waitReady, type ProxyProcess } from '../../examples/dubbo/harness.js';
import { DEMO_INTERFACE, startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { encodeFrame, requestFlags } from '../../examples/dubbo/wire.js';
import { ensureThriftPeers, generate, PythonSession, startPythonServer, type Generated, type PythonServer } from '../fixtures/thrift/peers.js';
import { encodeMessage, frame as thriftFrame, MessageType } from '../fuzz/thrift-writer.js';
import { metricSum } from '../helpers/admin.js';
import { RateLimitService } from '../helpers/ratelimit.js';
import { Steady } from '../helpers/steady.js';
import { rssOf } from '../limits/helpers.js';
import { RawClient, ensurePeers as ensureRedisPeers, startRedis, type RedisServer } from '../redis/helpers.js';

const DUBBO_HOST = 'org.apache.dubbo.samples.basic.api.demoservice';
const THRIFT_HOST = 'greeter.hostile.waypost.test';
const REDIS_HOST = 'cache.hostile.waypost.test';
/** Each worker's share of this is its budget for incomplete frames (--memory-budget). */
const MEMORY_BUDGET = 128 * 1024 * 1024;
/**
 * Resident memory the proxy's processes together may reach above what they held once started: the memory budget
 * (incomplete frames), plus garbage of closed connections not yet collected.
 */
const RSS_ALLOWANCE = 128 * 1024 * 1024;
/** The longest a request-level attack may block the event loop. */
const MAX_STALL_SECONDS = 0.05;
/**
 * For the attacks that push hundreds of MiB: this machine's two cores are then shared by the test's own writers, three
 * proxy processes and the peers, and the loop delay counts the time a process waits for a core. Measured alone, the
 * proxy's longest stall under the same attack stays under 50 ms; this bound still catches any synchronous work that
 * grows with what a peer sends (a backtracking regex, a whole-frame decode).
 */
const MAX_STALL_SECONDS_BULK = 0.2;

let provider: Provider;
let gen: Generated;
let thriftServer: PythonServer;
let redis: RedisServer;
let proxy: ProxyProcess;
let dir: string;
const rls = new RateLimitService();
const ports = { dubbo: 0, thrift: 0, redis: 0 };
let peakRss = 0;
let rssLimit = 0;

// ---- building hostile requests by hand --------------------------------------------------------------------------------

/** A hessian2 short string (< 32 chars) from raw UTF-8 bytes and the char count a writer would declare. */
function hstr(bytes: Buffer, chars: number): Buffer {
  return Buffer.concat([Buffer.from([chars]), bytes]);
}

function str(s: string): Buffer {
  const enc = new hessian.EncoderV2();
  enc.write(s);
  return enc.get();
}

/** A Dubbo request body with `method` (already hessian-encoded) and `tail` in place of the attachments map. */
function dubboBody(method: Buffer, tail: Buffer): Buffer {
  return Buffer.concat([str('2.0.2'), str(DEMO_INTERFACE), str('0.0.0'), method, str('Ljava/lang/String;'), str('x'), tail]);
}

function attachments(entries: Array<[string, string]>): Buffer {
  return Buffer.concat([Buffer.from('H'), ...entries.flatMap(([k, v]) => [str(k), str(v)]), Buffer.from('Z')]);
}

/** Attachments that stop in the middle of a key: the head (service, method) routes fine, the rest cannot be read. */
const TRUNCATED_ATTACHMENTS = Buffer.concat([Buffer.from('H'), str('path'), str(DEMO_INTERFACE), Buffer.from([0x1f, 0x61, 0x62])]);

let nextDubboId = 1;

function dubboRequest(body: Buffer): Buffer {
  return encodeFrame(requestFlags(true), 0, nextDubboId++, body);
}

/**
 * Sends `bytes` on a connection of its own; resolves with what `answer` reads from the first complete reply, or
 * 'closed' when the proxy closes the connection instead.
 */
function exchange<T>(port: number, bytes: Buffer, answer: (got: Buffer) => T | undefined, timeoutMs: number): Promise<T | 'closed'> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer on port ${port}`));
    }, timeoutMs);
    socket.on('data', (d) => {
      got = Buffer.concat([got, d]);
      const value = answer(got);
      if (value === undefined) return;
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    socket.write(bytes);
  });
}

/** One Dubbo request: the answer's status. */
function dubboRaw(bytes: Buffer, timeoutMs = 10_000): Promise<number | 'closed'> {
  return exchange(ports.dubbo, bytes, (got) => (got.length >= 16 ? got[3]! : undefined), timeoutMs);
}

/** A THeader call whose header section is cut short: the frame is whole, the headers inside it are not. */
function theaderWithBrokenHeaders(method: string, seqid: number): Buffer {
  const message = encodeMessage('binary', { name: method, type: MessageType.CALL, seqid, body: { k: 'struct', fields: [{ id: 1, value: { k: 'string', v: Buffer.from('x') } }] } });
  const good = thriftFrame('header', 'binary', message, { flags: 0, seqid, headers: [['user', 'mallory']] });
  // Header section: protocol id 0, no transforms, info id 1, one header: key length 4 "user", value length 7 …
  // Claim 100 headers instead of one: the section runs out while they are read.
  const copy = Buffer.from(good);
  const at = 14 + 3; // after the protocol id, the transform count and the info id
  expect(copy[at]).toBe(1);
  copy[at] = 100;
  return copy;
}

/** One THeader call: the type of the TApplicationException it is answered with. */
function thriftRaw(bytes: Buffer, timeoutMs = 10_000): Promise<number | 'closed'> {
  return exchange(ports.thrift, bytes, (got) => (got.length >= 4 && got.length >= 4 + got.readUInt32BE(0) ? appExceptionType(got) : undefined), timeoutMs);
}

/** The `type` field (id 2, i32) of the TApplicationException in a THeader binary EXCEPTION reply. */
function appExceptionType(reply: Buffer): number {
  const payload = 14 + reply.readUInt16BE(12) * 4;
  expect(reply.readUInt32BE(payload) & 0xff).toBe(MessageType.EXCEPTION);
  // The struct: field 1 string (the message), field 2 i32 (the type).
  let at = payload + 8 + reply.readUInt32BE(payload + 4) + 4;
  for (;;) {
    const type = reply[at]!;
    const id = reply.readInt16BE(at + 1);
    at += 3;
    if (type === 11) {
      at += 4 + reply.readUInt32BE(at);
      continue;
    }
    if (type === 8 && id === 2) return reply.readInt32BE(at);
    throw new Error(`unexpected field ${id} of type ${type} in a TApplicationException`);
  }
}

// ---- the well-formed clients, calling throughout -----------------------------------------------------------------------


let dubboClient: RawDubboConnection;
let thriftClient: PythonSession;
let redisClient: RawClient;
const steady: Steady[] = [];

async function metric(pattern: RegExp): Promise<number> {
  return metricSum(proxy.adminAddress, pattern);
}

/** The proxy's processes (the primary and its workers): their resident memory together. */
function proxyRss(): number {
  const primary = proxy.child.pid!;
  const pids = [primary];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces, so read after its closing parenthesis.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === primary) pids.push(Number(entry));
    } catch {
      // the process ended meanwhile
    }
  }
  let sum = 0;
  for (const pid of pids) sum += rssOf(pid);
  peakRss = Math.max(peakRss, sum);
  return sum;
}

/**
 * Runs `attack` while the steady clients call, then checks what every class must hold. The event loop's worst stall is
 * read from the scrape after the attack (the one before resets it).
 */
async function underAttack(name: string, attack: () => Promise<string>, maxStall = MAX_STALL_SECONDS): Promise<void> {
  await metric(/^waypost_event_loop_delay_max_seconds/);
  const before = steady.map((s) => s.ok);
  for (const s of steady) s.failures.length = 0;
  const figures = await attack();
  // Let each steady client complete a few more calls after the attack.
  const after = steady.map((s) => s.ok);
  await sleep(200);
  const stall = await metric(/^waypost_event_loop_delay_max_seconds/);
  const rss = proxyRss();
  process.stdout.write(
    `[hostile] ${name}: ${figures}; steady calls ok ${steady.map((s, i) => s.ok - before[i]!).join('/')}, ` +
      `failed ${steady.map((s) => s.failures.length).join('/')}; worst event-loop stall ${(stall * 1000).toFixed(1)} ms; RSS ${(rss / 1048576).toFixed(0)} MiB\n`,
  );
  expect(proxy.child.exitCode).toBeNull();
  expect(proxy.output()).not.toMatch(/worker exited/);
  for (const s of steady) expect(s.failures).toEqual([]);
  steady.forEach((s, i) => expect(s.ok).toBeGreaterThan(after[i]!));
  expect(stall).toBeLessThan(maxStall);
  expect(peakRss).toBeLessThan(rssLimit);
}

// ---- config ----------------------------------------------------------------------------------------------------------

function serviceEntry(name: string, host: string, listen: number, portName: string, endpoint: number): unknown {
  return {
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'ServiceEntry',
    metadata: { name, namespace: 'default' },
    spec: { hosts: [host], ports: [{ number: listen, name: portName, protocol: 'TCP' }], resolution: 'STATIC', endpoints: [{ address: '127.0.0.1', ports: { [portName]: endpoint } }] },
  };
}

/** Routes chosen by method (the head of the request), each re-encoding the attachments/headers it forwards. */
function routes(host: string): unknown[] {
  const dest = [{ destination: { host } }];
  const mutation = [{ key: 'x-waypost-checked', value: '1' }];
  const byMethod = (method: string, extra: Record<string, unknown>): unknown => ({
    name: method,
    match: { attributes: { method: { exact: method } } },
    route: dest,
    requestMutation: mutation,
    ...extra,
  });
  return [
    byMethod('delayed', { fault: { delay: { fixedDelay: '20ms' } } }),
    byMethod('retried', { retries: { attempts: 2, retryOn: 'connect-failure,reset' } }),
    byMethod('mirrored', { mirror: { host }, mirrorPercentage: { value: 100 } }),
    byMethod('limited', {}),
    { name: 'by-user', match: { attributes: { user: { exact: 'jason' } } }, route: dest },
    // Catastrophic on a backtracking engine: linear in RE2.
    { name: 'by-regex', match: { attributes: { name: { regex: '(a+)+$' } } }, route: dest },
    { name: 'rest', route: dest },
  ];
}

function config(): string {
  const docs = [
    serviceEntry('dubbo', DUBBO_HOST, ports.dubbo, 'tcp-metaprotocol-dubbo', provider.port),
    {
      apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
      kind: 'MetaRouter',
      metadata: { name: 'dubbo', namespace: 'default' },
      spec: {
        hosts: [DUBBO_HOST],
        routes: routes(DUBBO_HOST),
        globalRateLimit: {
          domain: 'hostile',
          rateLimitService: 'outbound|8081||rls.hostile.waypost.test',
          match: { attributes: { method: { exact: 'limited' } } },
          descriptors: [{ property: 'method', descriptorKey: 'method' }],
          requestTimeout: '5s',
        },
      },
    },
    serviceEntry('greeter', THRIFT_HOST, ports.thrift, 'tcp-metaprotocol-thrift', thriftServer.port),
    { apiVersion: 'metaprotocol.aeraki.io/v1alpha1', kind: 'MetaRouter', metadata: { name: 'greeter', namespace: 'default' }, spec: { hosts: [THRIFT_HOST], routes: routes(THRIFT_HOST) } },
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'rls', namespace: 'default' },
      spec: { hosts: ['rls.hostile.waypost.test'], ports: [{ number: 8081, name: 'grpc', protocol: 'GRPC' }], resolution: 'STATIC', endpoints: [{ address: '127.0.0.1', ports: { grpc: rls.port } }] },
    },
    serviceEntry('cache', REDIS_HOST, ports.redis, 'tcp-redis', redis.port),
    { apiVersion: 'redis.aeraki.io/v1alpha1', kind: 'RedisService', metadata: { name: 'cache', namespace: 'default' }, spec: { host: [REDIS_HOST], redis: [{ route: { host: REDIS_HOST } }] } },
    // The proxy logs in upstream; its clients never learn that password.
    {
      apiVersion: 'redis.aeraki.io/v1alpha1',
      kind: 'RedisDestination',
      metadata: { name: 'cache', namespace: 'default' },
      spec: { host: REDIS_HOST, trafficPolicy: { connectionPool: { redis: { auth: { plain: { password: 'upstream-secret' } } } } } },
    },
    // Authorization the attacks try to get around: no whoami, and nothing for user admin.
    {
      apiVersion: 'metaprotocol.waypost.io/v1alpha1',
      kind: 'MetaAuthorizationPolicy',
      metadata: { name: 'deny', namespace: 'default' },
      spec: { action: 'DENY', rules: [{ to: [{ operation: { attributes: { method: ['whoami'] } } }] }, { to: [{ operation: { attributes: { user: ['admin'] } } }] }] },
    },
  ];
  return docs.map((d) => YAML.stringify(d)).join('---\n');
}

beforeAll(async () => {
  ensureThriftPeers();
  ensureRedisPeers();
  gen = await generate();
  [provider, thriftServer, redis] = await Promise.all([startProvider({ version: 'v1' }), startPythonServer(gen, 'header', 'binary'), startRedis({ password: 'upstream-secret' })]);
  await rls.start();
  rls.quota = 1_000_000;
  [ports.dubbo, ports.thrift, ports.redis] = await freePorts(3);
  dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-hostile-'));
  writeFileSync(path.join(dir, 'config.yaml'), config());
  proxy = await spawnProxy({ configDir: dir, extraArgs: ['--workers', '2', '--memory-budget', String(MEMORY_BUDGET)] });
  await waitReady(proxy);

  dubboClient = await RawDubboConnection.connect(`127.0.0.1:${ports.dubbo}`);
  thriftClient = new PythonSession(gen, 'header', 'binary', ports.thrift);
  redisClient = await RawClient.connect(ports.redis);
  steady.push(
    new Steady('dubbo', async (n) => {
      const r = await dubboClient.call({ id: 1_000_000 + n, path: DEMO_INTERFACE, method: 'sayHello', args: [`steady-${n}`], timeoutMs: 10_000 });
      if (!String(r.value).includes(`steady-${n}`)) throw new Error(`unexpected answer ${JSON.stringify(r)}`);
    }),
    new Steady('thrift', async (n) => {
      const r = await thriftClient.call({ method: 'hello', args: [`steady-${n}`] });
      if (!('ok' in r) || r.ok !== `hello steady-${n}`) throw new Error(`unexpected answer ${JSON.stringify(r)}`);
    }),
    new Steady('redis', async (n) => {
      const got = await redisClient.commands([['SET', `steady:${n}`, `v${n}`], ['GET', `steady:${n}`]], 30_000);
      const want = ['+OK', `$${`v${n}`.length}\r\nv${n}`];
      if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`unexpected answers ${JSON.stringify(got)}`);
    }),
  );
  for (const s of steady) s.start();
  // Warm up: both steady clients answered before any attack.
  const t0 = Date.now();
  while (steady.some((s) => s.ok < 3) && Date.now() - t0 < 20_000) await sleep(50);
  rssLimit = proxyRss() + MEMORY_BUDGET + RSS_ALLOWANCE;
}, 120_000);

afterAll(async () => {
  for (const s of steady) await s.stop();
  dubboClient?.destroy();
  await thriftClient?.close();
  redisClient?.socket.destroy();
  await proxy?.stop();
  await provider?.close();
  thriftServer?.stop();
  await redis?.stop();
  rls.server.forceShutdown();
  gen?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
  process.stdout.write(`[hostile] peak RSS of the proxy's processes: ${(peakRss / 1048576).toFixed(0)} MiB (limit ${(rssLimit / 1048576).toFixed(0)} MiB: at start + budget + allowance)\n`);
});

describe('one malformed request answers only itself, on every path (delay, retry, mirror, global rate limit)', () => {
  it('Dubbo: attachments that do not decode behind a head that routes', async () => {
    await underAttack('dubbo bad attachments', async () => {
      const before = await metric(/^waypost_contained_errors_total\{/);
      const statuses: Array<number | 'closed'> = [];
      for (let round = 0; round < 5; round++) {
        for (const method of ['delayed', 'retried', 'mirrored', 'limited', 'sayHello']) {
          statuses.push(await dubboRaw(dubboRequest(dubboBody(str(method), TRUNCATED_ATTACHMENTS))));
        }
      }
      // sayHello falls to the routes that read the attachment `user`: the route match itself meets the bad bytes.
      expect(statuses).toEqual(statuses.map(() => 40));
      const counted = (await metric(/^waypost_contained_errors_total\{/)) - before;
      expect(counted).toBe(statuses.length);
      return `${statuses.length} requests, each answered status 40, ${counted} counted`;
    });
  });

  it('Thrift THeader: a header section that does not decode inside a whole frame', async () => {
    await underAttack('thrift broken THeader headers', async () => {
      const before = await metric(/^waypost_contained_errors_total\{/);
      const decodeBefore = await metric(/^waypost_decode_errors_total\{/);
      const answers: Array<number | 'closed'> = [];
      for (let round = 0; round < 5; round++) {
        for (const method of ['delayed', 'retried', 'mirrored', 'hello']) answers.push(await thriftRaw(theaderWithBrokenHeaders(method, 7 + round)));
      }
      const counted = (await metric(/^waypost_contained_errors_total\{/)) - before + (await metric(/^waypost_decode_errors_total\{/)) - decodeBefore;
      // Answered PROTOCOL_ERROR (7) where the headers are read lazily, or closed where the codec reads them at once.
      for (const a of answers) expect([7, 'closed']).toContain(a);
      expect(counted).toBe(answers.length);
      return `${answers.length} requests: ${answers.filter((a) => a === 7).length} answered PROTOCOL_ERROR, ${answers.filter((a) => a === 'closed').length} closed; ${counted} counted`;
    });
  });

  it('Dubbo: 160 frames of 4 MiB that fail on a delayed route leave nothing behind', async () => {
    await underAttack('dubbo 160 x 4 MiB bad frames on a delayed route', async () => {
      const rssBefore = proxyRss();
      const big = Buffer.alloc(4 * 1024 * 1024 - 200, 0x61);
      const body = dubboBody(str('delayed'), Buffer.concat([TRUNCATED_ATTACHMENTS]));
      // The argument is a 4 MiB binary; the attachments after it do not decode.
      const padded = Buffer.concat([body.subarray(0, body.length - TRUNCATED_ATTACHMENTS.length - str('x').length), binary(big), TRUNCATED_ATTACHMENTS]);
      // Built once: each copy goes on a connection of its own, so they may share the request id.
      const request = dubboRequest(padded);
      let answered = 0;
      for (let i = 0; i < 160; i += 2) {
        const batch = await Promise.all(Array.from({ length: 2 }, () => dubboRaw(request, 30_000)));
        answered += batch.filter((s) => s === 40).length;
      }
      expect(answered).toBe(160);
      const rssAfter = proxyRss();
      return `160 frames of ${(padded.length / 1048576).toFixed(1)} MiB answered status 40; RSS ${(rssBefore / 1048576).toFixed(0)} → ${(rssAfter / 1048576).toFixed(0)} MiB`;
    }, MAX_STALL_SECONDS_BULK);
  });
});

/** A hessian2 binary of `data` (final chunk 'B', 16-bit length; chunked 'A' for the rest). */
function binary(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  while (data.length - off > 0xffff) {
    parts.push(Buffer.from([0x41, 0xff, 0xff]), data.subarray(off, off + 0xffff));
    off += 0xffff;
  }
  const rest = data.length - off;
  parts.push(Buffer.from([0x42, rest >> 8, rest & 0xff]), data.subarray(off));
  return Buffer.concat(parts);
}

describe('what authorization reads is what the provider reads', () => {
  it('a method name with an overlong letter, and attachment keys that differ only in case, are refused, not passed', async () => {
    await underAttack('dubbo authorization bypass attempts', async () => {
      // `whoami` with its `w` written as the overlong two-byte form 0xC1 0xB7: lenient hessian decoders read "whoami".
      const overlong = hstr(Buffer.concat([Buffer.from([0xc1, 0xb7]), Buffer.from('hoami')]), 6);
      const answers = [
        await dubboRaw(dubboRequest(dubboBody(overlong, attachments([['path', DEMO_INTERFACE]])))),
        // Providers keep keys case-sensitive: one of these two is the `user` the provider sees.
        await dubboRaw(dubboRequest(dubboBody(str('sayHello'), attachments([['user', 'admin'], ['USER', 'guest']])))),
        await dubboRaw(dubboRequest(dubboBody(str('sayHello'), attachments([['USER', 'guest'], ['user', 'admin']])))),
      ];
      expect(answers).toEqual([40, 40, 40]);
      // The plain forms are denied by the policy, as before.
      const denied = await dubboRaw(dubboRequest(dubboBody(str('whoami'), attachments([['path', DEMO_INTERFACE]]))));
      expect(denied).not.toBe(20);
      return `3 bypass attempts answered status 40; the plain call denied with status ${denied}`;
    });
  });
});

describe('what authorization reads is what the provider reads: Thrift', () => {
  it('THeader headers that differ only in case, or a name with two colons, are refused, not passed', async () => {
    await underAttack('thrift authorization bypass attempts', async () => {
      const call = (name: string, headers: Array<[string, string]>, seqid: number): Buffer =>
        thriftFrame('header', 'binary', encodeMessage('binary', { name, type: MessageType.CALL, seqid, body: { k: 'struct', fields: [{ id: 1, value: { k: 'string', v: Buffer.from('x') } }] } }), { flags: 0, seqid, headers });
      // python3-thrift keeps the last of duplicate keys, case-sensitively: one of these is the `user` it sees.
      const answers = [
        await thriftRaw(call('hello', [['user', 'admin'], ['USER', 'guest']], 1)),
        await thriftRaw(call('hello', [['USER', 'guest'], ['user', 'admin']], 2)),
        // Java, python and Go split a multiplexed name at the first ':', C++ at every one.
        await thriftRaw(call('Greeter:whoami:hello', [], 3)),
      ];
      expect(answers).toEqual([7, 7, 7]);
      return `3 bypass attempts answered TApplicationException PROTOCOL_ERROR (7)`;
    });
  });
});

describe('no request can stall the event loop', () => {
  it('a route regex that backtracks catastrophically elsewhere runs in linear time (RE2)', async () => {
    await underAttack('dubbo (a+)+$ route regex', async () => {
      const conn = await RawDubboConnection.connect(`127.0.0.1:${ports.dubbo}`);
      try {
        const routed = [];
        for (let i = 0; i < 20; i++) {
          // 30 a's then '!': 2^30 steps for a backtracking engine; the route does not match, the call goes on.
          const attack = await conn.call({ id: i + 1, path: DEMO_INTERFACE, method: 'sayHello', args: ['x'], attachments: { name: `${'a'.repeat(30)}!` }, timeoutMs: 10_000 });
          routed.push(attack.status);
          const match = await conn.call({ id: i + 100, path: DEMO_INTERFACE, method: 'sayHello', args: ['y'], attachments: { name: 'a'.repeat(10_000) }, timeoutMs: 10_000 });
          routed.push(match.status);
        }
        expect(routed).toEqual(routed.map(() => 20));
        const matched = await metric(/^waypost_requests_total\{.*route="by-regex"/);
        expect(matched).toBeGreaterThanOrEqual(20);
        return `20 hostile and 20 matching 10 kB values routed and answered (by-regex route counted ${matched})`;
      } finally {
        conn.destroy();
      }
    });
  });

  it('a request of a million tiny attachments on a route that reads one is refused at once', async () => {
    await underAttack('dubbo 600k attachments', async () => {
      // 1.2 million `"k<n>": 0` entries after the path: every read of an attachment would walk them all.
      const entries: Buffer[] = [Buffer.from('H'), str('path'), str(DEMO_INTERFACE)];
      for (let i = 0; entries.length < 2 * 600_000; i++) entries.push(str(`k${i}`), Buffer.from([0x90]));
      entries.push(Buffer.from('Z'));
      const request = dubboRequest(dubboBody(str('sayHello'), Buffer.concat(entries)));
      const answers = [];
      for (let i = 0; i < 10; i++) answers.push(await dubboRaw(request, 30_000));
      expect(answers).toEqual(answers.map(() => 40));
      return `10 requests of ${(request.length / 1048576).toFixed(1)} MiB (600k attachments) answered status 40`;
    });
  });

  it('incomplete frames are held within the memory budget', async () => {
    await underAttack('dubbo 60 x 7 MiB of 8 MiB frames', async () => {
      const shedBefore = await metric(/^waypost_overload_(connections_shed|shed_connections)_total/);
      const head = Buffer.alloc(16);
      head.writeUInt16BE(0xdabb, 0);
      head[2] = requestFlags(true);
      head.writeUInt32BE(8 * 1024 * 1024 - 100, 12);
      const seven = Buffer.alloc(7 * 1024 * 1024, 0x61);
      const sockets: net.Socket[] = [];
      for (let i = 0; i < 60; i++) {
        const s = net.connect(ports.dubbo, '127.0.0.1');
        s.on('error', () => undefined);
        s.write(head);
        s.write(seven);
        sockets.push(s);
      }
      // While they push, memory is sampled: the budget holds whatever they send.
      let worst = 0;
      for (let i = 0; i < 40; i++) {
        worst = Math.max(worst, proxyRss());
        await sleep(50);
      }
      const closed = sockets.filter((s) => s.destroyed || s.readyState === 'closed').length;
      for (const s of sockets) s.destroy();
      // Once the attackers are gone, their bytes are released and the proxy accepts new connections again.
      const t0 = Date.now();
      while ((await metric(/^waypost_overload_action_active\{action="stop_accepting"\}/)) > 0 || (await metric(/^waypost_overload_used_bytes/)) > MEMORY_BUDGET / 2) {
        if (Date.now() - t0 > 15_000) throw new Error('the memory budget was not released after the attackers left');
        await sleep(50);
      }
      const shed = (await metric(/^waypost_overload_(connections_shed|shed_connections)_total/)) - shedBefore;
      const paused = await metric(/^waypost_overload_.*paus/);
      expect(shed + paused).toBeGreaterThan(0);
      expect(worst).toBeLessThan(rssLimit);
      return `60 connections x 7 MiB sent: worst RSS ${(worst / 1048576).toFixed(0)} MiB, ${shed} shed, ${closed} closed by the proxy, pause count ${paused}`;
    }, MAX_STALL_SECONDS_BULK);
  });
});

describe('redis: what a client must not reach', () => {
  it('admin commands, scripts and a huge reply: refused or answered as errors to that client only', async () => {
    await underAttack('redis admin, scripts, 16 MiB reply', async () => {
      const refusedBefore = await metric(/^waypost_redis_commands_refused_total/);
      const attacker = await RawClient.connect(ports.redis);
      try {
        const answers = await attacker.commands([
          ['CONFIG', 'GET', 'requirepass'],
          ['CONFIG', 'SET', 'requirepass', 'stolen'],
          ['ACL', 'LIST'],
          ['DEBUG', 'SLEEP', '1'],
          ['SHUTDOWN'],
          ['SCRIPT', 'FLUSH'],
          ['EVAL', "return redis.call('FLUSHALL')", '0'],
          ['EVAL', "return redis.call('GET', KEYS[1])", '1', 'steady:0'],
        ]);
        for (const a of answers) expect(a).toMatch(/^-ERR /);
        expect(answers.join('\n')).not.toContain('upstream-secret');
        const refused = (await metric(/^waypost_redis_commands_refused_total/)) - refusedBefore;
        expect(refused).toBe(answers.length);
        // A value over the proxy's reply limit (8 MiB): an error for this command, skipped on the shared connection.
        await redis.direct().set('hostile:big', Buffer.alloc(16 * 1024 * 1024, 0x78));
        const [big, after] = await attacker.commands([['GET', 'hostile:big'], ['GET', 'steady:0']], 60_000);
        expect(big).toMatch(/^-ERR upstream reply too large/);
        expect(after).toBe('$2\r\nv0');
        await redis.direct().del('hostile:big');
        return `${answers.length} admin and script commands refused (counted ${refused}), the password never shown; a 16 MiB reply answered as an error and skipped`;
      } finally {
        attacker.socket.destroy();
      }
    });
  });
});
