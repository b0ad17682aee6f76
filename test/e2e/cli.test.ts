/**
 * The command line as a user runs it (the built `bin/waypost.js`): validate, translate, usage errors, and a user
 * codec joining the registry with --codec.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..', '..');
const bin = path.join(root, 'bin', 'waypost.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

const SERVICE = `apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: { name: svc }
spec:
  hosts: [svc.example]
  ports: [{ number: 20880, name: tcp-metaprotocol-dubbo, protocol: TCP }]
  resolution: STATIC
  endpoints:
    - { address: 127.0.0.1, ports: { tcp-metaprotocol-dubbo: 20881 }, labels: { version: v1 } }
`;

describe('waypost CLI', () => {
  it('validate: exit 0 on a valid config', () => {
    const r = run('validate', file('ok.yaml', SERVICE));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ok: /);
  });

  it('validate: exit 1 with one file:doc: Kind/name: field.path line per problem', () => {
    const bad = file(
      'bad.yaml',
      `${SERVICE}---
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: { name: rt }
spec:
  hosts: [svc.example]
  routes:
    - name: split
      route:
        - { destination: { host: svc.example }, weight: 70 }
        - { destination: { host: svc.example }, weight: 20 }
    - name: regex
      match: { attributes: { user: { regex: "(" } } }
      route: [{ destination: { host: svc.example } }]
`,
    );
    const r = run('validate', bad);
    expect(r.code).toBe(1);
    const lines = r.stdout.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const l of lines) expect(l).toMatch(new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:1: MetaRouter/rt: spec\\.routes\\[\\d\\]`));
    expect(r.stdout).toMatch(/spec\.routes\[0\]\.route: .*100/);
    expect(r.stdout).toMatch(/spec\.routes\[1\]\.match\.attributes\.user\.regex: /);
  });

  it('translate: prints the xDS resources', () => {
    const r = run('translate', path.join(dir, 'ok.yaml'));
    expect(r.code).toBe(0);
    const snap = JSON.parse(r.stdout) as {
      listeners: Array<{ name: string; filter_chains: Array<{ filters: Array<{ name: string }> }> }>;
      clusters: Array<{ name: string }>;
      routes: Array<{ name: string }>;
    };
    expect(snap.listeners.map((l) => l.name)).toEqual(['127.0.0.1_20880']);
    expect(snap.listeners[0]!.filter_chains[0]!.filters[0]!.name).toBe('envoy.filters.network.meta_protocol_proxy');
    expect(snap.clusters.map((c) => c.name)).toContain('outbound|20880||svc.example');
    expect(snap.routes).toHaveLength(1);
  });

  it('usage errors exit 2 with the usage text; --help exits 0', () => {
    const none = run();
    expect(none.code).toBe(2);
    const unknown = run('frobnicate');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/);
    const badFlag = run('validate', '--nope', 'x');
    expect(badFlag.code).toBe(2);
    expect(run('proxy').code).toBe(2);
    const misplaced = run('proxy', '--config', 'x', '--zookeeper', '127.0.0.1:2181');
    expect(misplaced.code).toBe(2);
    expect(misplaced.stderr).toMatch(/options of control/);
    const help = run('proxy', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: waypost/);
  });

  it('--codec registers a user codec, which ApplicationProtocol can then name', () => {
    const codec = file(
      'my-codec.mjs',
      `export default {
  name: 'example.codec.line',
  protocol: 'line',
  multiplexing: 'fifo',
  create() { throw new Error('not used by validate'); },
};
`,
    );
    const cfg = file(
      'line.yaml',
      `apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: ApplicationProtocol
metadata: { name: line }
spec: { protocol: line, codec: example.codec.line }
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: { name: line-svc }
spec:
  hosts: [line.example]
  ports: [{ number: 9000, name: tcp-metaprotocol-line, protocol: TCP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1 }]
`,
    );
    const without = run('validate', cfg);
    expect(without.code).toBe(1);
    expect(without.stdout).toMatch(/example\.codec\.line/);
    const withCodec = run('validate', '--codec', codec, cfg);
    expect(withCodec.stdout + withCodec.stderr).not.toMatch(/error/i);
    expect(withCodec.code).toBe(0);
    const broken = run('validate', '--codec', file('broken.mjs', 'export const nothing = 1;\n'), cfg);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/cannot load codec module .*exports no codec factory/);
  });
});
