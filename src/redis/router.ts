/**
 * Key-prefix routing: the longest matching prefix wins (as Envoy's redis_proxy), else the catch-all route. Prefixes
 * are bytes; a byte trie walks the key once, so matching costs one step per key byte up to the longest prefix,
 * whatever the number of routes. With `case_insensitive`, ASCII letters match either case.
 */

export interface MirrorPolicy {
  readonly cluster: string;
  /** 0..1: the share of requests mirrored. */
  readonly fraction: number;
  /** Mirror only commands that write. */
  readonly excludeReads: boolean;
}

export interface RedisRoute {
  /** The metric label: the prefix itself, or `catch_all`. */
  readonly name: string;
  readonly prefix: Buffer;
  readonly removePrefix: boolean;
  readonly cluster: string;
  readonly mirrors: readonly MirrorPolicy[];
  /** Scripts (EVAL, EVALSHA, FCALL …) whose keys are all on this route may run (a Waypost extension). */
  readonly allowScripts: boolean;
}

class Node {
  route: RedisRoute | undefined;
  children: Map<number, Node> | undefined;
}

export class PrefixRouter {
  private readonly root = new Node();

  constructor(
    routes: readonly RedisRoute[],
    readonly catchAll: RedisRoute | undefined,
    readonly caseInsensitive: boolean,
  ) {
    for (const r of routes) {
      let node = this.root;
      for (const raw of r.prefix) {
        const b = this.fold(raw);
        node.children ??= new Map();
        let next = node.children.get(b);
        if (!next) {
          next = new Node();
          node.children.set(b, next);
        }
        node = next;
      }
      if (node.route) throw new Error(`duplicate prefix "${r.prefix.toString()}"${caseInsensitive ? ' (prefixes are case-insensitive)' : ''}`);
      node.route = r;
    }
  }

  /** The route for the key `buf[start, end)`, or undefined when no prefix matches and there is no catch-all. */
  match(buf: Buffer, start: number, end: number): RedisRoute | undefined {
    let node: Node | undefined = this.root;
    let best = this.root.route;
    for (let i = start; i < end; i++) {
      const children: Map<number, Node> | undefined = node.children;
      if (children === undefined) break;
      node = children.get(this.fold(buf[i]!));
      if (node === undefined) break;
      if (node.route !== undefined) best = node.route;
    }
    return best ?? this.catchAll;
  }

  /** Whether any prefix route exists (else every key goes to the catch-all). */
  get hasPrefixes(): boolean {
    return this.root.children !== undefined || this.root.route !== undefined;
  }

  private fold(b: number): number {
    return this.caseInsensitive && b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
  }
}
