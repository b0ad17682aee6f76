/**
 * The connection cap (--max-connections-per-listener) on a TLS listener counts connections still in their TLS
 * handshake: clients that open TCP connections and never handshake cannot hold more than the cap, and a real mTLS
 * client gets in again once they go.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts, sleep } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import type { Proxy } from '../../src/proxy.js';
import { callOrClosed, dubboTls, metricValue, newProxy, serviceEntry, snapshotOf } from './helpers.js';
import { Pki } from './pki.js';

describe('connection cap on a STRICT mTLS listener', () => {
  let pki: Pki;
  let provider: Provider;
  let proxy: Proxy;
  let listen: number;
  const stalled: net.Socket[] = [];

  beforeAll(async () => {
    pki = Pki.create('mesh');
    provider = await startProvider({ version: 'v1' });
    [listen] = await freePorts(1);
    proxy = newProxy(pki.meshDir(pki.issue('proxy', 'default', 'waypost')), { maxConnectionsPerListener: 2 });
    await proxy.apply(
      snapshotOf([
        serviceEntry(listen!, [provider.port]),
        { apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'pa', namespace: 'default' }, spec: { mtls: { mode: 'STRICT' } } },
      ]),
    );
  });

  afterAll(async () => {
    for (const s of stalled) s.destroy();
    await proxy?.close();
    await provider?.close();
    pki?.remove();
  });

  const overflow = (): Promise<number> => metricValue(proxy, 'waypost_downstream_connections_rejected_total', { reason: 'overflow' });

  it('refuses connections beyond the cap while two never finish their handshake, and serves again once they go', async () => {
    const consumer = pki.issue('consumer', 'shop', 'checkout');
    for (let i = 0; i < 2; i++) {
      const s = net.connect({ host: '127.0.0.1', port: listen });
      s.on('error', () => undefined);
      await new Promise<void>((resolve) => s.once('connect', () => resolve()));
      stalled.push(s);
    }
    await sleep(100); // the proxy has accepted both
    const before = await overflow();
    // A proper mTLS client is over the cap: closed before its handshake completes.
    const refused = await dubboTls(listen, pki.ca, consumer).then(
      async (r) => {
        const status = await callOrClosed(r.conn, 1);
        r.conn.destroy();
        return status;
      },
      () => 'closed' as const,
    );
    expect(refused).toBe('closed');
    expect(await overflow()).toBe(before + 1);
    for (const s of stalled.splice(0)) s.destroy();
    await sleep(100);
    const { conn } = await dubboTls(listen, pki.ca, consumer);
    expect(await callOrClosed(conn, 2)).toBe(20);
    conn.destroy();
  });
});
