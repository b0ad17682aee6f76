/**
 * A config file rewritten in place (truncated, then written: `fs.writeFileSync`, a shell's `>`, many tools) must never
 * be served half-written. Thrift calls through `waypost proxy --config` while the MetaRouter's file is rewritten with
 * equivalent content (only a comment changes): every call must reach v1 and the config version must never change.
 *
 * This guards src/config-watch.ts, which counts a changed file only once it held still for one more poll. A watcher
 * that reloads as soon as a file's mtime/size changes (as an earlier one did) can land a poll between the truncation
 * and the write and apply the config *without* router.yaml (a valid config: the host then gets a default route to
 * all its endpoints) until the next poll: calls go to v2, and /config_dump shows that config's version. The rewrites
 * here run back to back to make that window easy to hit.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { freePorts, httpGet, spawnProxy, waitReady, type ProxyProcess } from '../../examples/dubbo/harness.js';
import {
  ensureThriftPeers,
  generate,
  npmClient,
  startPythonServer,
  type Generated,
  type NpmClient,
  type PythonServer,
} from '../fixtures/thrift/peers.js';

const HOST = 'reload.waypost.test';
const PORT_NAME = 'tcp-metaprotocol-thrift';

let gen: Generated;
let v1: PythonServer;
let v2: PythonServer;
let proxy: ProxyProcess;
let dir: string;
let listen: number;
let client: NpmClient | undefined;

function router(comment: string): string {
  return `# ${comment}\n${YAML.stringify({
    apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
    kind: 'MetaRouter',
    metadata: { name: 'reload', namespace: 'default' },
    spec: { hosts: [HOST], routes: [{ name: 'all-v1', route: [{ destination: { host: HOST, subset: 'v1' } }] }] },
  })}`;
}

async function version(): Promise<string> {
  return (JSON.parse((await httpGet(proxy.adminAddress, '/config_dump')).body) as { version: string }).version;
}

beforeAll(async () => {
  ensureThriftPeers();
  gen = await generate();
  [v1, v2] = await Promise.all([startPythonServer(gen, 'header', 'binary', 'v1'), startPythonServer(gen, 'header', 'binary', 'v2')]);
  [listen] = (await freePorts(1)) as [number];
  dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-thrift-reload-'));
  const docs = [
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'reload', namespace: 'default' },
      spec: {
        hosts: [HOST],
        ports: [{ number: listen, name: PORT_NAME, protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: [
          { address: '127.0.0.1', ports: { [PORT_NAME]: v1.port }, labels: { version: 'v1' } },
          { address: '127.0.0.1', ports: { [PORT_NAME]: v2.port }, labels: { version: 'v2' } },
        ],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'DestinationRule',
      metadata: { name: 'reload', namespace: 'default' },
      spec: { host: HOST, subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    },
  ];
  writeFileSync(path.join(dir, 'service.yaml'), docs.map((d) => YAML.stringify(d)).join('---\n'));
  writeFileSync(path.join(dir, 'router.yaml'), router('initial'));
  proxy = await spawnProxy({ configDir: dir });
  await waitReady(proxy);
});

afterAll(async () => {
  client?.close();
  await proxy?.stop();
  v1?.stop();
  v2?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  gen?.cleanup();
});

describe('config files rewritten in place', () => {
  it('are never applied half-written: calls keep their route and the config version does not change', async () => {
    const start = await version();
    client = npmClient(gen, listen, 'framed', 'binary');
    const c = client;
    const answers = new Map<string, number>();
    const versions = new Set<string>([start]);
    let stop = false;
    let writes = 0;
    const writer = (async () => {
      while (!stop) {
        writeFileSync(path.join(dir, 'router.yaml'), router(`rewrite ${writes++}`)); // truncate, then write
        await new Promise((r) => setImmediate(r));
      }
    })();
    const caller = (async () => {
      for (let i = 0; !stop; i++) {
        const a = (await c.greeter.hello(`n${i}`)).replace(/^hello n\d+ /, '');
        answers.set(a, (answers.get(a) ?? 0) + 1);
      }
    })();
    const sampler = (async () => {
      while (!stop) {
        versions.add(await version());
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await new Promise((r) => setTimeout(r, 3000));
    stop = true;
    await Promise.all([writer, caller, sampler]);
    versions.add(await version());
    expect(writes).toBeGreaterThan(10);
    expect(Object.fromEntries(answers)).toEqual({ 'from v1': expect.any(Number) });
    expect([...versions]).toEqual([start]);
  });
});
