import type { Counter } from 'prom-client';
import type { Metadata } from '../codec.js';
import { log } from '../log.js';
import {
  META_FILTER_AUTHZ,
  type AuthorizationConfig,
  type AuthorizationPolicyJson,
  type AuthzOperationJson,
  type AuthzSourceJson,
} from '../xds/resources.js';
import type { FilterContext, FilterDeps, FilterStatus, MetaFilter, MetaFilterFactory } from './filter.js';

/**
 * Authorization (docs/security.md), as Istio evaluates AuthorizationPolicy — here from DubboAuthorizationPolicy and
 * MetaAuthorizationPolicy: a request matching any DENY policy is denied; otherwise, when there are ALLOW policies,
 * it must match one of them; with none, it is allowed. A denied request is answered with the codec's
 * `permission_denied` local reply (never dropped) and counted in `waypost_authz_denied_total{listener, policy}`.
 *
 * The source attributes are the peer's SPIFFE identity from its TLS client certificate (`source.principal`,
 * `source.namespace`; absent over plaintext); the operation attributes are the request's metadata.
 */

/** What a request is judged on. */
interface Subject {
  readonly principal: string | undefined;
  readonly namespace: string | undefined;
  readonly metadata: Metadata;
}

type Pattern = (value: string | undefined) => boolean;

/** Istio's string match: `exact`, `prefix*`, `*suffix`, `*` (present and not empty). An absent value matches none. */
export function compilePattern(p: string): Pattern {
  if (p === '*') return (v) => v !== undefined && v !== '';
  if (p.length > 1 && p.endsWith('*')) {
    const prefix = p.slice(0, -1);
    return (v) => v !== undefined && v.startsWith(prefix);
  }
  if (p.length > 1 && p.startsWith('*')) {
    const suffix = p.slice(1);
    return (v) => v !== undefined && v.endsWith(suffix);
  }
  return (v) => v === p;
}

/** A value list: undefined when not set (matches anything), else whether one pattern matches. */
function anyOf(list: readonly string[] | undefined, where: string): Pattern | undefined {
  if (list === undefined || list.length === 0) return undefined;
  if (!Array.isArray(list)) throw new Error(`${where}: must be a list of strings`);
  const ps = list.map((p, i) => {
    if (typeof p !== 'string') throw new Error(`${where}[${i}]: must be a string`);
    return compilePattern(p);
  });
  return (v) => ps.some((p) => p(v));
}

type Check = (s: Subject) => boolean;

function positive(p: Pattern | undefined, get: (s: Subject) => string | undefined): Check | undefined {
  return p ? (s) => p(get(s)) : undefined;
}
function negative(p: Pattern | undefined, get: (s: Subject) => string | undefined): Check | undefined {
  return p ? (s) => !p(get(s)) : undefined;
}
function all(checks: Array<Check | undefined>): Check {
  const cs = checks.filter((c): c is Check => c !== undefined);
  return (s) => cs.every((c) => c(s));
}

function compileSource(src: AuthzSourceJson, where: string): Check {
  const principal = (s: Subject): string | undefined => s.principal;
  const namespace = (s: Subject): string | undefined => s.namespace;
  return all([
    positive(anyOf(src.principals, `${where}.principals`), principal),
    negative(anyOf(src.not_principals, `${where}.not_principals`), principal),
    positive(anyOf(src.namespaces, `${where}.namespaces`), namespace),
    negative(anyOf(src.not_namespaces, `${where}.not_namespaces`), namespace),
  ]);
}

function compileOperation(op: AuthzOperationJson, where: string): Check {
  return all(
    (op.attributes ?? []).flatMap((a, i) => {
      const at = `${where}.attributes[${i}]`;
      if (typeof a?.key !== 'string' || a.key === '') throw new Error(`${at}.key: required`);
      const key = a.key.toLowerCase();
      const get = (s: Subject): string | undefined => s.metadata.get(key);
      return [positive(anyOf(a.values, `${at}.values`), get), negative(anyOf(a.not_values, `${at}.not_values`), get)];
    }),
  );
}

