/**
 * `npm run bench`: runs every benchmark scenario (Dubbo for now) and writes bench/results.json.
 * Flags are passed to each scenario: `npm run bench -- --duration 10 --connections 8 --inflight 32`.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isMainModule, projectRoot } from '../examples/dubbo/harness.js';
import { BENCH_USAGE, parseBenchFlags, runDubboBench, type DubboBenchResult } from './dubbo/run.js';

export interface BenchReport {
  generatedAt: string;
  node: string;
  platform: string;
  cpus: number;
  cpuModel: string;
  scenarios: { dubbo: DubboBenchResult };
}

export async function runAll(argv: string[]): Promise<BenchReport> {
  const flags = parseBenchFlags(argv);
  console.log('== scenario: dubbo ==');
  const dubbo = await runDubboBench(flags);
  return {
    generatedAt: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    scenarios: { dubbo },
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(`usage: npm run bench -- ${BENCH_USAGE}`);
    return;
  }
  let report: BenchReport;
  try {
    report = await runAll(argv);
  } catch (e) {
    console.error(`bench failed: ${(e as Error).message}\n${BENCH_USAGE}`);
    process.exit(1);
  }
  const file = path.join(projectRoot(), 'bench', 'results.json');
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(`\nwrote ${path.relative(process.cwd(), file) || file}`);
  const failed = report.scenarios.dubbo.rows.some((r) => !Number.isFinite(r.rps) || r.rps === 0);
  process.exit(failed ? 1 : 0);
}

if (isMainModule(import.meta.url)) void main();
