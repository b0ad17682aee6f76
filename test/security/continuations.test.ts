/**
 * Every place the data plane hands work to a later turn of the event loop — a timer, a promise, a socket or stream
 * event, a deferred flush — is a continuation: when it runs, nothing of the caller's error handling is on the stack,
 * and a throw in it reaches Node's uncaught-exception handler (the process exits). This suite keeps the inventory of
 * them: each one is listed here with how it is kept from throwing. A new one fails this test until it is made to
 * re-enter through `reenter()`/`containSafely()` (src/contain.ts) or a guarded handler, and listed.
 *
 * test/security/containment.test.ts makes the request continuations throw for real; this one makes sure no new one
 * goes unlisted.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The code that handles bytes from clients, upstreams, registries and xDS servers. */
const SCANNED = ['src', 'codecs'];
/** Not data plane: the process's command line and signals, and the admin page's browser script (a string). */
const NOT_SCANNED = new Set(['src/cli.ts', 'src/admin-page.ts']);
/** A socket's own `setTimeout(ms)` only arms its 'timeout' event (listed as an event), so `.setTimeout(` is not one. */
const CONTINUATION = /(?<![.\w])(?:setTimeout|setInterval|setImmediate)\(|process\.nextTick\(|queueMicrotask\(|\.then\(|\.catch\(|\.finally\(|\.on\('|\.once\('/;
/** Lines after a continuation's own that still belong to its statement (a callback passed on the next line). */
const STATEMENT_LINES = 3;

/**
 * How a continuation is kept from throwing:
 *  - `reenter`: its statement calls `reenter(` (on its line or the next few): a throw goes to its owner's `contain`;
 *  - `handler:NAME`: it calls the method NAME, whose body catches (`try`, `reenter(` or `containSafely(`);
 *  - `safe:WHY`: it touches no bytes from a peer and no request state; WHY says what it does.
 */
type Guard = 'reenter' | `handler:${string}` | `safe:${string}`;

const INVENTORY: Record<string, Array<[site: string, guard: Guard]>> = {
  'src/downstream.ts': [
    ["socket.on('data'", 'handler:onData'],
    ["socket.on('error'", 'safe:logs the socket error at debug level'],
    ["socket.on('close'", 'handler:onClose'],
    ["socket.on('drain'", 'safe:resumes reading (own flags only)'],
    ["socket.on('timeout'", 'safe:idle timeout: counts and destroys its own socket'],
  ],
  'src/upstream.ts': [
    ['this.connectTimer = setTimeout(', 'handler:fail'],
    ["this.socket.on('data'", 'handler:fail'],
    ["this.socket.on('error'", 'handler:fail'],
    ["this.socket.on('close'", 'handler:fail'],
    ["this.socket.on('drain'", 'safe:releases the downstreams waiting for this connection to drain'],
  ],
  'src/timer-wheel.ts': [['setInterval(() => this.advance()', 'handler:fire']],
  'src/outbox.ts': [
    ['process.nextTick(this.flushBound)', 'safe:writes already-encoded bytes to its socket'],
    ['setImmediate(this.flushBound)', 'safe:writes already-encoded bytes to its socket'],
  ],
  'src/clock.ts': [['queueMicrotask(forget)', 'safe:clears the cached time']],
  'src/filters/global-ratelimit.ts': [
    ["import('../xds/protos.js')]).then(", 'safe:builds the gRPC client once (no request state)'],
    ['loadRpc().then(', 'reenter'],
  ],
  'src/listener.ts': [
    ["raw.once('close', () => this.overload.socketClosed())", 'safe:counts a closed descriptor'],
    ["raw.once('close', () => this.handshaking.delete(raw))", 'safe:forgets a handshaking socket'],
    ["server.once('error', reject)", 'safe:rejects listen() (bind errors)'],
    ["server.on('error'", 'safe:counts a failed accept (EMFILE)'],
    ['setTimeout(check, 20)', 'safe:polls its own connection count while draining'],
    ["socket.on('error', () => undefined)", 'safe:ignores errors of a socket it is closing'],
  ],
  'src/tls.ts': [
    ['const timer = setTimeout(() => refuse(', 'safe:closes a socket whose handshake did not finish'],
    ["socket.on('error', onEarlyError)", 'safe:closes a socket that failed before its handshake'],
    ["secure.on('error'", 'safe:counts and closes a failed handshake'],
    ["secure.once('secure'", 'handler:onSecure'],
    ["socket.once('data'", 'handler:onFirstBytes'],
  ],
  'src/proxy.ts': [
    ["setTimeout(() => resolve('timeout')", 'safe:the drain deadline'],
    [".then(() => 'drained' as const)", 'safe:the drain outcome'],
  ],
  'src/overload.ts': [['setInterval(() => this.tick()', 'safe:samples memory and sheds (own bookkeeping)']],
  'src/config-watch.ts': [
    ['setInterval(() => void this.check()', 'handler:check'],
    ['.catch(() => [] as string[])', 'safe:a directory that vanished reads as empty'],
  ],
  'src/access-log.ts': [
    ["this.stream.on('error'", 'safe:counts lines it could not write'],
    ["this.stream.on('drain', () => this.flush())", 'safe:writes already-formatted lines'],
    ['setTimeout(() => this.flush()', 'safe:writes already-formatted lines'],
  ],
  'src/admin.ts': [
    ['proxy.metrics.registry.metrics().then(', 'safe:a scrape; its failure answers 500'],
    ["server.once('error', reject)", 'safe:rejects listen() (bind errors)'],
  ],
  'src/workers.ts': [
    ["process.on('message'", 'safe:a worker answers the primary (dumps), never bytes from a peer'],
    ["w.on('message'", 'safe:the primary collects workers\' answers'],
    ["cluster.on('exit'", 'safe:logs and replaces a worker that exited'],
    ['setTimeout(fork, 500)', 'safe:forks a replacement worker'],
    ['const timer = setTimeout(() => {', 'safe:a worker that did not answer in time'],
    ['.catch((err: Error) => json(500', 'safe:the primary admin answers 500'],
    ["server!.once('error', reject)", 'safe:rejects listen() (bind errors)'],
    ["w.once('exit'", 'safe:counts workers gone while stopping'],
    ['setTimeout(() => resolve(0), stopGraceMs)', 'safe:the stop deadline'],
    ["process.once('SIGTERM'", 'safe:signal'],
    ["process.once('SIGINT'", 'safe:signal'],
  ],
  'src/xds/client.ts': [
    ['await this.applying.catch(() => undefined)', 'safe:waits for an apply in progress'],
    ["stream.on('data'", 'handler:onResponse'],
    ["stream.on('error', (err: grpc.ServiceError)", 'safe:reconnects'],
    ["stream.on('end'", 'safe:reconnects'],
    ["stream.on('close'", 'safe:reconnects'],
    ["stream.on('error', () => undefined)", 'safe:ignores errors of a stream it cancelled'],
    ['this.reconnectTimer = setTimeout(', 'safe:reconnects with backoff'],
    ['this.warmingTimer = setTimeout(', 'handler:applyHeld'],
    ['this.applying = this.applyHeld(held).finally(', 'handler:applyHeld'],
  ],
  'src/redis/connection.ts': [
    ['this.timer = setTimeout(this.flushBound', 'handler:flush'],
    ["socket.on('data'", 'handler:onData'],
    ["socket.on('drain'", 'safe:resumes reading (own flags only)'],
    ["socket.on('error'", 'safe:logs the socket error at debug level'],
    ["socket.on('close'", 'safe:abandons its commands: counters and the timer wheel only, no bytes read'],
    ["socket.on('timeout'", 'safe:idle timeout: counts and destroys its own socket'],
    ["setTimeout(() => reenter(this, 'timer'", 'reenter'],
  ],
  'src/redis/cluster-mode.ts': [["setInterval(() => reenter(this, 'timer'", 'reenter']],
};

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(path.join(ROOT, dir))) {
    const rel = `${dir}/${name}`;
    if (statSync(path.join(ROOT, rel)).isDirectory()) out.push(...sourceFiles(rel));
    else if (name.endsWith('.ts') && !NOT_SCANNED.has(rel)) out.push(rel);
  }
  return out;
}

/** The continuations in `file`: its code lines (not comments) that schedule a later turn, with the lines after. */
function continuations(file: string): Array<{ line: string; statement: string }> {
  const lines = readFileSync(path.join(ROOT, file), 'utf8').split('\n').map((l) => l.trim());
  const out: Array<{ line: string; statement: string }> = [];
  lines.forEach((l, i) => {
    if (!l.startsWith('//') && !l.startsWith('*') && CONTINUATION.test(l)) out.push({ line: l, statement: lines.slice(i, i + 1 + STATEMENT_LINES).join('\n') });
  });
  return out;
}

/** The body of method `name` in `text` (from its declaration to the closing brace at its indentation). */
function methodBody(text: string, name: string): string | undefined {
  const decl = new RegExp(`^( +)(?:(?:private|protected|public|static|async|readonly|function) )*${name}\\(.*\\{$`, 'm').exec(text);
  if (!decl) return undefined;
  const end = text.indexOf(`\n${decl[1]}}`, decl.index);
  return end < 0 ? undefined : text.slice(decl.index, end);
}

describe('continuations: every later turn the data plane schedules is listed with how it is kept from throwing', () => {
  const files = SCANNED.flatMap(sourceFiles);

  it('finds the files it scans', () => {
    expect(files).toContain('src/downstream.ts');
    expect(files).toContain('codecs/dubbo/index.ts');
  });

  for (const file of files) {
    const found = continuations(file);
    const listed = INVENTORY[file] ?? [];
    if (found.length === 0 && listed.length === 0) continue;
    it(`${file}: ${found.length} continuation(s), each listed and guarded`, () => {
      const unlisted = found.map((f) => f.line).filter((line) => !listed.some(([site]) => line.includes(site)));
      expect(unlisted, `new continuations in ${file}: make them re-enter through reenter()/containSafely() and list them here`).toEqual([]);
      const text = readFileSync(path.join(ROOT, file), 'utf8');
      for (const [site, guard] of listed) {
        const sites = found.filter((f) => f.line.includes(site));
        expect(sites.length, `${file}: listed "${site}" is not in the code any more`).toBeGreaterThan(0);
        if (guard === 'reenter') {
          for (const f of sites) expect(f.statement, `${file}: "${site}" should re-enter through reenter()`).toMatch(/reenter\(/);
        } else if (guard.startsWith('handler:')) {
          const name = guard.slice('handler:'.length);
          const body = methodBody(text, name);
          expect(body, `${file}: handler ${name} not found`).toBeDefined();
          expect(body!, `${file}: handler ${name} must catch what it runs`).toMatch(/try \{|reenter\(|containSafely\(/);
        } else {
          expect(guard.length, `${file}: "${site}" needs a reason`).toBeGreaterThan('safe:'.length + 5);
        }
      }
    });
  }

  it('lists no file that does not exist', () => {
    for (const file of Object.keys(INVENTORY)) expect(files).toContain(file);
  });
});
