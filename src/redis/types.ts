/**
 * Envoy's `extensions.filters.network.redis_proxy.v3.RedisProxy` and `RedisProtocolOptions` in proto3 JSON with the
 * protos' own field names (as the rest of src/xds/resources.ts). Only the fields Waypost reads are typed.
 */
import type { DurationJson, FractionalPercent } from '../xds/resources.js';

export const FILTER_REDIS_PROXY = 'envoy.filters.network.redis_proxy';
export const TYPE_REDIS_PROXY = 'type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy';
export const TYPE_REDIS_PROTOCOL_OPTIONS = 'type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProtocolOptions';

/** Envoy `config.core.v3.DataSource` (only the inline forms). */
export interface DataSourceJson {
  inline_string?: string;
  /** Base64, as proto3 JSON writes bytes. */
  inline_bytes?: string;
}

export interface RuntimeFractionalPercentJson {
  default_value?: FractionalPercent;
  runtime_key?: string;
}

export interface RedisMirrorPolicyJson {
  cluster: string;
  runtime_fraction?: RuntimeFractionalPercentJson;
  exclude_read_commands?: boolean;
}

export interface RedisRouteJson {
  prefix?: string;
  remove_prefix?: boolean;
  cluster: string;
  request_mirror_policy?: RedisMirrorPolicyJson[];
  /**
   * Waypost's own: scripts (EVAL, EVALSHA, EVAL_RO, EVALSHA_RO, FCALL, FCALL_RO) whose declared keys are all on
   * this route are forwarded; otherwise they are refused. Absent from Envoy's RedisProxy.
   */
  allow_scripts?: boolean;
  /** Waypost also reads Envoy's `key_formatter` as absent: it is not supported. */
  key_formatter?: string;
}

export type ReadPolicy = 'MASTER' | 'PREFER_MASTER' | 'REPLICA' | 'PREFER_REPLICA' | 'ANY';

export interface ConnPoolSettingsJson {
  op_timeout?: DurationJson;
  enable_hashtagging?: boolean;
  enable_redirection?: boolean;
  max_buffer_size_before_flush?: number;
  buffer_flush_timeout?: DurationJson;
  max_upstream_unknown_connections?: number;
  enable_command_stats?: boolean;
  read_policy?: ReadPolicy;
}

export interface RedisFaultJson {
  fault_type?: 'DELAY' | 'ERROR';
  fault_enabled?: RuntimeFractionalPercentJson;
  delay?: DurationJson;
  commands?: string[];
}

export interface RedisProxyConfig {
  '@type'?: typeof TYPE_REDIS_PROXY;
  stat_prefix: string;
  settings?: ConnPoolSettingsJson;
  prefix_routes?: {
    routes?: RedisRouteJson[];
    case_insensitive?: boolean;
    catch_all_route?: RedisRouteJson;
  };
  faults?: RedisFaultJson[];
  downstream_auth_passwords?: DataSourceJson[];
  /** Deprecated in Envoy in favour of `downstream_auth_passwords`; still read. */
  downstream_auth_password?: DataSourceJson;
  downstream_auth_username?: DataSourceJson;
  /** Deprecated in Envoy: one cluster for everything (read as the catch-all route when there are no prefix routes). */
  cluster?: string;
}

export interface RedisProtocolOptionsJson {
  '@type'?: typeof TYPE_REDIS_PROTOCOL_OPTIONS;
  auth_password?: DataSourceJson;
  auth_username?: DataSourceJson;
}
