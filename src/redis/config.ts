/**
 * Reads a RedisProxy typed_config (proto field names; lowerCamelCase accepted too) into the settings the Redis
 * connections run on. Every problem throws an Error naming the listener and the field.
 */
import { durationMs } from '../duration.js';
import type { FractionalPercent } from '../xds/resources.js';
import { PrefixRouter, type MirrorPolicy, type RedisRoute } from './router.js';
import type { DataSourceJson, RedisProxyConfig, RuntimeFractionalPercentJson } from './types.js';

export interface Fault {
  readonly type: 'delay' | 'error';
  /** 0..1 */
  readonly fraction: number;
  readonly delayMs: number;
}

/**
 * Faults by command, as Envoy picks them: the faults naming the command plus the faults naming none; one random
 * draw per command against their cumulative percentages (two 10% faults: 10% each, 80% none).
 */
export class FaultTable {
  private readonly byCommand = new Map<string, Fault[]>();
  private readonly all: Fault[] = [];

  constructor(faults: ReadonlyArray<{ fault: Fault; commands: readonly string[] }>) {
    for (const { fault, commands } of faults) {
      if (commands.length === 0) this.all.push(fault);
      for (const c of commands) {
        const list = this.byCommand.get(c) ?? [];
        list.push(fault);
        this.byCommand.set(c, list);
      }
    }
    for (const list of this.byCommand.values()) list.push(...this.all);
  }

  /** The fault to apply to one `command` (lower-case), if any. */
  pick(command: string): Fault | undefined {
    const list = this.byCommand.get(command) ?? this.all;
    if (list.length === 0) return undefined;
    const r = Math.random();
    let sum = 0;
    for (const f of list) {
      sum += f.fraction;
      if (r < sum) return f;
    }
    return undefined;
  }
}

export interface RedisProxySettings {
  readonly statPrefix: string;
  /** Per command, from the moment it is sent upstream; Infinity when unset. */
  readonly opTimeoutMs: number;
  readonly hashtagging: boolean;
  readonly redirection: boolean;
  /** 0: flush every event-loop turn. */
  readonly maxBufferBeforeFlush: number;
  readonly bufferFlushTimeoutMs: number;
  readonly router: PrefixRouter;
  readonly faults: FaultTable | undefined;
  /** Downstream passwords; undefined when clients need not AUTH. */
  readonly passwords: readonly string[] | undefined;
  readonly username: string | undefined;
}

/** Envoy's default `buffer_flush_timeout` when only `max_buffer_size_before_flush` is set. */
export const DEFAULT_FLUSH_TIMEOUT_MS = 3;

type Json = Record<string, unknown>;

/** `o[snake]`, or `o[lowerCamel]` (protobuf JSON accepts both). */
function field(o: unknown, snake: string): unknown {
  if (typeof o !== 'object' || o === null) return undefined;
  const m = o as Json;
  if (m[snake] !== undefined) return m[snake];
  return m[snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase())];
}

