import { CodecRegistry } from './codec-registry.js';
import dubboCodec from '../codecs/dubbo/index.js';
import thriftCodec from '../codecs/thrift/index.js';
import redisCodec from '../codecs/redis/index.js';

/** The one place the data plane meets the built-in codecs: a registry pre-filled with them. */
export function createRegistry(): CodecRegistry {
  const registry = new CodecRegistry();
  registry.register(dubboCodec);
  registry.register(thriftCodec);
  registry.register(redisCodec);
  return registry;
}
