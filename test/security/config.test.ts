/**
 * Security config: validation errors name `file:doc: Kind/name: field.path`, translation emits Envoy's transport
 * sockets and Waypost's authz filter, and both survive the xDS protobuf round trip unchanged (the tls protos are
 * vendored, the authz config has its own proto).
 */
import { describe, expect, it } from 'vitest';
import { decodeResource, encodeResource, type JsonObject } from '../../src/xds/convert.js';
import { TYPE_CLUSTER, TYPE_LISTENER } from '../../src/xds/resources.js';
import { compilePattern } from '../../src/filters/authz.js';
import { spiffeIdentity, subjectAltNames } from '../../src/tls.js';
import { HOST, problemsOf, serviceEntry, snapshotOf } from './helpers.js';

const dr = (spec: Record<string, unknown>): unknown => ({ apiVersion: 'networking.istio.io/v1beta1', kind: 'DestinationRule', metadata: { name: 'dr' }, spec: { host: HOST, ...spec } });
const pa = (spec: unknown, name = 'pa'): unknown => ({ apiVersion: 'security.istio.io/v1beta1', kind: 'PeerAuthentication', metadata: { name, namespace: 'default' }, spec });
const dap = (spec: unknown): unknown => ({ apiVersion: 'dubbo.aeraki.io/v1alpha1', kind: 'DubboAuthorizationPolicy', metadata: { name: 'dap', namespace: 'default' }, spec });
const map = (spec: unknown): unknown => ({ apiVersion: 'metaprotocol.waypost.io/v1alpha1', kind: 'MetaAuthorizationPolicy', metadata: { name: 'map' }, spec });

