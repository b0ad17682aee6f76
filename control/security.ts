/**
 * Security config (docs/security.md): validation and translation of
 *
 * - DestinationRule `trafficPolicy.tls` (Istio's ClientTLSSettings, also per subset and in `portLevelSettings`) →
 *   the cluster's `transport_socket` (Envoy UpstreamTlsContext). ISTIO_MUTUAL uses Istio's SDS secret names
 *   `default` / `ROOTCA`, which the proxy reads from its `--mesh-certs` directory.
 * - PeerAuthentication (security.istio.io) → the listener's TLS filter chain (DownstreamTlsContext with the mesh
 *   certificate; STRICT: TLS only; PERMISSIVE: a TLS and a plaintext chain).
 * - DubboAuthorizationPolicy (dubbo.aeraki.io) and MetaAuthorizationPolicy (metaprotocol.waypost.io) → the
 *   listener's `waypost.meta_protocol.filters.authz` filter, first in the chain.
 *
 * Scope, as Istio: a policy applies to the services of its namespace (`metadata.namespace`, `default` when none);
 * one in the root namespace `istio-system` applies to every namespace. A selector's `matchLabels` select a service
 * when its workloads carry them (the ServiceEntry's `workloadSelector.labels`, else the labels every endpoint has).
 */

import { fieldPath, isMapping, type Checker, type Mapping } from './checker.js';
import type { ConfigError } from './errors.js';
import { isTranslated, type ConfigModel, type MetaPort, type Service } from './model.js';
import {
  KIND_DUBBO_AUTHORIZATION_POLICY,
  KIND_META_AUTHORIZATION_POLICY,
  KIND_PEER_AUTHENTICATION,
  MTLS_MODES,
  TLS_MODES,
  type ClientTlsSettings,
  type CrdDocument,
  type MetaAuthorizationPolicySpec,
  type MtlsMode,
  type PeerAuthenticationSpec,
  type TrafficPolicy,
} from './types.js';
import { Checker as CheckerClass } from './checker.js';
import {
  LISTENER_FILTER_TLS_INSPECTOR,
  META_FILTER_AUTHZ,
  SDS_SECRET_DEFAULT,
  SDS_SECRET_ROOTCA,
  TRANSPORT_SOCKET_TLS,
  TYPE_AUTHZ,
  TYPE_DOWNSTREAM_TLS_CONTEXT,
  TYPE_TLS_INSPECTOR,
  TYPE_UPSTREAM_TLS_CONTEXT,
  type AuthorizationConfig,
  type AuthorizationPolicyJson,
  type AuthzOperationJson,
  type AuthzSourceJson,
  type CommonTlsContextJson,
  type Listener,
  type TransportSocket,
} from '../src/xds/resources.js';

/** Istio's default root namespace: policies there apply mesh-wide. */
export const ROOT_NAMESPACE = 'istio-system';
export const DEFAULT_NAMESPACE = 'default';

// ---------------------------------------------------------------- validation

/** Reports keys of `m` that are not in `known` (these specs are strict: a misspelt field must not widen a policy). */
function onlyKnown(c: Checker, m: Mapping, path: string, known: readonly string[], hint = ''): void {
  for (const key of Object.keys(m)) {
    if (!known.includes(key)) c.error(fieldPath(path, key), `unknown field (expected ${known.join(', ')})${hint}`);
  }
}

