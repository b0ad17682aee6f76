/**
 * The CLI end to end: `waypost proxy --config DIR --mesh-certs DIR` serves a STRICT mTLS listener; a config change
 * naming a missing certificate file is rejected with a clear log line and the last good config keeps serving; a
 * bad --mesh-certs is a usage error.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, freePorts, sleep, spawnProxy, waitReady, type ProxyProcess } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { configVersion, metricSum } from '../helpers/admin.js';
import { callOrClosed, dubboPlain, dubboTls, HOST, serviceEntry, yamlOf } from './helpers.js';
import { Pki } from './pki.js';

describe('waypost proxy --mesh-certs', () => {
  let pki: Pki;
  let provider: Provider;
  let proxy: ProxyProcess;
  let dir: string;
  let listen: number;

  const strict = { apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name: 'mesh', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } };
  const write = (docs: unknown[]): void => writeFileSync(path.join(dir, 'config.yaml'), yamlOf(docs));

  beforeAll(async () => {
    pki = Pki.create('mesh');
    provider = await startProvider({ version: 'v1' });
    [listen] = await freePorts(1);
    dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-security-'));
    write([serviceEntry(listen, [provider.port]), strict]);
    proxy = await spawnProxy({ configDir: dir, extraArgs: ['--mesh-certs', pki.meshDir(pki.issue('proxy', 'default', 'waypost'))] });
    await waitReady(proxy);
  });

  afterAll(async () => {
    await proxy?.stop();
    await provider?.close();
    pki?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves mTLS clients, refuses plaintext; a missing certificate file keeps the last good config', async () => {
    const { conn } = await dubboTls(listen, pki.ca, pki.issue('consumer', 'shop', 'checkout'));
    expect(await callOrClosed(conn, 1)).toBe(20);
    expect(await callOrClosed(await dubboPlain(listen), 2)).toBe('closed');
    expect(await metricSum(proxy.adminAddress, /^waypost_tls_handshake_errors_total\{.*reason="handshake_failed"/)).toBe(1);

    const good = await configVersion(proxy.adminAddress);
    write([
      serviceEntry(listen, [provider.port]),
      strict,
      { apiVersion: 'networking.istio.io/v1beta1', kind: 'DestinationRule', metadata: { name: 'dr' }, spec: { host: HOST, trafficPolicy: { tls: { mode: 'MUTUAL', clientCertificate: '/missing/cert.pem', privateKey: '/missing/key.pem' } } } },
    ]);
    const t0 = Date.now();
    while (!/cannot read certificate_chain file "\/missing\/cert.pem": ENOENT/.test(proxy.output())) {
      if (Date.now() - t0 > 15_000) throw new Error(`no rejection logged:\n${proxy.output()}`);
      await sleep(50);
    }
    expect(await configVersion(proxy.adminAddress)).toBe(good);
    expect(await callOrClosed(conn, 3)).toBe(20);
    expect(await metricSum(proxy.adminAddress, /^waypost_config_applies_total\{result="rejected"\}/)).toBeGreaterThanOrEqual(1);
  });

  it('--mesh-certs must name a directory, and is an option of proxy only', () => {
    const missing = spawnSync(process.execPath, [cliPath(), 'proxy', '--config', dir, '--mesh-certs', '/nonexistent/certs', '--admin', 'off'], { encoding: 'utf8' });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('--mesh-certs /nonexistent/certs: not a directory');
    const control = spawnSync(process.execPath, [cliPath(), 'validate', dir, '--mesh-certs', dir], { encoding: 'utf8' });
    expect(control.status).toBe(2);
    expect(control.stderr).toContain('--mesh-certs is an option of proxy');
  });
});
