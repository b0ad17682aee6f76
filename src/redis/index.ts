/**
 * Envoy's Redis proxy as a Waypost network filter (`envoy.filters.network.redis_proxy`): a listener whose filter
 * chain names it serves Redis clients (RESP2 and RESP3) with key-prefix routes, multi-key splitting, downstream
 * and upstream AUTH, mirrors, faults, op timeouts and upstream write batching, configured by Envoy's
 * `extensions.filters.network.redis_proxy.v3.RedisProxy` (see docs/redis.md).
 */
import type { NetworkFilterConfig, NetworkFilterContext, NetworkFilterFactory } from '../network-filter.js';
import { redisCodec } from '../../codecs/redis/index.js';
import { readRedisProxyConfig, type RedisProxySettings } from './config.js';
import { RedisConnection, type RedisListenerConfig } from './connection.js';
import { FILTER_REDIS_PROXY } from './types.js';

export { FILTER_REDIS_PROXY, TYPE_REDIS_PROXY, TYPE_REDIS_PROTOCOL_OPTIONS } from './types.js';
export type { RedisProxyConfig, RedisProtocolOptionsJson } from './types.js';
export { readRedisProxyConfig, type RedisProxySettings } from './config.js';

export const redisProxy: NetworkFilterFactory = {
  name: FILTER_REDIS_PROXY,
  prepare(listener: string, typedConfig: unknown, ctx: NetworkFilterContext): NetworkFilterConfig & RedisListenerConfig {
    const redis: RedisProxySettings = readRedisProxyConfig(listener, typedConfig);
    // The registered codec when there is one (a user may not replace it: the proxy reads its frames).
    const codec = ctx.codecs.get(redisCodec.name) ?? redisCodec;
    return {
      protocol: 'redis',
      codec,
      filters: [],
      redis,
      accept: (socket, runtime) => new RedisConnection(socket, runtime, redis),
    };
  },
};
