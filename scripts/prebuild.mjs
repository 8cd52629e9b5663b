#!/usr/bin/env node
// Builds the addon `npm pack` ships (the prepack script runs this): prebuildify
// compiles binding.gyp with CUDA (Node-API, so one binary serves every Node
// version), strips it, and writes prebuilds/<platform>-<arch>/. The file name
// carries node-gyp-build's `glibc` tag, so musl systems skip it and build from
// source, plus the oldest glibc it runs on (e.g. glibc2_34), read from its
// symbol versions, for people and for the loader's diagnosis.
import { spawnSync } from 'node:child_process';
import { readdirSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { cudaBuildPlan } from './find-cuda.mjs';
import { nodeGypSettings } from './install.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const require = createRequire(import.meta.url);
const folder = join(root, 'prebuilds', `${process.platform}-${process.arch}`);

function die(line) {
  console.error(`prebuild: ${line}`);
  process.exit(1);
}

/** The newest GLIBC_x.y symbol version the binary needs, e.g. "2.34". */
function glibcNeeded(file) {
  const r = spawnSync('readelf', ['--version-info', '--wide', file], { encoding: 'utf8' });
  if (r.status !== 0) die(`readelf failed on ${file}: ${r.stderr || r.error?.message}`);
  const versions = [...r.stdout.matchAll(/GLIBC_(\d+)\.(\d+)/g)].map((m) => [Number(m[1]), Number(m[2])]);
  if (versions.length === 0) die(`${file} names no GLIBC symbol version`);
  versions.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  return versions.at(-1).join('.');
}

const plan = cudaBuildPlan();
if (!plan.cuda) die(`a published prebuild must hold CUDA, but ${plan.reason}: ${plan.fix}`);

rmSync(folder, { recursive: true, force: true });
const { jobs, nodedir } = nodeGypSettings();
const env = { ...process.env, npm_config_jobs: String(jobs) };
if (nodedir) env.npm_config_nodedir = nodedir;
const bin = require.resolve('prebuildify/bin.js');
const r = spawnSync(process.execPath, [bin, '--napi', '--strip', '--tag-libc'], { cwd: root, env, stdio: 'inherit' });
if (r.status !== 0) die(`prebuildify failed (status ${r.status})`);

const built = readdirSync(folder).filter((f) => f.endsWith('.node'));
if (built.length !== 1) die(`expected one .node file in ${folder}, found ${built.join(', ') || 'none'}`);
const glibc = glibcNeeded(join(folder, built[0]));
const named = built[0].replace(/\.node$/, `.glibc${glibc.replace('.', '_')}.node`);
renameSync(join(folder, built[0]), join(folder, named));

// The shipped file must load and hold CUDA for the archs the package promises.
const check = `const i = require(${JSON.stringify(join(folder, named))}).buildInfo();
  if (!i.cuda) { console.error('built without CUDA'); process.exit(1); }
  console.log(i.cudaArchs.join(' + '));`;
const loaded = spawnSync(process.execPath, ['-e', check], { encoding: 'utf8' });
if (loaded.status !== 0) die(`${named} does not load: ${loaded.stderr.trim()}`);
console.log(`prebuild: ${relative(root, join(folder, named))} (CUDA ${loaded.stdout.trim()}, glibc >= ${glibc})`);