/** One or more alternatives: none given matches anything. */
function oneOf(checks: Check[]): Check {
  return checks.length === 0 ? () => true : (s) => checks.some((c) => c(s));
}

interface CompiledPolicy {
  readonly name: string;
  readonly matches: Check;
}

function compilePolicy(p: AuthorizationPolicyJson, where: string): CompiledPolicy {
  if (typeof p?.name !== 'string' || p.name === '') throw new Error(`${where}.name: required`);
  const rules = (p.rules ?? []).map((r, i) => {
    const at = `${where}.rules[${i}]`;
    const from = oneOf((r.from ?? []).map((f, j) => compileSource(f ?? {}, `${at}.from[${j}]`)));
    const to = oneOf((r.to ?? []).map((t, j) => compileOperation(t ?? {}, `${at}.to[${j}]`)));
    return (s: Subject): boolean => from(s) && to(s);
  });
  // A policy without rules never matches (an ALLOW one then denies everything, as Aeraki documents).
  return { name: p.name, matches: (s) => rules.some((r) => r(s)) };
}

/** As the proxy's metrics declare it (docs/security.md). */
const AUTHZ_DENIED = {
  name: 'waypost_authz_denied_total',
  help: 'Requests denied by an authorization policy (answered with the protocol-native error)',
  labelNames: ['listener', 'policy'] as const,
};

class AuthzFilter implements MetaFilter {
  readonly name = META_FILTER_AUTHZ;
  private readonly deny: CompiledPolicy[] = [];
  private readonly allow: CompiledPolicy[] = [];

  private readonly denied: Counter<'listener' | 'policy'>;

  constructor(cfg: AuthorizationConfig, deps: FilterDeps) {
    this.denied = deps.counter(AUTHZ_DENIED);
    (cfg.policies ?? []).forEach((p, i) => {
      const where = `${META_FILTER_AUTHZ}.policies[${i}]`;
      const action = p?.action ?? 'ALLOW';
      if (action !== 'ALLOW' && action !== 'DENY') throw new Error(`${where}.action: must be ALLOW or DENY (got ${String(action)})`);
      (action === 'DENY' ? this.deny : this.allow).push(compilePolicy(p, where));
    });
  }

  onRequest(ex: FilterContext): FilterStatus {
    const peer = ex.peer;
    const subject: Subject = { principal: peer?.principal, namespace: peer?.namespace, metadata: ex.metadata };
    for (const p of this.deny) {
      if (p.matches(subject)) return this.refuse(ex, p.name, `RBAC: access denied by DENY policy ${p.name}`, subject);
    }
    if (this.allow.length === 0) return 'continue';
    for (const p of this.allow) if (p.matches(subject)) return 'continue';
    const names = this.allow.map((p) => p.name).join(', ');
    return this.refuse(ex, 'none', `RBAC: access denied: no ALLOW policy matched (${names})`, subject);
  }

  private refuse(ex: FilterContext, policy: string, message: string, s: Subject): FilterStatus {
    this.denied.labels(ex.listener.name, policy).inc();
    log.debug('request denied by an authorization policy', {
      listener: ex.listener.name,
      policy,
      principal: s.principal ?? '(none)',
    });
    ex.localReply('permission_denied', message);
    return 'stop';
  }
}

export const authzFilter: MetaFilterFactory = {
  name: META_FILTER_AUTHZ,
  create: (config, deps) => new AuthzFilter(unwrap(config), deps),
};

/** Accepts the config as the resource JSON or as a TypedStruct-style `{type_url, value}` wrapper. */
function unwrap(config: unknown): AuthorizationConfig {
  const c = (config ?? {}) as { value?: unknown };
  return (c.value && typeof c.value === 'object' ? c.value : config ?? {}) as AuthorizationConfig;
}
