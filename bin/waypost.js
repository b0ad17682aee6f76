#!/usr/bin/env node
// Entry point of the `waypost` command; the CLI itself is compiled TypeScript under dist/.
import '../dist/src/cli.js';
