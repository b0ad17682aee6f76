/**
 * A snapshot's version: the first 12 hex digits of the SHA-256 of its resources as canonical JSON (object keys
 * sorted), so the same configuration always gets the same version, whatever order a YAML map listed its keys in.
 */

import { createHash } from 'node:crypto';

export function contentVersion(content: unknown): string {
  return createHash('sha256').update(canonicalJson(content)).digest('hex').slice(0, 12);
}

/** JSON with every object's keys in sorted order (undefined members dropped, as JSON.stringify does). */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(value).sort()) {
    const v = (value as Record<string, unknown>)[key];
    if (v !== undefined) out[key] = sortKeys(v);
  }
  return out;
}
