/**
 * A tiny raw-socket Dubbo2 client built on hessian.js frames: the caller picks every request id, and sees response
 * statuses, ids and flags exactly as they arrived (dubbo2.js hides those). One persistent connection per
 * {@link RawDubboConnection}; responses are matched to calls by id (two calls in flight with the same id on one
 * connection are matched first-come first-served).
 */
import net from 'node:net';
import { DEMO_INTERFACE } from './provider.js';
import {
  FrameParser,
  Status,
  decodeResponseBody,
  encodeHeartbeat,
  encodeRequest,
  idKey,
  type DecodedResponse,
  type DubboId,
  type RawFrame,
  type RequestSpec,
} from './wire.js';

export interface RawCallOptions {
  id: DubboId;
  method: string;
  /** js-to-java typed values or plain values (string → java.lang.String, integer → int, …). */
  args?: readonly unknown[];
  attachments?: Record<string, unknown>;
  /** Default: the demo interface. */
  path?: string;
  /** Default '0.0.0'; null writes a hessian null. */
  version?: string | null;
  /** Default '2.0.2'. */
  dubboVersion?: string;
  /** Overrides the parameter-type descriptor derived from `args`. */
  paramTypes?: string;
  /** Milliseconds to wait for the answer (default 5000); on expiry the call rejects. */
  timeoutMs?: number;
}

export interface RawResult extends DecodedResponse {
  /** The id in the response header. */
  id: DubboId;
  /** The response's flags byte (0x02 for a hessian2 response, 0x22 for a heartbeat reply). */
  flags: number;
  /** The returned value (status 20, types 1/2/4/5). */
  value?: unknown;
}

interface Waiter {
  resolve: (f: RawFrame) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class RawDubboConnection {
  /** Frames that arrived with no call waiting for their id (e.g. a reply to a one-way request, or a stray id). */
  readonly unexpected: RawFrame[] = [];
  /** Every frame received, in order. */
  readonly received: RawFrame[] = [];
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly parser: FrameParser;
  private closedError: Error | null = null;
  private readonly closedPromise: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    this.parser = new FrameParser((f) => this.onFrame(f));
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      try {
        this.parser.push(chunk);
      } catch (e) {
        this.fail(e as Error);
        socket.destroy();
      }
    });
    this.closedPromise = new Promise((resolve) => {
      socket.on('close', () => {
        this.fail(new Error('connection closed'));
        resolve();
      });
    });
    socket.on('error', (e) => this.fail(e));
  }

  /** Connects to `host:port`. */
  static connect(address: string, timeoutMs = 5000): Promise<RawDubboConnection> {
    const [host, port] = splitAddress(address);
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to ${address} timed out after ${timeoutMs}ms`));
      }, timeoutMs);
      socket.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RawDubboConnection(socket));
      });
    });
  }

  get isClosed(): boolean {
    return this.closedError !== null || this.socket.destroyed;
  }

  /** Resolves when the peer (or we) closed the connection. */
  closed(): Promise<void> {
    return this.closedPromise;
  }

  private onFrame(f: RawFrame): void {
    this.received.push(f);
    const key = idKey(f.id);
    const list = this.waiters.get(key);
    const w = list?.shift();
    if (list && list.length === 0) this.waiters.delete(key);
    if (!w) {
      this.unexpected.push(f);
      return;
    }
    clearTimeout(w.timer);
    w.resolve(f);
  }

  private fail(e: Error): void {
    if (!this.closedError) this.closedError = e;
    for (const list of this.waiters.values()) {
      for (const w of list) {
        clearTimeout(w.timer);
        w.reject(e);
      }
    }
    this.waiters.clear();
  }

  /** Waits for the next frame carrying `id`. */
  waitFor(id: DubboId, timeoutMs = 5000): Promise<RawFrame> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const key = idKey(id);
      const w: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const list = this.waiters.get(key);
          const i = list?.indexOf(w) ?? -1;
          if (list && i >= 0) list.splice(i, 1);
          if (list && list.length === 0) this.waiters.delete(key);
          reject(new Error(`no response for request id ${key} within ${timeoutMs}ms`));
        }, timeoutMs),
      };
      const list = this.waiters.get(key);
      if (list) list.push(w);
      else this.waiters.set(key, [w]);
    });
  }

  /** Writes raw bytes (any framing, for tests of split/coalesced frames or garbage). */
  writeRaw(buf: Buffer): void {
    this.socket.write(buf);
  }

  /** A two-way call with an explicit id; resolves with the decoded response (never rejects on a non-OK status). */
  async call(opts: RawCallOptions): Promise<RawResult> {
    const wait = this.waitFor(opts.id, opts.timeoutMs ?? 5000);
    this.socket.write(encodeRequest(opts.id, toSpec(opts)));
    const f = await wait;
    return toResult(f);
  }

  /** A one-way request (no 0x40 flag): nothing is expected back. */
  oneway(opts: RawCallOptions): void {
    this.socket.write(encodeRequest(opts.id, toSpec(opts), { twoWay: false }));
  }

  /** Sends a two-way heartbeat with `id` and resolves with the reply frame. */
  async heartbeat(id: DubboId, timeoutMs = 5000): Promise<RawFrame> {
    const wait = this.waitFor(id, timeoutMs);
    this.socket.write(encodeHeartbeat(id));
    return wait;
  }

  close(): Promise<void> {
    this.socket.end();
    const t = setTimeout(() => this.socket.destroy(), 1000);
    return this.closedPromise.finally(() => clearTimeout(t));
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function toSpec(o: RawCallOptions): RequestSpec {
  const spec: RequestSpec = { path: o.path ?? DEMO_INTERFACE, method: o.method, args: o.args ?? [] };
  if (o.version !== undefined) spec.version = o.version;
  if (o.dubboVersion !== undefined) spec.dubboVersion = o.dubboVersion;
  if (o.paramTypes !== undefined) spec.paramTypes = o.paramTypes;
  if (o.attachments !== undefined) spec.attachments = o.attachments;
  return spec;
}

/** Decodes a response frame into status/value/error. A heartbeat reply gives `{status, value: null}`. */
export function toResult(f: RawFrame): RawResult {
  if (f.event) return { id: f.id, flags: f.flags, status: f.status, value: null };
  let decoded: DecodedResponse;
  try {
    decoded = decodeResponseBody(f.status, f.body);
  } catch (e) {
    decoded = { status: f.status, error: { className: 'DecodeError', message: (e as Error).message } };
  }
  return { id: f.id, flags: f.flags, ...decoded };
}

export function splitAddress(address: string): [string, number] {
  const i = address.lastIndexOf(':');
  if (i <= 0) throw new Error(`address must be host:port, got "${address}"`);
  const port = Number(address.slice(i + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad port in "${address}"`);
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), port];
}

/** One call on a fresh connection, closed afterwards. */
export async function rawCall(opts: RawCallOptions & { address: string }): Promise<RawResult> {
  const conn = await RawDubboConnection.connect(opts.address);
  try {
    return await conn.call(opts);
  } finally {
    conn.destroy();
  }
}

export { Status };
