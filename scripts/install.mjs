#!/usr/bin/env node
// npm install hook. Keeps a prebuild or an earlier build that loads, unless a
// CUDA build is possible here and the loaded addon lacks CUDA; otherwise
// compiles the addon with node-gyp against this Node's own headers. It says
// what it does and why. Nothing is downloaded, and a missing toolchain does
// not fail the install: the CPU-only commands need no addon. The switches are
// listed in docs/building.md. (npm shows a dependency's install output only
// with --foreground-scripts; `wideep doctor` reports the outcome afterwards.)
import { spawnSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { delimiter, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { cudaBuildPlan } from './find-cuda.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

/**
 * How node-gyp runs here: on every core, against the Node headers npm is
 * configured with, else this Node's own when it ships them (no download).
 */
export function nodeGypSettings(env = process.env) {
  const prefix = resolve(dirname(process.execPath), '..');
  const own = existsSync(join(prefix, 'include', 'node', 'node_api.h')) ? prefix : undefined;
  return { jobs: availableParallelism(), nodedir: env.npm_config_nodedir || own };
}

/** The addon node-gyp-build picks, loaded in a child process: { path, cuda } or { error }. */
function loadedAddon() {
  const probe = `
    try {
      const path = require('node-gyp-build').resolve(${JSON.stringify(root)});
      console.log(JSON.stringify({ path, cuda: require(path).buildInfo().cuda }));
    } catch (e) {
      console.log(JSON.stringify({ error: String(e.message).split('\\n')[0] }));
    }`;
  const r = spawnSync(process.execPath, ['-e', probe], { cwd: root, encoding: 'utf8' });
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop());
  } catch {
    return { error: `the probe process failed (${r.stderr.trim().split('\n')[0] || `status ${r.status}`})` };
  }
}

/** What node-gyp needs and this machine lacks. */
function missingBuildTools(env) {
  const onPath = (name) => (env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, name)));
  const missing = [];
  if (!env.PYTHON && !env.npm_config_python && !onPath('python3')) missing.push('python3');
  if (!onPath('make')) missing.push('make');
  if (!env.CXX && !onPath('g++') && !onPath('c++')) missing.push('a C++17 compiler (g++)');
  return missing;
}

const gpuOff = (cuda) =>
  `GPU support is OFF: ${cuda.reason}. To get it: ${cuda.fix}, then run npm rebuild wideep.`;

/**
 * The install's decision, from what loads now (`addon`, undefined when not
 * probed), whether CUDA can be built (`cuda`, from cudaBuildPlan; undefined
 * when the loaded addon has CUDA) and the build tools this machine lacks
 * (`missing`): { build, lines, code }, where `code` is the exit status when
 * there is no build. Exported for tests.
 */
export function decide({ env, addon, cuda, missing }) {
  if (env.WIDEEP_SKIP_BUILD === '1') {
    return { build: false, code: 0, lines: ['WIDEEP_SKIP_BUILD=1: no build; the addon is whatever already loads (wideep doctor tells)'] };
  }
  const force = env.WIDEEP_FORCE_BUILD === '1';
  const lines = [];
  if (force) {
    lines.push('WIDEEP_FORCE_BUILD=1: the addon is built from source');
  } else if (addon?.path) {
    const where = relative(root, addon.path);
    if (addon.cuda || !cuda.cuda) {
      lines.push(`using ${where} (${addon.cuda ? 'with CUDA' : 'CPU only'}): no build needed`);
      if (!addon.cuda) lines.push(gpuOff(cuda));
      return { build: false, code: 0, lines };
    }
    lines.push(`${where} was built without CUDA, and CUDA ${cuda.toolkit.version} is here now`);
  } else {
    lines.push(`no prebuild or earlier build loads here (${addon?.error})`);
  }
  if (env.PREBUILDS_ONLY) {
    lines.push('PREBUILDS_ONLY is set, so no source build: GPU calls will fail with ERR_NO_ADDON');
    return { build: false, code: 1, lines };
  }
  if (missing.length > 0) {
    lines.push(
      `cannot build the native addon: ${missing.join(', ')} not found. The CPU-only commands ` +
        '(plan, eplb, demo) work without it; GPU calls fail with ERR_NO_ADDON. ' +
        'To build it: install them (e.g. apt-get install python3 make g++), then run npm rebuild wideep.',
    );
    return { build: false, code: force ? 1 : 0, lines };
  }
  if (cuda.cuda) {
    const { version, root: at, from } = cuda.toolkit;
    lines.push(`building from source with CUDA ${version} at ${at} (${from}) and CMake ${cuda.cmake.version}, for sm_90a + compute_90 PTX`);
  } else {
    lines.push(gpuOff(cuda), 'building from source without CUDA');
  }
  return { build: true, lines };
}

function nodeGypCommand(env) {
  if (env.npm_config_node_gyp) return [process.execPath, env.npm_config_node_gyp];
  try {
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js')];
  } catch {
    return ['node-gyp'];
  }
}

function main(env) {
  const probeAddon = env.WIDEEP_SKIP_BUILD !== '1' && env.WIDEEP_FORCE_BUILD !== '1';
  const addon = probeAddon ? loadedAddon() : undefined;
  // No toolkit is looked for (nvcc does not run) when nothing will be built.
  const cuda = addon?.cuda || env.WIDEEP_SKIP_BUILD === '1' ? undefined : cudaBuildPlan(env);
  const d = decide({ env, addon, cuda, missing: missingBuildTools(env) });
  const print = !d.build && d.code !== 0 ? console.error : console.log;
  for (const line of d.lines) print(`wideep: ${line}`);
  if (!d.build) return d.code;

  const { jobs, nodedir } = nodeGypSettings(env);
  const [cmd, ...pre] = nodeGypCommand(env);
  const args = [...pre, 'rebuild', '-j', String(jobs)];
  if (nodedir) args.push(`--nodedir=${nodedir}`);
  console.log(
    `wideep: node-gyp rebuild -j ${jobs} (${jobs} cores), ` +
      (nodedir ? `against the Node headers in ${nodedir}` : 'with Node headers node-gyp fetches (this Node ships none)'),
  );
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(
      'wideep: building the native addon failed (the compiler output is above). ' +
        (cuda?.cuda ? 'WIDEEP_NO_CUDA=1 npm rebuild wideep builds it without CUDA. ' : '') +
        'The CPU-only commands work without the addon.',
    );
    return r.status ?? 1;
  }
  console.log(`wideep: built build/Release/wideep.node ${cuda?.cuda ? 'with' : 'without'} CUDA`);
  return 0;
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) process.exitCode = main(process.env);
