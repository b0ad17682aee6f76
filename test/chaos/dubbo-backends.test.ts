/**
 * Chaos on the Dubbo backends, under load, through `waypost proxy --config` as a child process:
 *
 * - a provider process SIGKILLed and restarted on the same port (without and with a retry policy);
 * - a backend that accepts TCP and never answers (with and without a route timeout);
 * - a backend that sends half a response frame and then resets the connection (RST, and a plain close).
 *
 * For each: every call sent gets an answer (a success or a Dubbo error status) before the client's deadline, the
 * failures are only of the kind the scenario explains, the proxy is still running and serves a fresh connection, and
 * `waypost_requests_total` agrees with what the clients saw.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import {
  ChaosProxy,
  DubboLoad,
  dubboService,
  freePorts,
  freshCall,
  report,
  sleep,
  spawnProvider,
  startHalfResponseServer,
  startSilentServer,
  tally,
  until,
  yamlDocs,
  type ProviderProcess,
  type RawServer,
} from './helpers.js';

/**
 * How long a call may go unanswered when its route sets no timeout. Envoy's default route timeout is 15 s; a proxy
 * that answers a call to a silent backend within this bound has some default deadline, one that does not has none.
 */
const NO_ROUTE_TIMEOUT_DEADLINE_MS = 20_000;

const px = new ChaosProxy();
let victim: ProviderProcess; // v1, its own process: SIGKILLed
let stable: Provider; // v2, in this process
let silent: RawServer;
let resetRst: RawServer;
let resetFin: RawServer;
const ports: Record<string, number> = {};

beforeAll(async () => {
  victim = await spawnProvider('v1');
  stable = await startProvider({ version: 'v2', record: false });
  silent = await startSilentServer();
  // Cut anywhere: inside the 16-byte header (1, 8, 15), right after it (16), or inside the body.
  const cuts = [1, 8, 15, 16, 17, 40];
  resetRst = await startHalfResponseServer({ rst: true, cut: (len, i) => (i < cuts.length ? cuts[i]! : Math.floor(len / 2)) });
  resetFin = await startHalfResponseServer({ rst: false, cut: (len, i) => (i < cuts.length ? cuts[i]! : len - 1) });
  const names = ['kill', 'killretry', 'silent', 'silentnotimeout', 'resetrst', 'resetfin', 'healthy'];
  const list = await freePorts(names.length);
  names.forEach((n, i) => (ports[n] = list[i]!));
  const both = [{ port: victim.port }, { port: stable.port }];
  const docs = [
    ...dubboService({ name: 'kill', listen: ports.kill!, endpoints: both }),
    ...dubboService({
      name: 'killretry',
      listen: ports.killretry!,
      endpoints: both,
      route: { retries: { attempts: 3, retryOn: 'connect-failure,reset' } },
    }),
    ...dubboService({ name: 'silent', listen: ports.silent!, endpoints: [{ port: silent.port }], route: { timeout: '300ms' } }),
    ...dubboService({ name: 'silentnotimeout', listen: ports.silentnotimeout!, endpoints: [{ port: silent.port }] }),
    ...dubboService({ name: 'resetrst', listen: ports.resetrst!, endpoints: [{ port: resetRst.port }] }),
    ...dubboService({ name: 'resetfin', listen: ports.resetfin!, endpoints: [{ port: resetFin.port }] }),
    ...dubboService({ name: 'healthy', listen: ports.healthy!, endpoints: [{ port: stable.port }] }),
  ];
  await px.start({ 'services.yaml': yamlDocs(docs) });
});

afterAll(async () => {
  await px.stop();
  await victim?.stop();
  await stable?.close();
  await silent?.close();
  await resetRst?.close();
  await resetFin?.close();
});

const address = (name: string): string => `127.0.0.1:${ports[name]}`;

/** The proxy is still running, a fresh connection is served, and (with `expectOk`) the call succeeds. */
async function expectAliveAndServing(name: string, expectOk = true): Promise<void> {
  expect(px.alive, `the proxy exited:\n${px.proxy.output()}`).toBe(true);
  const r = await freshCall(address(name), 'sayHello', ['after'], 5000);
  if (expectOk) expect(r.status).toBe(20);
  else expect(r.status).not.toBe(20);
}

