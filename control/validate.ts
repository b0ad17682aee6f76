/**
 * Validation of loaded documents: the envelope (apiVersion, kind, metadata.name), each translated kind's spec
 * (validate-specs.ts), and references across documents (validate-refs.ts). Every problem is reported, each as one
 * ConfigError; warnings (kinds Waypost ignores, fields it does not translate yet, rules that can never match) come
 * separately and never block translation.
 */

import { Checker } from './checker.js';
import { sortByDocument, type ConfigError } from './errors.js';
import { ConfigModel, DEFAULT_BIND, isTranslated } from './model.js';
import { checkReferences } from './validate-refs.js';
import { checkApplicationProtocol, checkDestinationRule, checkMetaRouter, checkServiceEntry } from './validate-specs.js';
import { checkRedisDestination, checkRedisReferences, checkRedisService } from './redis.js';
import { checkGrpc } from './grpc.js';
import { checkDubboAuthorizationPolicy, checkMetaAuthorizationPolicy, checkPeerAuthentication, checkSecurityReferences } from './security.js';
import { ANNOTATION_META_FILTERS, parseMetaFilterAnnotation } from './translate.js';
import {
  KIND_APPLICATION_PROTOCOL,
  KIND_DESTINATION_RULE,
  KIND_DUBBO_AUTHORIZATION_POLICY,
  KIND_META_AUTHORIZATION_POLICY,
  KIND_PEER_AUTHENTICATION,
  KIND_META_ROUTER,
  KIND_REDIS_DESTINATION,
  KIND_REDIS_SERVICE,
  KIND_SERVICE_ENTRY,
  KIND_VIRTUAL_SERVICE,
  TRANSLATED_KINDS,
  UNTRANSLATED_KINDS,
  type CrdDocument,
} from './types.js';

export interface ValidateOptions {
  /** The address listeners bind when a ServiceEntry has no `addresses` (default 127.0.0.1): used to find clashes. */
  bind?: string;
  /** Codec names the data plane has; when given, a port whose codec is not among them is an error. */
  knownCodecs?: string[];
}

export interface CheckResult {
  errors: ConfigError[];
  warnings: ConfigError[];
}

/** The problems that stop `docs` from being translated. */
export function validateDocuments(docs: readonly CrdDocument[], options: ValidateOptions = {}): ConfigError[] {
  return checkDocuments(docs, options).errors;
}

/** Errors and warnings for `docs`, each list in document order. */
export function checkDocuments(docs: readonly CrdDocument[], options: ValidateOptions = {}): CheckResult {
  const errors: ConfigError[] = [];
  const warnings: ConfigError[] = [];
  for (const doc of docs) {
    const c = new Checker(doc, errors, warnings);
    if (!doc.apiVersion) c.error('apiVersion', 'required (a non-empty string)');
    if (!doc.kind) c.error('kind', 'required (a non-empty string)');
    if (!doc.name) c.error('metadata.name', 'required (a non-empty string)');
    if (!doc.kind) continue;
    if (Object.hasOwn(TRANSLATED_KINDS, doc.kind)) {
      if (!isTranslated(doc)) {
        if (doc.apiVersion) {
          c.error('apiVersion', `${doc.kind} must be ${TRANSLATED_KINDS[doc.kind]!.join(', ')} (got "${doc.apiVersion}")`);
        }
        continue;
      }
      switch (doc.kind) {
        case KIND_SERVICE_ENTRY:
          checkServiceEntry(c, doc.spec);
          break;
        case KIND_DESTINATION_RULE:
          checkDestinationRule(c, doc.spec);
          break;
        case KIND_META_ROUTER: {
          checkMetaRouter(c, doc.spec);
          const filters = doc.annotations?.[ANNOTATION_META_FILTERS];
          if (filters !== undefined) {
            try {
              parseMetaFilterAnnotation(filters);
            } catch (err) {
              c.error(`metadata.annotations.${ANNOTATION_META_FILTERS}`, (err as Error).message);
            }
          }
          break;
        }
        case KIND_APPLICATION_PROTOCOL:
          checkApplicationProtocol(c, doc.spec);
          break;
        case KIND_REDIS_SERVICE:
          checkRedisService(c, doc.spec);
          break;
        case KIND_REDIS_DESTINATION:
          checkRedisDestination(c, doc.spec);
          break;
        case KIND_PEER_AUTHENTICATION:
          checkPeerAuthentication(c, doc.spec);
          break;
        case KIND_DUBBO_AUTHORIZATION_POLICY:
          checkDubboAuthorizationPolicy(c, doc.spec);
          break;
        case KIND_META_AUTHORIZATION_POLICY:
          checkMetaAuthorizationPolicy(c, doc.spec);
          break;
      }
    } else if (doc.kind === KIND_VIRTUAL_SERVICE) {
      // checkGrpc (below) validates one for a gRPC service, and warns about any other that it is ignored.
    } else if (UNTRANSLATED_KINDS.includes(doc.kind)) {
      c.warn('', `${doc.kind} is not translated yet: ignored`);
    } else {
      c.warn('kind', `unknown kind "${doc.kind}"${doc.apiVersion ? ` (${doc.apiVersion})` : ''}: ignored`);
    }
  }
  const model = new ConfigModel(docs);
  const refOptions = { bind: options.bind ?? DEFAULT_BIND, knownCodecs: options.knownCodecs };
  checkReferences(model, refOptions, errors, warnings);
  checkRedisReferences(model, refOptions, errors, warnings);
  checkGrpc(model, errors, warnings);
  checkSecurityReferences(model, errors, warnings);
  const files = docs.map((d) => d.file);
  return { errors: sortByDocument(files, errors), warnings: sortByDocument(files, warnings) };
}
