import type { KeyValue, Metadata } from './codec.js';
import { compileRegex, type ConfigRegex } from './regex.js';
import { durationMs } from './duration.js';
import type { FractionalPercent, HeaderMatcher, MetaRoute, MetaRouteConfiguration } from './xds/resources.js';

/**
 * Where a request is routed: a route table compiled from a MetaProtocol RouteConfiguration. Rules are tried top to
 * bottom and the first whose every matcher holds wins (Aeraki's and Envoy's semantics).
 */

type Test = (value: string) => boolean;

interface CompiledMatcher {
  /** Lower-case metadata key. */
  readonly key: string;
  /** undefined: presence match. */
  readonly test: Test | undefined;
  readonly invert: boolean;
}

export interface WeightedTarget {
  readonly cluster: string;
  readonly weight: number;
}

export interface MirrorTarget {
  readonly cluster: string;
  /** Share of requests mirrored, 0..1. */
  readonly fraction: number;
}

export interface RetryPolicy {
  readonly attempts: number;
  readonly on: ReadonlySet<string>;
}

export interface FaultPolicy {
  readonly delay?: { readonly ms: number; readonly fraction: number };
  readonly abort?: { readonly fraction: number; readonly code: number | undefined; readonly message: string | undefined };
}

/** Conditions on metadata that must all hold (a route's match, a rate limit condition). */
export class MetadataMatch {
  private readonly matchers: readonly CompiledMatcher[];
  constructor(matchers: readonly HeaderMatcher[] | undefined, where: string) {
    this.matchers = (matchers ?? []).map((m, i) => compileMatcher(m, `${where}[${i}]`));
  }
  matches(metadata: Metadata): boolean {
    const ms = this.matchers;
    for (let i = 0; i < ms.length; i++) {
      const m = ms[i]!;
      const value = metadata.get(m.key);
      const hit = value !== undefined && (m.test === undefined || m.test(value));
      if (hit === m.invert) return false;
    }
    return true;
  }
}

export class Route {
  readonly name: string;
  private readonly match: MetadataMatch;
  /** One entry for a single destination. */
  readonly targets: readonly WeightedTarget[];
  private readonly totalWeight: number;
  readonly requestMutation: readonly KeyValue[] | undefined;
  readonly responseMutation: readonly KeyValue[] | undefined;
  readonly hashKeys: readonly string[];
  readonly mirrors: readonly MirrorTarget[];
  /** Whole-request timeout and per-try timeout, in ms. */
  readonly timeoutMs: number | undefined;
  readonly perTryTimeoutMs: number | undefined;
  readonly retry: RetryPolicy | undefined;
  readonly fault: FaultPolicy | undefined;
  /** The route as configured, for admin and later policy filters. */
  readonly config: MetaRoute;

  constructor(config: MetaRoute, index: number) {
    this.config = config;
    this.name = config.name || `route-${index}`;
    this.match = new MetadataMatch(config.match?.metadata, `${this.name}.match.metadata`);
    const action = config.route;
    if (action.weighted_clusters && action.weighted_clusters.clusters.length > 0) {
      this.targets = action.weighted_clusters.clusters.map((c) => ({ cluster: c.name, weight: c.weight }));
    } else if (action.cluster) {
      this.targets = [{ cluster: action.cluster, weight: 1 }];
    } else {
      throw new Error(`route ${this.name}: route.cluster or route.weighted_clusters is required`);
    }
    this.totalWeight = this.targets.reduce((sum, t) => sum + t.weight, 0);
    if (this.targets.length > 1 && this.totalWeight <= 0) throw new Error(`route ${this.name}: weights sum to 0`);
    this.requestMutation = config.request_mutation?.length ? config.request_mutation : undefined;
    this.responseMutation = config.response_mutation?.length ? config.response_mutation : undefined;
    this.hashKeys = (action.hash_policy ?? []).map((k) => k.toLowerCase());
    this.mirrors = (action.request_mirror_policies ?? []).map((m) => ({
      cluster: m.cluster,
      fraction: fractionOf(m.runtime_fraction?.default_value),
    }));
    const where = `route ${this.name}`;
    // As Envoy's routes: 15 s unless set; `0s` turns the timeout off (a call then waits as long as the client does).
    const timeout = config.timeout !== undefined ? durationAt(config.timeout, `${where}: timeout`) : DEFAULT_ROUTE_TIMEOUT_MS;
    this.timeoutMs = timeout > 0 ? timeout : undefined;
    const rp = config.retry_policy;
    this.perTryTimeoutMs = rp?.per_try_timeout !== undefined ? durationAt(rp.per_try_timeout, `${where}: retry_policy.per_try_timeout`) : undefined;
    this.retry =
      rp && rp.num_retries > 0
        ? {
            attempts: rp.num_retries,
            // Envoy's default retry_on for this kind of proxy: failures where the request surely did not run.
            on: new Set((rp.retry_on ?? 'connect-failure,reset').split(',').map((x) => x.trim()).filter(Boolean)),
          }
        : undefined;
    const f = config.fault;
    this.fault =
      f && (f.delay || f.abort)
        ? {
            ...(f.delay ? { delay: { ms: durationAt(f.delay.fixed_delay, `${where}: fault.delay.fixed_delay`), fraction: fractionOf(f.delay.percentage, 1) } } : {}),
            ...(f.abort
              ? {
                  abort: {
                    fraction: fractionOf(f.abort.percentage, 1),
                    code: f.abort.error_code === undefined || f.abort.error_code === '' ? undefined : Number(f.abort.error_code),
                    message: f.abort.message,
                  },
                }
              : {}),
          }
        : undefined;
    if (this.fault?.abort?.code !== undefined && !Number.isInteger(this.fault.abort.code)) {
      throw new Error(`${where}: fault.abort.error_code must be an integer`);
    }
  }

