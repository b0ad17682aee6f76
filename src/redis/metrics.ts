/**
 * The Redis proxy's own counters, registered once per proxy registry (a proxy per test, several per process):
 * what its command policy refused, replies it would not pass on, values from the network it would not use, and
 * failed client logins.
 */
import { Counter, type Registry } from 'prom-client';

export interface RedisCounters {
  /** `waypost_redis_commands_refused_total{listener, reason}`: unsupported_command, script_not_allowed, script_without_keys, sort_pattern. */
  readonly refused: Counter<'listener' | 'reason'>;
  /** `waypost_redis_upstream_replies_refused_total{listener, reason}`: too_large, too_deep. */
  readonly replies: Counter<'listener' | 'reason'>;
  /** `waypost_redis_invalid_upstream_values_total{cluster, what}`: redirection, cluster_slots. */
  readonly invalid: Counter<'cluster' | 'what'>;
  /** `waypost_redis_auth_failures_total{listener, action}`: rejected (a wrong password), closed (too many on one connection). */
  readonly auth: Counter<'listener' | 'action'>;
}

const byRegistry = new WeakMap<Registry, RedisCounters>();

export function redisCounters(registry: Registry): RedisCounters {
  let c = byRegistry.get(registry);
  if (c === undefined) {
    c = {
      refused: new Counter({
        name: 'waypost_redis_commands_refused_total',
        help: 'Redis commands refused by the command policy (not forwarded): unsupported or administrative commands, scripts on routes that do not allow them',
        labelNames: ['listener', 'reason'] as const,
        registers: [registry],
      }),
      replies: new Counter({
        name: 'waypost_redis_upstream_replies_refused_total',
        help: 'Upstream replies over the size or nesting limit: skipped on the shared connection, their command answered with an error',
        labelNames: ['listener', 'reason'] as const,
        registers: [registry],
      }),
      invalid: new Counter({
        name: 'waypost_redis_invalid_upstream_values_total',
        help: 'Ports, slots or hosts from a Redis server (MOVED/ASK, CLUSTER SLOTS) out of range: that command or slot-map refresh failed',
        labelNames: ['cluster', 'what'] as const,
        registers: [registry],
      }),
      auth: new Counter({
        name: 'waypost_redis_auth_failures_total',
        help: 'Failed client AUTH / HELLO AUTH attempts (action=rejected), and connections closed for too many of them (action=closed)',
        labelNames: ['listener', 'action'] as const,
        registers: [registry],
      }),
    };
    byRegistry.set(registry, c);
  }
  return c;
}
