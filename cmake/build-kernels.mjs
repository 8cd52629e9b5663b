#!/usr/bin/env node
// binding.gyp's action for the CUDA kernels: cmake-js configures and builds
// CMakeLists.txt into <out>/libwideep_kernels.a with the toolkit that
// scripts/find-cuda.mjs chose. Offline: package.json's binary.napi_versions
// makes cmake-js take Node-API headers from the node-api-headers package
// instead of downloading Node's.
// Usage: node cmake/build-kernels.mjs <CUDA toolkit root> <output folder>
import { availableParallelism } from 'node:os';
import { utimesSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { BuildSystem } from 'cmake-js';

const [cudaRoot, out] = process.argv.slice(2);
if (!cudaRoot || !out) {
  console.error('usage: node cmake/build-kernels.mjs <CUDA toolkit root> <output folder>');
  process.exit(2);
}

// gyp's make runs this action as one job; the nested make that CMake starts
// gets its own -j instead of a jobserver it cannot reach.
for (const v of ['MAKEFLAGS', 'MFLAGS', 'MAKELEVEL']) delete process.env[v];

const build = new BuildSystem({
  directory: fileURLToPath(new URL('..', import.meta.url)),
  out: resolve(out),
  parallel: availableParallelism(),
  cMakeOptions: { CMAKE_CUDA_COMPILER: join(cudaRoot, 'bin', 'nvcc') },
});
try {
  await build.build();
} catch {
  // cmake-js has printed CMake's or nvcc's own error.
  process.exit(1);
}
// make compares this file with the sources: an up-to-date CMake build leaves
// it untouched, and make would rerun the action at every build.
const lib = join(resolve(out), 'libwideep_kernels.a');
const now = new Date();
utimesSync(lib, now, now);
