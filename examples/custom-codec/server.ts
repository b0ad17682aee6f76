/**
 * A KV-RPC demo server (node:net + wire.ts). Every answer carries the header `served-by: <version>`, so a caller
 * behind the proxy can see which subset answered.
 *
 * Methods (the `method` header):
 *   echo      answers the request body; with a `delay-ms` header, after that many milliseconds (answers then come
 *             back out of order, which is what request ids are for)
 *   whoami    answers `<version>` (e.g. `v2`)
 *   headers   answers the request's headers as JSON (what the server received, mutations included)
 *   fail      answers status APP_ERROR with the body as the error message
 *   anything else: status NOT_FOUND
 * Oneway requests are recorded and not answered; heartbeats are answered (and counted).
 *
 *   node dist/examples/custom-codec/server.js --port 29091 --version v1
 */
import net from 'node:net';
import { isMainModule } from '../dubbo/harness.js';
import {
  FLAG_HEARTBEAT,
  FLAG_RESPONSE,
  MessageReader,
  Status,
  encodeMessage,
  encodeResponse,
  isHeartbeat,
  isOneway,
  isResponse,
  type KvMessage,
} from './wire.js';

export interface ServerRequest {
  id: number;
  oneway: boolean;
  method: string | undefined;
  headers: Record<string, string>;
  body: string;
  /** Which accepted connection it came on (1, 2, …). */
  connection: number;
}

export interface ServerOptions {
  port?: number;
  host?: string;
  version: string;
}

export interface KvServer {
  readonly port: number;
  readonly address: string;
  readonly version: string;
  /** Every request (and oneway request) received, in order. */
  readonly requests: ServerRequest[];
  /** Heartbeats received (and answered). */
  readonly heartbeats: number;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Connections closed because the peer sent something that is not KV-RPC. */
  readonly rejected: number;
  close(): Promise<void>;
}

export function startServer(opts: ServerOptions): Promise<KvServer> {
  const requests: ServerRequest[] = [];
  const sockets = new Set<net.Socket>();
  let heartbeats = 0;
  let accepted = 0;
  let rejected = 0;
  const server = net.createServer({ noDelay: true }, (socket) => {
    const connection = ++accepted;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    const reader = new MessageReader();
    const reply = (bytes: Buffer): void => {
      if (!socket.destroyed) socket.write(bytes);
    };
    socket.on('data', (chunk: Buffer) => {
      let messages: KvMessage[];
      try {
        messages = reader.push(chunk);
      } catch {
        rejected++;
        socket.destroy();
        return;
      }
      for (const m of messages) {
        if (isHeartbeat(m)) {
          heartbeats++;
          if (!isResponse(m) && !isOneway(m)) reply(encodeMessage({ flags: FLAG_HEARTBEAT | FLAG_RESPONSE, id: m.id }));
          continue;
        }
        if (isResponse(m)) continue;
        const request: ServerRequest = {
          id: m.id,
          oneway: isOneway(m),
          method: m.headers.method,
          headers: m.headers,
          body: m.body.toString('utf8'),
          connection,
        };
        requests.push(request);
        if (request.oneway) continue;
        const delay = Number(m.headers['delay-ms'] ?? 0);
        const answer = (): void => reply(handle(opts.version, m));
        if (delay > 0) setTimeout(answer, delay);
        else answer();
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      const { address, port } = server.address() as net.AddressInfo;
      resolve({
        port,
        address: `${address}:${port}`,
        version: opts.version,
        requests,
        get heartbeats() {
          return heartbeats;
        },
        get accepted() {
          return accepted;
        },
        get rejected() {
          return rejected;
        },
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            server.close(() => done());
          }),
      });
    });
  });
}

/** The answer to one request. */
function handle(version: string, m: KvMessage): Buffer {
  const served = { 'served-by': version };
  switch (m.headers.method) {
    case 'echo':
      return encodeResponse(m.id, Status.OK, served, m.body);
    case 'whoami':
      return encodeResponse(m.id, Status.OK, served, version);
    case 'headers':
      return encodeResponse(m.id, Status.OK, served, JSON.stringify(m.headers));
    case 'fail':
      return encodeResponse(m.id, Status.APP_ERROR, served, m.body);
    default:
      return encodeResponse(m.id, Status.NOT_FOUND, served, `no method ${JSON.stringify(m.headers.method ?? '')}`);
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const arg = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const s = await startServer({ port: Number(arg('--port') ?? 29091), version: arg('--version') ?? 'v1' });
  console.log(`kvrpc server ${s.version} listening on ${s.address}`);
}

if (isMainModule(import.meta.url)) void main();
