/**
 * The config the admin suites run: two Dubbo providers (v1, v2) behind one listener, three routes with different
 * match rules, and outlier detection that ejects an endpoint for a minute (long enough for the page to show it).
 */
import type { Provider } from '../../examples/dubbo/provider.js';
import { HOST, type PolicyConfig } from '../policy/fixture.js';

export { HOST };

/** Ejection after this many consecutive errors. */
export const CONSECUTIVE_ERRORS = 3;

export function adminConfig(a: Provider, b: Provider, opts: { v2MaxRequests?: number } = {}): PolicyConfig {
  return {
    endpoints: [{ provider: a }, { provider: b }],
    destinationRule: {
      trafficPolicy: {
        loadBalancer: { simple: 'ROUND_ROBIN' },
        outlierDetection: { consecutive5xxErrors: CONSECUTIVE_ERRORS, interval: '1s', baseEjectionTime: '60s', maxEjectionPercent: 50 },
      },
      subsets: [
        { name: 'v1', labels: { version: 'v1' } },
        {
          name: 'v2',
          labels: { version: 'v2' },
          ...(opts.v2MaxRequests !== undefined ? { trafficPolicy: { connectionPool: { http: { http2MaxRequests: opts.v2MaxRequests } } } } : {}),
        },
      ],
    },
    metaRouter: {
      routes: [
        { name: 'jason', match: { attributes: { user: { exact: 'jason' } } }, route: [{ destination: { host: HOST, subset: 'v2' } }] },
        { name: 'hello', match: { attributes: { method: { prefix: 'say' } } }, route: [{ destination: { host: HOST } }], timeout: '5s' },
        {
          name: 'split',
          match: { attributes: { method: { regex: 'who.*|fail' } } },
          route: [
            { destination: { host: HOST, subset: 'v1' }, weight: 50 },
            { destination: { host: HOST, subset: 'v2' }, weight: 50 },
          ],
        },
      ],
    },
  };
}

/** Istio's cluster names for the demo host on `port`. */
export function clusterNames(port: number): { all: string; v1: string; v2: string } {
  return { all: `outbound|${port}||${HOST}`, v1: `outbound|${port}|v1|${HOST}`, v2: `outbound|${port}|v2|${HOST}` };
}