/** Istio's ClientTLSSettings at `path` (a DestinationRule's trafficPolicy.tls, a subset's, a port's). */
export function checkClientTls(c: Checker, raw: unknown, path: string): void {
  const tls = c.mapping(raw, path);
  if (!tls) return;
  onlyKnown(c, tls, path, ['mode', 'clientCertificate', 'privateKey', 'caCertificates', 'sni', 'subjectAltNames', 'insecureSkipVerify', 'credentialName', 'caCrl']);
  const mode = c.string(tls.mode, `${path}.mode`);
  if (mode !== undefined && !(TLS_MODES as readonly string[]).includes(mode)) {
    c.error(`${path}.mode`, `must be one of ${TLS_MODES.join(', ')} (got "${mode}")`);
  }
  const cert = c.string(tls.clientCertificate, `${path}.clientCertificate`);
  const key = c.string(tls.privateKey, `${path}.privateKey`);
  const ca = c.string(tls.caCertificates, `${path}.caCertificates`);
  c.string(tls.sni, `${path}.sni`);
  const sans = c.list(tls.subjectAltNames, `${path}.subjectAltNames`);
  sans?.forEach((s, i) => c.string(s, `${path}.subjectAltNames[${i}]`, true));
  const skip = c.boolean(tls.insecureSkipVerify, `${path}.insecureSkipVerify`);
  if (tls.credentialName !== undefined) {
    c.error(`${path}.credentialName`, 'is not supported (Waypost reads no Kubernetes secrets): give clientCertificate, privateKey and caCertificates file paths');
  }
  if (tls.caCrl !== undefined) c.warn(`${path}.caCrl`, 'is not supported: ignored');
  for (const [field, v] of [['clientCertificate', cert], ['privateKey', key], ['caCertificates', ca]] as const) {
    if (v === '') c.error(`${path}.${field}`, 'must not be empty');
  }
  if (mode === 'MUTUAL') {
    if (!cert) c.error(`${path}.clientCertificate`, 'required when mode is MUTUAL');
    if (!key) c.error(`${path}.privateKey`, 'required when mode is MUTUAL');
  }
  if (mode === 'ISTIO_MUTUAL') {
    for (const field of ['clientCertificate', 'privateKey', 'caCertificates'] as const) {
      if (tls[field] !== undefined) c.error(`${path}.${field}`, 'cannot be set when mode is ISTIO_MUTUAL (the mesh certificates from --mesh-certs are used)');
    }
  }
  if (mode === 'SIMPLE' && (cert !== undefined || key !== undefined)) {
    c.warn(path, 'clientCertificate and privateKey are only sent with mode MUTUAL: ignored for SIMPLE');
  }
  if ((mode === 'SIMPLE' || mode === 'MUTUAL') && sans && sans.length > 0 && !ca && skip !== true) {
    c.error(`${path}.subjectAltNames`, 'needs caCertificates: a subject alt name check without a trusted CA proves nothing');
  }
}

/** `portLevelSettings` of a trafficPolicy: Waypost translates their `tls`. */
export function checkPortLevelSettings(c: Checker, raw: unknown, path: string): void {
  const list = c.list(raw, path);
  const seen = new Map<number, number>();
  list?.forEach((item, i) => {
    const at = `${path}[${i}]`;
    const m = c.mapping(item, at, true);
    if (!m) return;
    const port = c.mapping(m.port, `${at}.port`, true);
    const number = port ? c.integer(port.number, `${at}.port.number`, { min: 1, max: 65535, required: true }) : undefined;
    if (number !== undefined) {
      const first = seen.get(number);
      if (first !== undefined) c.error(`${at}.port.number`, `port ${number} already has settings in ${path}[${first}]`);
      else seen.set(number, i);
    }
    checkClientTls(c, m.tls, `${at}.tls`);
    for (const key of ['loadBalancer', 'connectionPool', 'outlierDetection']) {
      if (m[key] !== undefined) c.warn(`${at}.${key}`, 'only tls is translated from portLevelSettings: ignored');
    }
  });
}

function checkSelector(c: Checker, raw: unknown, path: string): void {
  const sel = c.mapping(raw, path);
  if (!sel) return;
  onlyKnown(c, sel, path, ['matchLabels']);
  c.labels(sel.matchLabels, `${path}.matchLabels`);
}

export function checkPeerAuthentication(c: Checker, raw: unknown): void {
  const spec = c.mapping(raw ?? {}, 'spec');
  if (!spec) return;
  onlyKnown(c, spec, 'spec', ['selector', 'mtls', 'portLevelMtls']);
  checkSelector(c, spec.selector, 'spec.selector');
  const mode = (v: unknown, path: string): void => {
    const m = c.mapping(v, path);
    if (!m) return;
    onlyKnown(c, m, path, ['mode']);
    const s = c.string(m.mode, `${path}.mode`);
    if (s !== undefined && !(MTLS_MODES as readonly string[]).includes(s)) c.error(`${path}.mode`, `must be one of ${MTLS_MODES.join(', ')} (got "${s}")`);
  };
  mode(spec.mtls, 'spec.mtls');
  const ports = c.mapping(spec.portLevelMtls, 'spec.portLevelMtls');
  if (ports) {
    if (!isMapping(spec.selector)) c.error('spec.portLevelMtls', 'needs a selector (as in Istio, port-level mTLS is for selected workloads)');
    for (const [port, v] of Object.entries(ports)) {
      const n = Number(port);
      if (!/^\d+$/.test(port) || n < 1 || n > 65535) c.error(fieldPath('spec.portLevelMtls', port), 'keys are port numbers from 1 to 65535');
      mode(v, fieldPath('spec.portLevelMtls', port));
    }
  }
}

