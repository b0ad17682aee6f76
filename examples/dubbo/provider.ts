/**
 * A real Dubbo2 provider of `org.apache.dubbo.samples.basic.api.DemoService` (the demo's backend), on node:net +
 * hessian.js. Behaves like a Java Dubbo 2.7 provider where the demo and the proxy tests can observe it:
 *
 * - `sayHello(String name)` → `Hello <name>, response from provider v1@127.0.0.1:20881`
 * - `echoAttachments()` → the request's attachments as a map (shows mutations made on the way)
 * - `slow(int ms)` → `slept <ms>ms on v1@host:port`, answered after `ms` milliseconds
 * - `fail(String msg)` → a business exception: status 20, response type 0/3, a java.lang.RuntimeException(msg)
 * - `whoami()` → `v1@host:port`
 * - any other method → status 70 SERVICE_ERROR + error message, as Dubbo does (AbstractProxyInvoker wraps the
 *   wrapper's NoSuchMethodException in an RpcException, which HeaderExchangeHandler turns into SERVICE_ERROR);
 *   any other interface → status 70 too ("Not found exported service", as DubboProtocol.getInvoker).
 * - undecodable request / non-hessian2 serialization → status 40 BAD_REQUEST ("Fail to decode request due to: ...").
 *
 * Two-way requests get a response with the request's id; one-way requests (no 0x40 flag) get none. Response types
 * 3/4/5 (with attachments `{dubbo: '2.0.2'}`) are used when the request's Dubbo protocol version is in
 * [2.0.2, 2.0.99], like Dubbo; otherwise 0/1/2. Two-way events (heartbeats) are answered with flags 0x22, status 20,
 * body `N`, same id; one-way events and responses from the peer are ignored.
 *
 * Standalone: `node dist/examples/dubbo/provider.js --port 20881 --version v1 [--host 127.0.0.1]`; prints
 * `provider v1 listening on 127.0.0.1:20881` (port 0 picks a free port; the line shows the chosen one).
 */
import net from 'node:net';
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  FrameError,
  FrameParser,
  HESSIAN2,
  Status,
  decodeRequestBody,
  encodeErrorResponse,
  encodeHeartbeat,
  encodeOkResponse,
  javaException,
  supportsResponseAttachments,
  type DubboId,
  type RawFrame,
  type ResponseBody,
} from './wire.js';

export const DEMO_INTERFACE = 'org.apache.dubbo.samples.basic.api.DemoService';

export type ProviderVersion = 'v1' | 'v2';

/** One request as the provider decoded it (heartbeats are counted separately). */
export interface ProviderRequest {
  id: DubboId;
  twoWay: boolean;
  dubboVersion: string;
  path: string;
  serviceVersion: string | null;
  method: string;
  paramTypes: string;
  args: unknown[];
  attachments: Record<string, unknown>;
  /** `remoteAddress:remotePort` of the connection it came on (the proxy's upstream side when proxied). */
  peer: string;
  receivedAt: number;
}

export interface ProviderOptions {
  host?: string;
  /** 0 (default) picks a free port. */
  port?: number;
  version: ProviderVersion;
  /** Called for every decoded request, before it is answered. */
  onRequest?: (req: ProviderRequest) => void;
  /** Keep request records (default true; the load bench turns it off). */
  record?: boolean;
}

export interface Provider {
  port: number;
  /** `host:port` */
  address: string;
  version: ProviderVersion;
  /** Every decoded request so far (unless `record: false`). */
  requests: ProviderRequest[];
  /**
   * How it answers: `ok` (normally), `error` (every call gets status 70 SERVICE_ERROR), `hang` (no call is ever
   * answered). For resilience tests; settable at any time.
   */
  mode: 'ok' | 'error' | 'hang';
  /** Heartbeat events received. */
  heartbeats: number;
  /** Connections currently open / accepted in total. */
  connections(): { open: number; accepted: number };
  /** Destroys every open connection but keeps listening (simulates an upstream reset). */
  resetConnections(): void;
  /** Stops listening, destroys connections and pending slow() timers. */
  close(): Promise<void>;
}

function answerFor(
  version: ProviderVersion,
  self: string,
  req: ProviderRequest,
): { status: number; message?: string; body?: ResponseBody; delayMs?: number } {
  const who = `${version}@${self}`;
  const attachments = supportsResponseAttachments(req.dubboVersion) ? { dubbo: '2.0.2' } : undefined;
  if (req.path !== DEMO_INTERFACE) {
    return {
      status: Status.SERVICE_ERROR,
      message:
        `org.apache.dubbo.remoting.RemotingException: Not found exported service: ${req.path}:${self.split(':')[1]} ` +
        `in [${DEMO_INTERFACE}:${self.split(':')[1]}], may be version or group mismatch, provider ${who}`,
    };
  }
  const sig = `${req.method}(${req.paramTypes})`;
  switch (sig) {
    case 'sayHello(Ljava/lang/String;)':
      return { status: Status.OK, body: { kind: 'value', value: `Hello ${String(req.args[0])}, response from provider ${who}`, attachments } };
    case 'whoami()':
      return { status: Status.OK, body: { kind: 'value', value: who, attachments } };
    case 'echoAttachments()': {
      const map: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(req.attachments)) map[k] = v;
      return { status: Status.OK, body: { kind: 'value', value: { $class: 'java.util.HashMap', $: map }, attachments } };
    }
    case 'slow(I)':
    case 'slow(Ljava/lang/Integer;)': {
      const ms = Math.max(0, Math.min(Number(req.args[0]) || 0, 600_000));
      return { status: Status.OK, delayMs: ms, body: { kind: 'value', value: `slept ${ms}ms on ${who}`, attachments } };
    }
    case 'fail(Ljava/lang/String;)':
      return {
        status: Status.OK,
        body: { kind: 'exception', exception: javaException('java.lang.RuntimeException', String(req.args[0])), attachments },
      };
    default:
      return {
        status: Status.SERVICE_ERROR,
        message:
          `org.apache.dubbo.rpc.RpcException: Failed to invoke remote proxy method ${req.method} to ` +
          `dubbo://${self}/${DEMO_INTERFACE}, cause: org.apache.dubbo.common.bytecode.NoSuchMethodException: ` +
          `Not found method "${req.method}" with parameter types "${req.paramTypes}" in class ` +
          `org.apache.dubbo.samples.basic.impl.DemoServiceImpl (provider ${who})`,
      };
  }
}

