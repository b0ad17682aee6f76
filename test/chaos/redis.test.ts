/**
 * A redis-server SIGKILLed under load behind `waypost proxy --config` (a child process), then started again on the
 * same port. Raw RESP clients send pipelines of SET/GET/INCR back to back with a deadline per reply: every command must be answered —
 * a success, or `-ERR upstream …` / `-ERR timeout` while the server is gone — none may hang, the client connections
 * stay open, commands succeed again after the restart, and `waypost_requests_total` agrees with the clients.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensurePeers, RawClient, redisService, serviceEntry, startRedis, type RedisServer } from '../redis/helpers.js';
import { ChaosProxy, freePorts, sleep, yamlDocs } from './helpers.js';

const HOST = 'cache.chaos.waypost.test';
const px = new ChaosProxy();
let redis: RedisServer;
let redisPort: number;
let listen: number;

beforeAll(async () => {
  ensurePeers();
  [redisPort, listen] = (await freePorts(2)) as [number, number];
  redis = await startRedis({ port: redisPort });
  await px.start({
    'redis.yaml': yamlDocs([
      serviceEntry({ host: HOST, port: listen, endpoints: [redisPort] }),
      redisService('cache', { host: [HOST], redis: [{ route: { host: HOST } }] }),
    ]),
  });
});

afterAll(async () => {
  await px.stop();
  await redis?.stop();
});

interface Reply {
  sent: number;
  done: number;
  reply?: string;
  error?: string;
}

async function requests(outcome: string): Promise<number> {
  return px.metric(new RegExp(`^waypost_requests_total\\{(?=[^}]*protocol="redis")(?=[^}]*outcome="${outcome}")`));
}

describe('a redis-server SIGKILLed and restarted under load', () => {
  it('every command is answered (success or -ERR), none hangs, and commands succeed again after the restart', async () => {
    const before = { success: await requests('success'), error: await requests('error'), local_reply: await requests('local_reply') };
    const clients = await Promise.all(Array.from({ length: 6 }, () => RawClient.connect(listen)));
    const replies: Reply[] = [];
    let stop = false;
    // Each client pipelines 4 commands per write, so that several are in flight on the upstream when it dies.
    const loops = clients.map(async (c, ci) => {
      for (let i = 0; !stop && i < 1_000_000; i++) {
        const cmds = [
          ['SET', `k${ci}:${i % 100}`, `v${i}`],
          ['GET', `k${ci}:${i % 100}`],
          ['INCR', `n${ci}`],
          ['GET', `k${ci}:${(i + 50) % 100}`],
        ];
        const sent = Date.now();
        let got: string[] = [];
        let error: string | undefined;
        try {
          got = await c.commands(cmds, 10_000);
        } catch (err) {
          error = (err as Error).message;
        }
        const done = Date.now();
        for (let k = 0; k < cmds.length; k++) replies.push({ sent, done, ...(got[k] !== undefined ? { reply: got[k] } : { error: error ?? 'no reply' }) });
        if (error) return;
      }
    });
    await sleep(1000);
    const killedAt = Date.now();
    await redis.stop(); // SIGKILL
    await sleep(1000);
    redis = await startRedis({ port: redisPort });
    const restartedAt = Date.now();
    await sleep(1500);
    stop = true;
    await Promise.all(loops);
    const closed = clients.filter((c) => c.closed).length;
    for (const c of clients) c.destroy();

    const ok = replies.filter((r) => r.reply !== undefined && !r.reply.startsWith('-'));
    const errs = replies.filter((r) => r.reply?.startsWith('-'));
    const noAnswer = replies.filter((r) => r.reply === undefined);
    const kinds = new Map<string, number>();
    for (const r of errs) {
      const k = r.reply!.replace(/\d+/g, 'N').slice(0, 90);
      kinds.set(k, (kinds.get(k) ?? 0) + 1);
    }
    const okAfterRestart = ok.filter((r) => r.sent > restartedAt + 500).length;
    process.stdout.write(
      `[chaos] redis-server SIGKILLed + restarted (6 raw clients, 4 commands pipelined): sent ${replies.length}, ok ${ok.length}, failed ${errs.length + noAnswer.length}` +
        ` (${[...kinds].map(([k, n]) => `"${k}" ×${n}`).join(', ')}${noAnswer.length ? `, NO ANSWER ×${noAnswer.length}` : ''}); ${okAfterRestart} ok after the restart\n`,
    );
    expect(noAnswer.map((r) => r.error), 'commands left without an answer').toEqual([]);
    expect(closed).toBe(0);
    expect(errs.length).toBeGreaterThan(0); // the kill was felt...
    expect(errs.every((r) => r.done >= killedAt)).toBe(true); // ...and only from then on
    expect(errs.every((r) => /^-ERR (upstream|timeout)/.test(r.reply!)), [...kinds.keys()].join('\n')).toBe(true);
    expect(okAfterRestart).toBeGreaterThan(0);
    expect(px.alive).toBe(true);
    const fresh = await RawClient.connect(listen);
    try {
      expect(await fresh.commands([['SET', 'after', '1'], ['GET', 'after']])).toEqual(['+OK', '$1\r\n1']);
    } finally {
      fresh.destroy();
    }
    const after = { success: await requests('success'), error: await requests('error'), local_reply: await requests('local_reply') };
    // Every answer was counted once: successes as success, the -ERR replies as local replies (or upstream errors).
    expect(after.success - before.success).toBe(ok.length + 2);
    expect(after.local_reply - before.local_reply + (after.error - before.error)).toBe(errs.length);
  }, 60_000);
});
