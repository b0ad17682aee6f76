/**
 * A typed wrapper over the dubbo2.js direct-connection consumer (`DirectlyDubbo`), used by the demo and the tests
 * as an independent, real-world Dubbo client of the proxy.
 *
 * What the wrapper adds to dubbo2.js 2.3.9 (which it reaches through a few internals, all checked at runtime):
 * - attachments: direct mode has no attachment option, so `addQueue` is wrapped on the instance to set
 *   `ctx.attachments` (client-wide ones merged with per-call ones) before the context is queued and encoded;
 * - readable errors for non-OK statuses: dubbo2.js would report the raw hessian body as the error text; the wrapper
 *   decodes it and gives a {@link DubboStatusError} carrying the status code;
 * - close(): direct mode has none; the wrapper disables reconnection, destroys the socket worker's socket and fails
 *   whatever is still queued, so scripts and tests can end.
 *
 * Calls never throw: they resolve to `{res}` or `{err}`. A business exception (status 20, response type 0/3) comes
 * back as an Error whose `name` is the Java class (e.g. `java.lang.RuntimeException`) and `message` its detail
 * message; a timeout as Error('remote invoke timeout').
 */
import { createRequire } from 'node:module';
import type net from 'node:net';
import java from 'js-to-java';
import { DEMO_INTERFACE } from './provider.js';
import { FLAG_EVENT, HEADER_LENGTH, Status, decodeResponseBody, readId, statusName, type JavaValue } from './wire.js';

const require = createRequire(import.meta.url);

// ---- the parts of dubbo2.js we use (es7/directly-dubbo.js, context.js, socket-worker.js) --------------------------

interface DubboContext {
  readonly requestId: number;
  readonly methodName: string;
  /** The setter merges into the current attachments. */
  attachments: Record<string, unknown>;
}

interface DubboCallResult {
  res: unknown;
  err: Error | null;
}

interface SocketWorker {
  _retry: number;
  _status: string;
  _socket?: net.Socket;
  _initSocket: () => void;
  _onSubscribeDecodeBuff?: (data: Buffer) => void;
  _decodeBuff?: { subscribe(fn: (data: Buffer) => void): unknown };
  _subscriber: { onData(json: { requestId: number; res: unknown; err: Error | null }): void };
}

interface DirectlyDubboInstance {
  proxyService(p: {
    dubboInterface: string;
    methods: Record<string, (...args: never[]) => unknown[]>;
    version?: string;
    group?: string;
    timeout?: number;
  }): Record<string, (...args: unknown[]) => Promise<DubboCallResult>>;
  addQueue(ctx: DubboContext): void;
  fail(requestId: number, err: Error): void;
  _socketWorker?: SocketWorker;
  _queue?: Map<number, DubboContext>;
  _socketStatus?: string;
}

interface DirectlyDubboClass {
  from(props: { dubboAddress: string; dubboVersion: string; dubboInvokeTimeout: number }): DirectlyDubboInstance;
}

const DirectlyDubbo = (require('dubbo2.js/es7/directly-dubbo.js') as { default: DirectlyDubboClass }).default;

// ---- public API ---------------------------------------------------------------------------------------------------

/** A non-OK response status (30 CLIENT_TIMEOUT … 100); `message` is the provider's (or proxy's) error text. */
export class DubboStatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = `DubboStatusError(${status} ${statusName(status)})`;
  }
}

export type Attachments = Record<string, string>;

export interface CallResult<T> {
  res?: T;
  err?: Error & { status?: number };
}

export interface DemoClientOptions {
  /** `host:port` of the provider or the proxy. */
  address: string;
  /** Attachments sent with every call (per-call ones are merged over them). */
  attachments?: Attachments;
  /** dubbo2.js invoke timeout, in seconds (default 10). */
  timeoutSeconds?: number;
  /** Service version in the request (default '0.0.0', what Dubbo sends when none is configured). */
  version?: string;
  /** Dubbo protocol version in the request (default '2.0.2'). */
  dubboVersion?: string;
  /** Interface (Dubbo path); default the demo interface. */
  dubboInterface?: string;
}

