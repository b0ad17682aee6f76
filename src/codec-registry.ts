import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import type { CodecFactory } from './codec.js';

/**
 * Codecs by registered name and by protocol name. Built-in codecs join in `builtin-codecs.ts`; user codecs join
 * with `--codec MODULE`, a module whose default export (or `codecs` export) is a factory or a list of factories.
 */
export class CodecRegistry {
  private readonly byName = new Map<string, CodecFactory>();
  private readonly byProtocol = new Map<string, CodecFactory>();

  register(factory: CodecFactory): void {
    if (!factory || typeof factory.name !== 'string' || typeof factory.create !== 'function') {
      throw new TypeError('a codec factory needs a string `name`, a `protocol` and a `create(options)` function');
    }
    if (!/^[a-z0-9][a-z0-9_-]*$/.test(factory.protocol)) {
      throw new TypeError(`codec ${factory.name}: protocol name "${factory.protocol}" must match [a-z0-9][a-z0-9_-]*`);
    }
    const existing = this.byName.get(factory.name);
    if (existing && existing !== factory) throw new Error(`codec ${factory.name} is already registered`);
    this.byName.set(factory.name, factory);
    this.byProtocol.set(factory.protocol, factory);
  }

  get(name: string): CodecFactory | undefined {
    return this.byName.get(name);
  }

  forProtocol(protocol: string): CodecFactory | undefined {
    return this.byProtocol.get(protocol.toLowerCase());
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  protocols(): string[] {
    return [...this.byProtocol.keys()];
  }

  /** Loads a user codec module (a path or a package name) and registers what it exports. */
  async load(specifier: string): Promise<CodecFactory[]> {
    // A path (relative or absolute, with or without ./) when such a file exists; otherwise a package name.
    const isPath = specifier.startsWith('.') || specifier.startsWith('/') || existsSync(resolve(specifier));
    const url = isPath ? pathToFileURL(resolve(specifier)).href : specifier;
    const mod = (await import(url)) as { default?: unknown; codecs?: unknown };
    const exported = mod.codecs ?? mod.default;
    const list = (Array.isArray(exported) ? exported : [exported]) as CodecFactory[];
    if (list.length === 0 || list.some((f) => !f)) {
      throw new Error(`codec module ${specifier} exports no codec factory (export default a factory or a list)`);
    }
    for (const f of list) this.register(f);
    return list;
  }
}
