/**
 * Load balancers over a cluster's endpoints (DestinationRule `loadBalancer`). Each picks among endpoints that are
 * available (not ejected), honours endpoint `weight`, and can avoid endpoints already tried by a retry.
 */

export interface Balanced {
  readonly key: string;
  readonly weight: number;
  /** Requests in flight (LEAST_REQUEST). */
  readonly active: number;
  /** Not ejected by outlier detection. */
  available(now: number): boolean;
}

export interface LoadBalancer<E extends Balanced> {
  /**
   * An available endpoint, preferring ones not in `avoid`; undefined when none is available. `hash` is the request's
   * hash key (RING_HASH), when the route names one and the request has it.
   */
  pick(now: number, hash: string | undefined, avoid: ReadonlySet<E> | undefined): E | undefined;
}

export function createLoadBalancer<E extends Balanced>(policy: string, endpoints: readonly E[]): LoadBalancer<E> {
  switch (policy) {
    case 'RANDOM':
      return new RandomLb(endpoints);
    case 'LEAST_REQUEST':
      return new LeastRequestLb(endpoints);
    case 'RING_HASH':
    case 'MAGLEV':
      return new RingHashLb(endpoints);
    default:
      return new RoundRobinLb(endpoints);
  }
}

/** Fallback walk shared by all balancers: the first available endpoint from `start`, skipping `avoid` if it can. */
function walk<E extends Balanced>(list: readonly E[], start: number, now: number, avoid: ReadonlySet<E> | undefined): E | undefined {
  const n = list.length;
  let fallback: E | undefined;
  for (let i = 0; i < n; i++) {
    const e = list[(start + i) % n]!;
    if (!e.available(now)) continue;
    if (avoid?.has(e)) {
      fallback ??= e;
      continue;
    }
    return e;
  }
  return fallback;
}

/**
 * Weighted round robin. Equal weights take the plain rotation; unequal ones use a precomputed interleaved schedule
 * (each endpoint appears `weight` times, spread out), so the hot path stays an index increment.
 */
class RoundRobinLb<E extends Balanced> implements LoadBalancer<E> {
  private readonly schedule: readonly E[];
  private next = 0;
  constructor(endpoints: readonly E[]) {
    this.schedule = interleave(endpoints);
  }
  pick(now: number, _hash: string | undefined, avoid: ReadonlySet<E> | undefined): E | undefined {
    const s = this.schedule;
    if (s.length === 0) return undefined;
    const start = this.next++ % s.length;
    return walk(s, start, now, avoid);
  }
}

class RandomLb<E extends Balanced> implements LoadBalancer<E> {
  private readonly schedule: readonly E[];
  constructor(endpoints: readonly E[]) {
    this.schedule = interleave(endpoints);
  }
  pick(now: number, _hash: string | undefined, avoid: ReadonlySet<E> | undefined): E | undefined {
    const s = this.schedule;
    if (s.length === 0) return undefined;
    return walk(s, Math.floor(Math.random() * s.length), now, avoid);
  }
}

/** Power of two choices: two weighted-random candidates, the one with fewer requests in flight (per unit weight). */
class LeastRequestLb<E extends Balanced> implements LoadBalancer<E> {
  private readonly schedule: readonly E[];
  constructor(endpoints: readonly E[]) {
    this.schedule = interleave(endpoints);
  }
  pick(now: number, _hash: string | undefined, avoid: ReadonlySet<E> | undefined): E | undefined {
    const s = this.schedule;
    if (s.length === 0) return undefined;
    const a = walk(s, Math.floor(Math.random() * s.length), now, avoid);
    const b = walk(s, Math.floor(Math.random() * s.length), now, avoid);
    if (!a || !b) return a ?? b;
    if (avoid?.has(a) !== avoid?.has(b)) return avoid?.has(a) ? b : a;
    return a.active / a.weight <= b.active / b.weight ? a : b;
  }
}

/**
 * Consistent hashing on a ring (ketama style): each endpoint owns many points, proportional to its weight; a key
 * goes to the first point at or after its hash. Adding or removing one of N endpoints moves about 1/N of the keys.
 * Without a hash key it falls back to round robin.
 */
class RingHashLb<E extends Balanced> implements LoadBalancer<E> {
  private readonly points: Uint32Array;
  private readonly owners: E[];
  private readonly rr: RoundRobinLb<E>;
  private static readonly POINTS_PER_WEIGHT = 160;

  constructor(endpoints: readonly E[]) {
    this.rr = new RoundRobinLb(endpoints);
    const entries: Array<[number, E]> = [];
    const weights = boundedWeights(endpoints, MAX_RING_POINTS / RingHashLb.POINTS_PER_WEIGHT);
    endpoints.forEach((e, j) => {
      const n = weights[j]! * RingHashLb.POINTS_PER_WEIGHT;
      for (let i = 0; i < n; i++) entries.push([hash32(`${e.key}#${i}`), e]);
    });
    entries.sort((x, y) => x[0] - y[0]);
    this.points = Uint32Array.from(entries.map((x) => x[0]));
    this.owners = entries.map((x) => x[1]);
  }

  pick(now: number, hash: string | undefined, avoid: ReadonlySet<E> | undefined): E | undefined {
    if (hash === undefined || this.points.length === 0) return this.rr.pick(now, hash, avoid);
    const h = hash32(hash);
    // First point >= h (binary search), wrapping around.
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return walk(this.owners, lo % this.owners.length, now, avoid);
  }
}

/** Spreads each endpoint `weight` times through a schedule (smooth weighted round robin, computed once). */
function interleave<E extends Balanced>(endpoints: readonly E[]): E[] {
  const weights = boundedWeights(endpoints, MAX_SCHEDULE);
  if (weights.every((w) => w === weights[0])) return [...endpoints];
  const total = weights.reduce((a, b) => a + b, 0);
  const current = weights.map(() => 0);
  const out: E[] = [];
  for (let n = 0; n < total; n++) {
    let best = 0;
    for (let i = 0; i < endpoints.length; i++) {
      current[i]! += weights[i]!;
      if (current[i]! > current[best]!) best = i;
    }
    current[best]! -= total;
    out.push(endpoints[best]!);
  }
  return out;
}

/** Schedule slots and ring points are built per unit of weight: bounded, so weights up to 2^32-1 cost no more. */
const MAX_SCHEDULE = 65_536;
const MAX_RING_POINTS = 262_144;

/** Integer weights ≥ 1, scaled down (proportions kept to rounding) when they sum to more than `max`. */
function boundedWeights(endpoints: readonly Balanced[], max: number): number[] {
  const ws = endpoints.map((e) => (Number.isFinite(e.weight) ? Math.max(1, Math.round(e.weight)) : 1));
  const total = ws.reduce((a, b) => a + b, 0);
  return total <= max ? ws : ws.map((w) => Math.max(1, Math.round((w * max) / total)));
}

/** FNV-1a 32-bit with a final avalanche (murmur3 fmix): fast, and well spread for short keys. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
