/** The redis_proxy config reader, prefix router and fault table, without servers. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FaultTable, fractionOf, readRedisProxyConfig } from '../../src/redis/config.js';
import { PrefixRouter, type RedisRoute } from '../../src/redis/router.js';

const route = (prefix: string, cluster = prefix): RedisRoute => ({ name: prefix, prefix: Buffer.from(prefix), removePrefix: false, cluster, mirrors: [], allowScripts: false });
const match = (r: PrefixRouter, key: string | Buffer) => {
  const b = Buffer.isBuffer(key) ? key : Buffer.from(key);
  return r.match(b, 0, b.length)?.cluster;
};

describe('prefix router', () => {
  it('picks the longest matching prefix, else the catch-all, else nothing', () => {
    const r = new PrefixRouter([route('ab'), route('a'), route('abcd'), route('x')], undefined, false);
    expect(match(r, 'abcdef')).toBe('abcd');
    expect(match(r, 'abc')).toBe('ab');
    expect(match(r, 'a')).toBe('a');
    expect(match(r, 'b')).toBeUndefined();
    const withCatchAll = new PrefixRouter([route('ab')], route('', 'all'), false);
    expect(match(withCatchAll, 'b')).toBe('all');
    expect(match(withCatchAll, '')).toBe('all');
  });

  it('matches a key inside a larger buffer, binary bytes included', () => {
    const r = new PrefixRouter([route('\u00ff\u0000k')], undefined, false);
    const buf = Buffer.from([0x61, 0xc3, 0xbf, 0x00, 0x6b, 0x6b]);
    expect(r.match(buf, 1, 6)?.name).toBe('\u00ff\u0000k');
    expect(r.match(buf, 0, 6)).toBeUndefined();
  });

  it('folds ASCII case when asked, and refuses prefixes that collide', () => {
    const r = new PrefixRouter([route('User:')], undefined, true);
    expect(match(r, 'USER:1')).toBe('User:');
    expect(match(r, 'user:1')).toBe('User:');
    expect(match(new PrefixRouter([route('User:')], undefined, false), 'user:1')).toBeUndefined();
    expect(() => new PrefixRouter([route('a'), route('A')], undefined, true)).toThrow('duplicate prefix "A" (prefixes are case-insensitive)');
  });
});

describe('faults', () => {
  afterEach(() => vi.restoreAllMocks());

  it('draws once per command against cumulative percentages of its own faults and the command-less ones', () => {
    const err = { type: 'error', fraction: 0.05, delayMs: 0 } as const;
    const delay = { type: 'delay', fraction: 0.1, delayMs: 10 } as const;
    const t = new FaultTable([
      { fault: err, commands: [] },
      { fault: delay, commands: ['get'] },
    ]);
    const at = (r: number, cmd: string) => {
      vi.spyOn(Math, 'random').mockReturnValue(r);
      const f = t.pick(cmd);
      vi.restoreAllMocks();
      return f;
    };
    // GET: its DELAY first (10%), then the all-commands ERROR (5%).
    expect(at(0.05, 'get')).toBe(delay);
    expect(at(0.12, 'get')).toBe(err);
    expect(at(0.2, 'get')).toBeUndefined();
    // Others: only the ERROR.
    expect(at(0.04, 'set')).toBe(err);
    expect(at(0.06, 'set')).toBeUndefined();
  });
});

describe('reading RedisProxy', () => {
  it('reads proto field names and lowerCamelCase alike, with Envoy\'s defaults', () => {
    const s = readRedisProxyConfig('l', {
      statPrefix: 'p',
      settings: { opTimeout: '1.5s', maxBufferSizeBeforeFlush: 100 },
      prefixRoutes: { catchAllRoute: { cluster: 'c' } },
      downstreamAuthPasswords: [{ inlineString: 'pw' }, { inline_bytes: Buffer.from('pw2').toString('base64') }],
    });
    expect(s.opTimeoutMs).toBe(1500);
    expect(s.maxBufferBeforeFlush).toBe(100);
    expect(s.bufferFlushTimeoutMs).toBe(3);
    expect(s.passwords).toEqual(['pw', 'pw2']);
    expect(s.router.catchAll?.cluster).toBe('c');
    const bare = readRedisProxyConfig('l', { stat_prefix: 'p', cluster: 'legacy' });
    expect(bare.opTimeoutMs).toBe(Number.POSITIVE_INFINITY);
    expect(bare.router.catchAll?.cluster).toBe('legacy');
    expect(bare.passwords).toBeUndefined();
  });

  it('reads fractions per denominator; a runtime fraction without default_value is 0%, a missing one 100%', () => {
    expect(fractionOf({ numerator: 25 })).toBe(0.25);
    expect(fractionOf({ numerator: 2500, denominator: 'TEN_THOUSAND' })).toBe(0.25);
    expect(fractionOf({ numerator: 250000, denominator: 'MILLION' })).toBe(0.25);
    expect(fractionOf(undefined)).toBe(1);
    const s = readRedisProxyConfig('l', {
      stat_prefix: 'p',
      prefix_routes: {
        catch_all_route: {
          cluster: 'c',
          request_mirror_policy: [{ cluster: 'm1' }, { cluster: 'm2', runtime_fraction: {} }, { cluster: 'm3', runtime_fraction: { default_value: { numerator: 5 } } }],
        },
      },
    });
    expect(s.router.catchAll!.mirrors.map((m) => m.fraction)).toEqual([1, 0, 0.05]);
  });

  it('names the field of an unusable value', () => {
    const bad = (cfg: unknown) => () => readRedisProxyConfig('lst', cfg);
    expect(bad({ prefix_routes: { catch_all_route: { cluster: 'c' } }, faults: [{ fault_type: 'ABORT' }] })).toThrow(
      'listener lst: redis_proxy faults[0].fault_type: must be DELAY or ERROR (got "ABORT")',
    );
    expect(bad({ prefix_routes: { routes: [{ prefix: 'a', cluster: 'c', allow_scripts: 'yes' }] } })).toThrow(
      'listener lst: redis_proxy prefix_routes.routes[0].allow_scripts: must be true or false',
    );
    const routes = readRedisProxyConfig('lst', { prefix_routes: { routes: [{ prefix: 'a', cluster: 'c', allowScripts: true }, { prefix: 'b', cluster: 'c' }] } }).router;
    expect([routes.match(Buffer.from('a1'), 0, 2)?.allowScripts, routes.match(Buffer.from('b1'), 0, 2)?.allowScripts]).toEqual([true, false]);
    expect(bad({ prefix_routes: { routes: [{ prefix: 'a', cluster: 'c', key_formatter: '%KEY%' }] } })).toThrow(
      'listener lst: redis_proxy prefix_routes.routes[0].key_formatter: is not supported by Waypost',
    );
    expect(bad({ prefix_routes: { catch_all_route: { cluster: 'c' } }, downstream_auth_passwords: [{ filename: '/etc/pw' }] })).toThrow(
      'listener lst: redis_proxy downstream_auth_passwords[0]: needs inline_string or inline_bytes',
    );
    expect(bad({ prefix_routes: { catch_all_route: { cluster: 'c' } }, downstream_auth_username: { inline_string: 'u' } })).toThrow(
      'listener lst: redis_proxy downstream_auth_username: needs downstream_auth_passwords',
    );
  });
});
