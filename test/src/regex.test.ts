/**
 * Config regexes (src/regex.ts): RE2 syntax, whole-value matches, linear time, a bounded program size; and every
 * place config carries a regex (route and rate-limit matchers, the proxy's apply) goes through it.
 */
import { describe, expect, it } from 'vitest';
import { MapMetadata } from '../../src/codec.js';
import { createRegistry } from '../../src/builtin-codecs.js';
import { Proxy } from '../../src/proxy.js';
import { MAX_REGEX_PROGRAM_SIZE, compileRegex, regexProblem } from '../../src/regex.js';
import { MetadataMatch, RouteTable } from '../../src/router.js';
import { upstreamTlsOf } from '../../src/tls.js';
import { TRANSPORT_SOCKET_TLS, TYPE_UPSTREAM_TLS_CONTEXT, type Cluster } from '../../src/xds/resources.js';

function md(entries: Record<string, string>): MapMetadata {
  const m = new MapMetadata();
  for (const [k, v] of Object.entries(entries)) m.set(k, v);
  return m;
}

describe('compileRegex', () => {
  it('matches the whole value, as Envoy safe_regex does', () => {
    const re = compileRegex('1\\.[0-9]+');
    expect(re.test('1.25')).toBe(true);
    expect(re.test('x1.25')).toBe(false);
    expect(re.test('1.25x')).toBe(false);
    expect(re.test('1.2.3')).toBe(false);
    // An alternation is anchored as a whole, not just its first and last branches.
    const alt = compileRegex('core|infra');
    expect(alt.test('core')).toBe(true);
    expect(alt.test('infra')).toBe(true);
    expect(alt.test('coreX')).toBe(false);
    expect(alt.test('Xinfra')).toBe(false);
    // `$` is the end of the value, not the place before a final newline.
    expect(compileRegex('a$').test('a\n')).toBe(false);
    expect(compileRegex('a.c').test('a\nc')).toBe(false);
    expect(compileRegex('').test('')).toBe(true);
    expect(compileRegex('').test('x')).toBe(false);
  });

  it('gives the right answers for catastrophic-backtracking patterns on long hostile values', () => {
    const hostile = 'a'.repeat(30) + '!';
    const long = 'a'.repeat(200_000) + '!';
    for (const [pattern, onHostile, onAs] of [
      ['(a+)+$', false, true],
      ['(a+)+', false, true],
      ['(a|a)*', false, true],
      ['(a|aa)+', false, true],
      ['(a*)*b', false, false],
      ['(.*a){10}', false, true],
      ['(a+)+!', true, false],
      ['([a-z]+)*[!]', true, false],
    ] as const) {
      const re = compileRegex(pattern);
      expect(re.test(hostile), `${pattern} on 30 a's and !`).toBe(onHostile);
      expect(re.test(long), `${pattern} on 200k a's and !`).toBe(onHostile);
      expect(re.test('a'.repeat(100_000)), `${pattern} on 100k a's`).toBe(onAs);
    }
    // The classic e-mail ReDoS, with an input that backtracking engines never finish.
    const email = compileRegex('([a-zA-Z0-9])(([\\-.]|[_]+)?([a-zA-Z0-9]+))*(@){1}[a-z0-9]+[.]{1}(([a-z]{2,3})|([a-z]{2,3}[.]{1}[a-z]{2,3}))');
    expect(email.test('a'.repeat(50_000) + '!')).toBe(false);
    expect(email.test('john.doe@example.com')).toBe(true);
  });

  it('takes RE2 syntax that JavaScript lacks, and folds case when asked', () => {
    expect(compileRegex('(?i)admin').test('ADMIN')).toBe(true);
    expect(compileRegex('(?P<v>v[0-9]+)').test('v12')).toBe(true);
    expect(compileRegex('\\pL+').test('héllo')).toBe(true);
    expect(compileRegex('[[:digit:]]+').test('123')).toBe(true);
    expect(compileRegex('\\Qa.b\\E').test('a.b')).toBe(true);
    expect(compileRegex('\\Qa.b\\E').test('axb')).toBe(false);
    expect(compileRegex('admin').test('ADMIN')).toBe(false);
    expect(compileRegex('admin', { ignoreCase: true }).test('ADMIN')).toBe(true);
    expect(compileRegex('adm[i]n', { ignoreCase: true }).test('AdMiN')).toBe(true);
  });

  it('refuses what RE2 refuses, saying why', () => {
    expect(regexProblem('(?=a)a')).toMatch(/^invalid regular expression "\(\?=a\)a": .*RE2 has no lookahead or lookbehind/);
    expect(regexProblem('(?<!a)b')).toMatch(/RE2 has no lookahead or lookbehind/);
    expect(regexProblem('(a)\\1')).toMatch(/^invalid regular expression "\(a\)\\\\1": invalid escape sequence: `\\1` \(RE2 has no backreferences\)$/);
    expect(regexProblem('a(b')).toBe('invalid regular expression "a(b": missing closing )');
    expect(regexProblem('a++')).toMatch(/invalid nested repetition operator/);
    expect(regexProblem('a{1001}')).toMatch(/invalid repeat count/);
    expect(regexProblem('[z-a]')).toMatch(/invalid character class range/);
    expect(() => compileRegex('(?=a)a')).toThrow(/lookahead/);
    expect(regexProblem('v[0-9]+')).toBeUndefined();
  });

  it(`refuses an expression whose compiled program is over ${MAX_REGEX_PROGRAM_SIZE}`, () => {
    expect(compileRegex('[a-z0-9-]+').programSize).toBeLessThanOrEqual(MAX_REGEX_PROGRAM_SIZE);
    expect(compileRegex('[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}').test('123e4567-e89b-12d3-a456-426614174000')).toBe(true);
    expect(regexProblem('[a-z0-9-]{1,63}')).toMatch(/^regular expression "\[a-z0-9-\]\{1,63\}" is too complex: its RE2 program size is \d+, the limit is 100/);
    expect(regexProblem('[xy]*x[xy]{150}')).toMatch(/too complex/);
    expect(regexProblem('a'.repeat(200))).toMatch(/too complex/);
  });
});

