/**
 * Through a running `waypost proxy`: a MetaRouter regex that backtracking engines take exponential time on is matched
 * by RE2 against hostile attachments, and every call (the hostile ones and the others) gets its right answer.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpGet } from '../../examples/dubbo/harness.js';
import { HOST, PolicyFixture, answeredBy } from '../policy/fixture.js';

const fx = new PolicyFixture();

beforeAll(async () => {
  const providers = await fx.start(['v1', 'v2']);
  await fx.apply({
    endpoints: providers.map((provider) => ({ provider })),
    destinationRule: { subsets: [{ name: 'v1', labels: { version: 'v1' } }, { name: 'v2', labels: { version: 'v2' } }] },
    metaRouter: {
      routes: [
        { name: 'redos', match: { attributes: { user: { regex: '(a+)+$' } } }, route: [{ destination: { host: HOST, subset: 'v2' } }] },
        { name: 'rest', route: [{ destination: { host: HOST, subset: 'v1' } }] },
      ],
    },
  });
});
afterAll(() => fx.stop());

describe('route regexes against hostile attachments', () => {
  it('routes (a+)+$ by RE2: hostile values go to the fallback, matching ones to the regex route, others still served', async () => {
    const conn = await fx.connect();
    const other = await fx.connect();
    const hostile = ['a'.repeat(30) + '!', 'a'.repeat(100_000) + '!', 'a'.repeat(5000) + 'b' + 'a'.repeat(5000)];
    const calls = hostile.map((user) => fx.call(conn, 'sayHello', ['x'], { user }));
    const plain = fx.call(other, 'sayHello', ['y']);
    const matching = fx.call(other, 'sayHello', ['z'], { user: 'a'.repeat(100_000) });
    for (const r of await Promise.all(calls)) {
      expect(r.status).toBe(20);
      expect(answeredBy(r)).toBe('v1');
    }
    expect(answeredBy(await plain)).toBe('v1');
    expect(answeredBy(await matching)).toBe('v2');
    expect((await httpGet(fx.proxy.adminAddress, '/ready')).status).toBe(200);
  });
});