export function readRedisProxyConfig(listener: string, typedConfig: unknown): RedisProxySettings {
  const fail = (path: string, problem: string): never => {
    throw new Error(`listener ${listener}: redis_proxy ${path}: ${problem}`);
  };
  if (typeof typedConfig !== 'object' || typedConfig === null) fail('typed_config', 'must be a RedisProxy message');
  const cfg = typedConfig as RedisProxyConfig;

  const settings = field(cfg, 'settings');
  const duration = (path: string, v: unknown): number | undefined => {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' && typeof v !== 'number') return fail(path, 'must be a duration such as "1.5s"');
    try {
      return durationMs(v);
    } catch (err) {
      return fail(path, (err as Error).message);
    }
  };
  const bool = (path: string, v: unknown): boolean => {
    if (v === undefined || v === null) return false;
    if (typeof v !== 'boolean') return fail(path, 'must be true or false');
    return v;
  };
  const opTimeout = duration('settings.op_timeout', field(settings, 'op_timeout'));
  if (opTimeout !== undefined && opTimeout <= 0) fail('settings.op_timeout', 'must be greater than 0');
  const maxBuffer = field(settings, 'max_buffer_size_before_flush') ?? 0;
  if (typeof maxBuffer !== 'number' || !Number.isInteger(maxBuffer) || maxBuffer < 0) fail('settings.max_buffer_size_before_flush', 'must be a non-negative integer');
  const flush = duration('settings.buffer_flush_timeout', field(settings, 'buffer_flush_timeout'));

  const mirrorOf = (path: string, raw: unknown): MirrorPolicy => {
    const cluster = field(raw, 'cluster');
    if (typeof cluster !== 'string' || cluster === '') fail(`${path}.cluster`, 'required');
    return {
      cluster: cluster as string,
      fraction: runtimeFraction(`${path}.runtime_fraction`, field(raw, 'runtime_fraction') as RuntimeFractionalPercentJson | undefined, fail),
      excludeReads: bool(`${path}.exclude_read_commands`, field(raw, 'exclude_read_commands')),
    };
  };
  const routeOf = (path: string, raw: unknown, catchAll: boolean): RedisRoute => {
    if (typeof raw !== 'object' || raw === null) return fail(path, 'must be a route');
    const cluster = field(raw, 'cluster');
    if (typeof cluster !== 'string' || cluster === '') fail(`${path}.cluster`, 'required');
    if (field(raw, 'key_formatter')) fail(`${path}.key_formatter`, 'is not supported by Waypost');
    const prefix = field(raw, 'prefix') ?? '';
    if (typeof prefix !== 'string') fail(`${path}.prefix`, 'must be a string');
    const mirrorsRaw = field(raw, 'request_mirror_policy') ?? [];
    if (!Array.isArray(mirrorsRaw)) fail(`${path}.request_mirror_policy`, 'must be a list');
    return {
      name: catchAll ? 'catch_all' : (prefix as string),
      prefix: Buffer.from(catchAll ? '' : (prefix as string), 'utf8'),
      removePrefix: !catchAll && bool(`${path}.remove_prefix`, field(raw, 'remove_prefix')),
      cluster: cluster as string,
      mirrors: (mirrorsRaw as unknown[]).map((m, i) => mirrorOf(`${path}.request_mirror_policy[${i}]`, m)),
      allowScripts: bool(`${path}.allow_scripts`, field(raw, 'allow_scripts')),
    };
  };

  const prefixRoutes = field(cfg, 'prefix_routes');
  const routesRaw = field(prefixRoutes, 'routes') ?? [];
  if (!Array.isArray(routesRaw)) fail('prefix_routes.routes', 'must be a list');
  const routes = (routesRaw as unknown[]).map((r, i) => routeOf(`prefix_routes.routes[${i}]`, r, false));
  const catchAllRaw = field(prefixRoutes, 'catch_all_route');
  let catchAll = catchAllRaw !== undefined && catchAllRaw !== null ? routeOf('prefix_routes.catch_all_route', catchAllRaw, true) : undefined;
  const legacyCluster = field(cfg, 'cluster');
  if (!catchAll && routes.length === 0 && typeof legacyCluster === 'string' && legacyCluster !== '') {
    catchAll = { name: 'catch_all', prefix: Buffer.alloc(0), removePrefix: false, cluster: legacyCluster, mirrors: [], allowScripts: false };
  }
  if (!catchAll && routes.length === 0) fail('prefix_routes', 'needs at least one route or a catch_all_route');
  let router: PrefixRouter;
  try {
    router = new PrefixRouter(routes, catchAll, bool('prefix_routes.case_insensitive', field(prefixRoutes, 'case_insensitive')));
  } catch (err) {
    return fail('prefix_routes.routes', (err as Error).message);
  }

  const faultsRaw = field(cfg, 'faults') ?? [];
  if (!Array.isArray(faultsRaw)) fail('faults', 'must be a list');
  const faults = (faultsRaw as unknown[]).map((f, i) => {
    const path = `faults[${i}]`;
    const type = field(f, 'fault_type') ?? 'DELAY';
    if (type !== 'DELAY' && type !== 'ERROR') fail(`${path}.fault_type`, `must be DELAY or ERROR (got ${JSON.stringify(type)})`);
    const commands = field(f, 'commands') ?? [];
    if (!Array.isArray(commands) || commands.some((c) => typeof c !== 'string' || c === '')) fail(`${path}.commands`, 'must be a list of command names');
    return {
      fault: {
        type: type === 'ERROR' ? 'error' : 'delay',
        fraction: runtimeFraction(`${path}.fault_enabled`, field(f, 'fault_enabled') as RuntimeFractionalPercentJson | undefined, fail),
        delayMs: duration(`${path}.delay`, field(f, 'delay')) ?? 0,
      } satisfies Fault,
      commands: (commands as string[]).map((c) => c.toLowerCase()),
    };
  });

  const passwords: string[] = [];
  const list = field(cfg, 'downstream_auth_passwords') ?? [];
  if (!Array.isArray(list)) fail('downstream_auth_passwords', 'must be a list');
  (list as unknown[]).forEach((ds, i) => passwords.push(dataSource(`downstream_auth_passwords[${i}]`, ds, fail)));
  const legacyPassword = field(cfg, 'downstream_auth_password');
  if (legacyPassword !== undefined && legacyPassword !== null) passwords.push(dataSource('downstream_auth_password', legacyPassword, fail));
  const usernameRaw = field(cfg, 'downstream_auth_username');
  const username = usernameRaw !== undefined && usernameRaw !== null ? dataSource('downstream_auth_username', usernameRaw, fail) : undefined;
  if (username !== undefined && passwords.length === 0) fail('downstream_auth_username', 'needs downstream_auth_passwords');

  return {
    statPrefix: typeof cfg.stat_prefix === 'string' ? cfg.stat_prefix : '',
    opTimeoutMs: opTimeout ?? Number.POSITIVE_INFINITY,
    hashtagging: bool('settings.enable_hashtagging', field(settings, 'enable_hashtagging')),
    redirection: bool('settings.enable_redirection', field(settings, 'enable_redirection')),
    maxBufferBeforeFlush: maxBuffer as number,
    bufferFlushTimeoutMs: flush ?? DEFAULT_FLUSH_TIMEOUT_MS,
    router,
    faults: faults.length > 0 ? new FaultTable(faults) : undefined,
    passwords: passwords.length > 0 ? passwords : undefined,
    username,
  };
}

