#!/usr/bin/env node
// The npm registry reachable here serves a snapshot in which some platform-specific optional packages (rollup's and
// esbuild's binaries for other systems) lack the version their parent names. `npm install` then leaves them out of
// package-lock.json but still lists them as the parent's optionalDependencies, and `npm ci` refuses the lock as out
// of sync. This drops optional dependencies that have no entry in the lock, which is what npm would skip anyway on
// this platform. Run it after `npm install` changes the lock: node scripts/prune-lock.mjs
import { readFileSync, writeFileSync } from 'node:fs';

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8'));
const present = new Set(Object.keys(lock.packages));
const dropped = [];
for (const [key, pkg] of Object.entries(lock.packages)) {
  for (const dep of Object.keys(pkg.optionalDependencies ?? {})) {
    // Resolution as node does it: nested under the package, then at the top.
    if (present.has(`${key ? key + '/' : ''}node_modules/${dep}`) || present.has(`node_modules/${dep}`)) continue;
    delete pkg.optionalDependencies[dep];
    dropped.push(`${key || '(root)'} → ${dep}`);
  }
}
writeFileSync(file, JSON.stringify(lock, null, 2) + '\n');
console.log(`prune-lock: dropped ${dropped.length} optional dependencies missing from the lock`);
