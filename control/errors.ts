/**
 * Configuration problems, each pinned to one document and one field of it.
 *
 * `format()` gives the one-line form the CLI prints:
 *
 *     file:index: Kind/name: field.path: what is wrong
 *
 * `index` is the 0-based position of the document within its file (empty documents count); it is -1 for a
 * problem with a whole file (unreadable, not found). Parts that are unknown are left out: a YAML syntax error has
 * no kind, name or path (`file:index: message`).
 */

/** Where a problem is: enough of a loaded document to name it. */
export interface DocumentRef {
  file: string;
  index: number;
  kind: string;
  name: string;
}

export type Severity = 'error' | 'warning';

export class ConfigError {
  readonly file: string;
  readonly index: number;
  readonly kind: string;
  readonly name: string;
  /** Dotted field path from the document root, e.g. `spec.routes[1].route[0].destination.subset`; '' for none. */
  readonly path: string;
  readonly message: string;

  constructor(init: { file: string; index: number; kind?: string; name?: string; path?: string; message: string }) {
    this.file = init.file;
    this.index = init.index;
    this.kind = init.kind ?? '';
    this.name = init.name ?? '';
    this.path = init.path ?? '';
    this.message = init.message;
  }

  /** The problem `message` at field `path` of document `doc`. */
  static at(doc: DocumentRef, path: string, message: string): ConfigError {
    return new ConfigError({ file: doc.file, index: doc.index, kind: doc.kind, name: doc.name, path, message });
  }

  format(): string {
    const parts = [this.index >= 0 ? `${this.file}:${this.index}` : this.file];
    if (this.kind || this.name) parts.push(`${this.kind || '?'}/${this.name || '?'}`);
    if (this.path) parts.push(this.path);
    parts.push(this.message);
    return parts.join(': ');
  }

  toString(): string {
    return this.format();
  }

  toJSON(): { file: string; index: number; kind: string; name: string; path: string; message: string } {
    return { file: this.file, index: this.index, kind: this.kind, name: this.name, path: this.path, message: this.message };
  }
}

/** Formats a list of problems one per line (for CLI output and thrown errors). */
export function formatErrors(errors: readonly ConfigError[]): string {
  return errors.map((e) => e.format()).join('\n');
}

/**
 * `problems` stably sorted by where they are: files in the order of `files` (others last, in their first-seen
 * order), then document index within the file. Problems about one document keep the order they were found in.
 */
export function sortByDocument(files: readonly string[], problems: readonly ConfigError[]): ConfigError[] {
  const order = new Map<string, number>();
  for (const f of files) if (!order.has(f)) order.set(f, order.size);
  for (const p of problems) if (!order.has(p.file)) order.set(p.file, order.size);
  return problems
    .map((e, i) => ({ e, i }))
    .sort((a, b) => order.get(a.e.file)! - order.get(b.e.file)! || a.e.index - b.e.index || a.i - b.i)
    .map(({ e }) => e);
}
