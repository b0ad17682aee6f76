/**
 * Waypost's control plane side: Istio/Aeraki CRD YAML → validated → xDS resources.
 *
 *     const { snapshot, errors, warnings } = await compile(['config/'], { bind: '0.0.0.0', knownCodecs });
 *     if (errors.length) console.error(formatErrors(errors));
 */

export { loadDocuments, parseDocuments, type LoadResult } from './load.js';
export { validateDocuments, checkDocuments, type ValidateOptions, type CheckResult } from './validate.js';
export { translate, type TranslateOptions } from './translate.js';
export { compile, type CompileOptions, type CompileResult } from './compile.js';
export { ConfigError, formatErrors, sortByDocument, type DocumentRef } from './errors.js';
export { parseDuration, formatDuration, toDurationJson, durationProblem } from '../src/duration.js';
export { BUILTIN_CODECS, classifyPort, metaProtocolOf } from './protocol.js';
export { clusterName, DEFAULT_CONNECT_TIMEOUT } from './clusters.js';
export { DEFAULT_BIND } from './model.js';
export { routeConfigName } from './routes.js';
export { contentVersion, canonicalJson } from './version.js';
export type * from './types.js';
export {
  KIND_SERVICE_ENTRY,
  KIND_DESTINATION_RULE,
  KIND_META_ROUTER,
  KIND_APPLICATION_PROTOCOL,
  TRANSLATED_KINDS,
  UNTRANSLATED_KINDS,
  RETRY_ON,
} from './types.js';
export type * from './xds-ext.js';
export { META_FILTER_LOCAL_RATELIMIT, TYPE_LOCAL_RATELIMIT } from './xds-ext.js';
