import { describe, expect, it } from 'vitest';
import { TimerWheel, type Expirable } from '../../src/timer-wheel.js';

function item(fired: string[], name: string, then?: () => void): Expirable {
  return { wheelTick: -1, onDeadline: () => { fired.push(name); then?.(); } };
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
