/**
 * Field checks for one document: each helper looks at one value from the YAML, reports what is wrong with it at
 * its field path, and returns the value when it has the right type (so callers go on checking what they can).
 */

import { isIP } from 'node:net';
import { durationProblem } from '../src/duration.js';
import { ConfigError, type DocumentRef } from './errors.js';

export type Mapping = Record<string, unknown>;

export function isMapping(v: unknown): v is Mapping {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `base.key`, or `base["key"]` for keys that are not plain identifiers (labels like `app.kubernetes.io/name`). */
export function fieldPath(base: string, key: string): string {
  const plain = /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key);
  const tail = plain ? key : `[${JSON.stringify(key)}]`;
  if (!base) return tail;
  return plain ? `${base}.${tail}` : `${base}${tail}`;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `string ${JSON.stringify(v)}`;
  return `${typeof v} ${String(v)}`;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** Kubernetes' DNS-1123 label: port names, subset names. */
export function isDns1123Label(s: string): boolean {
  return s.length <= 63 && DNS1123_LABEL.test(s);
}

/** A fully qualified domain name as Aeraki/Istio check it (labels of letters, digits and '-'; TLD not numeric). */
export function fqdnProblem(name: string): string | undefined {
  if (name === '') return 'must not be empty';
  if (name.length > 255) return `domain name ${JSON.stringify(name)} is too long (max 255)`;
  const labels = name.split('.');
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) {
    return `domain name ${JSON.stringify(name)} is invalid: the top-level domain cannot be all-numeric`;
  }
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i]!;
    if (i === labels.length - 1 && label === '' && i > 0) break; // a trailing dot: "example.com."
    if (!/^[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?$/.test(label) || label.length > 63) {
      return `domain name ${JSON.stringify(name)} is invalid (label ${JSON.stringify(label)})`;
    }
  }
  return undefined;
}

/** A ServiceEntry host: an FQDN, optionally with a leading `*.` wildcard, or an IP address. */
export function hostProblem(host: string): string | undefined {
  if (host === '') return 'must not be empty';
  if (host === '*') return 'the full wildcard "*" is not allowed as a ServiceEntry host';
  if (isIP(host)) return undefined;
  const bare = host.startsWith('*.') ? host.slice(2) : host;
  if (bare.includes('*')) return `host ${JSON.stringify(host)} has an invalid wildcard (only a leading "*." is allowed)`;
  return fqdnProblem(bare);
}

export interface IntOptions {
  min?: number;
  max?: number;
  required?: boolean;
}

/** Reports problems with one document's fields. */
export class Checker {
  constructor(
    readonly doc: DocumentRef,
    readonly errors: ConfigError[],
    readonly warnings: ConfigError[],
  ) {}

  error(path: string, message: string): void {
    this.errors.push(ConfigError.at(this.doc, path, message));
  }

  warn(path: string, message: string): void {
    this.warnings.push(ConfigError.at(this.doc, path, message));
  }

  /** A mapping, or undefined (reported when present with another type, or missing and required). */
  mapping(v: unknown, path: string, required = false): Mapping | undefined {
    if (v === undefined || v === null) {
      if (required) this.error(path, 'required');
      return undefined;
    }
    if (!isMapping(v)) {
      this.error(path, `must be a mapping (got ${describe(v)})`);
      return undefined;
    }
    return v;
  }

  list(v: unknown, path: string, required = false): unknown[] | undefined {
    if (v === undefined || v === null) {
      if (required) this.error(path, 'required');
      return undefined;
    }
    if (!Array.isArray(v)) {
      this.error(path, `must be a list (got ${describe(v)})`);
      return undefined;
    }
    return v;
  }

  /** A string; `required` also rejects ''. */
  string(v: unknown, path: string, required = false): string | undefined {
    if (v === undefined || v === null) {
      if (required) this.error(path, 'required');
      return undefined;
    }
    if (typeof v !== 'string') {
      this.error(path, `must be a string (got ${describe(v)}${typeof v === 'number' || typeof v === 'boolean' ? ': quote it' : ''})`);
      return undefined;
    }
    if (required && v === '') {
      this.error(path, 'must not be empty');
      return undefined;
    }
    return v;
  }

  integer(v: unknown, path: string, opts: IntOptions = {}): number | undefined {
    if (v === undefined || v === null) {
      if (opts.required) this.error(path, 'required');
      return undefined;
    }
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      this.error(path, `must be an integer${range(opts)} (got ${describe(v)})`);
      return undefined;
    }
    if ((opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
      this.error(path, `must be an integer${range(opts)} (got ${v})`);
      return undefined;
    }
    return v;
  }

  number(v: unknown, path: string, opts: IntOptions = {}): number | undefined {
    if (v === undefined || v === null) {
      if (opts.required) this.error(path, 'required');
      return undefined;
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      this.error(path, `must be a number${range(opts)} (got ${describe(v)})`);
      return undefined;
    }
    if ((opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
      this.error(path, `must be a number${range(opts)} (got ${v})`);
      return undefined;
    }
    return v;
  }

  boolean(v: unknown, path: string): boolean | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') {
      this.error(path, `must be true or false (got ${describe(v)})`);
      return undefined;
    }
    return v;
  }

  /** A map of string to string (Kubernetes labels). */
  labels(v: unknown, path: string): Record<string, string> | undefined {
    const m = this.mapping(v, path);
    if (!m) return undefined;
    let ok = true;
    for (const [key, value] of Object.entries(m)) {
      if (key === '') {
        this.error(path, 'a label name must not be empty');
        ok = false;
      } else if (typeof value !== 'string') {
        this.error(fieldPath(path, key), `label values must be strings (got ${describe(value)}: quote it)`);
        ok = false;
      }
    }
    return ok ? (m as Record<string, string>) : undefined;
  }

  /** A duration string (`1s`, `500ms`, `1.5s`, `2m`, `1h`), at least 1ms (or `minNs`: 0n allows `0s`). */
  duration(v: unknown, path: string, required = false, minNs?: bigint): string | undefined {
    if (v === undefined || v === null) {
      if (required) this.error(path, 'required');
      return undefined;
    }
    const problem = durationProblem(v, minNs);
    if (problem) {
      this.error(path, problem);
      return undefined;
    }
    return v as string;
  }

  /** Istio's `Percent` message: `{value: 0..100}`. */
  percent(v: unknown, path: string): number | undefined {
    const m = this.mapping(v, path);
    if (!m) return undefined;
    return this.number(m.value, fieldPath(path, 'value'), { min: 0, max: 100 });
  }
}

function range(opts: IntOptions): string {
  if (opts.min !== undefined && opts.max !== undefined) return ` from ${opts.min} to ${opts.max}`;
  if (opts.min !== undefined) return ` >= ${opts.min}`;
  if (opts.max !== undefined) return ` <= ${opts.max}`;
  return '';
}
