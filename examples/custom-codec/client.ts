/**
 * A KV-RPC client library (node:net + wire.ts): one connection, many calls in flight matched by request id,
 * headers per call.
 *
 *   const c = await KvClient.connect('127.0.0.1:29090');
 *   const r = await c.call({ method: 'whoami', headers: { user: 'jason' } });
 *   r.status === Status.OK; r.headers['served-by']; r.text();
 *   c.close();
 *
 * Ids count up from 1 unless a call chooses its own (`id`), which tests use to make two clients collide.
 */
import net from 'node:net';
import {
  MAX_ID,
  MessageReader,
  encodeHeartbeat,
  encodeRequest,
  isHeartbeat,
  statusName,
  type KvMessage,
} from './wire.js';

export interface CallOptions {
  method: string;
  /** Sent as the `service` header when given. */
  service?: string;
  /** More headers (`user`, `lane`, …); written after `service` and `method`. */
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** The request id to use instead of the next one. */
  id?: number;
  /** Reject when no answer came in this time (default 5000 ms). */
  timeoutMs?: number;
}

export interface KvReply {
  id: number;
  status: number;
  statusName: string;
  headers: Record<string, string>;
  body: Buffer;
  /** The body as UTF-8. */
  text(): string;
}

interface Pending {
  resolve(r: KvReply): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

export class KvClient {
  /** Answers nobody waited for (unknown id): a proxy mixing up ids would show here. */
  readonly unexpected: KvMessage[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly heartbeats = new Map<number, Pending>();
  private readonly reader = new MessageReader();
  private nextId = 1;
  private closedWith: Error | undefined;
  /** Resolves when the connection is closed (by either side). */
  readonly closed: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (e) => (this.closedWith ??= e));
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        const err = this.closedWith ?? new Error('connection closed');
        this.closedWith = err;
        for (const p of [...this.pending.values(), ...this.heartbeats.values()]) {
          clearTimeout(p.timer);
          p.reject(err);
        }
        this.pending.clear();
        this.heartbeats.clear();
        resolve();
      });
    });
  }

  /** Connects to `host:port`. */
  static connect(address: string): Promise<KvClient> {
    const i = address.lastIndexOf(':');
    const host = address.slice(0, i);
    const port = Number(address.slice(i + 1));
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new KvClient(socket));
      });
    });
  }

  get isClosed(): boolean {
    return this.closedWith !== undefined;
  }

  /** A two-way call: resolves with the answer (whatever its status), rejects on timeout or a closed connection. */
  call(opts: CallOptions): Promise<KvReply> {
    const id = opts.id ?? this.allocateId();
    if (this.pending.has(id)) return Promise.reject(new Error(`request id ${id} is already in flight on this connection`));
    return this.wait(this.pending, id, opts.timeoutMs, () => this.socket.write(encodeRequest(id, headersOf(opts), opts.body)));
  }

  /** A oneway call: nothing comes back. */
  oneway(opts: CallOptions): void {
    this.socket.write(encodeRequest(opts.id ?? this.allocateId(), headersOf(opts), opts.body, true));
  }

  /** Sends a heartbeat and resolves with its answer. */
  heartbeat(id = this.allocateId(), timeoutMs = 5000): Promise<KvReply> {
    return this.wait(this.heartbeats, id, timeoutMs, () => this.socket.write(encodeHeartbeat(id)));
  }

  /** A two-way call of a frame built by hand (tests: malformed frames): resolves with the answer to `id`. */
  callRaw(id: number, frame: Buffer, timeoutMs?: number): Promise<KvReply> {
    if (this.pending.has(id)) return Promise.reject(new Error(`request id ${id} is already in flight on this connection`));
    return this.wait(this.pending, id, timeoutMs, () => this.socket.write(frame));
  }

  /** Writes bytes as they are (tests: malformed frames). */
  writeRaw(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  close(): void {
    this.socket.destroy();
  }

  private wait(map: Map<number, Pending>, id: number, timeoutMs = 5000, send: () => void): Promise<KvReply> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise<KvReply>((resolve, reject) => {
      const timer = setTimeout(() => {
        map.delete(id);
        reject(new Error(`no answer to request ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      map.set(id, { resolve, reject, timer });
      send();
    });
  }

  private allocateId(): number {
    const id = this.nextId;
    this.nextId = id >= MAX_ID ? 1 : id + 1;
    return id;
  }

  private onData(chunk: Buffer): void {
    let messages: KvMessage[];
    try {
      messages = this.reader.push(chunk);
    } catch (e) {
      this.closedWith = e as Error;
      this.socket.destroy();
      return;
    }
    for (const m of messages) {
      const map = isHeartbeat(m) ? this.heartbeats : this.pending;
      const p = map.get(m.id);
      if (!p) {
        this.unexpected.push(m);
        continue;
      }
      map.delete(m.id);
      clearTimeout(p.timer);
      p.resolve(toReply(m));
    }
  }
}

function headersOf(opts: CallOptions): Record<string, string> {
  return {
    ...(opts.service !== undefined ? { service: opts.service } : {}),
    method: opts.method,
    ...opts.headers,
  };
}

function toReply(m: KvMessage): KvReply {
  return {
    id: m.id,
    status: m.status,
    statusName: statusName(m.status),
    headers: m.headers,
    body: m.body,
    text: () => m.body.toString('utf8'),
  };
}
