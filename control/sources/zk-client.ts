/**
 * The ZooKeeper client, typed: `node-zookeeper-client` (pure JavaScript, the client dubbo2.js uses). It is in
 * node_modules only as a dependency of the dubbo2.js devDependency (hoisted to the top level by npm, or nested under
 * `dubbo2.js/node_modules` by other installers), so it is loaded from wherever it is found. It should become a direct
 * dependency of Waypost when `--zookeeper` ships; it has no types, hence the interface below (only what is used).
 *
 * {@link createZkClient} also works around a bug of the library (0.2.x, still open upstream: alexguan/
 * node-zookeeper-client#70, #39): bytes left over from a connection are never dropped, and an undecodable frame
 * (`Unknown code: -1831337984`, `offset … out of range`) is thrown from a socket 'data' handler — an uncaught exception
 * that would take the whole control plane down, typically while ZooKeeper restarts. The client's connection manager is
 * patched to drop leftovers when a connection closes and, on an undecodable frame, to drop the connection (the library
 * then reconnects and re-registers its watches) and emit `protocolError`.
 */
import type { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import path from 'node:path';

export interface ZkStat {
  version: number;
  numChildren: number;
}

export interface ZkEvent {
  /** NODE_CREATED 1, NODE_DELETED 2, NODE_DATA_CHANGED 3, NODE_CHILDREN_CHANGED 4. */
  type: number;
  name: string;
  path: string;
  toString(): string;
}

export interface ZkError extends Error {
  /** e.g. -101 NO_NODE, -110 NODE_EXISTS, -4 CONNECTION_LOSS. */
  getCode(): number;
  code?: number;
}

export type ZkWatcher = (event: ZkEvent) => void;

export interface ZkClient extends EventEmitter {
  connect(): void;
  close(): void;
  getState(): { name: string; code: number };
  getSessionId(): Buffer;
  getChildren(path: string, watcher: ZkWatcher | undefined, cb: (err: ZkError | null, children: string[], stat: ZkStat) => void): void;
  getChildren(path: string, cb: (err: ZkError | null, children: string[], stat: ZkStat) => void): void;
  exists(path: string, watcher: ZkWatcher | undefined, cb: (err: ZkError | null, stat: ZkStat | null) => void): void;
  create(path: string, data: Buffer | null, mode: number, cb: (err: ZkError | null, path: string) => void): void;
  mkdirp(path: string, cb: (err: ZkError | null, path: string) => void): void;
  remove(path: string, version: number, cb: (err: ZkError | null) => void): void;
}

export interface ZkModule {
  createClient(connectionString: string, options?: { sessionTimeout?: number; spinDelay?: number; retries?: number }): ZkClient;
  CreateMode: { PERSISTENT: number; EPHEMERAL: number; PERSISTENT_SEQUENTIAL: number; EPHEMERAL_SEQUENTIAL: number };
  Exception: { NO_NODE: number; NODE_EXISTS: number; CONNECTION_LOSS: number; SESSION_EXPIRED: number };
}

let cached: ZkModule | undefined;

interface ConnectionManagerInternals {
  pendingBuffer: Buffer | null;
  socket?: { destroy(): void };
  onSocketData(buffer: Buffer): void;
  onSocketClosed(hadError: boolean): void;
}

/** A client of {@link zookeeperModule}, hardened as the file comment says. Listen for `protocolError` to log it. */
export function createZkClient(
  connectionString: string,
  options: { sessionTimeout?: number; spinDelay?: number; retries?: number },
): ZkClient {
  const client = zookeeperModule().createClient(connectionString, options);
  const cm = (client as unknown as { connectionManager?: Partial<ConnectionManagerInternals> }).connectionManager;
  // Only the shape this was written against is patched; another version of the library is used as it is.
  if (cm && typeof cm.onSocketData === 'function' && typeof cm.onSocketClosed === 'function' && 'pendingBuffer' in cm) {
    const onData = cm.onSocketData;
    const onClosed = cm.onSocketClosed;
    // Own properties: `connect()` binds `this.onSocketData` for each new socket, so these are what sockets call.
    cm.onSocketClosed = function (this: ConnectionManagerInternals, hadError: boolean): void {
      this.pendingBuffer = null;
      onClosed.call(this, hadError);
    };
    cm.onSocketData = function (this: ConnectionManagerInternals, buffer: Buffer): void {
      try {
        onData.call(this, buffer);
      } catch (err) {
        this.pendingBuffer = null;
        this.socket?.destroy();
        client.emit('protocolError', err);
      }
    };
  }
  return client;
}

/** `node-zookeeper-client`, from the top level of node_modules or from under dubbo2.js. */
export function zookeeperModule(): ZkModule {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  try {
    cached = require('node-zookeeper-client') as ZkModule;
  } catch (first) {
    try {
      const dubbo = path.dirname(require.resolve('dubbo2.js/package.json'));
      cached = require(require.resolve('node-zookeeper-client', { paths: [dubbo] })) as ZkModule;
    } catch {
      throw new Error(
        `the ZooKeeper client (npm package node-zookeeper-client) is not installed: ${(first as Error).message.split('\n')[0]}`,
      );
    }
  }
  return cached;
}
