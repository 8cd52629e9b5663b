#!/usr/bin/env node
// Prints the CUDA toolkit root that binding.gyp compiles against, or nothing,
// in which case the addon is built without CUDA (the CPU backend still works).
// WIDEEP_NO_CUDA=1 forces a CPU-only build; CUDA_HOME / CUDA_PATH pick a toolkit.
import { existsSync, realpathSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';

function isToolkit(root) {
  return (
    existsSync(join(root, 'bin', 'nvcc')) &&
    existsSync(join(root, 'include', 'cuda_runtime.h')) &&
    existsSync(join(root, 'lib64', 'libcudart_static.a'))
  );
}

function candidates() {
  const out = [];
  for (const v of ['CUDA_HOME', 'CUDA_PATH', 'CUDA_ROOT']) if (process.env[v]) out.push(process.env[v]);
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const nvcc = join(dir, 'nvcc');
    if (dir && existsSync(nvcc)) out.push(dirname(dirname(realpathSync(nvcc))));
  }
  out.push('/usr/local/cuda');
  return out;
}

if (process.env.WIDEEP_NO_CUDA !== '1') {
  const root = candidates().find(isToolkit);
  if (root) process.stdout.write(realpathSync(root));
}
