#!/usr/bin/env node
// Lists the addon's CUDA-side sources for binding.gyp: every .cc and .cu under
// native/ except the few that build without CUDA. A new kernel or binding file
// joins the build by existing; nobody edits a list.
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const ALWAYS = new Set(['native/addon.cc', 'native/build_info.cc', 'native/common/errors.cc']);

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

const sources = walk(join(root, 'native'))
  .map((p) => relative(root, p).split('\\').join('/'))
  .filter((p) => /\.(cc|cu)$/.test(p) && !ALWAYS.has(p))
  .sort();
process.stdout.write(sources.join('\n'));
