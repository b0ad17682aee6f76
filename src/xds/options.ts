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
