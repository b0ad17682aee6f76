/**
 * Coarse deadlines for the hot path: one interval timer per wheel instead of one `setTimeout` per request
 * (ARCHITECTURE "timers are coarse"). Deadlines fire up to one tick late, never early. An item is scheduled at most
 * once at a time; re-scheduling moves it.
 */
export interface Expirable {
  /** Called once when the deadline passes (unless cancelled first). */
  onDeadline(): void;
  /** Owned by the wheel: the tick the item sits in, or -1. */
  wheelTick: number;
}

export class TimerWheel {
  private readonly slots = new Map<number, Set<Expirable>>();
  private timer: NodeJS.Timeout | undefined;
  private lastTick: number;
  private count = 0;

  constructor(private readonly tickMs = 5) {
    this.lastTick = Math.floor(performance.now() / tickMs);
  }

  schedule(item: Expirable, delayMs: number): void {
    if (item.wheelTick >= 0) this.cancel(item);
    // Never behind the wheel's position: a tick already swept would never fire.
    const tick = Math.max(this.lastTick, Math.ceil((performance.now() + Math.max(0, delayMs)) / this.tickMs));
    let slot = this.slots.get(tick);
    if (!slot) {
      slot = new Set();
      this.slots.set(tick, slot);
    }
    slot.add(item);
    item.wheelTick = tick;
    if (this.count++ === 0) this.start();
  }

  cancel(item: Expirable): void {
    const tick = item.wheelTick;
    if (tick < 0) return;
    item.wheelTick = -1;
    const slot = this.slots.get(tick);
    if (slot?.delete(item)) {
      if (slot.size === 0) this.slots.delete(tick);
      if (--this.count === 0) this.stop();
    }
  }

  get size(): number {
    return this.count;
  }

  private start(): void {
    this.lastTick = Math.floor(performance.now() / this.tickMs);
    this.timer = setInterval(() => this.advance(), this.tickMs);
    this.timer.unref();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.slots.clear();
  }

  private advance(): void {
    const now = Math.floor(performance.now() / this.tickMs);
    while (this.lastTick <= now && this.count > 0) {
      const t = this.lastTick++;
      const slot = this.slots.get(t);
      if (!slot) continue;
      this.slots.delete(t);
      for (const item of slot) {
        item.wheelTick = -1;
        this.count--;
        item.onDeadline();
      }
    }
    if (this.count === 0) this.stop();
    else this.lastTick = Math.max(this.lastTick, now + 1);
  }
}
