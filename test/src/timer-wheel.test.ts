import { describe, expect, it } from 'vitest';
import { TimerWheel, type Expirable } from '../../src/timer-wheel.js';

/** A deadline in these tests never throws: a call here is a failure. */
const NO_CONTAIN = (thrown: unknown): void => {
  throw new Error(`unexpected contain: ${String(thrown)}`);
};

function item(fired: string[], name: string, then?: () => void): Expirable {
  return { wheelTick: -1, onDeadline: () => { fired.push(name); then?.(); }, contain: NO_CONTAIN };
}

describe('timer wheel', () => {
  it('fires deadlines in order, never early, and not cancelled ones', async () => {
    const wheel = new TimerWheel(5);
    const fired: string[] = [];
    const start = performance.now();
    const times: Record<string, number> = {};
    const mk = (n: string): Expirable => item(fired, n, () => (times[n] = performance.now() - start));
    const a = mk('a');
    const b = mk('b');
    const c = mk('c');
    wheel.schedule(b, 60);
    wheel.schedule(a, 20);
    wheel.schedule(c, 40);
    wheel.cancel(c);
    expect(wheel.size).toBe(2);
    await new Promise((r) => setTimeout(r, 150));
    expect(fired).toEqual(['a', 'b']);
    expect(times.a).toBeGreaterThanOrEqual(20);
    expect(times.b).toBeGreaterThanOrEqual(60);
    expect(wheel.size).toBe(0);
  });

  it('re-scheduling moves an item; items scheduled from a deadline still fire', async () => {
    const wheel = new TimerWheel(5);
    const fired: string[] = [];
    const late = item(fired, 'late');
    const moved = item(fired, 'moved');
    const chain = item(fired, 'chain', () => wheel.schedule(late, 0));
    wheel.schedule(moved, 10);
    wheel.schedule(moved, 30);
    wheel.schedule(chain, 10);
    await new Promise((r) => setTimeout(r, 80));
    expect(fired).toEqual(['chain', 'late', 'moved']);
  });
});

describe('timer wheel bookkeeping', () => {
  it('fires exactly the items left after many schedules, cancels and moves, including ones beyond the ring', async () => {
    const wheel = new TimerWheel(5);
    const fired = new Set<number>();
    const items: Expirable[] = [];
    for (let i = 0; i < 2000; i++) items.push({ wheelTick: -1, wheelIndex: -1, onDeadline: () => fired.add(i), contain: NO_CONTAIN });
    // Most in a handful of slots (so cancels swap within crowded arrays), a few 30 s out (beyond the 20 s ring).
    items.forEach((it, i) => wheel.schedule(it, i % 50 === 0 ? 30_000 : 10 + (i % 4) * 5));
    const cancelled = new Set<number>();
    for (let i = 0; i < 2000; i += 3) {
      wheel.cancel(items[i]!);
      cancelled.add(i);
    }
    // Moved to later within the ring: they fire too, after the others.
    const moved = [1, 2, 4, 5].filter((i) => !cancelled.has(i));
    for (const i of moved) wheel.schedule(items[i]!, 60);
    const farLeft = items.filter((_, i) => i % 50 === 0 && !cancelled.has(i)).length;
    expect(wheel.size).toBe(2000 - cancelled.size);
    await new Promise((r) => setTimeout(r, 150));
    const expected = [...Array(2000).keys()].filter((i) => !cancelled.has(i) && i % 50 !== 0);
    expect([...fired].sort((a, b) => a - b)).toEqual(expected);
    expect(wheel.size).toBe(farLeft);
    for (const it of items) wheel.cancel(it);
    expect(wheel.size).toBe(0);
  });

  it('an item cancelled or moved by another deadline of the same tick does not fire then', async () => {
    const wheel = new TimerWheel(5);
    const fired: string[] = [];
    const victim: Expirable = { wheelTick: -1, wheelIndex: -1, onDeadline: () => fired.push('victim'), contain: NO_CONTAIN };
    const mover: Expirable = { wheelTick: -1, wheelIndex: -1, onDeadline: () => fired.push('mover'), contain: NO_CONTAIN };
    const killer: Expirable = {
      wheelTick: -1,
      wheelIndex: -1,
      onDeadline: () => {
        fired.push('killer');
        wheel.cancel(victim);
        wheel.schedule(mover, 40);
      },
      contain: NO_CONTAIN,
    };
    wheel.schedule(killer, 10);
    wheel.schedule(victim, 10);
    wheel.schedule(mover, 10);
    await new Promise((r) => setTimeout(r, 30));
    expect(fired).toEqual(['killer']);
    await new Promise((r) => setTimeout(r, 60));
    expect(fired).toEqual(['killer', 'mover']);
    expect(wheel.size).toBe(0);
  });

  it('a deadline that throws goes to its own contain; the items after it in the same tick still fire', async () => {
    const wheel = new TimerWheel(5);
    const fired: string[] = [];
    const contained: unknown[] = [];
    const bad: Expirable = {
      wheelTick: -1,
      wheelIndex: -1,
      onDeadline: () => {
        throw new Error('bad bytes');
      },
      contain: (thrown, where) => contained.push([(thrown as Error).message, where]),
    };
    // Even an owner whose contain throws as well cannot stop the wheel.
    const worse: Expirable = {
      wheelTick: -1,
      wheelIndex: -1,
      onDeadline: () => {
        throw new Error('worse');
      },
      contain: () => {
        throw new Error('contain failed too');
      },
    };
    wheel.schedule(bad, 10);
    wheel.schedule(worse, 10);
    wheel.schedule(item(fired, 'after'), 10);
    wheel.schedule(item(fired, 'later'), 40);
    await new Promise((r) => setTimeout(r, 80));
    expect(contained).toEqual([['bad bytes', 'timer']]);
    expect(fired).toEqual(['after', 'later']);
    expect(wheel.size).toBe(0);
  });
});
