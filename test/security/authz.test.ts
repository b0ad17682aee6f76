/**
 * Authorization: DubboAuthorizationPolicy (Aeraki's CRD) with the principal taken from the client's mesh certificate,
 * and Waypost's MetaAuthorizationPolicy by request attribute over the KV-RPC user codec. Denied calls get the
 * protocol's own error (never a silent drop) and are counted in waypost_authz_denied_total{listener, policy}.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvClient } from '../../examples/custom-codec/client.js';
import { kvrpcCodec } from '../../examples/custom-codec/codec.js';
import { startServer, type KvServer } from '../../examples/custom-codec/server.js';
import { Status as KvStatus } from '../../examples/custom-codec/wire.js';
import { freePorts } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import type { RawDubboConnection, RawResult } from '../../examples/dubbo/raw-client.js';
import { createRegistry } from '../../src/builtin-codecs.js';
import type { CodecFactory } from '../../src/codec.js';
import { Proxy } from '../../src/proxy.js';
import { DEMO_INTERFACE, dubboPlain, dubboTls, HOST, metricValue, newProxy, serviceEntry, snapshotOf } from './helpers.js';
import { Pki, type Leaf } from './pki.js';

const OK = 20;
const SERVER_ERROR = 80;

function dubboPolicy(name: string, namespace: string, spec: Record<string, unknown>): unknown {
  return { apiVersion: 'dubbo.aeraki.io/v1alpha1', kind: 'DubboAuthorizationPolicy', metadata: { name, namespace }, spec };
}

describe('DubboAuthorizationPolicy', () => {
  let pki: Pki;
  let provider: Provider;
  let proxy: Proxy;
  let listen: number;
  let checkout: Leaf; // cluster.local/ns/shop/sa/checkout
  let tester: Leaf; // cluster.local/ns/dev/sa/tester
  let batch: Leaf; // cluster.local/ns/shop/sa/batch-job
  const conns: RawDubboConnection[] = [];
  let nextId = 1;

  const permissive = { apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'mesh', namespace: 'istio-system' }, spec: { mtls: { mode: 'PERMISSIVE' } } };

  beforeAll(async () => {
    pki = Pki.create('mesh');
    checkout = pki.issue('checkout', 'shop', 'checkout');
    tester = pki.issue('tester', 'dev', 'tester');
    batch = pki.issue('batch', 'shop', 'batch-job');
    provider = await startProvider({ version: 'v1' });
    [listen] = await freePorts(1);
    proxy = newProxy(pki.meshDir(pki.issue('proxy', 'default', 'waypost')));
  });

  afterAll(async () => {
    for (const c of conns) c.destroy();
    await proxy?.close();
    await provider?.close();
    pki?.remove();
  });

  async function as(leaf: Leaf | undefined): Promise<RawDubboConnection> {
    const conn = leaf ? (await dubboTls(listen, pki.ca, leaf)).conn : await dubboPlain(listen);
    conns.push(conn);
    return conn;
  }
  const call = (conn: RawDubboConnection, method: string, path = DEMO_INTERFACE, args: unknown[] = method === 'sayHello' ? ['x'] : []): Promise<RawResult> =>
    conn.call({ id: nextId++, method, args, path, timeoutMs: 10_000 });

  it('no policy: every call is allowed', async () => {
    await proxy.apply(snapshotOf([serviceEntry(listen, [provider.port]), permissive]));
    const [a, b] = [await as(undefined), await as(tester)];
    expect((await call(a, 'sayHello')).status).toBe(OK);
    expect((await call(b, 'whoami')).status).toBe(OK);
  });

  it('DENY first, then ALLOW with exact, prefix*, *suffix and * patterns; denials answered and counted', async () => {
    await proxy.apply(
      snapshotOf([
        serviceEntry(listen, [provider.port]),
        permissive,
        dubboPolicy('deny-dev', 'default', { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['dev'] } }], to: [{ operation: { methods: ['*'] } }] }] }),
        dubboPolicy('allow-shop', 'default', {
          action: 'ALLOW',
          rules: [
            // prefix* on the principal, *suffix on the interface, exact method
            { from: [{ source: { principals: ['cluster.local/ns/shop/*'], notPrincipals: ['*/sa/batch-job'] } }], to: [{ operation: { interfaces: ['*.DemoService'], methods: ['sayHello'] } }] },
            // * = any authenticated peer
            { from: [{ source: { principals: ['*'] } }], to: [{ operation: { methods: ['whoami'] } }] },
          ],
        }),
      ]),
    );
    const received = provider.requests.length;
    const denyBefore = await metricValue(proxy, 'waypost_authz_denied_total', { policy: 'DubboAuthorizationPolicy/default/deny-dev' });
    const noneBefore = await metricValue(proxy, 'waypost_authz_denied_total', { policy: 'none' });

    const shop = await as(checkout);
    const dev = await as(tester);
    const job = await as(batch);
    const anon = await as(undefined);

    const cases: Array<[string, RawDubboConnection, string, string, 'allow' | 'deny' | 'none']> = [
      ['shop sayHello', shop, 'sayHello', DEMO_INTERFACE, 'allow'],
      ['shop whoami', shop, 'whoami', DEMO_INTERFACE, 'allow'],
      ['shop echoAttachments (no rule)', shop, 'echoAttachments', DEMO_INTERFACE, 'none'],
      ['shop sayHello on another interface', shop, 'sayHello', 'org.example.Billing', 'none'],
      ['dev sayHello (DENY namespace)', dev, 'sayHello', DEMO_INTERFACE, 'deny'],
      ['dev whoami (DENY before ALLOW)', dev, 'whoami', DEMO_INTERFACE, 'deny'],
      ['batch-job sayHello (notPrincipals)', job, 'sayHello', DEMO_INTERFACE, 'none'],
      ['batch-job whoami (*)', job, 'whoami', DEMO_INTERFACE, 'allow'],
      ['plaintext whoami (* needs a principal)', anon, 'whoami', DEMO_INTERFACE, 'none'],
    ];
    let allowed = 0;
    for (const [what, conn, method, path, want] of cases) {
      const r = await call(conn, method, path);
      if (want === 'allow') {
        expect(r.status, what).toBe(OK);
        allowed++;
      } else {
        expect(r.status, what).toBe(SERVER_ERROR);
        expect(r.error?.message, what).toMatch(want === 'deny' ? /^RBAC: access denied by DENY policy DubboAuthorizationPolicy\/default\/deny-dev/ : /^RBAC: access denied: no ALLOW policy matched \(DubboAuthorizationPolicy\/default\/allow-shop\)/);
      }
    }
    expect(shop.isClosed || dev.isClosed).toBe(false); // a denial answers; it does not close the connection
    const denied = (await metricValue(proxy, 'waypost_authz_denied_total', { policy: 'DubboAuthorizationPolicy/default/deny-dev' })) - denyBefore;
    const none = (await metricValue(proxy, 'waypost_authz_denied_total', { policy: 'none' })) - noneBefore;
    console.log(`DubboAuthorizationPolicy: ${cases.length} calls, ${allowed} allowed, denied ${denied} by DENY and ${none} for no ALLOW match; provider received ${provider.requests.length - received}`);
    expect([denied, none]).toEqual([2, 4]);
    expect(provider.requests.length - received).toBe(allowed);
  });

  it('scope: a policy in another namespace does not apply; one in istio-system applies everywhere', async () => {
    const denyAll = { action: 'DENY', rules: [{}] };
    await proxy.apply(snapshotOf([serviceEntry(listen, [provider.port]), permissive, dubboPolicy('elsewhere', 'payments', denyAll)]));
    const conn = await as(checkout);
    expect((await call(conn, 'whoami')).status).toBe(OK);
    await proxy.apply(snapshotOf([serviceEntry(listen, [provider.port]), permissive, dubboPolicy('mesh-wide', 'istio-system', denyAll)]));
    const r = await call(conn, 'whoami');
    expect(r.status).toBe(SERVER_ERROR);
    expect(r.error?.message).toContain('DubboAuthorizationPolicy/istio-system/mesh-wide');
  });

  it('an ALLOW policy without rules denies everything (Aeraki\'s documented default)', async () => {
    await proxy.apply(snapshotOf([serviceEntry(listen, [provider.port]), permissive, dubboPolicy('closed', 'default', { action: 'ALLOW' })]));
    const r = await call(await as(checkout), 'whoami');
    expect(r.status).toBe(SERVER_ERROR);
  });
});