describe('validation', () => {
  const se = serviceEntry(20880, [20881]);

  it.each([
    [dr({ trafficPolicy: { tls: { mode: 'BOGUS' } } }), 'security.yaml:1: DestinationRule/dr: spec.trafficPolicy.tls.mode: must be one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL (got "BOGUS")'],
    [dr({ subsets: [{ name: 'a', trafficPolicy: { tls: { mode: 'MUTUAL', privateKey: '/k.pem' } } }] }), 'security.yaml:1: DestinationRule/dr: spec.subsets[0].trafficPolicy.tls.clientCertificate: required when mode is MUTUAL'],
    [dr({ trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL', caCertificates: '/ca.pem' } } }), 'security.yaml:1: DestinationRule/dr: spec.trafficPolicy.tls.caCertificates: cannot be set when mode is ISTIO_MUTUAL'],
    [dr({ trafficPolicy: { tls: { mode: 'SIMPLE', subjectAltNames: ['spiffe://x'] } } }), 'security.yaml:1: DestinationRule/dr: spec.trafficPolicy.tls.subjectAltNames: needs caCertificates'],
    [dr({ trafficPolicy: { tls: { mode: 'SIMPLE', credentialName: 'secret' } } }), 'security.yaml:1: DestinationRule/dr: spec.trafficPolicy.tls.credentialName: is not supported'],
    [dr({ trafficPolicy: { portLevelSettings: [{ tls: { mode: 'SIMPLE' } }] } }), 'security.yaml:1: DestinationRule/dr: spec.trafficPolicy.portLevelSettings[0].port: required'],
    [dr({ trafficPolicy: { tls: { mode: 'SIMPLE', sni: 7 } } }), 'security.yaml:1: DestinationRule/dr: spec.trafficPolicy.tls.sni: must be a string'],
    [pa({ mtls: { mode: 'STRICTER' } }), 'security.yaml:1: PeerAuthentication/pa: spec.mtls.mode: must be one of UNSET, DISABLE, PERMISSIVE, STRICT (got "STRICTER")'],
    [pa({ portLevelMtls: { '20880': { mode: 'STRICT' } } }), 'security.yaml:1: PeerAuthentication/pa: spec.portLevelMtls: needs a selector'],
    [pa({ selector: { matchLabels: { app: 'x' } }, portLevelMtls: { http: { mode: 'STRICT' } } }), 'security.yaml:1: PeerAuthentication/pa: spec.portLevelMtls.http: keys are port numbers'],
    [dap({ action: 'REJECT' }), 'security.yaml:1: DubboAuthorizationPolicy/dap: spec.action: must be ALLOW or DENY (got "REJECT")'],
    [dap({ selector: { matchLabels: { app: 'x' } } }), 'security.yaml:1: DubboAuthorizationPolicy/dap: spec.selector: unknown field (expected action, rules) — Aeraki\'s DubboAuthorizationPolicy has no selector'],
    [dap({ rules: [{ to: [{ operation: { methods: ['say*Hello'] } }] }] }), 'security.yaml:1: DubboAuthorizationPolicy/dap: spec.rules[0].to[0].operation.methods[0]: "say*Hello" is not a valid pattern'],
    [dap({ rules: [{ from: [{ source: { ipBlocks: ['10.0.0.0/8'] } }] }] }), 'security.yaml:1: DubboAuthorizationPolicy/dap: spec.rules[0].from[0].source.ipBlocks: unknown field'],
    [dap({ rules: [{ from: [{ source: { principals: 'cluster.local/ns/a/sa/b' } }] }] }), 'security.yaml:1: DubboAuthorizationPolicy/dap: spec.rules[0].from[0].source.principals: must be a list'],
    [map({ rules: [{ to: [{ operation: { attributes: { method: 'get' } } }] }] }), 'security.yaml:1: MetaAuthorizationPolicy/map: spec.rules[0].to[0].operation.attributes.method: must be a list of patterns'],
  ])('%# reports %s', (doc, want) => {
    const { errors } = problemsOf([se, doc]);
    expect(errors.some((e) => e.startsWith(want)), `${want}\n  got:\n${errors.join('\n')}`).toBe(true);
  });

  it('two namespace-wide PeerAuthentications in one namespace conflict', () => {
    const { errors } = problemsOf([se, pa({ mtls: { mode: 'STRICT' } }, 'a'), pa({ mtls: { mode: 'PERMISSIVE' } }, 'b')]);
    expect(errors).toEqual([expect.stringMatching(/^security\.yaml:2: PeerAuthentication\/b: spec: namespace "default" already has a namespace-wide PeerAuthentication \(PeerAuthentication\/a/)]);
  });

  it('valid documents have no errors; a policy that applies to nothing is a warning', () => {
    const ok = problemsOf([
      se,
      dr({ trafficPolicy: { tls: { mode: 'MUTUAL', clientCertificate: '/c.pem', privateKey: '/k.pem', caCertificates: '/ca.pem', subjectAltNames: ['spiffe://cluster.local/ns/a/sa/b'], sni: 'x' } } }),
      pa({ mtls: { mode: 'STRICT' } }),
      dap({ action: 'DENY', rules: [{ from: [{ source: { namespaces: ['dev'] } }] }] }),
      { ...(dap({}) as object), metadata: { name: 'other', namespace: 'payments' } },
    ]);
    expect(ok.errors).toEqual([]);
    expect(ok.warnings).toEqual([expect.stringMatching(/^security\.yaml:4: DubboAuthorizationPolicy\/other: metadata\.namespace: no Dubbo service in namespace "payments"/)]);
  });
});

describe('translation and xDS', () => {
  const snap = snapshotOf([
    serviceEntry(20880, [20881]),
    dr({ trafficPolicy: { tls: { mode: 'MUTUAL', clientCertificate: '/c.pem', privateKey: '/k.pem', caCertificates: '/ca.pem', subjectAltNames: ['spiffe://td/ns/a/sa/b'], sni: 'svc' } } }),
    pa({ mtls: { mode: 'PERMISSIVE' } }),
    dap({ rules: [{ from: [{ source: { principals: ['td/ns/a/*'] } }], to: [{ operation: { interfaces: ['*Service'], notMethods: ['admin*'] } }] }] }),
  ]);

  it('a cluster gets an UpstreamTlsContext; a PERMISSIVE listener a TLS and a plaintext chain; the authz filter goes first', () => {
    const cluster = snap.clusters[0]!;
    expect(cluster.transport_socket).toEqual({
      name: 'envoy.transport_sockets.tls',
      typed_config: {
        '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext',
        common_tls_context: {
          tls_certificates: [{ certificate_chain: { filename: '/c.pem' }, private_key: { filename: '/k.pem' } }],
          validation_context: { trusted_ca: { filename: '/ca.pem' }, match_subject_alt_names: [{ exact: 'spiffe://td/ns/a/sa/b' }] },
        },
        sni: 'svc',
      },
    });
    const l = snap.listeners[0]!;
    expect(l.filter_chains.map((c) => [c.filter_chain_match?.transport_protocol, c.transport_socket?.name])).toEqual([
      ['tls', 'envoy.transport_sockets.tls'],
      ['raw_buffer', undefined],
    ]);
    const filters = (l.filter_chains[0]!.filters[0]!.typed_config as { meta_protocol_filters: Array<{ name: string; config?: unknown }> }).meta_protocol_filters;
    expect(filters.map((f) => f.name)).toEqual(['waypost.meta_protocol.filters.authz', 'aeraki.meta_protocol.filters.router']);
    expect(filters[0]!.config).toEqual({
      '@type': 'type.googleapis.com/waypost.meta_protocol.filters.authz.v1alpha.Authorization',
      policies: [
        {
          name: 'DubboAuthorizationPolicy/default/dap',
          rules: [{ from: [{ principals: ['td/ns/a/*'] }], to: [{ attributes: [{ key: 'interface', values: ['*Service'] }, { key: 'method', not_values: ['admin*'] }] }] }],
        },
      ],
    });
  });

  it('the listener and the cluster\'s transport socket survive the protobuf round trip unchanged', () => {
    const listener = JSON.parse(JSON.stringify(snap.listeners[0]!)) as JsonObject;
    expect(decodeResource(TYPE_LISTENER, encodeResource(TYPE_LISTENER, listener), 0).json).toEqual(listener);
    const cluster = JSON.parse(JSON.stringify(snap.clusters[0]!)) as JsonObject;
    expect(decodeResource(TYPE_CLUSTER, encodeResource(TYPE_CLUSTER, cluster), 0).json.transport_socket).toEqual(cluster.transport_socket);
  });
});

describe('patterns and identities', () => {
  it('Istio string patterns: exact, prefix*, *suffix, * (present)', () => {
    const cases: Array<[string, string | undefined, boolean]> = [
      ['abc', 'abc', true],
      ['abc', 'abcd', false],
      ['abc*', 'abcd', true],
      ['abc*', 'abc', true],
      ['abc*', 'xabc', false],
      ['*abc', 'xabc', true],
      ['*abc', 'abcx', false],
      ['*', 'x', true],
      ['*', '', false],
      ['*', undefined, false],
      ['abc', undefined, false],
    ];
    for (const [p, v, want] of cases) expect(compilePattern(p)(v), `${p} vs ${v}`).toBe(want);
  });

  it('SPIFFE ids give Istio principals and namespaces; SAN text is parsed, quoted values too', () => {
    expect(spiffeIdentity('spiffe://cluster.local/ns/shop/sa/checkout')).toEqual({ principal: 'cluster.local/ns/shop/sa/checkout', namespace: 'shop' });
    expect(spiffeIdentity('spiffe://example.org/workload')).toEqual({ principal: 'example.org/workload', namespace: undefined });
    expect(spiffeIdentity('https://example.org')).toBeUndefined();
    expect(subjectAltNames({ subjectaltname: 'DNS:localhost, URI:spiffe://td/ns/a/sa/b, IP Address:127.0.0.1, URI:"spiffe://td/ns/a,b/sa/c"' } as never)).toEqual([
      { type: 'DNS', value: 'localhost' },
      { type: 'URI', value: 'spiffe://td/ns/a/sa/b' },
      { type: 'IP Address', value: '127.0.0.1' },
      { type: 'URI', value: 'spiffe://td/ns/a,b/sa/c' },
    ]);
  });
});
