import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkDocuments, compile, parseDocuments, validateDocuments } from '../../control/index.js';
import { DEMO_DR, DEMO_SE, HOST, compileYaml, docs, fixtureDir, metaRouter } from './helpers.js';

/** Compiles `yaml` from a temp file; error lines with the file path written as `@`. */
async function errorLines(yaml: string, options = {}): Promise<string[]> {
  const { errors, file } = await compileYaml(yaml, options);
  return errors.map((e) => {
    const line = e.format();
    expect(line.startsWith(`${file}:`)).toBe(true);
    return line.replaceAll(file, '@');
  });
}

async function warningLines(yaml: string): Promise<string[]> {
  const { warnings, file } = await compileYaml(yaml);
  return warnings.map((w) => w.replaceAll(file, '@'));
}

const se = (spec: string, name = 'se') => `
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: ${name}
spec:
${spec}`;

const dr = (spec: string, name = 'dr') => `
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: ${name}
spec:
${spec}`;

const ap = (spec: string, name = 'ap') => `
apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: ApplicationProtocol
metadata:
  name: ${name}
spec:
${spec}`;

/** A MetaRouter with one route to the demo host (subset v1) plus `extra` route fields. */
const route1 = (extra: string) =>
  metaRouter(`
  routes:
    - name: r
      route:
        - destination: {host: ${HOST}, subset: v1}
${extra}`);

const BASE = [DEMO_SE, DEMO_DR];

interface Case {
  name: string;
  yaml: string;
  errors: string[];
  options?: { knownCodecs?: string[]; bind?: string };
}

