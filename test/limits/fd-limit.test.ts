/**
 * A proxy nearly out of file descriptors (`ulimit -n 64`). Without care Node's accept loop, on EMFILE, accepts and
 * closes pending connections with no event at all. The proxy instead closes new connections itself once within its
 * reserve of the limit: each is counted (`waypost_overload_connections_refused_total{reason="file_descriptors"}`),
 * logged at most once per interval, the descriptors kept free let the admin API answer meanwhile, and once
 * connections close it accepts and serves as before.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnProxy, waitReady, type ProxyProcess } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { metricSum } from '../helpers/admin.js';
import { freePorts, report, servicesYaml, until } from './helpers.js';

const FD_LIMIT = 64;


/** A TCP connection that reads (and drops) whatever comes, so that a close by the proxy is seen. */
function open(port: number): Promise<{ socket: net.Socket; closed: () => boolean }> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let closed = false;
    socket.on('error', () => undefined);
    socket.on('close', () => (closed = true));
    socket.resume();
    socket.once('connect', () => resolve({ socket, closed: () => closed }));
    socket.once('close', () => resolve({ socket, closed: () => true }));
  });
}

describe('accepting without file descriptors left', () => {
  let provider: Provider;
  let proxy: ProxyProcess;
  let dir = '';
  let port = 0;
  beforeAll(async () => {
    provider = await startProvider({ version: 'v1' });
    [port] = await freePorts(1);
    dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-fd-'));
    writeFileSync(path.join(dir, 'config.yaml'), servicesYaml([{ listenPort: port!, endpoints: [{ port: provider.port, version: 'v1' }] }]));
    proxy = await spawnProxy({ configDir: dir, fileLimit: FD_LIMIT });
    await waitReady(proxy);
  });
  afterAll(async () => {
    await proxy?.stop();
    await provider?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('closes connections near the limit, counted and logged (rate-limited), keeps the admin API up, and serves again once descriptors are free', async () => {
    const pid = proxy.child.pid!;
    expect(readFileSync(`/proc/${pid}/limits`, 'utf8')).toMatch(new RegExp(`Max open files\\s+${FD_LIMIT}\\s`));
    const client = await RawDubboConnection.connect(`127.0.0.1:${port}`);
    expect((await client.call({ id: 1, method: 'sayHello', args: ['before'], timeoutMs: 10_000 })).status).toBe(20);

    // Connect more times than there are descriptors left.
    const free = FD_LIMIT - readdirSync(`/proc/${pid}/fd`).length;
    const conns: Array<{ socket: net.Socket; closed: () => boolean }> = [];
    for (let i = 0; i < free + 30; i++) conns.push(await open(port));
    await until(() => conns.filter((c) => c.closed()).length >= 30, 10_000, () => 'connections over the limit closed');
    // A refusal is counted when the proxy closes the socket, a moment before the client sees the close.
    const refusedNow = (): Promise<number> => metricSum(proxy.adminAddress, /^waypost_overload_connections_refused_total\{.*reason="file_descriptors"/);
    await until(async () => (await refusedNow()) === conns.filter((c) => c.closed()).length, 10_000, () => 'every refusal seen closed by its client');
    const closed = conns.filter((c) => c.closed()).length;
    const open_ = conns.length - closed;
    // Still holding every connection it kept, the proxy answers its admin API and counts each refusal.
    expect(proxy.child.exitCode).toBeNull();
    const refused = await metricSum(proxy.adminAddress, /^waypost_overload_connections_refused_total\{.*reason="file_descriptors"/);
    const used = await metricSum(proxy.adminAddress, /^waypost_overload_file_descriptors\{state="used"/);
    const limit = await metricSum(proxy.adminAddress, /^waypost_overload_file_descriptors\{state="limit"/);
    const logged = proxy.output().split('\n').filter((l) => /nearly out of file descriptors/.test(l));
    report(`ulimit -n ${FD_LIMIT}: ${conns.length} connects, ${open_} kept, ${closed} closed, ${refused} counted, ${logged.length} log line(s); descriptors ${used}/${limit}`);
    expect(refused).toBe(closed);
    expect(limit).toBe(FD_LIMIT);
    expect(used).toBeLessThan(FD_LIMIT);
    expect(logged.length).toBeGreaterThanOrEqual(1);
    expect(logged.length).toBeLessThan(refused);
    expect(logged[0]).toMatch(/limit=64/);
    // Nothing was dropped unseen: no failed accept either.
    expect(await metricSum(proxy.adminAddress, /^waypost_downstream_accept_errors_total\{/)).toBe(0);

    for (const c of conns) c.socket.destroy();
    await until(async () => (await metricSum(proxy.adminAddress, /^waypost_downstream_connections_active\{/)) <= 1, 10_000, () => 'connections closed');

    // Served again: the old client and a new one.
    expect((await client.call({ id: 2, method: 'sayHello', args: ['after'], timeoutMs: 10_000 })).status).toBe(20);
    const fresh = await RawDubboConnection.connect(`127.0.0.1:${port}`);
    expect((await fresh.call({ id: 3, method: 'sayHello', args: ['new'], timeoutMs: 10_000 })).status).toBe(20);
    fresh.destroy();
    client.destroy();
  }, 60_000);
});
