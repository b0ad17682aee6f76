import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { log } from './log.js';

/**
 * Watches config paths (files or directories, recursively) and calls `onChange` when any file under them is
 * added, removed or rewritten. It polls metadata rather than using fs.watch: editors and `kubectl cp`-style tools
 * replace files by rename, which fs.watch on a file loses, and a poll of a few stat calls is cheap and predictable.
 */
export class ConfigWatcher {
  private timer: NodeJS.Timeout | undefined;
  private last = '';
  /** A changed signature seen once: it must hold for one more poll before it counts. */
  private settling: string | undefined;
  private busy = false;

  constructor(
    private readonly paths: readonly string[],
    private readonly onChange: () => Promise<void> | void,
    private readonly intervalMs = 200,
  ) {}

  async start(): Promise<void> {
    this.last = await this.signature();
    this.timer = setInterval(() => void this.check(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const sig = await this.signature();
      if (sig === this.last) {
        this.settling = undefined;
      } else if (sig !== this.settling) {
        // A file rewritten in place is first truncated, then written: a poll between the two would load it empty
        // (often valid config: a router file with no routes). Wait until the files hold still for one poll.
        this.settling = sig;
      } else {
        this.settling = undefined;
        this.last = sig;
        await this.onChange();
      }
    } catch (err) {
      // A file that vanished or cannot be read mid-poll: the last good config keeps serving; the next poll retries.
      log.errorLimited('config_watch', 'cannot read the config files', { error: (err as Error).message });
    } finally {
      this.busy = false;
    }
  }

  private async signature(): Promise<string> {
    const parts: string[] = [];
    for (const p of this.paths) await collect(p, parts);
    return parts.join('\n');
  }
}

async function collect(path: string, out: string[]): Promise<void> {
  let s;
  try {
    s = await stat(path);
  } catch {
    out.push(`${path} missing`);
    return;
  }
  if (s.isDirectory()) {
    const names = (await readdir(path).catch(() => [] as string[])).sort();
    for (const n of names) if (!n.startsWith('.')) await collect(join(path, n), out);
  } else {
    out.push(`${path} ${s.mtimeMs} ${s.size}`);
  }
}