const cases: Case[] = [
  // ---- the document envelope
  {
    name: 'apiVersion, kind and metadata.name are required',
    yaml: docs('metadata: {}\nspec: {}'),
    errors: [
      '@:0: apiVersion: required (a non-empty string)',
      '@:0: kind: required (a non-empty string)',
      '@:0: metadata.name: required (a non-empty string)',
    ],
  },
  {
    name: 'a MetaRouter annotation naming user filters must be a JSON list of names or {name, config} objects',
    yaml: docs(
      'apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nmetadata: {name: a, annotations: {waypost.io/meta-protocol-filters: "not json ["}}\nspec: {hosts: [a.b], routes: [{name: r, route: [{destination: {host: a.b}}]}]}',
      'apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nmetadata: {name: b, annotations: {waypost.io/meta-protocol-filters: \'["ok", {"config": 1}]\'}}\nspec: {hosts: [b.c], routes: [{name: r, route: [{destination: {host: b.c}}]}]}',
    ),
    errors: [
      `@:0: MetaRouter/a: metadata.annotations.waypost.io/meta-protocol-filters: not JSON (Unexpected token 'o', "not json [" is not valid JSON)`,
      '@:0: MetaRouter/a: spec.routes[0].route[0].destination.host: host "a.b" is not defined by any ServiceEntry',
      '@:1: MetaRouter/b: metadata.annotations.waypost.io/meta-protocol-filters: item 1: a filter name or an object with a string "name"',
      '@:1: MetaRouter/b: spec.routes[0].route[0].destination.host: host "b.c" is not defined by any ServiceEntry',
    ],
  },
  {
    name: 'a known kind with a name missing names the kind',
    yaml: docs('apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nspec: {hosts: [a.b], ports: [{number: 1, name: tcp}]}'),
    errors: ['@:0: ServiceEntry/?: metadata.name: required (a non-empty string)'],
  },
  {
    name: 'a known kind with a foreign apiVersion',
    yaml: docs('apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: ServiceEntry\nmetadata: {name: x}\nspec: {}'),
    errors: [
      '@:0: ServiceEntry/x: apiVersion: ServiceEntry must be networking.istio.io/v1alpha3, networking.istio.io/v1beta1, networking.istio.io/v1 (got "metaprotocol.aeraki.io/v1alpha1")',
    ],
  },
  {
    name: 'spec is required',
    yaml: docs('apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: x}'),
    errors: ['@:0: DestinationRule/x: spec: required'],
  },
  {
    name: 'two documents of one kind with one name',
    yaml: docs(DEMO_SE, DEMO_DR, DEMO_DR.replace(`host: ${HOST}`, 'host: other.example.com')),
    errors: [
      '@:2: DestinationRule/dubbo-demoservice: metadata.name: DestinationRule "dubbo-demoservice" in namespace "meta-dubbo" is already defined at @:1',
    ],
  },

  // ---- ServiceEntry
  {
    name: 'ServiceEntry: hosts and ports must not be empty',
    yaml: docs(se('  hosts: []\n  ports: []')),
    errors: ['@:0: ServiceEntry/se: spec.hosts: must list at least one host', '@:0: ServiceEntry/se: spec.ports: must list at least one port'],
  },
  {
    name: 'ServiceEntry: hosts and ports are required',
    yaml: docs(se('  resolution: STATIC')),
    errors: ['@:0: ServiceEntry/se: spec.hosts: required', '@:0: ServiceEntry/se: spec.ports: required'],
  },
  {
    name: 'ServiceEntry: host names are checked',
    yaml: docs(se('  hosts: ["bad_host.example.com", "*", "a.*.com"]\n  resolution: NONE\n  ports: [{number: 80, name: http, protocol: HTTP}]')),
    errors: [
      '@:0: ServiceEntry/se: spec.hosts[0]: domain name "bad_host.example.com" is invalid (label "bad_host")',
      '@:0: ServiceEntry/se: spec.hosts[1]: the full wildcard "*" is not allowed as a ServiceEntry host',
      '@:0: ServiceEntry/se: spec.hosts[2]: host "a.*.com" has an invalid wildcard (only a leading "*." is allowed)',
    ],
  },
  {
    name: 'ServiceEntry: port numbers 1–65535, unique numbers and names, DNS-1123 names',
    yaml: docs(
      se(`  hosts: [a.example.com]
  resolution: NONE
  ports:
    - {number: 0, name: tcp-a}
    - {number: 70000, name: tcp-b}
    - {number: "80", name: tcp-c}
    - {number: 81, name: tcp-a}
    - {number: 81, name: Tcp_D}
    - {name: tcp-e}`),
    ),
    errors: [
      '@:0: ServiceEntry/se: spec.ports[0].number: must be an integer from 1 to 65535 (got 0)',
      '@:0: ServiceEntry/se: spec.ports[1].number: must be an integer from 1 to 65535 (got 70000)',
      '@:0: ServiceEntry/se: spec.ports[2].number: must be an integer from 1 to 65535 (got string "80")',
      '@:0: ServiceEntry/se: spec.ports[3].name: port name "tcp-a" is already used by spec.ports[0]',
      '@:0: ServiceEntry/se: spec.ports[4].number: port 81 is already defined by spec.ports[3]',
      '@:0: ServiceEntry/se: spec.ports[4].name: "Tcp_D" is not a valid port name: lowercase letters, digits and \'-\', starting and ending with a letter or digit, at most 63 characters',
      '@:0: ServiceEntry/se: spec.ports[5].number: required',
    ],
  },
  {
    name: 'ServiceEntry: a metaprotocol port must name its protocol',
    yaml: docs(se('  hosts: [a.example.com]\n  ports: [{number: 9000, name: tcp-metaprotocol}]')),
    errors: ['@:0: ServiceEntry/se: spec.ports[0].name: "tcp-metaprotocol" names no protocol: write tcp-metaprotocol-<protocol>[-suffix], e.g. tcp-metaprotocol-dubbo'],
  },
  {
    name: 'ServiceEntry: resolution must be known',
    yaml: docs(se('  hosts: [a.example.com]\n  ports: [{number: 9000, name: tcp}]\n  resolution: STATIK')),
    errors: ['@:0: ServiceEntry/se: spec.resolution: must be one of NONE, STATIC, DNS, DNS_ROUND_ROBIN (got "STATIK")'],
  },
  {
    name: 'ServiceEntry: endpoint address required, an IP for STATIC; endpoint ports must name service ports; labels are strings',
    yaml: docs(
      se(`  hosts: [a.example.com]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  endpoints:
    - address: ""
    - address: provider.example.com
    - address: 10.0.0.1
      ports: {tcp-metaprotocol-thrift: 9090, tcp-metaprotocol-dubbo: 0}
      labels: {version: 1}
      weight: -1`),
    ),
    errors: [
      '@:0: ServiceEntry/se: spec.endpoints[0].address: must not be empty',
      '@:0: ServiceEntry/se: spec.endpoints[1].address: "provider.example.com" is not an IP address: resolution STATIC needs IP addresses (use resolution: DNS for host names)',
      '@:0: ServiceEntry/se: spec.endpoints[2].ports.tcp-metaprotocol-thrift: no port named "tcp-metaprotocol-thrift" in spec.ports',
      '@:0: ServiceEntry/se: spec.endpoints[2].ports.tcp-metaprotocol-dubbo: must be an integer from 1 to 65535 (got 0)',
      '@:0: ServiceEntry/se: spec.endpoints[2].labels.version: label values must be strings (got number 1: quote it)',
      '@:0: ServiceEntry/se: spec.endpoints[2].weight: must be an integer from 0 to 4294967295 (got -1)',
    ],
  },
  {
    name: 'ServiceEntry: resolution NONE takes no endpoints (Istio)',
    yaml: docs(se('  hosts: [a.example.com]\n  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]\n  endpoints: [{address: 10.0.0.1}]')),
    errors: ["@:0: ServiceEntry/se: spec.endpoints: resolution NONE takes no endpoints (Istio's rule): set resolution: STATIC, or DNS for host names"],
  },
  {
    name: 'ServiceEntry: DNS endpoints are host names or IPs',
    yaml: docs(se('  hosts: [a.example.com]\n  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]\n  resolution: DNS\n  endpoints: [{address: "bad..name"}]')),
    errors: ['@:0: ServiceEntry/se: spec.endpoints[0].address: "bad..name" is not a valid host name or IP address'],
  },
  {
    name: 'ServiceEntry: DNS without endpoints resolves the hosts, so they must be host names',
    yaml: docs(se('  hosts: ["*.example.com"]\n  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]\n  resolution: DNS')),
    errors: ['@:0: ServiceEntry/se: spec.hosts[0]: resolution DNS without endpoints resolves the hosts themselves, so each must be a host name (got "*.example.com")'],
  },
  {
    name: 'ServiceEntry: addresses are IPs; a MetaProtocol service cannot bind a CIDR range; no duplicates',
    yaml: docs(
      se(`  hosts: [a.example.com]
  addresses: [10.1.0.1, not-an-ip, 10.2.0.0/16, 10.1.0.1]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]`),
    ),
    errors: [
      '@:0: ServiceEntry/se: spec.addresses[1]: "not-an-ip" is not an IP address or CIDR range',
      '@:0: ServiceEntry/se: spec.addresses[2]: "10.2.0.0/16" is a CIDR range: Waypost binds each address of a MetaProtocol service, so give single IP addresses',
      '@:0: ServiceEntry/se: spec.addresses[3]: address 10.1.0.1 is already listed as spec.addresses[0]',
    ],
  },
  {
    name: 'ServiceEntry: workloadSelector and endpoints are exclusive',
    yaml: docs(
      se(`  hosts: [a.example.com]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  workloadSelector: {labels: {app: x}}
  endpoints: [{address: 10.0.0.1}]`),
    ),
    errors: ['@:0: ServiceEntry/se: spec.workloadSelector: only one of workloadSelector or endpoints can be set'],
  },
  {
    name: 'ServiceEntry: several hosts on TCP ports need resolution NONE',
    yaml: docs(se('  hosts: [a.example.com, b.example.com]\n  ports: [{number: 20880, name: tcp-metaprotocol-dubbo, protocol: TCP}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]')),
    errors: ["@:0: ServiceEntry/se: spec.hosts: several hosts need resolution NONE or only HTTP/TLS ports: a TCP proxy cannot tell the hosts apart (Istio's rule)"],
  },

  // ---- DestinationRule
  {
    name: 'DestinationRule: host required; subset names non-empty, unique, DNS-1123; labels strings',
    yaml: docs(
      dr(`  subsets:
    - name: ""
    - name: v1
      labels: {version: 1.0}
    - name: v1
    - name: V_2`),
    ),
    errors: [
      '@:0: DestinationRule/dr: spec.host: required',
      '@:0: DestinationRule/dr: spec.subsets[0].name: must not be empty',
      '@:0: DestinationRule/dr: spec.subsets[1].labels.version: label values must be strings (got number 1: quote it)',
      '@:0: DestinationRule/dr: spec.subsets[2].name: subset "v1" is already defined by spec.subsets[1]',
      '@:0: DestinationRule/dr: spec.subsets[3].name: "V_2" is not a valid subset name: lowercase letters, digits and \'-\', starting and ending with a letter or digit',
    ],
  },
  {
    name: 'DestinationRule: traffic policy values',
    yaml: docs(
      DEMO_SE,
      dr(`  host: ${HOST}
  trafficPolicy:
    loadBalancer:
      simple: FASTEST
    connectionPool:
      tcp: {maxConnections: -1, connectTimeout: soon}
    outlierDetection:
      consecutive5xxErrors: 1.5
      interval: 10x
      maxEjectionPercent: 150
  subsets:
    - name: v1
      labels: {version: v1}
      trafficPolicy:
        loadBalancer: {simple: ROUND_ROBIN, consistentHash: {httpHeaderName: user}}
    - name: v2
      trafficPolicy:
        loadBalancer: {simple: PASSTHROUGH}`),
    ),
    errors: [
      '@:1: DestinationRule/dr: spec.trafficPolicy.loadBalancer.simple: must be one of ROUND_ROBIN, RANDOM, LEAST_REQUEST (or LEAST_CONN, UNSPECIFIED) (got "FASTEST")',
      '@:1: DestinationRule/dr: spec.trafficPolicy.connectionPool.tcp.maxConnections: must be an integer >= 0 (got -1)',
      '@:1: DestinationRule/dr: spec.trafficPolicy.connectionPool.tcp.connectTimeout: "soon" is not a duration: write a number and a unit (ns, us, ms, s, m, h), e.g. "1s", "500ms", "1.5s", "2m"',
      '@:1: DestinationRule/dr: spec.trafficPolicy.outlierDetection.consecutive5xxErrors: must be an integer >= 0 (got number 1.5)',
      '@:1: DestinationRule/dr: spec.trafficPolicy.outlierDetection.interval: "10x" is not a duration: write a number and a unit (ns, us, ms, s, m, h), e.g. "1s", "500ms", "1.5s", "2m"',
      '@:1: DestinationRule/dr: spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be an integer from 0 to 100 (got 150)',
      '@:1: DestinationRule/dr: spec.subsets[0].trafficPolicy.loadBalancer: only one of simple or consistentHash can be set',
      '@:1: DestinationRule/dr: spec.subsets[1].trafficPolicy.loadBalancer.simple: PASSTHROUGH is not supported by Waypost: use ROUND_ROBIN, RANDOM or LEAST_REQUEST',
    ],
  },
  {
    name: 'DestinationRule: one per host',
    yaml: docs(DEMO_SE, DEMO_DR, DEMO_DR.replace('name: dubbo-demoservice', 'name: second')),
    errors: [
      '@:2: DestinationRule/second: spec.host: host "org.apache.dubbo.samples.basic.api.demoservice" already has DestinationRule/dubbo-demoservice (@:1): at most one DestinationRule per host',
    ],
  },

  // ---- MetaRouter
  {
    name: 'MetaRouter: exactly one host, an FQDN',
    yaml: docs(
      ...BASE,
      `apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nmetadata: {name: none}\nspec: {hosts: [], routes: [{route: [{destination: {host: ${HOST}}}]}]}`,
      `apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nmetadata: {name: two}\nspec: {hosts: [a.example.com, b.example.com], routes: [{route: [{destination: {host: ${HOST}}}]}]}`,
      `apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nmetadata: {name: bad}\nspec: {hosts: ["-x.example.com"], routes: [{route: [{destination: {host: ${HOST}}}]}]}`,
    ),
    errors: [
      '@:2: MetaRouter/none: spec.hosts: a MetaRouter must have one host',
      '@:3: MetaRouter/two: spec.hosts: a MetaRouter can only have one host (got 2)',
      '@:4: MetaRouter/bad: spec.hosts[0]: domain name "-x.example.com" is invalid (label "-x")',
    ],
  },
  {
    name: 'MetaRouter: needs routes (or a rate limit)',
    yaml: docs(...BASE, metaRouter('  routes: []')),
    errors: ['@:2: MetaRouter/mr: spec.routes: a MetaRouter needs at least one of routes, localRateLimit or globalRateLimit'],
  },
  {
    name: 'MetaRouter: a route needs a destination with a host',
    yaml: docs(
      ...BASE,
      metaRouter(`  routes:
    - name: empty
      route: []
    - name: missing
    - name: no-host
      route:
        - destination: {subset: v1}
        - weight: 100`),
    ),
    errors: [
      '@:2: MetaRouter/mr: spec.routes[0].route: a route needs at least one destination',
      '@:2: MetaRouter/mr: spec.routes[1].route: required',
      '@:2: MetaRouter/mr: spec.routes[2].route[0].destination.host: required',
      '@:2: MetaRouter/mr: spec.routes[2].route[0].weight: required when a route has several destinations',
      '@:2: MetaRouter/mr: spec.routes[2].route[1].destination: required',
    ],
  },
  {
    name: 'MetaRouter: several destinations need weights 0–100 adding up to 100',
    yaml: docs(
      ...BASE,
      metaRouter(`  routes:
    - name: sum
      route:
        - {destination: {host: ${HOST}, subset: v1}, weight: 30}
        - {destination: {host: ${HOST}, subset: v2}, weight: 60}
    - name: range
      route:
        - {destination: {host: ${HOST}, subset: v1}, weight: 101}
        - {destination: {host: ${HOST}, subset: v2}, weight: 0}`),
    ),
    errors: [
      '@:2: MetaRouter/mr: spec.routes[0].route: the weights of several destinations must add up to 100 (they add up to 90)',
      '@:2: MetaRouter/mr: spec.routes[1].route[0].weight: must be an integer from 0 to 100 (got 101)',
    ],
  },
  {
    name: 'MetaRouter: attribute matches: one of exact/prefix/regex, regex compiles, strings, no unknown types',
    yaml: docs(
      ...BASE,
      route1(`      match:
        attributes:
          both: {exact: a, prefix: b}
          badre: {regex: "a(b"}
          emptyprefix: {prefix: ""}
          typo: {suffix: x}
          number: {exact: 7}
          nothing:`),
    ),
    errors: [
      '@:2: MetaRouter/mr: spec.routes[0].match.attributes.both: only one of exact, prefix or regex can be set (got exact, prefix)',
      '@:2: MetaRouter/mr: spec.routes[0].match.attributes.badre.regex: invalid regular expression "a(b": missing closing )',
      '@:2: MetaRouter/mr: spec.routes[0].match.attributes.emptyprefix.prefix: must not be empty',
      '@:2: MetaRouter/mr: spec.routes[0].match.attributes.typo.suffix: unknown match type "suffix": use exact, prefix or regex',
      '@:2: MetaRouter/mr: spec.routes[0].match.attributes.number.exact: must be a string (got number 7: quote it)',
      '@:2: MetaRouter/mr: spec.routes[0].match.attributes.nothing: must be a mapping: {exact: …}, {prefix: …} or {regex: …}, or {} to match any value',
    ],
  },
  {
    name: 'MetaRouter: a regex is RE2 (no lookaround, no backreferences) with a bounded program; RE2-only syntax is fine',
    yaml: docs(
      ...BASE,
      route1(`      match:
        attributes:
          lookahead: {regex: "(?!ops).*"}
          backref: {regex: '(a)\\1'}
          huge: {regex: "[a-z0-9-]{1,63}"}
          redos: {regex: "(a+)+$"}
          re2only: {regex: "(?i)(?P<v>v[0-9]+)"}`),
    ),
    errors: [
      '@:2: MetaRouter/mr: spec.routes[0].match.attributes.lookahead.regex: invalid regular expression "(?!ops).*": invalid or unsupported Perl syntax: `(?!` (RE2 has no lookahead or lookbehind)',
      '@:2: MetaRouter/mr: spec.routes[0].match.attributes.backref.regex: invalid regular expression "(a)\\\\1": invalid escape sequence: `\\1` (RE2 has no backreferences)',
      '@:2: MetaRouter/mr: spec.routes[0].match.attributes.huge.regex: regular expression "[a-z0-9-]{1,63}" is too complex: its RE2 program size is 127, the limit is 100 (large counted repeats such as {1,63} cost the most; prefer + or *)',
    ],
  },
  {
    name: 'MetaRouter: mutation keys and values non-empty',
    yaml: docs(
      ...BASE,
      route1(`      requestMutation:
        - {key: "", value: a}
        - {key: b}
      responseMutation:
        - {value: c}`),
    ),
    errors: [
      '@:2: MetaRouter/mr: spec.routes[0].requestMutation[0].key: must not be empty',
      '@:2: MetaRouter/mr: spec.routes[0].requestMutation[1].value: required',
      '@:2: MetaRouter/mr: spec.routes[0].responseMutation[0].key: required',
    ],
  },
  {
    name: 'MetaRouter: mirrorPercentage 0 < value <= 100, only with mirror; the mirror is a checked destination',
    yaml: docs(
      ...BASE,
      metaRouter(`  routes:
    - name: a
      route: [{destination: {host: ${HOST}}}]
      mirror: {host: ${HOST}, subset: v3}
      mirrorPercentage: {value: 150}
    - name: b
      route: [{destination: {host: ${HOST}}}]
      mirrorPercentage: {value: 0}`),
    ),
    errors: [
      '@:2: MetaRouter/mr: spec.routes[0].mirrorPercentage.value: must be a number from 0 to 100 (got 150)',
      '@:2: MetaRouter/mr: spec.routes[1].mirrorPercentage.value: must be greater than 0 (remove mirror to stop mirroring)',
      '@:2: MetaRouter/mr: spec.routes[1].mirrorPercentage: mirrorPercentage needs mirror',
      `@:2: MetaRouter/mr: spec.routes[0].mirror.subset: subset "v3" is not defined by any DestinationRule for host "${HOST}"`,
    ],
  },
  {
    name: 'MetaRouter: timeout, retries and fault values',
    yaml: docs(
      ...BASE,
      route1(`      timeout: fast
      retries: {attempts: -1, perTryTimeout: 0s, retryOn: "reset,5xx,"}
      fault:
        delay: {percentage: {value: 120}}
        abort: {errorCode: -3}`),
    ),
    errors: [
      '@:2: MetaRouter/mr: spec.routes[0].timeout: "fast" is not a duration: write a number and a unit (ns, us, ms, s, m, h), e.g. "1s", "500ms", "1.5s", "2m"',
      '@:2: MetaRouter/mr: spec.routes[0].retries.attempts: must be an integer >= 0 (got -1)',
      '@:2: MetaRouter/mr: spec.routes[0].retries.perTryTimeout: "0s" is too short: it must be at least 0.001s',
      '@:2: MetaRouter/mr: spec.routes[0].retries.retryOn: unknown retry condition "5xx" (known: connect-failure, reset, unavailable, timeout, error)',
      '@:2: MetaRouter/mr: spec.routes[0].retries.retryOn: "reset,5xx," has an empty entry',
      '@:2: MetaRouter/mr: spec.routes[0].fault.delay.fixedDelay: required',
      '@:2: MetaRouter/mr: spec.routes[0].fault.delay.percentage.value: must be a number from 0 to 100 (got 120)',
      "@:2: MetaRouter/mr: spec.routes[0].fault.abort.errorCode: must be a non-negative integer, the protocol's own status code (got number -3)",
    ],
  },
  {
    name: 'MetaRouter: a fault errorCode is a number, not a status name',
    yaml: docs(...BASE, route1('      fault: {abort: {errorCode: SERVICE_ERROR}}')),
    errors: [
      "@:2: MetaRouter/mr: spec.routes[0].fault.abort.errorCode: must be a non-negative integer, the protocol's own status code (got string \"SERVICE_ERROR\")",
    ],
  },
  {
    name: 'MetaRouter: a quoted numeric errorCode is fine',
    yaml: docs(...BASE, route1('      fault: {abort: {errorCode: "80"}}')),
    errors: [],
  },
  {
    name: 'MetaRouter: a fault needs delay or abort',
    yaml: docs(...BASE, route1('      fault: {}')),
    errors: ['@:2: MetaRouter/mr: spec.routes[0].fault: a fault needs delay or abort'],
  },
  {
    name: 'MetaRouter: rate limits follow Aeraki’s rules',
    yaml: docs(
      ...BASE,
      metaRouter(`  localRateLimit:
    tokenBucket: {maxTokens: 0, fillInterval: 1m}
    conditions:
      - tokenBucket: {maxTokens: 1, tokensPerFill: 1, fillInterval: 1s}
  globalRateLimit:
    domain: production
    descriptors: []`),
    ),
    errors: [
      '@:2: MetaRouter/mr: spec.localRateLimit.tokenBucket.maxTokens: must be an integer >= 1 (got 0)',
      '@:2: MetaRouter/mr: spec.localRateLimit.tokenBucket.tokensPerFill: required',
      '@:2: MetaRouter/mr: spec.localRateLimit.conditions[0].match: required',
      '@:2: MetaRouter/mr: spec.globalRateLimit.rateLimitService: required',
      '@:2: MetaRouter/mr: spec.globalRateLimit.descriptors: must list at least one descriptor',
    ],
  },
  {
    name: 'MetaRouter: a global rate limit service is a ServiceEntry port or host:port',
    yaml: docs(
      ...BASE,
      metaRouter(`  routes: [{name: r, route: [{destination: {host: ${HOST}}}]}]
  globalRateLimit:
    domain: production
    rateLimitService: outbound|8081||nowhere.example.com
    descriptors: [{property: method, descriptorKey: method}]`),
    ),
    errors: ['@:2: MetaRouter/mr: spec.globalRateLimit.rateLimitService: no ServiceEntry defines host "nowhere.example.com"'],
  },
  {
    name: 'MetaRouter: a global rate limit service must be a cluster name or host:port',
    yaml: docs(
      ...BASE,
      metaRouter(`  routes: [{name: r, route: [{destination: {host: ${HOST}}}]}]
  globalRateLimit:
    domain: production
    rateLimitService: just-a-name
    descriptors: [{property: method, descriptorKey: method}]`),
    ),
    errors: ['@:2: MetaRouter/mr: spec.globalRateLimit.rateLimitService: must be a cluster name (outbound|<port>||<host>) or host:port, not "just-a-name"'],
  },
  {
    name: 'MetaRouter: destination hosts, ports and subsets must exist',
    yaml: docs(
      ...BASE,
      metaRouter(`  routes:
    - name: a
      route:
        - destination: {host: ${HOST}, subset: v1}
    - name: b
      route:
        - destination: {host: missing.example.com}
    - name: c
      route:
        - destination: {host: ${HOST}, subset: v3}
    - name: d
      route:
        - destination: {host: ${HOST}, port: {number: 20881}}`),
    ),
    errors: [
      '@:2: MetaRouter/mr: spec.routes[1].route[0].destination.host: host "missing.example.com" is not defined by any ServiceEntry',
      `@:2: MetaRouter/mr: spec.routes[2].route[0].destination.subset: subset "v3" is not defined by any DestinationRule for host "${HOST}"`,
      `@:2: MetaRouter/mr: spec.routes[3].route[0].destination.port.number: host "${HOST}" has no MetaProtocol port 20881 (its MetaProtocol ports: 20880)`,
    ],
  },
  {
    name: 'MetaRouter: a destination without a port on a service with several, none the listener port',
    yaml: docs(
      DEMO_SE,
      se(`  hosts: [multi.example.com]
  ports:
    - {number: 7001, name: tcp-metaprotocol-dubbo-a}
    - {number: 7002, name: tcp-metaprotocol-dubbo-b}
  resolution: STATIC
  endpoints: [{address: 10.0.0.9}]`),
      metaRouter(`  routes:
    - route: [{destination: {host: multi.example.com}}]`),
    ),
    errors: [
      '@:2: MetaRouter/mr: spec.routes[0].route[0].destination.port: required: host "multi.example.com" has several MetaProtocol ports (7001, 7002) and none is the listener\'s port 20880',
    ],
  },
  {
    name: 'MetaRouter: one per host',
    yaml: docs(...BASE, route1(''), route1('').replace('name: mr', 'name: mr2')),
    errors: [
      `@:3: MetaRouter/mr2: spec.hosts[0]: host "${HOST}" already has MetaRouter/mr (@:2): at most one MetaRouter per host`,
    ],
  },

  // ---- ApplicationProtocol and codecs
  {
    name: 'ApplicationProtocol: protocol and codec required',
    yaml: docs(ap('  protocol: ""'), ap('  codec: c', 'ap2')),
    errors: [
      '@:0: ApplicationProtocol/ap: spec.protocol: must not be empty',
      '@:0: ApplicationProtocol/ap: spec.codec: required',
      '@:1: ApplicationProtocol/ap2: spec.protocol: required',
    ],
  },
  {
    name: 'a MetaProtocol port whose protocol has no codec',
    yaml: docs(se('  hosts: [b.example.com]\n  ports: [{number: 8000, name: tcp-metaprotocol-brpc}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]')),
    errors: [
      '@:0: ServiceEntry/se: spec.ports[0].name: no codec for protocol "brpc": add an ApplicationProtocol mapping it to a codec (built in: dubbo, thrift)',
    ],
  },
  {
    name: 'knownCodecs: a codec the data plane lacks is an error on the port',
    options: { knownCodecs: ['aeraki.meta_protocol.codec.dubbo'] },
    yaml: docs(
      ap('  protocol: brpc\n  codec: aeraki.meta_protocol.codec.brpc', 'brpc'),
      se('  hosts: [b.example.com]\n  ports: [{number: 8000, name: tcp-metaprotocol-brpc}, {number: 8001, name: tcp-metaprotocol-thrift}, {number: 8002, name: tcp-metaprotocol-dubbo}]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]'),
    ),
    errors: [
      '@:1: ServiceEntry/se: spec.ports[0].name: codec "aeraki.meta_protocol.codec.brpc" (protocol "brpc", from ApplicationProtocol/brpc (@:0)) is not a known codec (known: aeraki.meta_protocol.codec.dubbo)',
      '@:1: ServiceEntry/se: spec.ports[1].name: codec "aeraki.meta_protocol.codec.thrift" (protocol "thrift") is not a known codec (known: aeraki.meta_protocol.codec.dubbo)',
    ],
  },
  {
    name: 'two ApplicationProtocols mapping one protocol to different codecs',
    yaml: docs(ap('  protocol: brpc\n  codec: c1', 'a1'), ap('  protocol: brpc\n  codec: c2', 'a2')),
    errors: ['@:1: ApplicationProtocol/a2: spec.protocol: protocol "brpc" already maps to codec "c1" (ApplicationProtocol/a1, @:0)'],
  },

  // ---- listeners and hosts across ServiceEntries
  {
    name: 'two ServiceEntries binding one address:port: an error on the later one',
    yaml: docs(
      DEMO_SE,
      se(`  hosts: [second.example.com]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.5}]`),
    ),
    errors: [
      '@:1: ServiceEntry/se: spec.ports[0].number: 127.0.0.1:20880 is already bound by ServiceEntry/dubbo-demoservice (@:0) port tcp-metaprotocol-dubbo',
    ],
  },
  {
    name: 'a wildcard address clashes with a specific one on the same port; distinct VIPs do not clash',
    yaml: docs(
      se(`  hosts: [a.example.com]
  addresses: [10.8.0.1]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.5}]`, 'a'),
      se(`  hosts: [b.example.com]
  addresses: [10.8.0.2]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.6}]`, 'b'),
      se(`  hosts: [c.example.com]
  addresses: [0.0.0.0]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.7}]`, 'c'),
    ),
    errors: ['@:2: ServiceEntry/c: spec.ports[0].number: 0.0.0.0:20880 is already bound by ServiceEntry/a (@:0) port tcp-metaprotocol-dubbo'],
  },
  {
    name: 'the bind option decides the default address',
    options: { bind: '0.0.0.0' },
    yaml: docs(
      DEMO_SE,
      se(`  hosts: [vip.example.com]
  addresses: [10.9.0.1]
  ports: [{number: 20880, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.5}]`),
    ),
    errors: ['@:1: ServiceEntry/se: spec.ports[0].number: 10.9.0.1:20880 is already bound by ServiceEntry/dubbo-demoservice (@:0) port tcp-metaprotocol-dubbo'],
  },
  {
    name: 'two ServiceEntries for one host',
    yaml: docs(DEMO_SE, DEMO_SE.replace('name: dubbo-demoservice', 'name: again').replace('20880', '20990')),
    errors: [`@:1: ServiceEntry/again: spec.hosts[0]: host "${HOST}" is already defined by ServiceEntry/dubbo-demoservice (@:0)`],
  },
];

