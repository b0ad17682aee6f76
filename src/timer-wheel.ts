/**
 * Coarse deadlines for the hot path: one interval timer per wheel instead of one `setTimeout` per request
 * (docs/architecture.md). Deadlines fire up to one tick late, never early (measured from the start of the
 * callback that set them: src/clock.ts). An item is scheduled at most
 * once at a time; re-scheduling moves it.
 *
 * Every request schedules a deadline (routes time out after 15 s by default) and almost every one is cancelled when
 * its answer comes, so both must be cheap: a slot is an array and an item knows its index in it, so scheduling is a
 * push and cancelling a swap with the last item — no hashing. Slots form a ring covering {@link RING_SLOTS} ticks
 * ahead; deadlines further out wait in a map by tick.
 */
import { now as clockNow } from './clock.js';
import { containSafely, type Containable } from './contain.js';

/** An item with a deadline; what its deadline throws goes to its own `contain`, never out of the wheel. */
export interface Expirable extends Containable {
  /** Called once when the deadline passes (unless cancelled first). */
  onDeadline(): void;
  /** Owned by the wheel: the tick the item sits in, or -1. */
  wheelTick: number;
  /** Owned by the wheel: the item's position in its slot. Declare it (`= -1`) for a stable object shape. */
  wheelIndex?: number;
}

/** The proxy's tick: deadlines fire up to this late. */
export const WHEEL_TICK_MS = 5;

/** Ticks the ring covers: with 5 ms ticks, 20 s. */
const RING_SLOTS = 4096;
const MASK = RING_SLOTS - 1;

export class TimerWheel {
  private readonly ring: Expirable[][] = [];
  private readonly far = new Map<number, Expirable[]>();
  private timer: NodeJS.Timeout | undefined;
  private lastTick: number;
  private count = 0;
  /** The tick whose items are being fired (they are out of their slot meanwhile), or -1. */
  private firing = -1;
  private spare: Expirable[] = [];

  constructor(private readonly tickMs = 5) {
    this.lastTick = Math.floor(performance.now() / tickMs);
  }

  schedule(item: Expirable, delayMs: number): void {
    if (item.wheelTick >= 0) this.cancel(item);
    if (this.count === 0 && this.timer === undefined) this.lastTick = Math.floor(clockNow() / this.tickMs);
    // Never behind the wheel's position: a tick already swept would never fire.
    const tick = Math.max(this.lastTick, Math.ceil((clockNow() + Math.max(0, delayMs)) / this.tickMs));
    let slot: Expirable[] | undefined;
    if (tick - this.lastTick < RING_SLOTS) {
      slot = this.ring[tick & MASK] ??= [];
    } else {
      slot = this.far.get(tick);
      if (slot === undefined) this.far.set(tick, (slot = []));
    }
    item.wheelIndex = slot.length;
    slot.push(item);
    item.wheelTick = tick;
    if (this.count++ === 0) this.start();
  }

  cancel(item: Expirable): void {
    const tick = item.wheelTick;
    if (tick < 0) return;
    item.wheelTick = -1;
    const i = item.wheelIndex ?? -1;
    let slot: Expirable[] | undefined = this.ring[tick & MASK];
    if (slot === undefined || slot[i] !== item) {
      slot = this.far.get(tick);
      if (slot === undefined || slot[i] !== item) {
        // Out of its slot because its tick is being fired: it is skipped there.
        if (tick === this.firing && --this.count === 0) this.stop();
        return;
      }
    }
    const last = slot.pop()!;
    if (last !== item) {
      slot[i] = last;
      last.wheelIndex = i;
    }
    if (slot.length === 0 && this.far.get(tick) === slot) this.far.delete(tick);
    if (--this.count === 0) this.stop();
  }

  get size(): number {
    return this.count;
  }

  private start(): void {
    this.timer = setInterval(() => this.advance(), this.tickMs);
    this.timer.unref();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.far.clear();
  }

  private advance(): void {
    const now = Math.floor(performance.now() / this.tickMs);
    while (this.lastTick <= now && this.count > 0) {
      const t = this.lastTick++;
      const near = this.ring[t & MASK];
      if (near !== undefined && near.length > 0) {
        // Fire from a detached array: deadlines may schedule or cancel other items meanwhile.
        this.ring[t & MASK] = this.spare;
        this.fire(near, t);
        near.length = 0;
        this.spare = near;
      }
      const later = this.far.get(t);
      if (later !== undefined) {
        this.far.delete(t);
        this.fire(later, t);
      }
    }
    if (this.count === 0) this.stop();
    else this.lastTick = Math.max(this.lastTick, now + 1);
  }

  private fire(items: Expirable[], t: number): void {
    this.firing = t;
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!;
      if (item.wheelTick !== t) continue; // cancelled while its tick fired
      item.wheelTick = -1;
      this.count--;
      try {
        item.onDeadline();
      } catch (thrown) {
        containSafely(item, thrown, 'timer');
      }
    }
    this.firing = -1;
  }
}
