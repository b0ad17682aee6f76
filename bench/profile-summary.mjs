#!/usr/bin/env node
// Prints the functions with the most self time in a V8 .cpuprofile (from `node --cpu-prof`), to see what a
// benchmark spends its time on: node bench/profile-summary.mjs FILE.cpuprofile [TOP]
// Percentages are of the busy time: samples in "(idle)" (the event loop waiting) are left out, and reported on
// the first line. `npm run bench -- --profile` profiles every Waypost process of the run and prints these.
import { readFileSync } from 'node:fs';

const [file, topArg] = process.argv.slice(2);
if (!file) {
  console.error('usage: node bench/profile-summary.mjs FILE.cpuprofile [TOP]');
  process.exit(2);
}
const profile = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfTime = new Map();
let total = 0;
let idle = 0;
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0;
  const f = byId.get(id).callFrame;
  if (f.functionName === '(idle)') {
    idle += dt;
    return;
  }
  total += dt;
  const where = f.url ? `${f.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}` : '';
  const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
  selfTime.set(key, (selfTime.get(key) ?? 0) + dt);
});
console.log(`busy ${(total / 1000).toFixed(0)} ms, idle ${(idle / 1000).toFixed(0)} ms; % of busy time:`);
const top = [...selfTime].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg ?? 25));
for (const [key, t] of top) console.log(`${((t / Math.max(1, total)) * 100).toFixed(1).padStart(5)}%  ${key}`);