const PATTERN_HELP = 'exact, "prefix*", "*suffix" or "*"';

function checkPatterns(c: Checker, raw: unknown, path: string): void {
  const list = c.list(raw, path);
  list?.forEach((p, i) => {
    const s = c.string(p, `${path}[${i}]`, true);
    if (s === undefined) return;
    const inner = s.length > 1 ? s.slice(1, -1) : '';
    if (inner.includes('*') || (s.length > 1 && s.startsWith('*') && s.endsWith('*'))) {
      c.error(`${path}[${i}]`, `"${s}" is not a valid pattern: use ${PATTERN_HELP}`);
    }
  });
}

function checkSource(c: Checker, raw: unknown, path: string): void {
  const src = c.mapping(raw, path);
  if (!src) return;
  onlyKnown(c, src, path, ['principals', 'notPrincipals', 'namespaces', 'notNamespaces']);
  for (const key of ['principals', 'notPrincipals', 'namespaces', 'notNamespaces']) checkPatterns(c, src[key], `${path}.${key}`);
}

function checkRules(c: Checker, raw: unknown, checkOperation: (c: Checker, raw: unknown, path: string) => void): void {
  const rules = c.list(raw, 'spec.rules');
  rules?.forEach((r, i) => {
    const at = `spec.rules[${i}]`;
    const rule = c.mapping(r, at, true);
    if (!rule) return;
    onlyKnown(c, rule, at, ['from', 'to']);
    c.list(rule.from, `${at}.from`)?.forEach((f, j) => {
      const from = c.mapping(f, `${at}.from[${j}]`, true);
      if (!from) return;
      onlyKnown(c, from, `${at}.from[${j}]`, ['source']);
      checkSource(c, from.source, `${at}.from[${j}].source`);
    });
    c.list(rule.to, `${at}.to`)?.forEach((t, j) => {
      const to = c.mapping(t, `${at}.to[${j}]`, true);
      if (!to) return;
      onlyKnown(c, to, `${at}.to[${j}]`, ['operation']);
      checkOperation(c, to.operation, `${at}.to[${j}].operation`);
    });
  });
}

function checkAction(c: Checker, v: unknown): void {
  const action = c.string(v, 'spec.action');
  if (action !== undefined && action !== 'ALLOW' && action !== 'DENY') c.error('spec.action', `must be ALLOW or DENY (got "${action}")`);
}

export function checkDubboAuthorizationPolicy(c: Checker, raw: unknown): void {
  const spec = c.mapping(raw ?? {}, 'spec');
  if (!spec) return;
  onlyKnown(c, spec, 'spec', ['action', 'rules'], spec.selector !== undefined ? ' — Aeraki\'s DubboAuthorizationPolicy has no selector: it applies to the Dubbo services of its namespace (use a MetaAuthorizationPolicy to select)' : '');
  checkAction(c, spec.action);
  checkRules(c, spec.rules, (cc, r, path) => {
    const op = cc.mapping(r, path);
    if (!op) return;
    onlyKnown(cc, op, path, ['interfaces', 'notInterfaces', 'methods', 'notMethods']);
    for (const key of ['interfaces', 'notInterfaces', 'methods', 'notMethods']) checkPatterns(cc, op[key], `${path}.${key}`);
  });
}

export function checkMetaAuthorizationPolicy(c: Checker, raw: unknown): void {
  const spec = c.mapping(raw ?? {}, 'spec');
  if (!spec) return;
  onlyKnown(c, spec, 'spec', ['selector', 'action', 'rules']);
  checkSelector(c, spec.selector, 'spec.selector');
  checkAction(c, spec.action);
  checkRules(c, spec.rules, (cc, r, path) => {
    const op = cc.mapping(r, path);
    if (!op) return;
    onlyKnown(cc, op, path, ['attributes', 'notAttributes']);
    for (const key of ['attributes', 'notAttributes']) {
      const attrs = cc.mapping(op[key], `${path}.${key}`);
      if (!attrs) continue;
      for (const [name, patterns] of Object.entries(attrs)) {
        const at = fieldPath(`${path}.${key}`, name);
        if (name === '') cc.error(`${path}.${key}`, 'an attribute name must not be empty');
        if (!Array.isArray(patterns)) cc.error(at, `must be a list of patterns (${PATTERN_HELP})`);
        else checkPatterns(cc, patterns, at);
      }
    }
  });
}