export interface DemoClient {
  sayHello(name: string, attachments?: Attachments): Promise<CallResult<string>>;
  /** The attachments the provider received, as a map. */
  echoAttachments(attachments?: Attachments): Promise<CallResult<Record<string, unknown>>>;
  slow(ms: number, attachments?: Attachments): Promise<CallResult<string>>;
  fail(message: string, attachments?: Attachments): Promise<CallResult<unknown>>;
  whoami(attachments?: Attachments): Promise<CallResult<string>>;
  /** Any method, with js-to-java typed arguments (e.g. `java.String('x')`, `java('int', 3)`). */
  call<T = unknown>(method: string, args: JavaValue[], attachments?: Attachments): Promise<CallResult<T>>;
  /** Disables reconnection, closes the socket and fails queued calls. Idempotent. */
  close(): Promise<void>;
}

export function createDemoClient(opts: DemoClientOptions): DemoClient {
  const dubbo = DirectlyDubbo.from({
    dubboAddress: opts.address,
    dubboVersion: opts.dubboVersion ?? '2.0.2',
    // Without it dubbo2.js arms a 0 ms (NaN) timer and every call fails at once.
    dubboInvokeTimeout: opts.timeoutSeconds ?? 10,
  });
  const dubboInterface = opts.dubboInterface ?? DEMO_INTERFACE;
  const version = opts.version ?? '0.0.0';
  const base: Attachments = { ...opts.attachments };
  let perCall: Attachments | undefined;
  let closed = false;

  // 1. attachments: proxyService's promise executor calls this.addQueue(ctx) synchronously, so the per-call
  //    attachments staged just before the call are the ones of this context.
  const origAddQueue = dubbo.addQueue.bind(dubbo);
  dubbo.addQueue = (ctx: DubboContext): void => {
    const att = { ...base, ...perCall };
    if (Object.keys(att).length > 0) ctx.attachments = att;
    origAddQueue(ctx);
  };

  // 2. decode non-OK statuses into DubboStatusError (dubbo2.js would stringify the raw hessian body).
  const worker = dubbo._socketWorker;
  const origDecoded = worker?._onSubscribeDecodeBuff;
  if (worker && worker._decodeBuff && origDecoded) {
    worker._decodeBuff.subscribe((data: Buffer) => {
      const status = data[3];
      if (status !== undefined && status !== Status.OK && ((data[2] ?? 0) & FLAG_EVENT) === 0) {
        const requestId = Number(readId(data, 4));
        const decoded = decodeResponseBody(status, data.subarray(HEADER_LENGTH));
        worker._subscriber.onData({
          requestId,
          res: null,
          err: new DubboStatusError(status, decoded.error?.message ?? ''),
        });
        return;
      }
      origDecoded(data);
    });
  }

  const proxy = dubbo.proxyService({
    dubboInterface,
    version,
    methods: {
      sayHello: (name: string) => [java.String(name)],
      echoAttachments: () => [],
      slow: (ms: number) => [java('int', ms)],
      fail: (message: string) => [java.String(message)],
      whoami: () => [],
    },
  });

  async function invoke<T>(fn: () => Promise<DubboCallResult>, attachments?: Attachments): Promise<CallResult<T>> {
    if (closed) return { err: new Error('client closed') };
    perCall = attachments;
    let p: Promise<DubboCallResult>;
    try {
      p = fn();
    } finally {
      perCall = undefined;
    }
    const { res, err } = await p;
    return err ? { err } : { res: res as T };
  }

  return {
    sayHello: (name, att) => invoke<string>(() => proxy.sayHello!(name), att),
    echoAttachments: (att) => invoke<Record<string, unknown>>(() => proxy.echoAttachments!(), att),
    slow: (ms, att) => invoke<string>(() => proxy.slow!(ms), att),
    fail: (message, att) => invoke<unknown>(() => proxy.fail!(message), att),
    whoami: (att) => invoke<string>(() => proxy.whoami!(), att),
    call: <T>(method: string, args: JavaValue[], att?: Attachments) => {
      const p = dubbo.proxyService({ dubboInterface, version, methods: { [method]: () => args } });
      return invoke<T>(() => p[method]!(), att);
    },
    async close() {
      if (closed) return;
      closed = true;
      const w = dubbo._socketWorker;
      if (w) {
        w._retry = 0;
        w._initSocket = () => {}; // a reconnect timer already armed becomes a no-op
        const s = w._socket;
        if (s && !s.destroyed) {
          await new Promise<void>((resolve) => {
            s.once('close', () => resolve());
            s.destroy();
          });
        }
      }
      // Fail whatever is still queued (the worker's onClose does it only from the CONNECTED state).
      dubbo._socketStatus = 'CLOSED';
      for (const id of [...(dubbo._queue?.keys() ?? [])]) dubbo.fail(id, new Error('client closed'));
    },
  };
}
