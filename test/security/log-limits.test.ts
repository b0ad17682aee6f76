/**
 * What a peer can make the proxy log is rate-limited: a client opening connection after connection of garbage is
 * counted one by one in the metrics, but logged once per cause and interval, the next line saying how many were held
 * back. Through a running proxy (in-process, Dubbo and Redis listeners, real provider and redis-server).
 */
import net from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { compile, formatErrors } from '../../control/index.js';
import { freePorts } from '../../examples/dubbo/harness.js';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { createRegistry } from '../../src/builtin-codecs.js';
import { log, setLogLevel, setLogSink } from '../../src/log.js';
import { Proxy } from '../../src/proxy.js';
import { ensurePeers as ensureRedisPeers, startRedis, type RedisServer } from '../redis/helpers.js';

const lines: string[] = [];
let provider: Provider;
let redis: RedisServer;
let proxy: Proxy;
let dir: string;
const ports = { dubbo: 0, redis: 0 };

beforeAll(async () => {
  ensureRedisPeers();
  [provider, redis] = await Promise.all([startProvider({ version: 'v1' }), startRedis()]);
  [ports.dubbo, ports.redis] = await freePorts(2);
  setLogLevel('info');
  setLogSink((line) => lines.push(line));
  const entry = (name: string, host: string, port: number, portName: string, endpoint: number): unknown => ({
    apiVersion: 'networking.istio.io/v1beta1',
    kind: 'ServiceEntry',
    metadata: { name },
    spec: { hosts: [host], ports: [{ number: port, name: portName, protocol: 'TCP' }], resolution: 'STATIC', endpoints: [{ address: '127.0.0.1', ports: { [portName]: endpoint } }] },
  });
  const docs = [
    entry('dubbo', 'org.apache.dubbo.samples.basic.api.demoservice', ports.dubbo, 'tcp-metaprotocol-dubbo', provider.port),
    entry('cache', 'cache.logs.waypost.test', ports.redis, 'tcp-redis', redis.port),
    { apiVersion: 'redis.aeraki.io/v1alpha1', kind: 'RedisService', metadata: { name: 'cache' }, spec: { host: ['cache.logs.waypost.test'], redis: [{ route: { host: 'cache.logs.waypost.test' } }] } },
  ];
  dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-logs-'));
  writeFileSync(path.join(dir, 'config.yaml'), docs.map((d) => YAML.stringify(d)).join('---\n'));
  const result = await compile([dir], { knownCodecs: createRegistry().names() });
  if (!result.snapshot) throw new Error(`config rejected:\n${formatErrors(result.errors)}`);
  proxy = new Proxy({ codecs: createRegistry(), maxFrameSize: 1024 * 1024 });
  await proxy.apply(result.snapshot);
}, 60_000);

afterAll(async () => {
  await proxy?.close();
  await provider?.close();
  await redis?.stop();
  setLogSink((line) => process.stderr.write(`${line}\n`));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Opens a connection, sends `bytes`, and waits until the proxy answers (an error) or closes it. */
function garbage(port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    s.on('error', () => undefined);
    s.on('data', () => s.destroy());
    s.on('close', () => resolve());
    s.setTimeout(5_000, () => s.destroy());
  });
}

async function counted(name: string, labels: string): Promise<number> {
  const text = await proxy.metrics.registry.metrics();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) && line.includes(labels)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

describe('peer-triggered log lines are rate-limited; the metrics count every one', () => {
  it('100 garbage connections to a Dubbo listener: 100 counted, one WARN line', async () => {
    const before = lines.length;
    const errorsBefore = await counted('waypost_decode_errors_total', 'protocol="dubbo"');
    for (let i = 0; i < 100; i++) await garbage(ports.dubbo, Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    expect((await counted('waypost_decode_errors_total', 'protocol="dubbo"')) - errorsBefore).toBe(100);
    const warned = lines.slice(before).filter((l) => l.includes('malformed downstream frame'));
    expect(warned).toHaveLength(1);
  });

  it('100 malformed Redis commands on 100 connections: 100 counted, one WARN line', async () => {
    const before = lines.length;
    const errorsBefore = await counted('waypost_decode_errors_total', 'protocol="redis"');
    for (let i = 0; i < 100; i++) await garbage(ports.redis, Buffer.from('*1\r\n$x\r\n'));
    expect((await counted('waypost_decode_errors_total', 'protocol="redis"')) - errorsBefore).toBe(100);
    expect(lines.slice(before).filter((l) => l.includes('malformed redis command'))).toHaveLength(1);
  });

  it('each cause is limited on its own: a flood of one does not silence another', () => {
    const seen: string[] = [];
    setLogSink((line) => seen.push(line));
    try {
      const cause = `test-cause-${Date.now()}`;
      for (let i = 0; i < 5; i++) log.warnLimited(cause, 'a peer did something');
      log.warnLimited(`${cause}-other`, 'another cause logs at once');
      expect(seen.filter((l) => l.includes('a peer did something'))).toHaveLength(1);
      expect(seen.filter((l) => l.includes('another cause'))).toHaveLength(1);
    } finally {
      setLogSink((line) => lines.push(line));
    }
  });
});
