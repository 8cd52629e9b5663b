#!/usr/bin/env node
// Lists native/ files for binding.gyp, so a new file joins the build by
// existing and nobody edits a list:
//   (no argument)     the addon's CUDA-side .cc files: every .cc under native/
//                     except the few the CPU-only addon is made of;
//   --kernel-inputs   what the CUDA kernel library is made from (.cu, .cuh and
//                     .h files), so gyp reruns the CMake build when one changes.
// CMakeLists.txt finds the .cu files itself with the same rule.
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const CPU_ONLY = new Set(['native/addon.cc', 'native/build_info.cc', 'native/common/errors.cc']);

function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)],
  );
}

const files = walk(join(root, 'native')).map((p) => relative(root, p).split('\\').join('/'));
const picked =
  process.argv[2] === '--kernel-inputs'
    ? files.filter((p) => /\.(cu|cuh|h)$/.test(p))
    : files.filter((p) => p.endsWith('.cc') && !CPU_ONLY.has(p));
process.stdout.write(picked.sort().join('\n'));
