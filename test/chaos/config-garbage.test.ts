/**
 * A config file replaced with garbage while `waypost proxy --config DIR` serves load: random bytes, YAML that does
 * not parse, and a well-formed MetaRouter the schema refuses. Each is rejected — counted in
 * `waypost_config_applies_total{result="rejected"}`, logged with the file's name — and the last good config keeps
 * serving: not one call fails, none goes elsewhere. A good file written afterwards is applied again.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProvider, type Provider } from '../../examples/dubbo/provider.js';
import { ChaosProxy, DubboLoad, dubboService, freePorts, freshCall, metaRouter, report, sleep, tally, until, yamlDocs } from './helpers.js';

const px = new ChaosProxy();
let v1: Provider;
let v2: Provider;
let listen: number;

beforeAll(async () => {
  v1 = await startProvider({ version: 'v1', record: false });
  v2 = await startProvider({ version: 'v2', record: false });
  [listen] = (await freePorts(1)) as [number];
  const [se, dr, mr] = dubboService({ name: 'cfg', listen, endpoints: [{ port: v1.port }, { port: v2.port }], subset: 'v1' });
  await px.start({ 'service.yaml': yamlDocs([se, dr]), 'router.yaml': yamlDocs([mr]) });
});

afterAll(async () => {
  await px.stop();
  await v1?.close();
  await v2?.close();
});

const rejected = (): Promise<number> => px.metric(/^waypost_config_applies_total\{result="rejected"\}/);
const applied = (): Promise<number> => px.metric(/^waypost_config_applies_total\{result="ok"\}/);

/** Occurrences of `file`'s path in the proxy's log lines that report an invalid config. */
function logMentions(file: string): number {
  const full = path.join(px.dir, file);
  return px.proxy
    .output()
    .split('\n')
    .filter((l) => l.includes('invalid config') && l.includes(full)).length;
}

describe('a config file replaced with garbage mid-load', () => {
  it('is rejected, counted and logged by name; no call fails; a good file afterwards applies again', async () => {
    const version0 = await px.version();
    const rejected0 = await rejected();
    const load = await DubboLoad.start({ address: `127.0.0.1:${listen}`, connections: 8, callTimeoutMs: 10_000, maxMs: 40_000 });
    const garbage: Array<[string, string, string | Buffer]> = [
      ['random bytes', 'service.yaml', randomBytes(4096)],
      ['YAML that does not parse', 'router.yaml', 'apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nspec: {hosts: [a, b\n  routes: - : :\n'],
      [
        'a MetaRouter the schema refuses',
        'router.yaml',
        yamlDocs([
          {
            apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
            kind: 'MetaRouter',
            metadata: { name: 'cfg', namespace: 'default' },
            spec: { hosts: ['cfg.chaos.waypost.test'], routes: [{ name: 'cfg', route: [{ destination: { subset: 'v1' }, weight: 'lots' }], timeout: 'soon' }] },
          },
        ]),
      ],
    ];
    const seen: string[] = [];
    let restoredAt = 0;
    let appliedAt = 0;
    try {
      await sleep(500);
      const good = { service: yamlDocs(dubboService({ name: 'cfg', listen, endpoints: [{ port: v1.port }, { port: v2.port }] }).slice(0, 2)) };
      for (const [what, file, bytes] of garbage) {
        const r0 = await rejected();
        const mentions0 = logMentions(file);
        px.write(file, bytes);
        await until(async () => (await rejected()) > r0, `the proxy to reject ${what} in ${file}`, 10_000, 25, () => px.proxy.output());
        await until(() => logMentions(file) > mentions0, `the log to name ${file} (${what})`, 5000, 25, () => px.proxy.output());
        expect(await px.version()).toBe(version0);
        const line = px.proxy.output().split('\n').filter((l) => l.includes('invalid config') && l.includes(path.join(px.dir, file))).pop() ?? '';
        seen.push(`${what}: ${line.replace(px.dir + '/', '').slice(0, 200)}`);
        await sleep(300); // load on the last good config meanwhile
        // Put the other file back to good, so that the next garbage is the only problem.
        if (file === 'service.yaml') px.write('service.yaml', good.service);
      }
      // A good router (now to v2): applied under load.
      const ok0 = await applied();
      restoredAt = Date.now();
      await px.apply('router.yaml', yamlDocs([metaRouter('cfg', 'v2')]));
      appliedAt = Date.now();
      expect(await applied()).toBeGreaterThan(ok0);
      await sleep(500);
    } finally {
      await load.stop();
      load.close();
    }
    const t = tally(load.calls);
    const afterApply = load.calls.filter((c) => c.sent > appliedAt);
    const before = load.calls.filter((c) => c.done < restoredAt);
    const rejectedN = (await rejected()) - rejected0;
    report(
      'config files replaced with garbage (8 connections)',
      t,
      `${rejectedN} rejected applies (${seen.length} kinds of garbage), then a good file applied: ${afterApply.filter((c) => c.by === 'v2').length}/${afterApply.length} calls after it to v2`,
    );
    for (const l of seen) process.stdout.write(`[chaos]   ${l}\n`);
    expect(t.noAnswer, 'calls left without an answer').toBe(0);
    expect(t.failed).toBe(0);
    expect(before.every((c) => c.by === 'v1')).toBe(true); // nothing leaked from a rejected config
    expect(rejectedN).toBeGreaterThanOrEqual(garbage.length);
    expect(afterApply.length).toBeGreaterThan(0);
    expect(afterApply.every((c) => c.by === 'v2')).toBe(true);
    expect(px.alive).toBe(true);
    const fresh = await freshCall(`127.0.0.1:${listen}`);
    expect(fresh.status).toBe(20);
    expect(String(fresh.value)).toContain('v2@');
  }, 60_000);
});
