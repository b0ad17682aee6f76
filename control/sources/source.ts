import type { CrdDocument } from '../types.js';

/**
 * A place CRDs come from besides files: a Kubernetes API server, a Dubbo registry in Zookeeper, … The control plane
 * merges every source's documents with the files' before validating and translating, and recompiles when a source
 * says its documents changed. A source whose backend is unreachable keeps its last documents (and logs why).
 */
export interface DocumentSource {
  /** For logs and errors: `kubernetes https://…`, `zookeeper 127.0.0.1:2181`. */
  readonly name: string;
  /** Connects and starts watching; resolves once the first full list is in. Calls `onChange` after every change. */
  start(onChange: () => void): Promise<void>;
  /** The documents as of now. Their `file` names the source (e.g. `kubernetes:default/ServiceEntry/x`). */
  documents(): readonly CrdDocument[];
  close(): Promise<void>;
}
