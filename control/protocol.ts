/**
 * How a ServiceEntry port names its protocol, as in Aeraki: `tcp-metaprotocol-<protocol>[-suffix]` for MetaProtocol
 * ports (the protocol is the segment after `tcp-metaprotocol-`, up to the next `-`), `tcp-redis[-suffix]` for Redis.
 * And which codec serves a protocol: Aeraki's built-ins, overridden or extended by ApplicationProtocol resources.
 */

export const METAPROTOCOL_PORT_PREFIX = 'tcp-metaprotocol';

/** Codec names Aeraki knows without an ApplicationProtocol. */
export const BUILTIN_CODECS: Readonly<Record<string, string>> = {
  dubbo: 'aeraki.meta_protocol.codec.dubbo',
  thrift: 'aeraki.meta_protocol.codec.thrift',
};

export type PortKind =
  | { kind: 'metaprotocol'; protocol: string }
  /** `tcp-metaprotocol` or `tcp-metaprotocol-` with nothing after it. */
  | { kind: 'metaprotocol-without-protocol' }
  | { kind: 'redis' }
  | { kind: 'other' };

/** What a port's name says it carries. */
export function classifyPort(name: string): PortKind {
  const lower = name.toLowerCase();
  if (lower === METAPROTOCOL_PORT_PREFIX || lower.startsWith(`${METAPROTOCOL_PORT_PREFIX}-`)) {
    const protocol = lower.slice(METAPROTOCOL_PORT_PREFIX.length + 1).split('-')[0] ?? '';
    return protocol ? { kind: 'metaprotocol', protocol } : { kind: 'metaprotocol-without-protocol' };
  }
  if (lower === 'tcp-redis' || lower.startsWith('tcp-redis-')) return { kind: 'redis' };
  return { kind: 'other' };
}

/** The protocol of a MetaProtocol port, or undefined for any other port. */
export function metaProtocolOf(portName: string): string | undefined {
  const k = classifyPort(portName);
  return k.kind === 'metaprotocol' ? k.protocol : undefined;
}