/** Cross-document checks: conflicting namespace-wide PeerAuthentications; policies that apply to nothing (warnings). */
export function checkSecurityReferences(model: ConfigModel, errors: ConfigError[], warnings: ConfigError[]): void {
  const nsWide = new Map<string, CrdDocument>();
  for (const doc of securityDocs(model, KIND_PEER_AUTHENTICATION)) {
    const spec = doc.spec as PeerAuthenticationSpec;
    if (isMapping(spec?.selector)) continue;
    const ns = namespaceOf(doc);
    const first = nsWide.get(ns);
    if (first) {
      new CheckerClass(doc, errors, warnings).error('spec', `namespace "${ns}" already has a namespace-wide PeerAuthentication (${first.kind}/${first.name}, ${first.file}:${first.index}): give this one a selector`);
    } else nsWide.set(ns, doc);
  }
  const services = [...model.services.values()].filter((s) => s.metaPorts.length > 0);
  for (const doc of securityDocs(model, KIND_DUBBO_AUTHORIZATION_POLICY)) {
    const hits = services.filter((s) => inScope(doc, s) && s.metaPorts.some((p) => p.protocol === 'dubbo'));
    if (hits.length === 0) new CheckerClass(doc, errors, warnings).warn('metadata.namespace', `no Dubbo service in namespace "${namespaceOf(doc)}": this policy applies to nothing`);
  }
  for (const doc of securityDocs(model, KIND_META_AUTHORIZATION_POLICY)) {
    const hits = services.filter((s) => inScope(doc, s) && selects((doc.spec as MetaAuthorizationPolicySpec)?.selector, s));
    if (hits.length === 0) new CheckerClass(doc, errors, warnings).warn('spec', 'no MetaProtocol service in its namespace matches: this policy applies to nothing');
  }
}

// ---------------------------------------------------------------- scope

function securityDocs(model: ConfigModel, kind: string): CrdDocument[] {
  return model.docs.filter((d) => d.kind === kind && isTranslated(d) && isMapping(d.spec ?? {}));
}

export function namespaceOf(doc: CrdDocument): string {
  return doc.namespace || DEFAULT_NAMESPACE;
}

function inScope(policy: CrdDocument, svc: Service): boolean {
  const ns = namespaceOf(policy);
  return ns === ROOT_NAMESPACE || ns === namespaceOf(svc.doc);
}

/** The labels of a service's workloads: `workloadSelector.labels`, else those every endpoint carries alike. */
export function serviceLabels(svc: Service): Record<string, string> {
  const ws = svc.spec.workloadSelector?.labels;
  if (isMapping(ws)) return ws as Record<string, string>;
  const eps = Array.isArray(svc.spec.endpoints) ? svc.spec.endpoints.filter(isMapping) : [];
  if (eps.length === 0) return {};
  const first = (isMapping(eps[0]!.labels) ? eps[0]!.labels : {}) as Record<string, string>;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(first)) {
    if (eps.every((e) => isMapping(e.labels) && (e.labels as Record<string, unknown>)[k] === v)) out[k] = v;
  }
  return out;
}

function selects(selector: { matchLabels?: Record<string, string> } | undefined, svc: Service): boolean {
  const want = selector?.matchLabels;
  if (!want || Object.keys(want).length === 0) return true;
  const have = serviceLabels(svc);
  return Object.entries(want).every(([k, v]) => have[k] === v);
}

// ---------------------------------------------------------------- translation: upstream TLS

/**
 * The ClientTLSSettings for `port` under `policy` (already merged for a subset): `portLevelSettings[port].tls`
 * wins over `tls`.
 */
export function tlsFor(policy: TrafficPolicy | undefined, port: number): ClientTlsSettings | undefined {
  const byPort = policy?.portLevelSettings?.find((p) => p?.port?.number === port)?.tls;
  return byPort ?? policy?.tls;
}

