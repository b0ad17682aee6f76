/** Load, validate and translate in one call: what `waypost translate` and the proxy's file watcher run. */

import { sortByDocument, type ConfigError } from './errors.js';
import { loadDocuments } from './load.js';
import { translate, type TranslateOptions } from './translate.js';
import { checkDocuments } from './validate.js';
import type { CrdDocument } from './types.js';
import type { WaypostSnapshot } from './xds-ext.js';

export interface CompileOptions extends TranslateOptions {
  /** Documents from other sources (Kubernetes, a Dubbo registry), validated and translated with the files'. */
  extraDocuments?: readonly CrdDocument[];
}

export interface CompileResult {
  /** Present only when there are no errors. */
  snapshot?: WaypostSnapshot;
  errors: ConfigError[];
  /** Formatted like errors (`file:index: Kind/name: path: message`); they never block the snapshot. */
  warnings: string[];
  /** Everything loaded (also when there are errors). */
  docs: CrdDocument[];
}

export async function compile(paths: string[], options: CompileOptions = {}): Promise<CompileResult> {
  const loaded = paths.length > 0 ? await loadDocuments(paths) : { docs: [], errors: [], files: [] };
  const docs = options.extraDocuments?.length ? [...loaded.docs, ...options.extraDocuments] : loaded.docs;
  const checked = checkDocuments(docs, options);
  const errors = sortByDocument(loaded.files, [...loaded.errors, ...checked.errors]);
  const warnings = checked.warnings.map((w) => w.format());
  if (errors.length > 0) return { errors, warnings, docs };
  return { snapshot: translate(docs, options), errors, warnings, docs };
}