export function startProvider(opts: ProviderOptions): Promise<Provider> {
  const host = opts.host ?? '127.0.0.1';
  const version = opts.version;
  const record = opts.record ?? true;
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let accepted = 0;
  let self = `${host}:0`;

  const provider: Provider = {
    port: 0,
    address: self,
    version,
    requests: [],
    mode: 'ok',
    heartbeats: 0,
    connections: () => ({ open: sockets.size, accepted }),
    resetConnections() {
      for (const s of sockets) s.destroy();
    },
    close: () => Promise.resolve(),
  };

  const server = net.createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.setNoDelay(true);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    let corked = false;
    const write = (buf: Buffer): void => {
      if (!socket.destroyed) socket.write(buf);
    };

    const onFrame = (frame: RawFrame): void => {
      if (!frame.isRequest) return; // responses to our (non-existent) heartbeats: ignore
      if (frame.event) {
        provider.heartbeats++;
        if (frame.twoWay) write(encodeHeartbeat(frame.id, { response: true }));
        return;
      }
      if (frame.serialization !== HESSIAN2) {
        if (frame.twoWay) {
          write(
            encodeErrorResponse(
              frame.id,
              Status.BAD_REQUEST,
              `Fail to decode request due to: unsupported serialization id ${frame.serialization} (provider supports hessian2 = 2)`,
            ),
          );
        }
        return;
      }
      let req: ProviderRequest;
      try {
        const d = decodeRequestBody(frame.body);
        req = {
          id: frame.id,
          twoWay: frame.twoWay,
          dubboVersion: d.dubboVersion,
          path: d.path,
          serviceVersion: d.version,
          method: d.method,
          paramTypes: d.paramTypes,
          args: d.args,
          attachments: d.attachments,
          peer,
          receivedAt: Date.now(),
        };
      } catch (e) {
        if (frame.twoWay) {
          write(encodeErrorResponse(frame.id, Status.BAD_REQUEST, `Fail to decode request due to: ${(e as Error).message}`));
        }
        return;
      }
      if (record) provider.requests.push(req);
      try {
        opts.onRequest?.(req);
      } catch {
        // an observer's exception must not break the provider
      }
      const answer =
        provider.mode === 'error'
          ? { status: Status.SERVICE_ERROR, message: `provider ${version}@${self} is failing (mode "error")` }
          : answerFor(version, self, req);
      if (!frame.twoWay || provider.mode === 'hang') return;
      const reply = (): void => {
        if (answer.status === Status.OK && answer.body) write(encodeOkResponse(frame.id, answer.body));
        else write(encodeErrorResponse(frame.id, answer.status, answer.message ?? 'error'));
      };
      if (answer.delayMs && answer.delayMs > 0) {
        const t = setTimeout(() => {
          timers.delete(t);
          reply();
        }, answer.delayMs);
        timers.add(t);
      } else {
        reply();
      }
    };

    const parser = new FrameParser(onFrame);
    socket.on('data', (chunk: Buffer) => {
      // Coalesce the answers to one read into as few writes as possible.
      if (!corked) {
        corked = true;
        socket.cork();
        process.nextTick(() => {
          corked = false;
          socket.uncork();
        });
      }
      try {
        parser.push(chunk);
      } catch (e) {
        if (e instanceof FrameError) socket.destroy();
        else throw e;
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      const addr = server.address() as net.AddressInfo;
      self = `${host}:${addr.port}`;
      provider.port = addr.port;
      provider.address = self;
      provider.close = () =>
        new Promise<void>((res) => {
          for (const t of timers) clearTimeout(t);
          timers.clear();
          for (const s of sockets) s.destroy();
          server.close(() => res());
        });
      resolve(provider);
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Standalone

function isMain(): boolean {
  const argv1 = process.argv[1];
  if (!argv1) return false;
  try {
    return realpathSync(argv1) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const get = (name: string): string | undefined => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  if (args.includes('--help') || args.includes('-h')) {
    console.log('usage: node dist/examples/dubbo/provider.js [--host 127.0.0.1] [--port 20881] [--version v1|v2] [--quiet]');
    return;
  }
  const version = (get('version') ?? 'v1') as ProviderVersion;
  if (version !== 'v1' && version !== 'v2') {
    console.error(`--version must be v1 or v2, not ${version}`);
    process.exit(2);
  }
  const quiet = args.includes('--quiet');
  const port = Number(get('port') ?? 20881);
  let p: Provider;
  try {
    p = await startProvider({
      host: get('host') ?? '127.0.0.1',
      port,
      version,
      record: false,
      onRequest: quiet ? undefined : (r) => console.log(`${version} ${r.method}(${r.args.map((a) => JSON.stringify(a)).join(', ')}) from ${r.peer}`),
    });
  } catch (e) {
    console.error(`provider ${version} could not listen on port ${port}: ${(e as Error).message}`);
    process.exit(1);
  }
  console.log(`provider ${version} listening on ${p.address}`);
  const stop = (): void => {
    void p.close().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (isMain()) void main();
