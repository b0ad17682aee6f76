/**
 * The admin APIs against hostile readers, on real processes: `waypost proxy --config` (one event loop and
 * `--workers 2`) and `waypost control`, with a Redis config carrying a downstream password (RedisService
 * `settings.auth`) and an upstream AUTH (RedisDestination `connectionPool.redis.auth`).
 *
 * - Secrets: `/config_dump` (and every other JSON body, and the control plane's dump) shows `[redacted]` where the
 *   passwords and usernames were, and the rest of the config as before.
 * - DNS rebinding: raw HTTP requests with `Host: evil.example` (with and without a port, and names that only
 *   start or end like a loopback name) get 403, counted in `waypost_admin_refused_total{reason="host"}` and logged
 *   once per interval; loopback names and addresses, and a request without Host, are answered.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { freePorts, httpGet } from '../../examples/dubbo/harness.js';
import { hostAllowed, REDACTED, redactSecrets } from '../../src/admin-guard.js';
import { spawnCli, TempConfig, until, type CliProcess } from '../xds/helpers.js';

const DOWNSTREAM_PASSWORD = 'client-S3cret-pw';
const DOWNSTREAM_USER = 'client-user-x';
const UPSTREAM_PASSWORD = 'server-S3cret-pw';
const UPSTREAM_USER = 'server-user-y';
const SECRETS = [DOWNSTREAM_PASSWORD, DOWNSTREAM_USER, UPSTREAM_PASSWORD, UPSTREAM_USER];
const HOST = 'store.redis.test';

function redisConfig(listen: number, upstream: number): string {
  return [
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'store', namespace: 'default' },
      spec: { hosts: [HOST], ports: [{ number: listen, name: 'tcp-redis', protocol: 'TCP' }], resolution: 'STATIC', endpoints: [{ address: '127.0.0.1', ports: { 'tcp-redis': upstream } }] },
    },
    {
      apiVersion: 'redis.aeraki.io/v1alpha1',
      kind: 'RedisService',
      metadata: { name: 'store', namespace: 'default' },
      spec: {
        host: [HOST],
        settings: { opTimeout: '2s', auth: { plain: { username: DOWNSTREAM_USER, password: DOWNSTREAM_PASSWORD } } },
        redis: [{ match: { key: { prefix: 'user:' } }, route: { host: HOST } }, { route: { host: HOST } }],
      },
    },
    {
      apiVersion: 'redis.aeraki.io/v1alpha1',
      kind: 'RedisDestination',
      metadata: { name: 'store', namespace: 'default' },
      spec: { host: HOST, trafficPolicy: { connectionPool: { redis: { mode: 'PROXY', auth: { plain: { username: UPSTREAM_USER, password: UPSTREAM_PASSWORD } } } } } },
    },
  ]
    .map((d) => YAML.stringify(d))
    .join('---\n');
}

/** One raw HTTP/1.x exchange (so the Host header is exactly what the test writes): status and body. */
function rawRequest(port: number, head: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let data = '';
    s.setEncoding('latin1');
    s.on('data', (c: string) => (data += c));
    s.on('error', reject);
    s.on('close', () => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(data);
      if (!m) return reject(new Error(`no HTTP answer to ${JSON.stringify(head.split('\r\n').slice(0, 2))}: ${JSON.stringify(data.slice(0, 200))}`));
      resolve({ status: Number(m[1]), body: data.slice(data.indexOf('\r\n\r\n') + 4) });
    });
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    // Not ended: a half-closed socket may be dropped before an asynchronous answer (Connection: close ends it).
    s.write(head);
  });
}

const get = (port: number, path: string, host: string | undefined, version = '1.1'): Promise<{ status: number; body: string }> =>
  rawRequest(port, `GET ${path} HTTP/${version}\r\n${host === undefined ? '' : `Host: ${host}\r\n`}Connection: close\r\nAccept: application/json\r\n\r\n`);

