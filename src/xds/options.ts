/** Small helpers for the xDS command-line options, kept free of gRPC so the CLI loads it cheaply. */
import os from 'node:os';

/** The node id `waypost proxy --xds` uses without `--node`. */
export function defaultNodeId(): string {
  return `waypost~${os.hostname()}~${process.pid}`;
}

/** Splits `HOST:PORT` / `[V6]:PORT`; throws with a usage-style message. */
export function splitHostPort(address: string, what: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m || m[1] === '') throw new Error(`${what} wants HOST:PORT, not "${address}"`);
  const port = Number(m[2]);
  if (port > 65535) throw new Error(`${what}: port ${port} is out of range`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/** Where ADS is served or reached: a TCP `host:port`, or a Unix domain socket (`unix:PATH`). */
export type XdsAddress = { host: string; port: number; path?: undefined } | { path: string; host?: undefined; port?: undefined };

/**
 * Reads `--xds` / `--xds-listen`: `HOST:PORT`, `[V6]:PORT`, or `unix:PATH` (also `unix:///abs/path`), the way a
 * sidecar reaches a node-local agent (Istio's Envoy talks to pilot-agent over a Unix socket). gRPC takes the same
 * `unix:` target form.
 */
export function parseXdsAddress(text: string, what: string): XdsAddress {
  if (text.startsWith('unix:')) {
    const p = text.startsWith('unix://') ? text.slice('unix://'.length) : text.slice('unix:'.length);
    if (p === '') throw new Error(`${what} wants unix:PATH with a path, not "${text}"`);
    return { path: p };
  }
  return splitHostPort(text, what);
}

/** The gRPC target (or bind address) for `a`. */
export function grpcAddress(a: XdsAddress): string {
  if (a.path !== undefined) return `unix:${a.path}`;
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
