/** CRD YAML for end-to-end tests: a MetaRouter built from a compact route list. */
import YAML from 'yaml';

export interface RouteSpec<S extends string = string> {
  name: string;
  attributes?: Record<string, Record<string, string>>;
  to: Array<{ subset: S; weight?: number }>;
  requestMutation?: { key: string; value: string }[];
  responseMutation?: { key: string; value: string }[];
  /** Other route fields as written in the YAML (`timeout`, `fault`, `retries`…). */
  extra?: Record<string, unknown>;
}

/** A MetaRouter `name` for `host`, one route per spec, in order (first match wins); `specExtra` adds spec fields. */
export function metaRouterYaml(name: string, host: string, routes: RouteSpec[], specExtra: Record<string, unknown> = {}): string {
  return YAML.stringify({
    apiVersion: 'metaprotocol.aeraki.io/v1alpha1',
    kind: 'MetaRouter',
    metadata: { name, namespace: 'default' },
    spec: {
      hosts: [host],
      routes: routes.map((r) => ({
        name: r.name,
        ...(r.attributes ? { match: { attributes: r.attributes } } : {}),
        route: r.to.map((d) => ({ destination: { host, subset: d.subset }, ...(d.weight !== undefined ? { weight: d.weight } : {}) })),
        ...(r.requestMutation ? { requestMutation: r.requestMutation } : {}),
        ...(r.responseMutation ? { responseMutation: r.responseMutation } : {}),
        ...(r.extra ?? {}),
      })),
      ...specExtra,
    },
  });
}