describe('config that carries a regex', () => {
  it('routes by an RE2 whole-value match, hostile values included', () => {
    const table = RouteTable.compile({
      name: 'rt',
      routes: [
        { name: 'redos', match: { metadata: [{ name: 'user', string_match: { safe_regex: { regex: '(a+)+$' } } }] }, route: { cluster: 'c-redos' } },
        { name: 'legacy', match: { metadata: [{ name: 'team', safe_regex_match: { regex: '(x+x+)+y' } }] }, route: { cluster: 'c-legacy' } },
        { name: 'folded', match: { metadata: [{ name: 'role', string_match: { safe_regex: { regex: 'adm[i]n' }, ignore_case: true } }] }, route: { cluster: 'c-folded' } },
        { name: 'inverted', match: { metadata: [{ name: 'env', string_match: { safe_regex: { regex: '(p+)+rod' } }, invert_match: true }] }, route: { cluster: 'c-inv' } },
        { name: 'rest', route: { cluster: 'c-rest' } },
      ],
    });
    const env = { env: 'prod' };
    expect(table.match(md({ user: 'a'.repeat(30) + '!', ...env }))?.name).toBe('rest');
    expect(table.match(md({ user: 'a'.repeat(1 << 20) + '!', ...env }))?.name).toBe('rest');
    expect(table.match(md({ user: 'a'.repeat(1 << 20), ...env }))?.name).toBe('redos');
    expect(table.match(md({ team: 'x'.repeat(100_000), ...env }))?.name).toBe('rest');
    expect(table.match(md({ team: 'xxy', ...env }))?.name).toBe('legacy');
    expect(table.match(md({ role: 'ADMIN', ...env }))?.name).toBe('folded');
    expect(table.match(md({ env: 'p'.repeat(100_000) + 'ro' }))?.name).toBe('inverted');
    expect(table.match(md({ env: 'pprod' }))?.name).toBe('rest');
  });

  it('refuses a route or rate-limit condition RE2 refuses, naming the field', () => {
    const route = (m: object) => ({ name: 'x', routes: [{ name: 'r', match: { metadata: [{ name: 'a', ...m }] }, route: { cluster: 'c' } }] });
    expect(() => RouteTable.compile(route({ string_match: { safe_regex: { regex: '(?!ops).*' } } }))).toThrow(
      /^r\.match\.metadata\[0\]\.string_match\.safe_regex\.regex: invalid regular expression "\(\?!ops\)\.\*": .*lookahead/,
    );
    expect(() => RouteTable.compile(route({ safe_regex_match: { regex: '(a)\\1' } }))).toThrow(/^r\.match\.metadata\[0\]\.safe_regex_match\.regex: .*backreferences/);
    expect(() => RouteTable.compile(route({ string_match: { safe_regex: { regex: '.{0,255}' } } }))).toThrow(/safe_regex\.regex: .*too complex/);
    // Rate-limit conditions use the same matcher.
    expect(() => new MetadataMatch([{ name: 'k', string_match: { safe_regex: { regex: '(?=x)' } } }], 'limit')).toThrow(/^limit\[0\]\.string_match\.safe_regex\.regex: /);
  });

  it('matches a SAN safe_regex by RE2 against the whole SAN, and refuses one RE2 refuses, naming the field', () => {
    const cluster = (regex: string): Cluster =>
      ({
        name: 'c',
        transport_socket: {
          name: TRANSPORT_SOCKET_TLS,
          typed_config: {
            '@type': TYPE_UPSTREAM_TLS_CONTEXT,
            common_tls_context: { validation_context: { match_subject_alt_names: [{ safe_regex: { regex } }] } },
          },
        },
      }) as Cluster;
    const [san] = upstreamTlsOf(cluster('spiffe://cluster\\.local/ns/(a+)+/sa/[a-z-]+'))!.sanMatchers;
    expect(san!('spiffe://cluster.local/ns/aaa/sa/reviews')).toBe(true);
    expect(san!('spiffe://cluster.local/ns/aaa/sa/reviews/extra')).toBe(false);
    expect(san!(`spiffe://cluster.local/ns/${'a'.repeat(100_000)}!/sa/x`)).toBe(false);
    expect(() => upstreamTlsOf(cluster('spiffe://(?=x).*'))).toThrow(
      /^cluster c: transport_socket\.typed_config\.common_tls_context\.validation_context\.match_subject_alt_names\[0\]\.safe_regex\.regex: .*lookahead/,
    );
  });

  it('makes the proxy reject a config (an xDS update is NACKed) with a regex RE2 refuses', async () => {
    const proxy = new Proxy({ codecs: createRegistry() });
    const bad = {
      version: '1',
      listeners: [],
      clusters: [],
      endpoints: [],
      routes: [{ name: 'svc_20880', routes: [{ name: 'r', match: { metadata: [{ name: 'u', string_match: { safe_regex: { regex: '(a)\\1' } } }] }, route: { cluster: 'c' } }] }],
    };
    await expect(proxy.apply(bad)).rejects.toThrow(/r\.match\.metadata\[0\]\.string_match\.safe_regex\.regex: .*backreferences/);
    const good = { ...bad, routes: [{ name: 'svc_20880', routes: [{ name: 'r', match: { metadata: [{ name: 'u', string_match: { safe_regex: { regex: '(a+)+$' } } }] }, route: { cluster: 'c' } }] }] };
    await expect(proxy.apply(good)).resolves.toBeUndefined();
    await proxy.close();
  });
});