/** The cluster transport socket for Istio's ClientTLSSettings (undefined: plaintext). */
export function upstreamTransportSocket(tls: ClientTlsSettings | undefined): TransportSocket | undefined {
  if (!tls || !tls.mode || tls.mode === 'DISABLE') return undefined;
  const sans = (tls.subjectAltNames ?? []).map((exact) => ({ exact }));
  const common: CommonTlsContextJson = {};
  if (tls.mode === 'ISTIO_MUTUAL') {
    common.tls_certificate_sds_secret_configs = [{ name: SDS_SECRET_DEFAULT }];
    common.combined_validation_context = {
      default_validation_context: sans.length ? { match_subject_alt_names: sans } : {},
      validation_context_sds_secret_config: { name: SDS_SECRET_ROOTCA },
    };
  } else {
    if (tls.mode === 'MUTUAL') {
      common.tls_certificates = [{ certificate_chain: { filename: tls.clientCertificate! }, private_key: { filename: tls.privateKey! } }];
    }
    if (tls.caCertificates && tls.insecureSkipVerify !== true) {
      common.validation_context = { trusted_ca: { filename: tls.caCertificates }, ...(sans.length ? { match_subject_alt_names: sans } : {}) };
    }
  }
  return {
    name: TRANSPORT_SOCKET_TLS,
    typed_config: { '@type': TYPE_UPSTREAM_TLS_CONTEXT, common_tls_context: common, ...(tls.sni ? { sni: tls.sni } : {}) },
  };
}

// ---------------------------------------------------------------- translation: listeners

/**
 * The mTLS mode for a service port, Istio's way: a selecting PeerAuthentication of the service's namespace
 * (`portLevelMtls[port]`, then `mtls`), then the namespace-wide one, then the root namespace's; UNSET inherits, and
 * UNSET all the way is PERMISSIVE. Undefined when no PeerAuthentication applies: Waypost then serves plaintext.
 */
export function mtlsModeFor(model: ConfigModel, svc: Service, port: number): Exclude<MtlsMode, 'UNSET'> | undefined {
  const ns = namespaceOf(svc.doc);
  const docs = securityDocs(model, KIND_PEER_AUTHENTICATION);
  const specOf = (d: CrdDocument): PeerAuthenticationSpec => (d.spec ?? {}) as PeerAuthenticationSpec;
  const workload = docs.find((d) => namespaceOf(d) === ns && isMapping(specOf(d).selector) && selects(specOf(d).selector, svc));
  const namespace = docs.find((d) => namespaceOf(d) === ns && !isMapping(specOf(d).selector));
  const mesh = docs.find((d) => namespaceOf(d) === ROOT_NAMESPACE && !isMapping(specOf(d).selector));
  const levels: Array<MtlsMode | undefined> = [];
  if (workload) levels.push(specOf(workload).portLevelMtls?.[String(port)]?.mode, specOf(workload).mtls?.mode);
  if (namespace) levels.push(specOf(namespace).mtls?.mode);
  if (mesh) levels.push(specOf(mesh).mtls?.mode);
  if (!workload && !namespace && !mesh) return undefined;
  for (const m of levels) if (m && m !== 'UNSET') return m;
  return 'PERMISSIVE';
}

/** The mesh DownstreamTlsContext: Istio's workload certificate, client certificates required and checked against the mesh root. */
function meshDownstreamSocket(): TransportSocket {
  return {
    name: TRANSPORT_SOCKET_TLS,
    typed_config: {
      '@type': TYPE_DOWNSTREAM_TLS_CONTEXT,
      common_tls_context: {
        tls_certificate_sds_secret_configs: [{ name: SDS_SECRET_DEFAULT }],
        combined_validation_context: { default_validation_context: {}, validation_context_sds_secret_config: { name: SDS_SECRET_ROOTCA } },
      },
      require_client_certificate: true,
    },
  };
}

/** Applies the port's mTLS mode to a built listener (one plaintext filter chain): TLS chain, and a plaintext one for PERMISSIVE. */
export function applyPeerAuthentication(listener: Listener, mode: Exclude<MtlsMode, 'UNSET'> | undefined): void {
  if (!mode || mode === 'DISABLE') return;
  const plain = listener.filter_chains[0]!;
  const tlsChain = { filter_chain_match: { transport_protocol: 'tls' }, filters: plain.filters, transport_socket: meshDownstreamSocket() };
  listener.listener_filters = [{ name: LISTENER_FILTER_TLS_INSPECTOR, typed_config: { '@type': TYPE_TLS_INSPECTOR } }];
  listener.filter_chains =
    mode === 'STRICT' ? [tlsChain] : [tlsChain, { filter_chain_match: { transport_protocol: 'raw_buffer' }, filters: plain.filters }];
}

// ---------------------------------------------------------------- translation: authorization