async function refusedMetric(adminPort: number): Promise<number> {
  const text = (await httpGet(`127.0.0.1:${adminPort}`, '/stats/prometheus')).body;
  const line = text.split('\n').find((l) => l.startsWith('waypost_admin_refused_total{reason="host"}'));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

async function waitReady(address: string, who: CliProcess, what: string): Promise<void> {
  await until(async () => (await httpGet(address, '/ready')).status === 200, what, 20_000, 50).catch((err: Error) => {
    throw new Error(`${err.message}\n--- output:\n${who.output()}`);
  });
}

let cfg: TempConfig;
let ports: { listen: number; upstream: number; admin: number; workersAdmin: number; workersListen: number; xds: number; controlAdmin: number };
let proxy: CliProcess;
let workers: CliProcess;
let control: CliProcess;

beforeAll(async () => {
  const [listen, upstream, admin, workersAdmin, workersListen, xds, controlAdmin] = await freePorts(7);
  ports = { listen: listen!, upstream: upstream!, admin: admin!, workersAdmin: workersAdmin!, workersListen: workersListen!, xds: xds!, controlAdmin: controlAdmin! };
  cfg = new TempConfig();
  cfg.write('redis.yaml', redisConfig(ports.listen, ports.upstream));
  const workersCfg = new TempConfig();
  workersCfg.write('redis.yaml', redisConfig(ports.workersListen, ports.upstream));
  [proxy, workers, control] = await Promise.all([
    spawnCli(['proxy', '--config', cfg.dir, '--admin', `127.0.0.1:${ports.admin}`]),
    spawnCli(['proxy', '--config', workersCfg.dir, '--admin', `127.0.0.1:${ports.workersAdmin}`, '--workers', '2']),
    spawnCli(['control', '--config', cfg.dir, '--xds-listen', `127.0.0.1:${ports.xds}`, '--admin', `127.0.0.1:${ports.controlAdmin}`]),
  ]);
  await Promise.all([
    waitReady(`127.0.0.1:${ports.admin}`, proxy, 'the proxy'),
    waitReady(`127.0.0.1:${ports.workersAdmin}`, workers, 'the proxy with workers'),
    waitReady(`127.0.0.1:${ports.controlAdmin}`, control, 'the control plane'),
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.all([proxy?.stop(), workers?.stop(), control?.stop()]);
  cfg?.remove();
});

describe('secrets in the admin API', () => {
  const expectRedacted = (body: string): void => {
    for (const s of SECRETS) expect(body).not.toContain(s);
    const dump = JSON.parse(body) as { resources: { listeners: Array<{ filter_chains: Array<{ filters: Array<{ typed_config: Record<string, unknown> }> }> }>; clusters: Array<Record<string, unknown>> } };
    const redisProxy = dump.resources.listeners.find((l) => JSON.stringify(l).includes('redis_proxy'))!.filter_chains[0]!.filters[0]!.typed_config;
    expect(redisProxy.downstream_auth_passwords).toEqual([{ inline_string: REDACTED }]);
    expect(redisProxy.downstream_auth_username).toEqual({ inline_string: REDACTED });
    // The rest is there, as configured.
    expect(redisProxy.settings).toMatchObject({ op_timeout: '2s' });
    expect(JSON.stringify(redisProxy.prefix_routes)).toContain('user:');
    const cluster = dump.resources.clusters.find((c) => String(c.name).includes(HOST))!;
    const options = (cluster.typed_extension_protocol_options as Record<string, Record<string, unknown>>)['envoy.filters.network.redis_proxy']!;
    expect(options).toEqual({
      '@type': 'type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProtocolOptions',
      auth_password: { inline_string: REDACTED },
      auth_username: { inline_string: REDACTED },
    });
    expect(cluster.name).toBe(`outbound|${ports.listen}||${HOST}`);
  };

  it('/config_dump of a proxy shows [redacted] for the Redis passwords and usernames, and the rest of the config', async () => {
    const r = await httpGet(`127.0.0.1:${ports.admin}`, '/config_dump');
    expect(r.status).toBe(200);
    expectRedacted(r.body);
  });

  it('so does the control plane\'s /config_dump', async () => {
    const r = await httpGet(`127.0.0.1:${ports.controlAdmin}`, '/config_dump');
    expect(r.status).toBe(200);
    expect(r.body.replaceAll(String(ports.listen), '')).not.toBe('');
    for (const s of SECRETS) expect(r.body).not.toContain(s);
    expect(r.body).toContain(REDACTED);
  });

  it('so does the --workers primary\'s, and no other endpoint (summary, listeners, clusters, the page) shows a secret', async () => {
    const w = await httpGet(`127.0.0.1:${ports.workersAdmin}`, '/config_dump');
    expect(w.status).toBe(200);
    for (const s of SECRETS) expect(w.body).not.toContain(s);
    expect(w.body).toContain(REDACTED);
    for (const port of [ports.admin, ports.workersAdmin]) {
      for (const path of ['/stats/summary', '/listeners', '/clusters', '/', '/index.html', '/stats/prometheus']) {
        const r = await httpGet(`127.0.0.1:${port}`, path);
        expect({ port, path, status: r.status }).toEqual({ port, path, status: 200 });
        for (const s of SECRETS) expect(r.body).not.toContain(s);
      }
    }
  });

  it('redacts by the protos\' sensitive annotation (private keys, SDS secrets) and by name where no proto says', () => {
    const dump = redactSecrets({
      resources: {
        clusters: [
          {
            name: 'c',
            connect_timeout: '1s',
            transport_socket: {
              name: 'envoy.transport_sockets.tls',
              typed_config: {
                '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
                sni: 'svc.example',
                common_tls_context: { tls_certificates: [{ certificate_chain: { inline_string: 'CERT' }, private_key: { inline_string: '-----BEGIN PRIVATE KEY-----x' } }] },
              },
            },
          },
        ],
      },
      other: { '@type': 'type.googleapis.com/example.Unknown', api_password: 'pw', token: 'tk', max_tokens: 5, name: 'kept' },
    }) as { resources: { clusters: Array<{ transport_socket: { typed_config: { sni: string; common_tls_context: { tls_certificates: Array<Record<string, unknown>> } } } }> }; other: Record<string, unknown> };
    const tls = dump.resources.clusters[0]!.transport_socket.typed_config;
    expect(tls.sni).toBe('svc.example');
    expect(tls.common_tls_context.tls_certificates[0]).toEqual({ certificate_chain: { inline_string: 'CERT' }, private_key: { inline_string: REDACTED } });
    expect(dump.other).toEqual({ '@type': 'type.googleapis.com/example.Unknown', api_password: REDACTED, token: REDACTED, max_tokens: 5, name: 'kept' });
  });
});

describe('the Host header (DNS rebinding)', () => {
  it('refuses Host: evil.example (and look-alikes) with 403 on every admin, answers loopback names and addresses', async () => {
    const before = await refusedMetric(ports.admin);
    for (const port of [ports.admin, ports.workersAdmin, ports.controlAdmin]) {
      for (const host of ['evil.example', `evil.example:${port}`, 'localhost.evil.example', 'evil-127.0.0.1.nip.io', '127.0.0.1.evil.example', '[::2]']) {
        const r = await get(port, '/config_dump', host);
        expect({ port, host, status: r.status }).toEqual({ port, host, status: 403 });
        for (const s of SECRETS) expect(r.body).not.toContain(s);
        expect(r.body).not.toContain('resources');
      }
      for (const host of ['127.0.0.1', `127.0.0.1:${port}`, 'localhost', `LOCALHOST:${port}`, 'admin.localhost', '[::1]', `[::1]:${port}`, '127.0.0.5']) {
        const r = await get(port, '/ready', host);
        expect({ port, host, status: r.status }).toEqual({ port, host, status: 200 });
      }
      // HTTP/1.0 without Host: no browser sends that.
      expect((await get(port, '/ready', undefined, '1.0')).status).toBe(200);
    }
    expect(await refusedMetric(ports.admin)).toBe(before + 6);
  });

  it('logs the refusals rate-limited (one line, not one per request)', async () => {
    for (let i = 0; i < 20; i++) expect((await get(ports.admin, '/stats/summary', 'rebind.evil.example')).status).toBe(403);
    const lines = proxy.output().split('\n').filter((l) => l.includes('admin: refused a request whose Host'));
    expect(lines.length).toBeGreaterThanOrEqual(1);
    expect(lines.length).toBeLessThan(5);
    expect(lines[0]).toMatch(/WARN/);
    expect(lines[0]).toContain('host=evil.example');
  });

  it('a writing method is still 405 from a good Host, and 403 from a bad one', async () => {
    expect((await rawRequest(ports.admin, `POST /config_dump HTTP/1.1\r\nHost: 127.0.0.1:${ports.admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`)).status).toBe(405);
    expect((await rawRequest(ports.admin, 'POST /config_dump HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')).status).toBe(403);
  });

  it('an admin bound to a wildcard or a name also answers to the address the request came in on, and to its own name', () => {
    expect(hostAllowed('10.1.2.3:15000', '0.0.0.0', '10.1.2.3')).toBe(true);
    expect(hostAllowed('10.1.2.3:15000', '0.0.0.0', '::ffff:10.1.2.3')).toBe(true);
    expect(hostAllowed('10.1.2.4:15000', '0.0.0.0', '10.1.2.3')).toBe(false);
    expect(hostAllowed('waypost-admin.internal:15000', 'waypost-admin.internal', '10.1.2.3')).toBe(true);
    expect(hostAllowed('evil.example', '0.0.0.0', '10.1.2.3')).toBe(false);
    expect(hostAllowed('', '127.0.0.1', '127.0.0.1')).toBe(false);
  });
});
