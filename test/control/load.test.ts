import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile, loadDocuments } from '../../control/index.js';
import { fixtureDir, fixtureFile } from './helpers.js';

const cm = (name: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n`;

describe('loadDocuments', () => {
  it('reads every document of a multi-document file, counting empty documents in the index', async () => {
    const file = await fixtureFile(`# a comment before the first separator
---
${cm('zero')}---
---
# only a comment
---
${cm('three').replace('name: three', 'name: three\n  namespace: ns1')}spec:
  x: 1
`);
    const { docs: loaded, errors } = await loadDocuments([file]);
    expect(errors).toEqual([]);
    expect(loaded).toEqual([
      { file, index: 0, apiVersion: 'v1', kind: 'ConfigMap', name: 'zero', spec: undefined },
      { file, index: 3, apiVersion: 'v1', kind: 'ConfigMap', name: 'three', namespace: 'ns1', spec: { x: 1 } },
    ]);
  });

  it('walks directories recursively in sorted order, keeping .yaml/.yml/.json and skipping hidden entries', async () => {
    const dir = await fixtureDir({
      'b.yaml': cm('b'),
      'a.yml': cm('a'),
      'sub/c.json': JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' } }),
      'sub/deeper/d.YAML': cm('d'),
      'notes.txt': cm('ignored-txt'),
      '.hidden/e.yaml': cm('ignored-hidden'),
      '.f.yaml': cm('ignored-dotfile'),
    });
    const { docs: loaded, errors } = await loadDocuments([dir]);
    expect(errors).toEqual([]);
    expect(loaded.map((d) => [d.file, d.name])).toEqual([
      [join(dir, 'a.yml'), 'a'],
      [join(dir, 'b.yaml'), 'b'],
      [join(dir, 'sub/c.json'), 'c'],
      [join(dir, 'sub/deeper/d.YAML'), 'd'],
    ]);
  });

  it('keeps the order of the paths given and reads a file reached twice once', async () => {
    const dir = await fixtureDir({ 'a.yaml': cm('a'), 'z.yaml': cm('z') });
    const { docs: loaded } = await loadDocuments([join(dir, 'z.yaml'), dir]);
    expect(loaded.map((d) => d.name)).toEqual(['z', 'a']);
  });

  it('reads a file named explicitly whatever its extension', async () => {
    const file = await fixtureFile(cm('txt'), 'config.txt');
    const { docs: loaded } = await loadDocuments([file]);
    expect(loaded.map((d) => d.name)).toEqual(['txt']);
  });

  it('reports a YAML syntax error with the file, the document index and the line, and still loads the other documents', async () => {
    const file = await fixtureFile(`${cm('ok')}---
kind: ServiceEntry
spec:
  hosts: [a, b
---
${cm('after')}`);
    const { docs: loaded, errors } = await loadDocuments([file]);
    expect(loaded.map((d) => [d.index, d.name])).toEqual([
      [0, 'ok'],
      [2, 'after'],
    ]);
    expect(errors.map((e) => e.format())).toEqual([
      `${file}:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ] at line 9, column 1`,
    ]);
  });

  it('reports duplicate keys and documents that are not mappings', async () => {
    const file = await fixtureFile(`a: 1\na: 2\n---\n- just\n- a list\n---\nplain scalar\n`);
    const { errors } = await loadDocuments([file]);
    expect(errors.map((e) => e.format())).toEqual([
      `${file}:0: YAML syntax error: Map keys must be unique at line 2, column 1`,
      `${file}:1: a document must be a mapping with apiVersion, kind, metadata and spec (got a list)`,
      `${file}:2: a document must be a mapping with apiVersion, kind, metadata and spec (got string)`,
    ]);
  });

  it('reports a path that does not exist', async () => {
    const dir = await fixtureDir({});
    const missing = join(dir, 'nope.yaml');
    const { errors } = await loadDocuments([missing]);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.format()).toMatch(new RegExp(`^${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read: ENOENT`));
    expect(errors[0]!.index).toBe(-1);
  });

  it('compile blocks the snapshot on a syntax error, reporting it in file order with validation errors', async () => {
    const dir = await fixtureDir({
      'a.yaml': `apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {hosts: []}\n`,
      'b.yaml': `${cm('ok')}---\nfoo: [\n`,
    });
    const result = await compile([dir]);
    expect(result.snapshot).toBeUndefined();
    expect(result.errors.map((e) => e.format())).toEqual([
      `${join(dir, 'a.yaml')}:0: ServiceEntry/x: spec.hosts: must list at least one host`,
      `${join(dir, 'a.yaml')}:0: ServiceEntry/x: spec.ports: required`,
      `${join(dir, 'b.yaml')}:1: YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ] at line 7, column 1`,
    ]);
  });
});