function list(v: string[] | undefined): string[] | undefined {
  return Array.isArray(v) && v.length > 0 ? [...v] : undefined;
}

function sourceJson(s: { principals?: string[]; notPrincipals?: string[]; namespaces?: string[]; notNamespaces?: string[] } | undefined): AuthzSourceJson {
  const out: AuthzSourceJson = {};
  const p = list(s?.principals);
  if (p) out.principals = p;
  const np = list(s?.notPrincipals);
  if (np) out.not_principals = np;
  const n = list(s?.namespaces);
  if (n) out.namespaces = n;
  const nn = list(s?.notNamespaces);
  if (nn) out.not_namespaces = nn;
  return out;
}

function attribute(key: string, values: string[] | undefined, notValues: string[] | undefined): NonNullable<AuthzOperationJson['attributes']>[number] | undefined {
  const v = list(values);
  const nv = list(notValues);
  if (!v && !nv) return undefined;
  return { key: key.toLowerCase(), ...(v ? { values: v } : {}), ...(nv ? { not_values: nv } : {}) };
}

function policyName(doc: CrdDocument): string {
  return `${doc.kind}/${namespaceOf(doc)}/${doc.name}`;
}

type AttributeJson = NonNullable<ReturnType<typeof attribute>>;
type PolicyRules<Op> = { action?: string; rules?: Array<{ from?: Array<{ source?: unknown } | null | undefined>; to?: Array<{ operation?: Op } | null | undefined> }> };

/** A policy document as the authz filter reads it; `attributesOf` turns one `to[].operation` into attribute rules. */
function policyJson<Op extends object>(doc: CrdDocument, spec: PolicyRules<Op>, attributesOf: (op: Op) => AttributeJson[]): AuthorizationPolicyJson {
  return {
    name: policyName(doc),
    // ALLOW is the default (and proto3's zero value, which the wire leaves out).
    ...(spec.action === 'DENY' ? { action: 'DENY' as const } : {}),
    rules: (spec.rules ?? []).map((r) => ({
      ...(r.from?.length ? { from: r.from.map((f) => sourceJson(f?.source as Parameters<typeof sourceJson>[0])) } : {}),
      ...(r.to?.length
        ? {
            to: r.to.map((t) => {
              const attributes = attributesOf(t?.operation ?? ({} as Op));
              return attributes.length ? { attributes } : {};
            }),
          }
        : {}),
    })),
  };
}

const defined = (a: AttributeJson | undefined): a is AttributeJson => a !== undefined;

function dubboPolicy(doc: CrdDocument): AuthorizationPolicyJson {
  type Op = { interfaces?: string[]; notInterfaces?: string[]; methods?: string[]; notMethods?: string[] };
  return policyJson(doc, (doc.spec ?? {}) as PolicyRules<Op>, (op: Op) =>
    [attribute('interface', op.interfaces, op.notInterfaces), attribute('method', op.methods, op.notMethods)].filter(defined),
  );
}

function metaPolicy(doc: CrdDocument): AuthorizationPolicyJson {
  type Op = { attributes?: Record<string, string[]>; notAttributes?: Record<string, string[]> };
  return policyJson(doc, (doc.spec ?? {}) as PolicyRules<Op>, (op: Op) => {
    const keys = new Set([...Object.keys(op.attributes ?? {}), ...Object.keys(op.notAttributes ?? {})]);
    return [...keys].map((k) => attribute(k, op.attributes?.[k], op.notAttributes?.[k])).filter(defined);
  });
}

/** The authz filter for a service port, or undefined when no policy applies to it. */
export function authzFilterFor(model: ConfigModel, svc: Service, port: MetaPort): { name: string; config: AuthorizationConfig } | undefined {
  const policies: AuthorizationPolicyJson[] = [];
  if (port.protocol === 'dubbo') {
    for (const doc of securityDocs(model, KIND_DUBBO_AUTHORIZATION_POLICY)) if (inScope(doc, svc)) policies.push(dubboPolicy(doc));
  }
  for (const doc of securityDocs(model, KIND_META_AUTHORIZATION_POLICY)) {
    if (inScope(doc, svc) && selects((doc.spec as MetaAuthorizationPolicySpec)?.selector, svc)) policies.push(metaPolicy(doc));
  }
  if (policies.length === 0) return undefined;
  return { name: META_FILTER_AUTHZ, config: { '@type': TYPE_AUTHZ, policies } };
}
