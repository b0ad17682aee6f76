/**
 * TLS on listeners (PeerAuthentication STRICT / PERMISSIVE with the mesh certificates) and to upstreams
 * (DestinationRule trafficPolicy.tls SIMPLE / MUTUAL / ISTIO_MUTUAL, per subset and per port), through an in-process
 * Proxy and real Dubbo providers. Certificates are made by openssl at test time.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { freePorts } from '../../examples/dubbo/harness.js';
import type { RawDubboConnection } from '../../examples/dubbo/raw-client.js';
import { ConfigRejectedError, type Proxy } from '../../src/proxy.js';
import { callOrClosed, dubboPlain, dubboTls, HOST, metricValue, newProxy, serviceEntry, snapshotOf, startTlsTerminator, type Terminator } from './helpers.js';
import { Pki, type Leaf } from './pki.js';

const OK = 20;

function peerAuthentication(mode: string, extra: Record<string, unknown> = {}): unknown {
  return { apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'pa', namespace: 'default' }, spec: { mtls: { mode }, ...extra } };
}

function destinationRule(spec: Record<string, unknown>): unknown {
  return { apiVersion: 'networking.istio.io/v1beta1', kind: 'DestinationRule', metadata: { name: 'dr' }, spec: { host: HOST, ...spec } };
}

describe('TLS and mTLS', () => {
  let pki: Pki;
  let stranger: Pki;
  let proxyLeaf: Leaf;
  let consumer: Leaf;
  let rogue: Leaf;
  let provider: Provider;
  let proxy: Proxy;
  let listen: number;
  const conns: RawDubboConnection[] = [];
  let nextId = 1;

  beforeAll(async () => {
    pki = Pki.create('mesh');
    stranger = Pki.create('stranger');
    proxyLeaf = pki.issue('proxy', 'default', 'waypost');
    consumer = pki.issue('consumer', 'shop', 'checkout');
    rogue = stranger.issue('rogue', 'shop', 'checkout');
    provider = await startProvider({ version: 'v1' });
    [listen] = await freePorts(1);
    proxy = newProxy(pki.meshDir(proxyLeaf));
  });

  afterAll(async () => {
    for (const c of conns) c.destroy();
    await proxy?.close();
    await provider?.close();
    pki?.remove();
    stranger?.remove();
  });

  const track = <T extends RawDubboConnection>(c: T): T => {
    conns.push(c);
    return c;
  };

  describe('listener: PeerAuthentication', () => {
    it('STRICT: a client with a mesh certificate is served; plaintext and certificate-less clients are refused and counted', async () => {
      await proxy.apply(snapshotOf([serviceEntry(listen, [provider.port]), peerAuthentication('STRICT')]));
      const before = await metricValue(proxy, 'waypost_tls_handshake_errors_total');

      const { conn } = await dubboTls(listen, pki.ca, consumer);
      track(conn);
      expect(await callOrClosed(conn, nextId++)).toBe(OK);

      const plain = track(await dubboPlain(listen));
      expect(await callOrClosed(plain, nextId++)).toBe('closed');

      // TLS 1.3: the client finishes its side first, then the server's refusal closes the connection.
      const noCert = await dubboTls(listen, pki.ca).then(
        (r) => track(r.conn),
        () => undefined,
      );
      if (noCert) expect(await callOrClosed(noCert, nextId++)).toBe('closed');

      const wrongCa = await dubboTls(listen, pki.ca, rogue).then(
        (r) => track(r.conn),
        () => undefined,
      );
      if (wrongCa) expect(await callOrClosed(wrongCa, nextId++)).toBe('closed');

      const refused = (await metricValue(proxy, 'waypost_tls_handshake_errors_total')) - before;
      console.log(`STRICT: 1 mTLS call answered; plaintext, no-certificate and foreign-CA clients refused (handshake errors counted: ${refused})`);
      expect(refused).toBe(3);
      expect(provider.requests.length).toBe(1);
    });

    it('PERMISSIVE: TLS and plaintext clients are both served on the same port', async () => {
      await proxy.apply(snapshotOf([serviceEntry(listen, [provider.port]), peerAuthentication('PERMISSIVE')]));
      const { conn } = await dubboTls(listen, pki.ca, consumer);
      track(conn);
      const plain = track(await dubboPlain(listen));
      const results = await Promise.all([callOrClosed(conn, nextId++), callOrClosed(plain, nextId++), callOrClosed(conn, nextId++), callOrClosed(plain, nextId++)]);
      expect(results).toEqual([OK, OK, OK, OK]);
    });

    it('a selector with portLevelMtls overrides the namespace-wide mode for that port', async () => {
      const docs = [
        serviceEntry(listen, [provider.port]),
        peerAuthentication('STRICT'),
        { apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'port', namespace: 'default' }, spec: { selector: { matchLabels: { app: 'provider' } }, portLevelMtls: { [String(listen)]: { mode: 'DISABLE' } } } },
      ];
      const snap = snapshotOf(docs);
      expect(snap.listeners[0]!.filter_chains).toHaveLength(1);
      expect(snap.listeners[0]!.filter_chains[0]!.transport_socket).toBeUndefined();
      await proxy.apply(snap);
      const plain = track(await dubboPlain(listen));
      expect(await callOrClosed(plain, nextId++)).toBe(OK);
    });
  });

  describe('upstream: DestinationRule trafficPolicy.tls', () => {
    let simple: Terminator;
    let mutual: Terminator;

    beforeAll(async () => {
      const serverLeaf = pki.issue('provider-tls', 'default', 'provider');
      simple = await startTlsTerminator({ leaf: serverLeaf, target: provider.port });
      mutual = await startTlsTerminator({ leaf: serverLeaf, ca: pki.ca, requireClientCert: true, target: provider.port });
    });
    afterAll(async () => {
      await simple?.close();
      await mutual?.close();
    });

    it('SIMPLE: the proxy speaks TLS to the upstream and verifies it against caCertificates', async () => {
      await proxy.apply(
        snapshotOf([serviceEntry(listen, [simple.port]), destinationRule({ trafficPolicy: { tls: { mode: 'SIMPLE', caCertificates: pki.ca, subjectAltNames: ['spiffe://cluster.local/ns/default/sa/provider'] } } })]),
      );
      const plain = track(await dubboPlain(listen));
      expect(await callOrClosed(plain, nextId++)).toBe(OK);
      expect(simple.clientIds).toEqual(['']); // no client certificate with SIMPLE
    });

    it('SIMPLE with subjectAltNames the server does not have: the connect fails, answered as no healthy upstream', async () => {
      await proxy.apply(
        snapshotOf([serviceEntry(listen, [simple.port]), destinationRule({ trafficPolicy: { tls: { mode: 'SIMPLE', caCertificates: pki.ca, subjectAltNames: ['spiffe://cluster.local/ns/default/sa/someone-else'] } } })]),
      );
      const plain = track(await dubboPlain(listen));
      const r = await plain.call({ id: nextId++, method: 'sayHello', args: ['x'], timeoutMs: 10_000 });
      expect(r.status).not.toBe(OK);
      expect(r.error?.message).toMatch(/subjectAltNames|connect failure/);
    });

    it('MUTUAL: the upstream sees the proxy\'s client certificate', async () => {
      const client = pki.issue('proxy-client', 'default', 'egress');
      await proxy.apply(
        snapshotOf([
          serviceEntry(listen, [mutual.port]),
          destinationRule({ trafficPolicy: { tls: { mode: 'MUTUAL', clientCertificate: client.cert, privateKey: client.key, caCertificates: pki.ca, sni: 'provider.default' } } }),
        ]),
      );
      const plain = track(await dubboPlain(listen));
      expect(await callOrClosed(plain, nextId++)).toBe(OK);
      expect(mutual.clientIds).toContain(client.spiffe);
    });

    it('ISTIO_MUTUAL: the mesh certificate from --mesh-certs, per subset and per port', async () => {
      const before = mutual.clientIds.length;
      const docs = [
        serviceEntry(listen, [mutual.port]),
        destinationRule({
          trafficPolicy: { tls: { mode: 'DISABLE' } },
          subsets: [{ name: 'secure', labels: { app: 'provider' }, trafficPolicy: { portLevelSettings: [{ port: { number: listen }, tls: { mode: 'ISTIO_MUTUAL' } }] } }],
        }),
        {
          apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
          kind: 'MetaRouter',
          metadata: { name: 'r' },
          spec: { hosts: [HOST], routes: [{ name: 'all', route: [{ destination: { host: HOST, subset: 'secure' } }] }] },
        },
      ];
      const snap = snapshotOf(docs);
      const byName = new Map(snap.clusters.map((c) => [c.name, c]));
      expect(byName.get(`outbound|${listen}||${HOST}`)!.transport_socket).toBeUndefined();
      expect(byName.get(`outbound|${listen}|secure|${HOST}`)!.transport_socket?.name).toBe('envoy.transport_sockets.tls');
      await proxy.apply(snap);
      const plain = track(await dubboPlain(listen));
      expect(await callOrClosed(plain, nextId++)).toBe(OK);
      expect(mutual.clientIds.slice(before)).toContain(proxyLeaf.spiffe);
    });

    it('a missing certificate file rejects the config naming the file; the last good config keeps serving', async () => {
      const good = snapshotOf([serviceEntry(listen, [provider.port])]);
      await proxy.apply(good);
      const bad = snapshotOf([
        serviceEntry(listen, [mutual.port]),
        destinationRule({ trafficPolicy: { tls: { mode: 'MUTUAL', clientCertificate: '/nonexistent/client.pem', privateKey: '/nonexistent/client.key' } } }),
      ]);
      const err = await proxy.apply(bad).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ConfigRejectedError);
      expect(String((err as Error).message)).toMatch(/cluster outbound\|\d+\|\|.*transport_socket.*cannot read certificate_chain file "\/nonexistent\/client.pem": ENOENT/);
      expect(proxy.version).toBe(good.version);
      const plain = track(await dubboPlain(listen));
      expect(await callOrClosed(plain, nextId++)).toBe(OK);

      // A file that is not a certificate is as clear.
      const garbage = snapshotOf([
        serviceEntry(listen, [mutual.port]),
        destinationRule({ trafficPolicy: { tls: { mode: 'MUTUAL', clientCertificate: pki.ca.replace(/\.pem$/, '.key'), privateKey: pki.ca.replace(/\.pem$/, '.key') } } }),
      ]);
      await expect(proxy.apply(garbage)).rejects.toThrow(/unusable certificate, key or CA/);
      expect(proxy.version).toBe(good.version);
    });

    it('a PeerAuthentication without --mesh-certs is rejected by the proxy with a clear message', async () => {
      const bare = newProxy();
      try {
        await expect(bare.apply(snapshotOf([serviceEntry(listen, [provider.port]), peerAuthentication('STRICT')]))).rejects.toThrow(
          /listener 127\.0\.0\.1_\d+: .*uses the mesh certificates, but the proxy was started without --mesh-certs DIR/,
        );
      } finally {
        await bare.close();
      }
    });
  });
});
