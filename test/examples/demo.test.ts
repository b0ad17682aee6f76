/**
 * The demo and the bench harness, end to end through the built proxy (`dist/src/cli.js`, run as a child process on
 * free ports). `npm test` builds first.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDubboBench } from '../../bench/dubbo/run.js';
import { createDemoClient } from '../../examples/dubbo/consumer.js';
import { runDemo } from '../../examples/dubbo/demo.js';
import {
  cliPath,
  freePorts,
  projectRoot,
  renderDemoConfig,
  spawnProxy,
  waitReady,
  writeTempConfig,
  type ProxyProcess,
} from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';

// `npm test` builds first (tsc), so the compiled CLI is always there; a missing build must fail, not skip.
if (!existsSync(cliPath())) throw new Error(`${cliPath()} is missing: run npm run build`);

describe('demo through the proxy', () => {
  it('runDemo (free ports): jason → v2, split within bounds, exit status ok', async () => {
    const lines: string[] = [];
    const report = await runDemo({ ports: 'auto', print: (l) => lines.push(l) });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.jason).toEqual(Array(10).fill('v2'));
    expect(report.split.errors).toBe(0);
    expect(report.split.v1 + report.split.v2).toBe(200);
    expect(report.split.v1).toBeGreaterThanOrEqual(report.split.v1Range[0]);
    expect(report.split.v1).toBeLessThanOrEqual(report.split.v1Range[1]);
    expect(lines.join('\n')).toMatch(/configured 20\/80/);
  });

  describe('with the demo config on free ports', () => {
    let v1: Provider;
    let v2: Provider;
    let proxy: ProxyProcess;
    let listen: number;
    let temp: { remove(): void };

    beforeAll(async () => {
      const [l, p1, p2] = await freePorts(3);
      listen = l!;
      v1 = await startProvider({ version: 'v1', port: p1! });
      v2 = await startProvider({ version: 'v2', port: p2! });
      const t = writeTempConfig({ 'demo.yaml': renderDemoConfig({ listen, v1: v1.port, v2: v2.port }) });
      temp = t;
      proxy = await spawnProxy({ configDir: t.dir });
      await waitReady(proxy);
    });

    afterAll(async () => {
      await proxy?.stop();
      await v1?.close();
      await v2?.close();
      temp?.remove();
    });

    it('two consumers with colliding request ids each get their own answer', async () => {
      const a = await RawDubboConnection.connect(`127.0.0.1:${listen}`);
      const b = await RawDubboConnection.connect(`127.0.0.1:${listen}`);
      try {
        const calls = [];
        for (let i = 0; i < 20; i++) {
          calls.push(a.call({ id: i, method: 'sayHello', args: [`a${i}`], attachments: { user: 'jason' } }));
          calls.push(b.call({ id: i, method: 'sayHello', args: [`b${i}`], attachments: { user: 'jason' } }));
        }
        const results = await Promise.all(calls);
        results.forEach((r, k) => {
          const who = k % 2 === 0 ? 'a' : 'b';
          const i = Math.floor(k / 2);
          expect(r.id).toBe(i);
          expect(r.status).toBe(20);
          expect(r.value).toBe(`Hello ${who}${i}, response from provider v2@${v2.address}`);
        });
        expect(a.unexpected).toEqual([]);
        expect(b.unexpected).toEqual([]);
      } finally {
        a.destroy();
        b.destroy();
      }
    });

    it('attachments, business exceptions and heartbeats pass through', async () => {
      const c = createDemoClient({ address: `127.0.0.1:${listen}`, timeoutSeconds: 5 });
      try {
        const echoed = await c.echoAttachments({ user: 'jason', trace: 'abc' });
        expect(echoed.res).toMatchObject({ user: 'jason', trace: 'abc' });
        const failed = await c.fail('boom', { user: 'jason' });
        expect(failed.err?.name).toBe('java.lang.RuntimeException');
        expect(failed.err?.message).toBe('boom');
      } finally {
        await c.close();
      }
      const raw = await RawDubboConnection.connect(`127.0.0.1:${listen}`);
      try {
        const hb = await raw.heartbeat(9);
        expect(hb.event).toBe(true);
        expect(hb.status).toBe(20);
        expect(hb.id).toBe(9);
      } finally {
        raw.destroy();
      }
    });
  });
});

describe('bench harness', () => {
  it('measures direct and through the proxy, with no errors', async () => {
    const result = await runDubboBench({ durationSec: 0.5, warmupSec: 0.1, connections: 2, inflight: 4, log: () => {} });
    expect(result.rows.map((r) => r.target)).toEqual(['direct', 'proxy']);
    for (const r of result.rows) {
      expect(r.rps).toBeGreaterThan(0);
      expect(r.errors).toBe(0);
      expect(r.p50).toBeGreaterThan(0);
      expect(r.p99).toBeGreaterThanOrEqual(r.p50);
    }
    expect(result.rows[1]!.ratio).toBeGreaterThan(0);
  });
});
