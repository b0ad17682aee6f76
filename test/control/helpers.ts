/** Temp-file fixtures for the control/ tests. */

import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll } from 'vitest';
import { compile, type CompileOptions, type CompileResult } from '../../control/index.js';

const dirs: string[] = [];

afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** A fresh temp directory holding `files` (relative path → content). */
export async function fixtureDir(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'waypost-control-'));
  dirs.push(dir);
  for (const [rel, content] of Object.entries(files)) {
    const full = join(dir, rel);
    await mkdir(dirname(full), { recursive: true });
    await writeFile(full, content);
  }
  return dir;
}

/** Writes `yaml` to a temp file and returns its path. */
export async function fixtureFile(yaml: string, name = 'config.yaml'): Promise<string> {
  const dir = await fixtureDir({ [name]: yaml });
  return join(dir, name);
}

/** Compiles one YAML text from a temp file. */
export async function compileYaml(yaml: string, options: CompileOptions = {}): Promise<CompileResult & { file: string }> {
  const file = await fixtureFile(yaml);
  return { ...(await compile([file], options)), file };
}

/** Joins YAML documents into one multi-document text. */
export function docs(...parts: string[]): string {
  return parts.map((p) => `---\n${p.trim()}\n`).join('');
}

export const HOST = 'org.apache.dubbo.samples.basic.api.demoservice';

/** The Dubbo demo ServiceEntry: port 20880 tcp-metaprotocol-dubbo, endpoints labelled v1 / v2. */
export const DEMO_SE = `
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: dubbo-demoservice
  namespace: meta-dubbo
spec:
  hosts:
    - ${HOST}
  ports:
    - number: 20880
      name: tcp-metaprotocol-dubbo
      protocol: TCP
  resolution: STATIC
  endpoints:
    - address: 10.0.0.1
      ports:
        tcp-metaprotocol-dubbo: 20881
      labels:
        version: v1
    - address: 10.0.0.2
      labels:
        version: v2
      weight: 3
`;

export const DEMO_DR = `
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: dubbo-demoservice
  namespace: meta-dubbo
spec:
  host: ${HOST}
  subsets:
    - name: v1
      labels:
        version: v1
    - name: v2
      labels:
        version: v2
`;

export const DEMO_MR = `
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata:
  name: demo-route
  namespace: meta-dubbo
spec:
  hosts:
    - ${HOST}
  routes:
    - name: jason
      match:
        attributes:
          user:
            exact: jason
      route:
        - destination:
            host: ${HOST}
            subset: v2
    - name: split
      route:
        - destination:
            host: ${HOST}
            subset: v1
          weight: 20
        - destination:
            host: ${HOST}
            subset: v2
          weight: 80
`;

/** A MetaRouter on the demo host with the given `routes:` block (indented under spec). */
export function metaRouter(routesYaml: string, name = 'mr'): string {
  return `
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata:
  name: ${name}
spec:
  hosts: [${HOST}]
${routesYaml.replace(/^\n/, '')}`;
}