describe('validation rules', () => {
  for (const c of cases) {
    it(c.name, async () => {
      expect(await errorLines(c.yaml, c.options)).toEqual(c.errors);
    });
  }
});

describe('validateDocuments', () => {
  it('returns structured errors whose format() is file:index: Kind/name: path: message', () => {
    const { docs: loaded } = parseDocuments(docs(DEMO_SE, route1('      timeout: 5')), 'routes.yaml');
    const errors = validateDocuments(loaded);
    expect(errors.map((e) => e.toJSON())).toEqual([
      {
        file: 'routes.yaml',
        index: 1,
        kind: 'MetaRouter',
        name: 'mr',
        path: 'spec.routes[0].timeout',
        message: 'must be a duration string like "1s" or "500ms" (got number 5)',
      },
      {
        file: 'routes.yaml',
        index: 1,
        kind: 'MetaRouter',
        name: 'mr',
        path: 'spec.routes[0].route[0].destination.subset',
        message: `subset "v1" is not defined by any DestinationRule for host "${HOST}"`,
      },
    ]);
    expect(errors[0]!.format()).toBe('routes.yaml:1: MetaRouter/mr: spec.routes[0].timeout: must be a duration string like "1s" or "500ms" (got number 5)');
  });

  it('reports every problem of every document, in file and document order', async () => {
    const dir = await fixtureDir({
      'b.yaml': docs(DEMO_DR.replace(`host: ${HOST}`, 'host: ""'), se('  hosts: []\n  ports: [{number: 1, name: tcp}]')),
      'a.yaml': docs(se('  hosts: [a.example.com]\n  ports: [{number: 0, name: tcp}]', 'first')),
    });
    const result = await compile([dir]);
    expect(result.errors.map((e) => e.format())).toEqual([
      `${join(dir, 'a.yaml')}:0: ServiceEntry/first: spec.ports[0].number: must be an integer from 1 to 65535 (got 0)`,
      `${join(dir, 'b.yaml')}:0: DestinationRule/dubbo-demoservice: spec.host: must not be empty`,
      `${join(dir, 'b.yaml')}:1: ServiceEntry/se: spec.hosts: must list at least one host`,
    ]);
  });

  it('accepts the Dubbo demo and takes v1alpha3, v1beta1 and v1 Istio apiVersions alike', () => {
    for (const version of ['v1alpha3', 'v1beta1', 'v1']) {
      const text = docs(DEMO_SE, DEMO_DR).replaceAll('networking.istio.io/v1beta1', `networking.istio.io/${version}`);
      const { docs: loaded } = parseDocuments(text, 'x.yaml');
      expect(validateDocuments(loaded)).toEqual([]);
    }
  });
});

