/**
 * An example MetaProtocol filter loaded with `waypost proxy --filter dist/examples/user-filter/filter.js`
 * (docs/filters.md). It denies calls whose `user` attachment (Dubbo) or header (other codecs) is on a list, with the
 * protocol's own permission-denied error, and counts them in a metric of its own.
 *
 * Config (from the MetaRouter annotation `waypost.io/meta-protocol-filters`):
 *   {"name": "example.filters.deny_users", "config": {"users": ["mallory"], "key": "user"}}
 */
import type { FilterContext, FilterDeps, FilterStatus, MetaFilter, MetaFilterFactory } from '../../src/filters/index.js';

export const DENY_USERS = 'example.filters.deny_users';

interface DenyUsersConfig {
  /** The users refused. */
  users?: string[];
  /** The metadata key holding the user (default `user`). */
  key?: string;
}

function denyUsers(config: unknown, deps: FilterDeps): MetaFilter {
  const cfg = (config ?? {}) as DenyUsersConfig;
  if (!Array.isArray(cfg.users) || cfg.users.some((u) => typeof u !== 'string')) {
    throw new Error(`${DENY_USERS}: config.users must be a list of strings`);
  }
  const users = new Set(cfg.users);
  const key = (cfg.key ?? 'user').toLowerCase();
  // Created once per proxy: filters are created again on every config apply, the counter is not.
  const denied = deps.counter({ name: 'example_users_denied_total', help: 'Calls refused by the deny_users example filter', labelNames: ['listener', 'user'] as const });
  return {
    name: DENY_USERS,
    onRequest(ctx: FilterContext): FilterStatus {
      const user = ctx.metadata.get(key);
      if (user === undefined || !users.has(user)) return 'continue';
      denied.labels(ctx.listener.name, user).inc();
      ctx.localReply('permission_denied', `user ${user} is not allowed on listener ${ctx.listener.name}`);
      return 'stop';
    },
  };
}

const factory: MetaFilterFactory = { name: DENY_USERS, create: denyUsers };
export default factory;
