/**
 * The pieces behind the ops features, in process: traceparent parsing (W3C rules), the access log's batching and
 * its bound, and the CLI's checks of the limit flags.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliPath } from '../../examples/dubbo/harness.js';
import { AccessLog, MAX_PENDING_BYTES, type AccessLogEntry } from '../../src/access-log.js';
import { durationFlag } from '../../src/limits.js';
import { childTraceparent, newSpanId, parseTraceparent, rootTraceparent } from '../../src/trace-context.js';
import { until } from '../limits/helpers.js';

describe('traceparent', () => {
  const ok = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  it('reads a valid one and refuses what W3C calls invalid', () => {
    expect(parseTraceparent(ok)).toEqual({ version: '00', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b7', flags: '01' });
    for (const bad of [
      undefined,
      '',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', // version ff
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01', // zero trace id
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', // zero parent id
      '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01', // upper case
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra', // version 00 has four fields
      '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01', // short trace id
    ]) {
      expect(parseTraceparent(bad)).toBeUndefined();
    }
    // A later version may carry more fields; a version-00 reader keeps the four it knows.
    expect(parseTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future')?.traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });

  it('a child keeps trace id and flags with a fresh non-zero span; a root is sampled', () => {
    const spans = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const s = newSpanId();
      expect(s).toMatch(/^[0-9a-f]{16}$/);
      expect(s).not.toBe('0000000000000000');
      spans.add(s);
    }
    expect(spans.size).toBe(2000);
    const child = childTraceparent(parseTraceparent(ok)!, 'abcdefabcdefabcd');
    expect(child).toBe('00-4bf92f3577b34da6a3ce929d0e0e4736-abcdefabcdefabcd-01');
    const root = parseTraceparent(rootTraceparent('abcdefabcdefabcd'))!;
    expect(root.flags).toBe('01');
    expect(root.parentId).toBe('abcdefabcdefabcd');
  });
});

describe('access log writer', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'waypost-al-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const entry = (i: number): AccessLogEntry => ({
    time: new Date(0).toISOString(),
    listener: 'l',
    protocol: 'dubbo',
    route: 'r',
    cluster: 'c',
    upstream_host: '127.0.0.1:1',
    outcome: 'success',
    local_reply: null,
    duration_ms: 1,
    request_id: String(i),
    attributes: { method: 'm' },
    traceparent: null,
    attempts: 1,
  });

  it('batches lines into few writes and writes them all by close()', async () => {
    const file = path.join(dir, 'batch.log');
    const log = await AccessLog.open(file);
    for (let i = 0; i < 5000; i++) log.record(entry(i));
    await log.close();
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(5000);
    expect(JSON.parse(lines[4999]!).request_id).toBe('4999');
    expect(log.dropped).toBe(0);
  });

  it('flushes on its own within the flush interval', async () => {
    const file = path.join(dir, 'timer.log');
    const log = await AccessLog.open(file);
    log.record(entry(1));
    await until(() => readFileSync(file, 'utf8').includes('"request_id":"1"'), 5000, () => 'the line flushed');
    await log.close();
  });

  it('drops and counts lines past its bound when the stream cannot keep up, instead of growing', async () => {
    const file = path.join(dir, 'drop.log');
    const log = await AccessLog.open(file);
    let dropped = 0;
    log.onDropped = () => dropped++;
    const lineBytes = JSON.stringify(entry(100000)).length + 1;
    // Enough lines in one tick to exceed the bound several times over (the file stream is busy after the first write).
    const n = Math.ceil((MAX_PENDING_BYTES * 3) / lineBytes);
    for (let i = 0; i < n; i++) log.record(entry(100000 + i));
    expect(dropped).toBeGreaterThan(0);
    expect(log.dropped).toBe(dropped);
    await log.close();
    const written = readFileSync(file, 'utf8').trim().split('\n').length;
    expect(written + dropped).toBe(n);
  });

  it('refuses a path it cannot open, with the path in the message', async () => {
    await expect(AccessLog.open(path.join(dir, 'missing-dir', 'x.log'))).rejects.toThrow(/--access-log .*missing-dir/);
  });
});

describe('CLI limit flags', () => {
  it('reads durations as config does (Go and Istio syntax), or bare seconds', () => {
    expect(durationFlag('500ms', '--x')).toBe(500);
    expect(durationFlag('2', '--x')).toBe(2000);
    expect(durationFlag('0', '--x')).toBe(0);
    // The one duration syntax of config and flags alike (Go's, as Istio's YAML): compound values too.
    expect(durationFlag('1h30m', '--x')).toBe(5_400_000);
    expect(durationFlag('1.5s', '--x')).toBe(1500);
    expect(() => durationFlag('soon', '--idle-timeout')).toThrow(/--idle-timeout wants a duration/);
    expect(() => durationFlag('-1s', '--idle-timeout')).toThrow(/--idle-timeout wants a duration/);
  });

  it('rejects bad values with a usage error (exit 2) naming the flag', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [cliPath(), ...args], { encoding: 'utf8' });
    const cases: Array<[string[], RegExp]> = [
      [['proxy', '--config', '/nonexistent', '--idle-timeout', 'soon'], /--idle-timeout wants a duration/],
      [['proxy', '--config', '/nonexistent', '--max-connections-per-listener', '0'], /--max-connections-per-listener wants a whole number >= 1/],
      [['proxy', '--config', '/nonexistent', '--max-pending-per-connection', '1.5'], /--max-pending-per-connection wants a whole number/],
      [['proxy', '--config', '/nonexistent', '--per-connection-buffer-limit', '10'], /--per-connection-buffer-limit wants a whole number >= 1024/],
      [['proxy', '--config', '/nonexistent', '--tracing', 'always'], /--tracing wants off, propagate or start/],
      [['control', '--config', '/nonexistent', '--xds-listen', '127.0.0.1:0', '--drain-timeout', '1s'], /--drain-timeout is an option of proxy/],
    ];
    for (const [args, message] of cases) {
      const r = run(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const help = run('--help');
    expect(help.stdout).toMatch(/--max-pending-per-connection N/);
    expect(help.stdout).toMatch(/--access-log PATH\|-/);
  });
});
