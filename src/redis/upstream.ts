/**
 * The codec a Redis upstream pool speaks, per cluster: RESP2 or RESP3 (a RESP3 client's commands go to pools whose
 * connections said `HELLO 3`, so replies come back in the client's protocol), with the cluster's upstream
 * credentials (Envoy's `RedisProtocolOptions` in `typed_extension_protocol_options['envoy.filters.network.redis_proxy']`)
 * sent as the connection's handshake (`AUTH`, or `HELLO 3 AUTH`). Pools are keyed by codec name, so each variant
 * gets its own connections, and the name carries a digest of the credentials: changed credentials mean new
 * connections, unchanged ones keep theirs across config updates.
 */
import { createHash } from 'node:crypto';
import type { CodecFactory } from '../codec.js';
import type { Cluster } from '../cluster.js';
import { log } from '../log.js';
import { createRedisCodec, REDIS_CODEC_NAME, redisCodec } from '../../codecs/redis/index.js';
import { encodeCommand } from '../../codecs/redis/resp.js';
import { dataSource } from './config.js';
import { FILTER_REDIS_PROXY, type RedisProtocolOptionsJson } from './types.js';

interface Variants {
  readonly resp2: CodecFactory;
  readonly resp3: CodecFactory;
}

const byName = new Map<string, CodecFactory>();
const byOptions = new WeakMap<object, Variants>();

const RESP3_PLAIN = codec(`${REDIS_CODEC_NAME}+resp3`, [Buffer.from('HELLO'), Buffer.from('3')]);
const PLAIN: Variants = { resp2: redisCodec, resp3: RESP3_PLAIN };

/** The codec for `cluster`'s pools, for a client speaking RESP3 or RESP2. */
export function upstreamCodec(cluster: Cluster, resp3: boolean): CodecFactory {
  const options = cluster.settings.protocolOptions?.[FILTER_REDIS_PROXY];
  if (options === undefined || options === null || typeof options !== 'object') return resp3 ? PLAIN.resp3 : PLAIN.resp2;
  let v = byOptions.get(options);
  if (v === undefined) {
    v = variantsFor(cluster.name, options as RedisProtocolOptionsJson);
    byOptions.set(options, v);
  }
  return resp3 ? v.resp3 : v.resp2;
}

function variantsFor(clusterName: string, options: RedisProtocolOptionsJson): Variants {
  let password: string | undefined;
  let username: string | undefined;
  const fail = (path: string, message: string): never => {
    throw new Error(`${path}: ${message}`);
  };
  try {
    if (options.auth_password) password = dataSource('auth_password', options.auth_password, fail);
    if (options.auth_username) username = dataSource('auth_username', options.auth_username, fail);
  } catch (err) {
    log.error('unusable redis protocol options: upstream connections will not authenticate', {
      cluster: clusterName,
      error: (err as Error).message,
    });
    return PLAIN;
  }
  if (password === undefined || password === '') return PLAIN;
  const digest = createHash('sha256').update(`${username ?? ''}\u0000${password}`).digest('hex').slice(0, 16);
  const user = username !== undefined && username !== '' ? [Buffer.from(username)] : [];
  return {
    resp2: codec(`${REDIS_CODEC_NAME}+auth:${digest}`, [Buffer.from('AUTH'), ...user, Buffer.from(password)]),
    resp3: codec(`${REDIS_CODEC_NAME}+resp3+auth:${digest}`, [
      Buffer.from('HELLO'),
      Buffer.from('3'),
      Buffer.from('AUTH'),
      user[0] ?? Buffer.from('default'),
      Buffer.from(password),
    ]),
  };
}

function codec(name: string, handshake: Buffer[]): CodecFactory {
  let c = byName.get(name);
  if (c === undefined) {
    c = createRedisCodec(name, { bytes: encodeCommand(handshake), replies: 1 });
    byName.set(name, c);
  }
  return c;
}
