#!/usr/bin/env node
// The installed CLI: runs the compiled entry from dist/.
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`wideep: ${e?.stack ?? e}\n`);
    process.exitCode = 1;
  },
);