/** A FractionalPercent as a share 0..1 (denominator HUNDRED by default); a missing one is 100%. */
export function fractionOf(fp: FractionalPercent | undefined): number {
  if (!fp) return 1;
  const denominator = fp.denominator === 'MILLION' ? 1_000_000 : fp.denominator === 'TEN_THOUSAND' ? 10_000 : 100;
  return Math.min(1, Math.max(0, (fp.numerator ?? 0) / denominator));
}

function runtimeFraction(path: string, raw: RuntimeFractionalPercentJson | undefined, fail: (p: string, m: string) => never): number {
  if (raw === undefined || raw === null) return 1;
  const dv = field(raw, 'default_value') as FractionalPercent | undefined;
  if (dv !== undefined && (typeof dv !== 'object' || typeof (dv.numerator ?? 0) !== 'number')) fail(`${path}.default_value`, 'must be a FractionalPercent');
  if (dv?.denominator !== undefined && !['HUNDRED', 'TEN_THOUSAND', 'MILLION'].includes(dv.denominator)) {
    fail(`${path}.default_value.denominator`, 'must be HUNDRED, TEN_THOUSAND or MILLION');
  }
  // Envoy: a RuntimeFractionalPercent without default_value is 0%.
  return dv === undefined ? 0 : fractionOf(dv);
}

/** An inline DataSource as text. */
export function dataSource(path: string, raw: unknown, fail: (p: string, m: string) => never): string {
  const ds = raw as DataSourceJson;
  const s = field(ds, 'inline_string');
  if (typeof s === 'string') return s;
  const b = field(ds, 'inline_bytes');
  if (typeof b === 'string') return Buffer.from(b, 'base64').toString('utf8');
  return fail(path, 'needs inline_string or inline_bytes (files and environment variables are not supported)');
}
