#!/usr/bin/env node
// Decides whether the addon is built with CUDA, and against which toolkit.
// The CUDA kernels need a toolkit (nvcc, headers, libcudart_static.a) of CUDA
// 12.0 or newer, the first with sm_90a, and CMake driven by cmake-js; without
// them binding.gyp builds the CPU-only addon, which reports cuda: false.
// Run as a script it prints the toolkit root for binding.gyp, or nothing;
// scripts/install.mjs imports cudaBuildPlan() to say why. docs/building.md
// lists the switches (WIDEEP_NO_CUDA, CUDA_HOME).
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MIN_CUDA = [12, 0];
const MIN_CMAKE = [3, 18];

function isToolkit(root) {
  return (
    existsSync(join(root, 'bin', 'nvcc')) &&
    existsSync(join(root, 'include', 'cuda_runtime.h')) &&
    existsSync(join(root, 'lib64', 'libcudart_static.a'))
  );
}

function candidates(env) {
  const out = [];
  for (const v of ['CUDA_HOME', 'CUDA_PATH', 'CUDA_ROOT']) if (env[v]) out.push({ root: env[v], from: v });
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    const nvcc = join(dir, 'nvcc');
    if (dir && existsSync(nvcc)) out.push({ root: dirname(dirname(realpathSync(nvcc))), from: `nvcc on PATH (${nvcc})` });
  }
  out.push({ root: '/usr/local/cuda', from: 'the default location' });
  return out;
}

/** The `major.minor` a tool prints for `--version` (matched by `pattern`), or undefined. */
function toolVersion(command, pattern, env) {
  const r = spawnSync(command, ['--version'], { encoding: 'utf8', env });
  const m = r.status === 0 ? pattern.exec(r.stdout) : null;
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

const atLeast = (v, min) => v[0] > min[0] || (v[0] === min[0] && v[1] >= min[1]);
const show = (v) => v.join('.');

/**
 * Whether the CUDA part can be built here: { cuda: true, toolkit, cmake } or
 * { cuda: false, reason, fix }.
 */
export function cudaBuildPlan(env = process.env) {
  if (env.WIDEEP_NO_CUDA === '1') {
    return { cuda: false, reason: 'WIDEEP_NO_CUDA=1 is set', fix: 'unset WIDEEP_NO_CUDA' };
  }
  const tried = candidates(env);
  // A variable the user set is a request: a wrong one is reported, not skipped.
  const named = tried.find((c) => c.from.startsWith('CUDA_'));
  if (named && !isToolkit(named.root)) {
    return {
      cuda: false,
      reason: `${named.from}=${named.root} is not a CUDA toolkit (it needs bin/nvcc, include/cuda_runtime.h and lib64/libcudart_static.a)`,
      fix: `point ${named.from} at the toolkit's root (the folder holding bin/nvcc)`,
    };
  }
  const found = tried.find((c) => isToolkit(c.root));
  if (!found) {
    return {
      cuda: false,
      reason: `no CUDA toolkit found (looked at ${[...new Set(tried.map((c) => c.root))].join(', ')})`,
      fix: 'install the CUDA toolkit 12.0 or newer (nvcc) and set CUDA_HOME to its root if it is not in /usr/local/cuda',
    };
  }
  const root = realpathSync(found.root);
  const version = toolVersion(join(root, 'bin', 'nvcc'), /release (\d+)\.(\d+)/, env);
  if (!version || !atLeast(version, MIN_CUDA)) {
    return {
      cuda: false,
      reason: `the CUDA toolkit at ${root} is ${version ? show(version) : 'of unknown version'}; sm_90a needs ${show(MIN_CUDA)} or newer`,
      fix: `install CUDA ${show(MIN_CUDA)} or newer and point CUDA_HOME at it`,
    };
  }
  const toolkit = { root, from: found.from, version: show(version) };
  const cmakeVersion = toolVersion('cmake', /cmake version (\d+)\.(\d+)/, env);
  if (!cmakeVersion || !atLeast(cmakeVersion, MIN_CMAKE)) {
    return {
      cuda: false,
      toolkit,
      reason: cmakeVersion
        ? `CMake ${show(cmakeVersion)} is too old to build the CUDA kernels (${show(MIN_CMAKE)} or newer)`
        : 'CMake, which builds the CUDA kernels, is not on PATH',
      fix: `install CMake ${show(MIN_CMAKE)} or newer (e.g. apt-get install cmake, or pip install cmake)`,
    };
  }
  try {
    createRequire(import.meta.url).resolve('cmake-js');
  } catch {
    // An optional peer dependency: installs that load the prebuild never need it.
    return {
      cuda: false,
      toolkit,
      reason: 'the cmake-js package, which runs the CMake build of the CUDA kernels, is not installed',
      fix: 'npm install cmake-js',
    };
  }
  return { cuda: true, toolkit, cmake: { version: show(cmakeVersion) } };
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const plan = cudaBuildPlan();
  if (plan.cuda) process.stdout.write(plan.toolkit.root);
}
