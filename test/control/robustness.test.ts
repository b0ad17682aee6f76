import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { checkDocuments, translate, type CrdDocument } from '../../control/index.js';
import { DEMO_DR, DEMO_MR, DEMO_SE } from './helpers.js';

/** Small deterministic PRNG (mulberry32). */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ODD_VALUES: unknown[] = [null, undefined, 0, -1, 1.5, 70000, '', 'x', '__proto__', true, [], {}, [null], { exact: 1 }, 'v3', '1s'];

/** Replaces one random node of `value` (a deep copy) with an odd value. */
function mutate(value: unknown, random: () => number): unknown {
  const copy = structuredClone(value);
  const nodes: Array<{ parent: Record<string, unknown> | unknown[]; key: string | number }> = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach((x, i) => (nodes.push({ parent: v, key: i }), walk(x)));
    else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) nodes.push({ parent: v as Record<string, unknown>, key: k }), walk(x);
  };
  walk(copy);
  const target = nodes[Math.floor(random() * nodes.length)]!;
  (target.parent as Record<string | number, unknown>)[target.key] = ODD_VALUES[Math.floor(random() * ODD_VALUES.length)];
  return copy;
}

describe('robustness', () => {
  it('validation never throws on malformed specs, and translation never throws on what validation accepts', () => {
    const withLimit = `${DEMO_MR}  localRateLimit:\n    tokenBucket: {maxTokens: 5, tokensPerFill: 5, fillInterval: 1s}\n    conditions:\n      - match: {attributes: {method: {prefix: say}}}\n        tokenBucket: {maxTokens: 1, tokensPerFill: 1, fillInterval: 1s}\n`;
    const sources = [DEMO_SE, DEMO_DR, withLimit].map((y) => parse(y) as Record<string, unknown>);
    const random = rng(42);
    let accepted = 0;
    for (let i = 0; i < 600; i++) {
      const docs: CrdDocument[] = sources.map((src, index) => {
        const spec = random() < 0.5 ? mutate(src.spec, random) : structuredClone(src.spec);
        const meta = src.metadata as { name: string };
        return { file: 'fuzz.yaml', index, apiVersion: src.apiVersion as string, kind: src.kind as string, name: meta.name, spec };
      });
      const { errors } = checkDocuments(docs);
      if (errors.length === 0) {
        accepted++;
        const snap = translate(docs);
        expect(snap.version).toMatch(/^[0-9a-f]{12}$/);
      }
    }
    // Both paths ran: some mutations are rejected, unmutated sets are accepted.
    expect(accepted).toBeGreaterThan(50);
    expect(accepted).toBeLessThan(600);
  });
});
