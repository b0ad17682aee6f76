/**
 * The Redis demo (examples/redis), run as `node dist/examples/redis/demo.js --auto-ports` does: two redis-servers,
 * the proxy process on examples/redis/config (ports rewritten), redis-cli through it and straight to each store.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { runRedisDemo } from '../../examples/redis/demo.js';
import { ensurePeers } from '../redis/helpers.js';

beforeAll(() => ensurePeers());

describe('examples/redis demo', () => {
  it('routes by prefix, splits MSET/MGET over both stores, mirrors user: writes only, refuses FLUSHALL, and says so', async () => {
    const lines: string[] = [];
    const report = await runRedisDemo({ ports: 'auto', print: (l) => lines.push(l) });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.commands.map((c) => [c.command.join(' '), c.got])).toEqual([
      ['SET user:1 alice', 'OK'],
      ['SET order:1 book', 'OK'],
      ['GET user:1', 'alice'],
      ['GET order:1', 'book'],
      ['MSET user:2 bob order:2 pen', 'OK'],
      ['MGET user:1 order:1 user:2 order:2', 'alice book bob pen'],
      ['FLUSHALL', "ERR unsupported command 'flushall': it is an administrative command the proxy does not forward"],
    ]);
    expect(report.placement).toEqual({
      'user:1': { a: 'alice', b: 'alice' },
      'user:2': { a: 'bob', b: 'bob' },
      'order:1': { a: null, b: 'book' },
      'order:2': { a: null, b: 'pen' },
    });
    expect(report.storeBGets).toBe(1);
    const text = lines.join('\n');
    expect(text).toMatch(/order:1 +- +book/);
    expect(text).toContain('Demo passed');
  }, 120_000);
});
