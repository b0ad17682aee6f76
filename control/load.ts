/**
 * Reading CRD documents from files and directories: multi-document YAML (`---`), and JSON (a JSON file is one
 * YAML document). Directories are walked recursively for `.yaml`, `.yml` and `.json` files, in sorted order so the
 * result does not depend on the file system; hidden entries (`.git`, …) are skipped. Paths are taken in the order
 * given, and a file reached twice is read once.
 */

import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ConfigError } from './errors.js';
import { stringAnnotations, type CrdDocument } from './types.js';

const CONFIG_EXTENSIONS = new Set(['.yaml', '.yml', '.json']);

export interface LoadResult {
  docs: CrdDocument[];
  errors: ConfigError[];
  /** Every file read (or that failed to read), in load order. */
  files: string[];
}

/** Loads every document under `paths` (files or directories). Problems are returned, never thrown. */
export async function loadDocuments(paths: string[]): Promise<LoadResult> {
  const docs: CrdDocument[] = [];
  const errors: ConfigError[] = [];
  const files: string[] = [];
  const seen = new Set<string>();
  for (const path of paths) {
    for (const file of await listFiles(path, errors)) {
      let real: string;
      try {
        real = await realpath(file);
      } catch {
        real = file;
      }
      if (seen.has(real)) continue;
      seen.add(real);
      files.push(file);
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        errors.push(new ConfigError({ file, index: -1, message: `cannot read file: ${errorMessage(err)}` }));
        continue;
      }
      const parsed = parseDocuments(text, file);
      docs.push(...parsed.docs);
      errors.push(...parsed.errors);
    }
  }
  return { docs, errors, files };
}

/** The documents in one file's text. `file` is only used to name them. */
export function parseDocuments(text: string, file: string): LoadResult {
  const docs: CrdDocument[] = [];
  const errors: ConfigError[] = [];
  // `merge: true` for `<<:` keys, which Kubernetes' YAML 1.1 parser accepts. Duplicate keys stay errors.
  parseAllDocuments(text, { merge: true, prettyErrors: true }).forEach((doc, index) => {
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        errors.push(new ConfigError({ file, index, message: `YAML syntax error: ${firstLine(err.message)}` }));
      }
      return;
    }
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (err) {
      errors.push(new ConfigError({ file, index, message: `YAML error: ${firstLine(errorMessage(err))}` }));
      return;
    }
    if (value === null || value === undefined) return; // an empty document
    if (typeof value !== 'object' || Array.isArray(value)) {
      errors.push(
        new ConfigError({
          file,
          index,
          message: `a document must be a mapping with apiVersion, kind, metadata and spec (got ${Array.isArray(value) ? 'a list' : typeof value})`,
        }),
      );
      return;
    }
    const obj = value as Record<string, unknown>;
    const metadata = isMapping(obj.metadata) ? obj.metadata : {};
    const loaded: CrdDocument = {
      file,
      index,
      apiVersion: typeof obj.apiVersion === 'string' ? obj.apiVersion : '',
      kind: typeof obj.kind === 'string' ? obj.kind : '',
      name: typeof metadata.name === 'string' ? metadata.name : '',
      spec: obj.spec,
    };
    if (typeof metadata.namespace === 'string' && metadata.namespace !== '') loaded.namespace = metadata.namespace;
    const annotations = stringAnnotations(metadata.annotations);
    if (annotations) loaded.annotations = annotations;
    docs.push(loaded);
  });
  return { docs, errors, files: [file] };
}

async function listFiles(path: string, errors: ConfigError[]): Promise<string[]> {
  let info;
  try {
    info = await stat(path);
  } catch (err) {
    errors.push(new ConfigError({ file: path, index: -1, message: `cannot read: ${errorMessage(err)}` }));
    return [];
  }
  if (!info.isDirectory()) return [path]; // a file named explicitly is read whatever its extension
  const out: string[] = [];
  await walk(path, out, new Set(), errors);
  return out;
}

async function walk(dir: string, out: string[], visiting: Set<string>, errors: ConfigError[]): Promise<void> {
  let real: string;
  try {
    real = await realpath(dir);
  } catch {
    real = dir;
  }
  if (visiting.has(real)) return; // a symlink loop
  visiting.add(real);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    errors.push(new ConfigError({ file: dir, index: -1, message: `cannot read directory: ${errorMessage(err)}` }));
    return;
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const name of names) {
    if (name.startsWith('.')) continue;
    const full = join(dir, name);
    let info;
    try {
      info = await stat(full);
    } catch {
      continue; // a dangling symlink
    }
    if (info.isDirectory()) await walk(full, out, visiting, errors);
    else if (info.isFile() && CONFIG_EXTENSIONS.has(extname(name).toLowerCase())) out.push(full);
  }
  visiting.delete(real);
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function firstLine(message: string): string {
  return message.split('\n')[0]!.replace(/:\s*$/, '');
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