/** The route's `waypost_requests_total` moved by exactly what the clients saw. */
async function expectMetricsAgree(route: string, before: Record<string, number>, ok: number, localReplies: number): Promise<void> {
  const after = await px.outcomes(route);
  expect({
    success: after.success! - before.success!,
    local_reply: after.local_reply! - before.local_reply!,
    error: after.error! - before.error!,
  }).toEqual({ success: ok, local_reply: localReplies, error: 0 });
}

describe('a provider SIGKILLed and restarted on the same port under load', () => {
  it('without retries: the calls it held and the calls sent while it was down get 70, none hangs; then it serves again', async () => {
    const before = await px.outcomes('kill');
    const load = await DubboLoad.start({ address: address('kill'), connections: 8, callTimeoutMs: 10_000, maxMs: 20_000 });
    await sleep(1000);
    const killedAt = Date.now();
    await victim.kill();
    await sleep(1000);
    await victim.restart();
    const restartedAt = Date.now();
    await sleep(1500);
    const calls = await load.stop();
    load.close();
    const t = tally(calls);
    const answeredByV1AfterRestart = calls.filter((c) => c.sent > restartedAt && c.by === 'v1').length;
    report('provider SIGKILLed + restarted, no retry policy (8 connections)', t, `${answeredByV1AfterRestart} calls answered by the restarted provider`);
    expect(t.noAnswer, 'calls left without an answer').toBe(0);
    expect(Object.keys(t.byStatus)).toEqual(['70']);
    expect(t.failed).toBeGreaterThan(0); // the kill was felt...
    expect(calls.filter((c) => c.status !== 20 && c.done < killedAt)).toEqual([]); // ...and only after it
    expect(calls.filter((c) => c.status === 70).every((c) => /upstream|connect/i.test(c.message ?? ''))).toBe(true);
    expect(t.ok).toBeGreaterThan(t.failed);
    expect(answeredByV1AfterRestart).toBeGreaterThan(0);
    await expectMetricsAgree('kill', before, t.ok, t.failed);
    await expectAliveAndServing('kill');
  });

  it('with retries on connect-failure and reset: no call fails', async () => {
    const before = await px.outcomes('killretry');
    const retriesBefore = await px.metric(/^waypost_upstream_retries_total\{route="killretry"/);
    // Three connections: the retry budget always lets three retries run at once (Envoy's minimum), so every call
    // the kill fails at once can be retried; more connections would let a burst exceed the budget (by design).
    const load = await DubboLoad.start({ address: address('killretry'), connections: 3, callTimeoutMs: 10_000, maxMs: 20_000 });
    await sleep(1000);
    await victim.kill();
    await sleep(1000);
    await victim.restart();
    const restartedAt = Date.now();
    await sleep(1500);
    const calls = await load.stop();
    load.close();
    const t = tally(calls);
    const retried = (await px.metric(/^waypost_upstream_retries_total\{route="killretry"/)) - retriesBefore;
    report('provider SIGKILLed + restarted, retries 3 on connect-failure,reset (3 connections)', t, `${retried} retries`);
    expect(t.noAnswer, 'calls left without an answer').toBe(0);
    expect(t.failed).toBe(0);
    expect(retried).toBeGreaterThan(0);
    expect(calls.filter((c) => c.sent > restartedAt && c.by === 'v1').length).toBeGreaterThan(0);
    await expectMetricsAgree('killretry', before, t.ok, 0);
    await expectAliveAndServing('killretry');
  });
});

describe('a backend that accepts and never answers', () => {
  it('behind a route timeout: every call gets 31 SERVER_TIMEOUT', async () => {
    const before = await px.outcomes('silent');
    const load = await DubboLoad.start({ address: address('silent'), connections: 8, callTimeoutMs: 10_000, maxMs: 20_000 });
    await sleep(2500);
    const calls = await load.stop();
    load.close();
    const t = tally(calls);
    report('silent backend, route timeout 300ms (8 connections)', t, `${silent.accepted()} upstream connections accepted`);
    expect(t.noAnswer, 'calls left without an answer').toBe(0);
    expect(t.sent).toBeGreaterThanOrEqual(8);
    expect(t.byStatus).toEqual({ 31: t.sent });
    expect(calls.every((c) => /timeout/i.test(c.message ?? ''))).toBe(true);
    expect(px.alive).toBe(true);
    expect((await freshCall(address('silent'))).status).toBe(31);
    await expectMetricsAgree('silent', before, 0, t.sent + 1);
  });

  it(
    `without a route timeout: every call is still answered (within ${NO_ROUTE_TIMEOUT_DEADLINE_MS / 1000} s), none waits forever`,
    async () => {
      // One call per connection, each with a client deadline well past any sane default route timeout.
      const load = await DubboLoad.start({
        address: address('silentnotimeout'),
        connections: 8,
        callTimeoutMs: NO_ROUTE_TIMEOUT_DEADLINE_MS,
        maxCalls: 8,
        maxMs: 1000,
      });
      const calls = await load.stop();
      load.close();
      const t = tally(calls);
      report(`silent backend, no route timeout (8 calls, client deadline ${NO_ROUTE_TIMEOUT_DEADLINE_MS / 1000} s)`, t);
      expect(px.alive).toBe(true);
      expect(t.sent).toBe(8);
      expect(t.noAnswer, `calls with no answer after ${NO_ROUTE_TIMEOUT_DEADLINE_MS / 1000} s: the proxy has no default deadline`).toBe(0);
      expect(t.byStatus).toEqual({ 31: 8 });
    },
    NO_ROUTE_TIMEOUT_DEADLINE_MS + 15_000,
  );
});

describe('an upstream that sends half a response frame and resets', () => {
  for (const [name, how, pattern] of [
    ['resetrst', 'TCP reset (RST)', /reset/i],
    ['resetfin', 'plain close (FIN)', /upstream/i],
  ] as const) {
    it(`${how}: the calls in flight get 70 SERVICE_ERROR, other connections are unaffected`, async () => {
      const before = await px.outcomes(name);
      const healthyBefore = await px.outcomes('healthy');
      const server = name === 'resetrst' ? resetRst : resetFin;
      const acceptedBefore = server.accepted();
      const bad = await DubboLoad.start({ address: address(name), connections: 8, callTimeoutMs: 10_000, maxMs: 20_000 });
      const good = await DubboLoad.start({ address: address('healthy'), connections: 4, callTimeoutMs: 10_000, maxMs: 20_000 });
      await sleep(2000);
      const [badCalls, goodCalls] = await Promise.all([bad.stop(), good.stop()]);
      const tb = tally(badCalls);
      const tg = tally(goodCalls);
      report(`half a response then ${how} (8 connections)`, tb, `${server.accepted() - acceptedBefore} upstream connections reset`);
      report(`  meanwhile on a healthy listener (4 connections)`, tg);
      expect(tb.noAnswer, 'calls left without an answer').toBe(0);
      expect(tb.sent).toBeGreaterThanOrEqual(8);
      expect(tb.byStatus).toEqual({ 70: tb.sent });
      expect(badCalls.every((c) => pattern.test(c.message ?? '')), JSON.stringify(tb.messages)).toBe(true);
      expect(server.accepted() - acceptedBefore).toBeGreaterThan(1); // each reset was followed by a new upstream connection
      // The downstream connections stay open: an upstream reset is answered, not passed on as a closed connection.
      expect(bad.conns.every((c) => !c.isClosed)).toBe(true);
      expect(tg.failed).toBe(0);
      expect(tg.ok).toBeGreaterThan(0);
      bad.close();
      good.close();
      await expectAliveAndServing('healthy');
      await expectMetricsAgree(name, before, 0, tb.sent);
      // No upstream connection is left counted: the gauge settles at what the backend really has open (none).
      const gaugePattern = new RegExp(`^waypost_upstream_connections_active\\{cluster="[^"]*\\|${name}\\.`);
      expect(await px.series(gaugePattern)).toBe(1);
      const gauge = (): Promise<number> => px.metric(gaugePattern);
      await until(async () => (await gauge()) === server.open(), `waypost_upstream_connections_active for ${name} to settle`, 5000).catch(async (e: Error) => {
        throw new Error(`${e.message}: gauge ${await gauge()}, backend has ${server.open()} open`);
      });
      await expectMetricsAgree('healthy', healthyBefore, tg.ok + 1, 0);
    });
  }
});
