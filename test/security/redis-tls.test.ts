/**
 * TLS on Redis listeners and to Redis upstreams, as for any TCP service in Istio: PeerAuthentication STRICT on the
 * listener (mesh certificates), a DestinationRule `tls` for the Redis host upstream (through a TLS terminator in
 * front of a real redis-server, which records the client certificate it saw).
 */
import net from 'node:net';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '../../examples/dubbo/harness.js';
import type { Proxy } from '../../src/proxy.js';
import { encode, ensurePeers, serviceEntry, startRedis, type RedisServer } from '../redis/helpers.js';
import { newProxy, snapshotOf, startTlsTerminator, type Terminator } from './helpers.js';
import { Pki } from './pki.js';

const HOST = 'cache.redis.svc.cluster.local';

/** Sends one command on `socket` and resolves with the raw reply text, or 'closed'. */
function command(socket: net.Socket, args: string[]): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const done = (v: string): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(v);
    };
    const onData = (b: Buffer): void => {
      got += b.toString('utf8');
      if (got.endsWith('\r\n')) done(got.trimEnd());
    };
    const onClose = (): void => done('closed');
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.write(encode(args));
  });
}

describe('Redis over TLS', () => {
  let pki: Pki;
  let redis: RedisServer;
  let terminator: Terminator;
  let proxy: Proxy;
  let listen: number;
  const sockets: net.Socket[] = [];

  beforeAll(async () => {
    ensurePeers();
    pki = Pki.create('mesh');
    redis = await startRedis();
    terminator = await startTlsTerminator({ leaf: pki.issue('redis', 'data', 'redis'), ca: pki.ca, requireClientCert: true, target: redis.port });
    [listen] = await freePorts(1);
    proxy = newProxy(pki.meshDir(pki.issue('proxy', 'default', 'waypost')));
  });

  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await proxy?.close();
    await terminator?.close();
    await redis?.stop();
    pki?.remove();
  });

  const connectTls = (): Promise<tls.TLSSocket> =>
    new Promise((resolve, reject) => {
      const leaf = pki.issue('client', 'shop', 'cart');
      const s = tls.connect({ host: '127.0.0.1', port: listen, ca: readFileSync(pki.ca), cert: readFileSync(leaf.cert), key: readFileSync(leaf.key), checkServerIdentity: () => undefined });
      sockets.push(s);
      s.once('secureConnect', () => resolve(s));
      s.once('error', reject);
    });

  it('STRICT listener and ISTIO_MUTUAL upstream: mTLS clients are served, plaintext ones refused, and redis-server is reached over mTLS', async () => {
    await proxy.apply(
      snapshotOf([
        serviceEntry({ host: HOST, port: listen, endpoints: [terminator.port] }),
        { apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'pa', namespace: 'default' }, spec: { mtls: { mode: 'STRICT' } } },
        { apiVersion: 'networking.istio.io/v1beta1', kind: 'DestinationRule', metadata: { name: 'cache', namespace: 'default' }, spec: { host: HOST, trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } } },
      ]),
    );
    const secure = await connectTls();
    expect(await command(secure, ['SET', 'tls-key', 'over-tls'])).toBe('+OK');
    expect(await command(secure, ['GET', 'tls-key'])).toBe('$8\r\nover-tls');
    // The upstream connection presented the proxy's mesh certificate to the terminator in front of redis-server.
    expect(terminator.clientIds).toContain('spiffe://cluster.local/ns/default/sa/waypost');

    const plain = net.connect({ host: '127.0.0.1', port: listen });
    plain.on('error', () => undefined);
    sockets.push(plain);
    await new Promise<void>((resolve) => plain.once('connect', () => resolve()));
    expect(await command(plain, ['PING'])).toBe('closed');
  });
});
