import { CodecRegistry } from './codec-registry.js';
import dubboCodec from '../codecs/dubbo/index.js';

/** The one place the data plane meets the built-in codecs: a registry pre-filled with them. */
export function createRegistry(): CodecRegistry {
  const registry = new CodecRegistry();
  registry.register(dubboCodec);
  return registry;
}
