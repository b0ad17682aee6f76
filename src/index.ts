/** Waypost's public API: what a user codec, filter or embedding program imports. */
export * from './codec.js';
export { PartialFrame } from './partial-frame.js';
export { CodecRegistry } from './codec-registry.js';
export { createRegistry } from './builtin-codecs.js';
export { Proxy, ConfigRejectedError, type ProxyOptions } from './proxy.js';
export { startAdmin } from './admin.js';
export type * from './xds/resources.js';
