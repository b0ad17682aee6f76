/**
 * Envoy's Aggregated Discovery Service on @grpc/grpc-js, with the message codecs built from the vendored protos
 * (src/xds/protos.ts): both the client (src/xds/client.ts) and the server (control/xds/) use this, and so can tests.
 *
 * Messages are plain objects with the protos' field names. Decoded messages are protobufjs instances: an absent
 * field reads as its default through the prototype ('' / 0 / [] / {}).
 */
import * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import type { AnyMessage } from './convert.js';
import { ADS_DELTA_PATH, ADS_SOTW_PATH, messageType } from './protos.js';

export interface NodeMessage {
  id: string;
  cluster?: string;
  user_agent_name?: string;
  user_agent_version?: string;
  metadata?: { fields: Record<string, unknown> };
  client_features?: string[];
}

export interface StatusMessage {
  code?: number;
  message?: string;
}

export interface DiscoveryRequest {
  version_info?: string;
  node?: NodeMessage;
  resource_names?: string[];
  type_url: string;
  response_nonce?: string;
  error_detail?: StatusMessage;
}

export interface DiscoveryResponse {
  version_info: string;
  resources: AnyMessage[];
  type_url: string;
  nonce: string;
  control_plane?: { identifier: string };
}

export interface DeltaDiscoveryRequest {
  node?: NodeMessage;
  type_url: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: StatusMessage;
}

export interface DeltaResource {
  name: string;
  version: string;
  resource?: AnyMessage;
}

export interface DeltaDiscoveryResponse {
  system_version_info: string;
  resources: DeltaResource[];
  type_url: string;
  removed_resources: string[];
  nonce: string;
  control_plane?: { identifier: string };
}

function codec<T>(name: string): { serialize: (v: T) => Buffer; deserialize: (b: Buffer) => T; type: () => protobuf.Type } {
  let type: protobuf.Type | undefined;
  const get = (): protobuf.Type => (type ??= messageType(name));
  return {
    type: get,
    serialize: (v: T) => Buffer.from(get().encode(v as unknown as protobuf.Message).finish()),
    deserialize: (b: Buffer) => get().decode(b) as unknown as T,
  };
}

export const discoveryRequestCodec = codec<DiscoveryRequest>('envoy.service.discovery.v3.DiscoveryRequest');
export const discoveryResponseCodec = codec<DiscoveryResponse>('envoy.service.discovery.v3.DiscoveryResponse');
export const deltaRequestCodec = codec<DeltaDiscoveryRequest>('envoy.service.discovery.v3.DeltaDiscoveryRequest');
export const deltaResponseCodec = codec<DeltaDiscoveryResponse>('envoy.service.discovery.v3.DeltaDiscoveryResponse');

/** The service definition for `grpc.Server.addService`. */
export const adsServiceDefinition = {
  StreamAggregatedResources: {
    path: ADS_SOTW_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: discoveryRequestCodec.serialize,
    requestDeserialize: discoveryRequestCodec.deserialize,
    responseSerialize: discoveryResponseCodec.serialize,
    responseDeserialize: discoveryResponseCodec.deserialize,
    originalName: 'streamAggregatedResources',
  },
  DeltaAggregatedResources: {
    path: ADS_DELTA_PATH,
    requestStream: true,
    responseStream: true,
    requestSerialize: deltaRequestCodec.serialize,
    requestDeserialize: deltaRequestCodec.deserialize,
    responseSerialize: deltaResponseCodec.serialize,
    responseDeserialize: deltaResponseCodec.deserialize,
    originalName: 'deltaAggregatedResources',
  },
} satisfies grpc.ServiceDefinition;

/** Opens a state-of-the-world ADS stream on `client`. */
export function openSotwStream(client: grpc.Client, options?: grpc.CallOptions): grpc.ClientDuplexStream<DiscoveryRequest, DiscoveryResponse> {
  return client.makeBidiStreamRequest(ADS_SOTW_PATH, discoveryRequestCodec.serialize, discoveryResponseCodec.deserialize, new grpc.Metadata(), options ?? {});
}

export { splitHostPort } from './options.js';
