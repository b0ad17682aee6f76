import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A well-formed client that keeps calling while a test attacks the proxy: every call must succeed. `call(n)` makes
 * the nth call and throws on a wrong answer; failures are kept with their call number.
 */
export class Steady {
  ok = 0;
  readonly failures: string[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    readonly name: string,
    private readonly call: (n: number) => Promise<void>,
    private readonly opts: { pauseMs?: number; deadlineMs?: number } = {},
  ) {}

  /** The nth call, failed if it has no outcome within the deadline (a hang is a failure, not a stuck test). */
  private attempt(n: number): Promise<void> {
    const ms = this.opts.deadlineMs;
    if (ms === undefined) return this.call(n);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} well-formed call ${n}: no outcome within ${ms} ms`)), ms);
    });
    return Promise.race([this.call(n), late]).finally(() => clearTimeout(timer));
  }

  start(): void {
    this.stopped = false;
    this.loop = (async () => {
      for (let n = 0; !this.stopped; n++) {
        try {
          await this.attempt(n);
          this.ok++;
        } catch (err) {
          this.failures.push(`${n}: ${(err as Error).message}`);
        }
        await sleep(this.opts.pauseMs ?? 10);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}