describe('warnings', () => {
  it('lists unknown and untranslated kinds, and never blocks the snapshot', async () => {
    const yaml = docs(
      DEMO_SE,
      'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}',
      'apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: vs}\nspec: {hosts: [a]}',
    );
    const result = await compileYaml(yaml);
    expect(result.errors).toEqual([]);
    expect(result.snapshot).toBeDefined();
    expect(result.warnings.map((w) => w.replaceAll(result.file, '@'))).toEqual([
      '@:1: Deployment/web: kind: unknown kind "Deployment" (apps/v1): ignored',
      '@:2: VirtualService/vs: VirtualService is not translated yet: ignored',
    ]);
  });

  it('flags routes after a catch-all route, workloadSelector and unused rules (a Redis port and a global rate limit are served)', async () => {
    const yaml = docs(
      DEMO_SE.replace('    - number: 20880', '    - number: 6379\n      name: tcp-redis\n    - number: 20880'),
      DEMO_DR,
      metaRouter(`  routes:
    - name: everything
      route: [{destination: {host: ${HOST}}}]
    - name: never
      match: {attributes: {user: {exact: jason}}}
      route: [{destination: {host: ${HOST}, subset: v2}}]
  globalRateLimit:
    domain: production
    rateLimitService: rate-limit-server.example.com:8081
    descriptors: [{property: method, descriptorKey: method}]`),
      se(`  hosts: [selected.example.com]
  ports: [{number: 20990, name: tcp-metaprotocol-dubbo}]
  resolution: STATIC
  workloadSelector: {labels: {app: x}}`),
      dr('  host: nowhere.example.com', 'orphan'),
    );
    expect(await warningLines(yaml)).toEqual([
      '@:2: MetaRouter/mr: spec.routes[1]: unreachable: spec.routes[0] has no match and takes every request before it',
      '@:3: ServiceEntry/se: spec.workloadSelector: Waypost has no workload registry, so the service has no endpoints: list them in spec.endpoints',
      '@:4: DestinationRule/orphan: spec.host: no ServiceEntry defines host "nowhere.example.com": the DestinationRule is not used',
    ]);
  });

  it('checkDocuments gives warnings as ConfigErrors too', () => {
    const { docs: loaded } = parseDocuments(docs('apiVersion: v1\nkind: Service\nmetadata: {name: s}'), 'k8s.yaml');
    const { errors, warnings } = checkDocuments(loaded);
    expect(errors).toEqual([]);
    expect(warnings.map((w) => w.format())).toEqual(['k8s.yaml:0: Service/s: kind: unknown kind "Service" (v1): ignored']);
  });
});
