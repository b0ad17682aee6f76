import { describe, expect, it } from 'vitest';
import { compile } from '../../control/index.js';
import { DEMO_DR, DEMO_MR, DEMO_SE, HOST, docs, fixtureDir } from './helpers.js';

const ADS = { ads: {}, resource_api_version: 'V3' };

function cluster(name: string) {
  return {
    '@type': 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
    name,
    type: 'EDS',
    eds_cluster_config: { eds_config: ADS, service_name: name },
    connect_timeout: '10s',
    lb_policy: 'ROUND_ROBIN',
  };
}

const V1 = {
  endpoint: { address: { socket_address: { address: '10.0.0.1', port_value: 20881 } } },
  metadata: { filter_metadata: { istio: { labels: { version: 'v1' } } } },
  health_status: 'HEALTHY',
};
const V2 = {
  endpoint: { address: { socket_address: { address: '10.0.0.2', port_value: 20880 } } },
  load_balancing_weight: 3,
  metadata: { filter_metadata: { istio: { labels: { version: 'v2' } } } },
  health_status: 'HEALTHY',
};

function cla(name: string, lbEndpoints: unknown[]) {
  return {
    '@type': 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
    cluster_name: name,
    endpoints: [{ lb_endpoints: lbEndpoints }],
  };
}

describe('the Dubbo demo config', () => {
  it('translates to the exact listener, clusters, endpoints and routes', async () => {
    // The three resources in separate files of one directory, as a user would keep them.
    const dir = await fixtureDir({
      'a-serviceentry.yaml': docs(DEMO_SE),
      'b-destinationrule.yaml': docs(DEMO_DR),
      'c-metarouter.yaml': docs(DEMO_MR),
    });
    const result = await compile([dir]);
    expect(result.errors.map((e) => e.format())).toEqual([]);
    expect(result.warnings).toEqual([]);
    const snap = result.snapshot!;

    expect(snap.listeners).toEqual([
      {
        '@type': 'type.googleapis.com/envoy.config.listener.v3.Listener',
        name: '127.0.0.1_20880',
        address: { socket_address: { address: '127.0.0.1', port_value: 20880 } },
        filter_chains: [
          {
            filters: [
              {
                name: 'envoy.filters.network.meta_protocol_proxy',
                typed_config: {
                  '@type': 'type.googleapis.com/aeraki.meta_protocol_proxy.v1alpha.MetaProtocolProxy',
                  stat_prefix: `outbound|20880||${HOST}`,
                  rds: { config_source: ADS, route_config_name: `${HOST}_20880` },
                  protocol: { name: 'dubbo', codec: { name: 'aeraki.meta_protocol.codec.dubbo' } },
                  meta_protocol_filters: [{ name: 'aeraki.meta_protocol.filters.router' }],
                },
              },
            ],
          },
        ],
      },
    ]);

    expect(snap.clusters).toEqual([
      cluster(`outbound|20880||${HOST}`),
      cluster(`outbound|20880|v1|${HOST}`),
      cluster(`outbound|20880|v2|${HOST}`),
    ]);

    expect(snap.endpoints).toEqual([
      cla(`outbound|20880||${HOST}`, [V1, V2]),
      cla(`outbound|20880|v1|${HOST}`, [V1]),
      cla(`outbound|20880|v2|${HOST}`, [V2]),
    ]);

    expect(snap.routes).toEqual([
      {
        '@type': 'type.googleapis.com/aeraki.meta_protocol_proxy.config.route.v1alpha.RouteConfiguration',
        name: `${HOST}_20880`,
        routes: [
          {
            name: 'jason',
            match: { metadata: [{ name: 'user', string_match: { exact: 'jason' } }] },
            route: { cluster: `outbound|20880|v2|${HOST}` },
          },
          {
            name: 'split',
            route: {
              weighted_clusters: {
                clusters: [
                  { name: `outbound|20880|v1|${HOST}`, weight: 20 },
                  { name: `outbound|20880|v2|${HOST}`, weight: 80 },
                ],
                total_weight: 100,
              },
            },
          },
        ],
      },
    ]);

    expect(snap.version).toMatch(/^[0-9a-f]{12}$/);
  });

  it('gives the same snapshot from one multi-document file', async () => {
    const dir = await fixtureDir({
      'a-serviceentry.yaml': docs(DEMO_SE),
      'b-destinationrule.yaml': docs(DEMO_DR),
      'c-metarouter.yaml': docs(DEMO_MR),
    });
    const split = await compile([dir]);
    const single = await compile([`${await fixtureDir({ 'all.yaml': docs(DEMO_SE, DEMO_DR, DEMO_MR) })}/all.yaml`]);
    expect(single.errors).toEqual([]);
    expect(single.snapshot).toEqual(split.snapshot);
  });

  it('without the MetaRouter, routes everything to the service cluster', async () => {
    const dir = await fixtureDir({ 'se.yaml': docs(DEMO_SE, DEMO_DR) });
    const { snapshot } = await compile([dir]);
    expect(snapshot!.routes).toEqual([
      {
        '@type': 'type.googleapis.com/aeraki.meta_protocol_proxy.config.route.v1alpha.RouteConfiguration',
        name: `${HOST}_20880`,
        routes: [{ name: 'default', route: { cluster: `outbound|20880||${HOST}` } }],
      },
    ]);
  });
});
