/**
 * `--memory-budget`: how sizes are read, the default, usage errors, and the split across `--workers` (each worker
 * process gets its share; the primary's metrics sum them back to the whole).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliPath, httpGet } from '../../examples/dubbo/harness.js';
import { defaultMemoryBudget, MAX_DEFAULT_MEMORY_BUDGET, MIN_MEMORY_BUDGET, sizeFlag } from '../../src/limits.js';
import { OpsFixture, freePorts, servicesYaml, until } from './helpers.js';

const MiB = 1024 * 1024;

/** The sum of the samples in a Prometheus text whose line matches `pattern`. */
function sample(text: string, pattern: RegExp): number {
  let sum = 0;
  for (const line of text.split('\n')) if (!line.startsWith('#') && pattern.test(line)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

describe('--memory-budget values', () => {
  it('reads bytes and binary units, and refuses the rest naming the flag', () => {
    expect(sizeFlag('67108864', '--memory-budget', MIN_MEMORY_BUDGET)).toBe(64 * MiB);
    expect(sizeFlag('64Mi', '--memory-budget', MIN_MEMORY_BUDGET)).toBe(64 * MiB);
    expect(sizeFlag('64MiB', '--memory-budget', MIN_MEMORY_BUDGET)).toBe(64 * MiB);
    expect(sizeFlag('1G', '--memory-budget', MIN_MEMORY_BUDGET)).toBe(1024 * MiB);
    expect(sizeFlag('2gi', '--memory-budget', MIN_MEMORY_BUDGET)).toBe(2048 * MiB);
    for (const bad of ['', 'lots', '1.5Gi', '-1', '64Mb?', '1Ti']) expect(() => sizeFlag(bad, '--memory-budget', 1)).toThrow(/--memory-budget wants a size/);
    expect(() => sizeFlag('1Mi', '--memory-budget', MIN_MEMORY_BUDGET)).toThrow(/at least 4194304/);
  });

  it('defaults to half the memory limit, at most 512 MiB', () => {
    expect(defaultMemoryBudget(() => 256 * MiB)).toBe(128 * MiB);
    expect(defaultMemoryBudget(() => 16 * 1024 * MiB)).toBe(MAX_DEFAULT_MEMORY_BUDGET);
    expect(defaultMemoryBudget(() => 2 * MiB)).toBe(MIN_MEMORY_BUDGET);
  });

  it('is a proxy flag; a bad value is a usage error (exit 2)', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [cliPath(), ...args], { encoding: 'utf8' });
    const bad = run('proxy', '--config', '/nonexistent', '--memory-budget', 'plenty');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--memory-budget wants a size such as 512Mi/);
    const control = run('control', '--config', '/nonexistent', '--xds-listen', '127.0.0.1:0', '--memory-budget', '64Mi');
    expect(control.status).toBe(2);
    expect(control.stderr).toMatch(/--memory-budget is an option of proxy/);
    expect(run('--help').stdout).toMatch(/--memory-budget SIZE/);
  });
});

describe('--memory-budget with --workers 2', () => {
  const fx = new OpsFixture();
  beforeAll(async () => {
    const [port] = await freePorts(1);
    await fx.start({
      args: ['--workers', '2', '--memory-budget', '96Mi'],
      config: ([p]) => servicesYaml([{ listenPort: port!, endpoints: [{ port: p!.port, version: 'v1' }] }]),
    });
  });
  afterAll(() => fx.stop());

  it('gives each worker half: the budgets the workers report add up to the flag', async () => {
    // Gauges are summed over the workers that answer a scrape: each worker reports the same `ulimit -n` (inherited
    // from this process), so a scrape where that sums to twice it heard both workers.
    const fdLimit = Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))![1]);
    let seen = '';
    await until(
      async () => {
        const text = (await httpGet(fx.adminAddress, '/stats/prometheus')).body;
        const limits = sample(text, /^waypost_overload_file_descriptors\{state="limit"\}/);
        const budget = sample(text, /^waypost_overload_budget_bytes /);
        seen = `fd limits ${limits}, budgets ${budget}`;
        return limits === 2 * fdLimit && budget === 96 * MiB;
      },
      15_000,
      () => `both workers report half the budget (last: ${seen})`,
    );
    expect(await fx.metric(/^waypost_overload_action_active\{action="stop_accepting"\}/)).toBe(0);
  });
});
