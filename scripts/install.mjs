#!/usr/bin/env node
// npm install hook: use a prebuild or an existing build when one loads,
// otherwise compile the addon with node-gyp against this Node's own headers.
// Nothing is downloaded: a missing toolchain is reported, not fetched.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function loads() {
  const probe = `require(require('node-gyp-build').resolve(${JSON.stringify(root)}))`;
  return spawnSync(process.execPath, ['-e', probe], { cwd: root, stdio: 'ignore' }).status === 0;
}

function nodeGyp() {
  if (process.env.npm_config_node_gyp) return [process.execPath, process.env.npm_config_node_gyp];
  try {
    return [process.execPath, require.resolve('node-gyp/bin/node-gyp.js')];
  } catch {
    return ['node-gyp'];
  }
}

if (process.env.WIDEEP_SKIP_BUILD === '1') process.exit(0);
if (process.env.WIDEEP_FORCE_BUILD !== '1' && loads()) process.exit(0);
if (process.env.PREBUILDS_ONLY) {
  console.error('wideep: PREBUILDS_ONLY is set but no prebuild for this platform loads');
  process.exit(1);
}

const [cmd, ...pre] = nodeGyp();
const args = [...pre, 'rebuild'];
// The running Node's headers (official tarballs and distro packages ship them).
const nodedir = resolve(dirname(process.execPath), '..');
if (existsSync(join(nodedir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodedir}`);
const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(
    '\nwideep: building the native addon failed. It needs python3, make and a C++17 compiler;\n' +
      'GPU support also needs the CUDA toolkit (nvcc, set CUDA_HOME). The CPU backend works without it.\n' +
      'Set WIDEEP_NO_CUDA=1 to build without CUDA.',
  );
  process.exit(r.status ?? 1);
}