describe('MetaAuthorizationPolicy (any protocol, by attribute): KV-RPC', () => {
  let server: KvServer;
  let listen: number;
  let proxy: Proxy;
  const clients: KvClient[] = [];

  const docs = (policies: unknown[]): unknown[] => [
    { apiVersion: 'metaprotocol.aeraki.io/v1alpha1', kind: 'ApplicationProtocol', metadata: { name: 'kvrpc' }, spec: { protocol: 'kvrpc', codec: kvrpcCodec.name } },
    serviceEntry(listen, [server.port], { protocol: 'kvrpc', host: 'inventory.kv' }),
    ...policies,
  ];
  const policy = (name: string, spec: Record<string, unknown>): unknown => ({
    apiVersion: 'metaprotocol.waypost.io/v1alpha1',
    kind: 'MetaAuthorizationPolicy',
    metadata: { name },
    spec,
  });

  async function client(): Promise<KvClient> {
    const c = await KvClient.connect(`127.0.0.1:${listen}`);
    clients.push(c);
    return c;
  }

  beforeAll(async () => {
    server = await startServer({ version: 'v1' });
    [listen] = await freePorts(1);
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await proxy?.close();
    await server?.close();
  });

  it('ALLOW by attributes and DENY by *suffix; a denied call gets FORBIDDEN and is counted', async () => {
    const registry = createRegistry();
    registry.register(kvrpcCodec);
    proxy = new Proxy({ codecs: registry });
    await proxy.apply(
      snapshotOf(
        docs([
          policy('readers', { selector: { matchLabels: { app: 'provider' } }, rules: [{ to: [{ operation: { attributes: { method: ['echo', 'who*'] }, notAttributes: { user: ['*-banned'] } } }] }] }),
          policy('no-banned', { action: 'DENY', rules: [{ to: [{ operation: { attributes: { user: ['*-banned'] } } }] }] }),
        ]),
      ),
    );
    const c = await client();
    const ok = await c.call({ method: 'echo', body: 'hi', headers: { user: 'alice' } });
    expect([ok.status, ok.text()]).toEqual([KvStatus.OK, 'hi']);
    expect((await c.call({ method: 'whoami' })).status).toBe(KvStatus.OK);
    const banned = await c.call({ method: 'echo', body: 'x', headers: { user: 'mallory-banned' } });
    expect(banned.status).toBe(KvStatus.FORBIDDEN);
    expect(banned.text()).toContain('RBAC: access denied by DENY policy MetaAuthorizationPolicy/default/no-banned');
    const other = await c.call({ method: 'headers' });
    expect(other.status).toBe(KvStatus.FORBIDDEN);
    expect(other.headers['error-kind']).toBe('permission_denied');
    expect(await metricValue(proxy, 'waypost_authz_denied_total', { policy: 'MetaAuthorizationPolicy/default/no-banned' })).toBe(1);
    expect(await metricValue(proxy, 'waypost_authz_denied_total', { policy: 'none' })).toBe(1);
    expect(server.requests.map((r) => r.method)).toEqual(['echo', 'whoami']);
  });

  it('a user codec that does not know permission_denied still answers, with its generic (fault_abort) error', async () => {
    // A codec built before the kind existed: it answers nothing for a kind it does not know.
    const old: CodecFactory = {
      ...kvrpcCodec,
      create(options) {
        const s = kvrpcCodec.create(options);
        const localReply = s.localReply.bind(s);
        s.localReply = (req, reply) => ((reply.kind as string) === 'permission_denied' ? undefined : localReply(req, reply));
        return s;
      },
    };
    const registry = createRegistry();
    registry.register(old);
    await proxy.close();
    proxy = new Proxy({ codecs: registry });
    await proxy.apply(snapshotOf(docs([policy('nobody', { rules: [] })])));
    const r = await (await client()).call({ method: 'echo', body: 'x' });
    expect(r.status).toBe(KvStatus.ABORTED);
    expect(r.text()).toMatch(/^RBAC: access denied: no ALLOW policy matched/);
  });
});