  matches(metadata: Metadata): boolean {
    return this.match.matches(metadata);
  }

  /** The cluster for one request: the only target, or a weighted random pick. */
  pickCluster(random: number = Math.random()): string {
    const ts = this.targets;
    if (ts.length === 1) return ts[0]!.cluster;
    let point = random * this.totalWeight;
    for (let i = 0; i < ts.length; i++) {
      point -= ts[i]!.weight;
      if (point < 0) return ts[i]!.cluster;
    }
    return ts[ts.length - 1]!.cluster;
  }

  /** Every cluster this route can send to (targets and mirrors). */
  clusters(): string[] {
    return [...this.targets.map((t) => t.cluster), ...this.mirrors.map((m) => m.cluster)];
  }
}

export class RouteTable {
  readonly routes: readonly Route[];
  constructor(readonly name: string, routes: readonly Route[]) {
    this.routes = routes;
  }

  static compile(config: MetaRouteConfiguration): RouteTable {
    return new RouteTable(
      config.name,
      (config.routes ?? []).map((r, i) => new Route(r, i)),
    );
  }

  match(metadata: Metadata): Route | undefined {
    const rs = this.routes;
    for (let i = 0; i < rs.length; i++) if (rs[i]!.matches(metadata)) return rs[i];
    return undefined;
  }
}

function compileMatcher(m: HeaderMatcher, where: string): CompiledMatcher {
  if (!m.name) throw new Error(`${where}: name is required`);
  const key = m.name.toLowerCase();
  const invert = m.invert_match === true;
  const sm = m.string_match;
  const ignoreCase = sm?.ignore_case === true;
  const exact = sm?.exact ?? m.exact_match;
  const prefix = sm?.prefix ?? m.prefix_match;
  const suffix = sm?.suffix;
  const regex = sm?.safe_regex?.regex ?? m.safe_regex_match?.regex;
  let test: Test | undefined;
  if (exact !== undefined) {
    const want = ignoreCase ? exact.toLowerCase() : exact;
    test = ignoreCase ? (v) => v.toLowerCase() === want : (v) => v === want;
  } else if (prefix !== undefined) {
    const want = ignoreCase ? prefix.toLowerCase() : prefix;
    test = ignoreCase ? (v) => v.toLowerCase().startsWith(want) : (v) => v.startsWith(want);
  } else if (suffix !== undefined) {
    const want = ignoreCase ? suffix.toLowerCase() : suffix;
    test = ignoreCase ? (v) => v.toLowerCase().endsWith(want) : (v) => v.endsWith(want);
  } else if (regex !== undefined) {
    // Envoy's safe_regex: RE2 syntax, a full match, linear time (src/regex.ts); compiled once, here.
    let re: ConfigRegex;
    try {
      re = compileRegex(regex, { ignoreCase });
    } catch (err) {
      const field = sm?.safe_regex?.regex !== undefined ? 'string_match.safe_regex.regex' : 'safe_regex_match.regex';
      throw new Error(`${where}.${field}: ${(err as Error).message}`);
    }
    test = (v) => re.test(v);
  } else if (m.present_match === true || m.present_match === undefined) {
    test = undefined;
  } else {
    // present_match: false — "absent"; expressed as an inverted presence test.
    return { key, test: undefined, invert: !invert };
  }
  return { key, test, invert };
}

/** A route's whole-request timeout when it sets none (Envoy's route default). */
export const DEFAULT_ROUTE_TIMEOUT_MS = 15_000;

function durationAt(value: string, where: string): number {
  try {
    return durationMs(value);
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`);
  }
}

/** A FractionalPercent as a share in 0..1; absent means `whenAbsent` (100% for mirrors and faults). */
export function fractionOf(v: FractionalPercent | undefined, whenAbsent = 1): number {
  if (!v) return whenAbsent;
  const d = v.denominator === 'MILLION' ? 1_000_000 : v.denominator === 'TEN_THOUSAND' ? 10_000 : 100;
  return Math.min(1, Math.max(0, (v.numerator ?? 0) / d));
}
