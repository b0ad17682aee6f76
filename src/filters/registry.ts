import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Counter, type Registry } from 'prom-client';
import type { FilterDeps, MetaFilterFactory } from './filter.js';

/**
 * MetaProtocol filters by config name. The built-in filters join in `filters/index.ts`; user filters join with
 * `--filter MODULE`, a module whose default export (or `filters` export) is a factory or a list of factories.
 */
export class FilterRegistry {
  private readonly byName = new Map<string, MetaFilterFactory>();

  register(factory: MetaFilterFactory): void {
    if (!factory || typeof factory.name !== 'string' || factory.name === '' || typeof factory.create !== 'function') {
      throw new TypeError('a filter factory needs a string `name` and a `create(config, deps)` function');
    }
    const existing = this.byName.get(factory.name);
    if (existing && existing !== factory) throw new Error(`filter ${factory.name} is already registered`);
    this.byName.set(factory.name, factory);
  }

  get(name: string): MetaFilterFactory | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** Loads a user filter module (a path or a package name) and registers what it exports. */
  async load(specifier: string): Promise<MetaFilterFactory[]> {
    const isPath = specifier.startsWith('.') || specifier.startsWith('/') || existsSync(resolve(specifier));
    const url = isPath ? pathToFileURL(resolve(specifier)).href : specifier;
    const mod = (await import(url)) as { default?: unknown; filters?: unknown };
    const exported = mod.filters ?? mod.default;
    const list = (Array.isArray(exported) ? exported : [exported]) as MetaFilterFactory[];
    if (list.length === 0 || list.some((f) => !f)) {
      throw new Error(`filter module ${specifier} exports no filter factory (export default a factory or a list)`);
    }
    for (const f of list) this.register(f);
    return list;
  }
}

/** The deps every factory of one proxy gets: its metrics registry, and counters created once in it. */
export function filterDeps(registry: Registry): FilterDeps {
  return {
    registry,
    counter<L extends string>(spec: { name: string; help: string; labelNames: readonly L[] }): Counter<L> {
      const existing = registry.getSingleMetric(spec.name);
      if (existing) {
        if (!(existing instanceof Counter)) throw new Error(`metric ${spec.name} is registered, and is not a counter`);
        return existing as Counter<L>;
      }
      return new Counter({ name: spec.name, help: spec.help, labelNames: spec.labelNames, registers: [registry] });
    },
  };
}
