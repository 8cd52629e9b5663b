/**
 * The install script's decisions, and an install on a machine without a C++
 * toolchain: it succeeds, says why there is no addon, the CPU-only commands
 * run, and GPU calls fail with ERR_NO_ADDON and the fix.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

// @ts-expect-error: a plain .mjs script without type declarations
import { decide } from '../../scripts/install.mjs';
// @ts-expect-error: a plain .mjs script without type declarations
import { cudaBuildPlan } from '../../scripts/find-cuda.mjs';

interface Decision {
  build: boolean;
  code?: number;
  lines: string[];
}
const decideTyped = decide as (input: {
  env: Record<string, string | undefined>;
  addon?: { path?: string; cuda?: boolean; error?: string };
  cuda: { cuda: boolean; reason?: string; fix?: string; toolkit?: { version: string; root: string; from: string }; cmake?: { version: string } };
  missing: string[];
}) => Decision;
const planTyped = cudaBuildPlan as (env: Record<string, string | undefined>) => { cuda: boolean; reason?: string };

const root = fileURLToPath(new URL('../..', import.meta.url));
const withCuda = {
  cuda: true,
  toolkit: { version: '13.0', root: '/usr/local/cuda-13.0', from: 'the default location' },
  cmake: { version: '3.25' },
};
const noCuda = { cuda: false, reason: 'no CUDA toolkit found (looked at /usr/local/cuda)', fix: 'install the CUDA toolkit' };
const cpuBuild = { path: join(root, 'build/Release/wideep.node'), cuda: false };

describe('install decisions', () => {
  it('keeps an addon with CUDA', () => {
    const d = decideTyped({ env: {}, addon: { ...cpuBuild, cuda: true }, cuda: withCuda, missing: [] });
    expect(d).toMatchObject({ build: false, code: 0 });
    expect(d.lines.join('\n')).toMatch(/build\/Release\/wideep\.node \(with CUDA\): no build needed/);
  });

  it('rebuilds a CPU-only addon once a CUDA build is possible (npm rebuild after installing a toolkit)', () => {
    const d = decideTyped({ env: {}, addon: cpuBuild, cuda: withCuda, missing: [] });
    expect(d.build).toBe(true);
    expect(d.lines.join('\n')).toMatch(/built without CUDA, and CUDA 13\.0 is here now/);
    expect(d.lines.join('\n')).toMatch(/building from source with CUDA 13\.0 .* for sm_90a \+ compute_90 PTX/);
  });

  it('keeps a CPU-only addon when CUDA cannot be built, and says how to get GPU support', () => {
    const d = decideTyped({ env: {}, addon: cpuBuild, cuda: noCuda, missing: [] });
    expect(d).toMatchObject({ build: false, code: 0 });
    expect(d.lines.join('\n')).toMatch(/GPU support is OFF: no CUDA toolkit found .*To get it: install the CUDA toolkit, then run npm rebuild wideep/);
  });

  it('builds without CUDA, saying so in one line, when nothing loads', () => {
    const d = decideTyped({ env: {}, addon: { error: 'No native build was found' }, cuda: noCuda, missing: [] });
    expect(d.build).toBe(true);
    expect(d.lines.filter((l) => l.startsWith('GPU support is OFF'))).toHaveLength(1);
  });

  it('succeeds without a toolchain, naming what is missing and what still works', () => {
    const d = decideTyped({ env: {}, addon: { error: 'No native build was found' }, cuda: noCuda, missing: ['make'] });
    expect(d).toMatchObject({ build: false, code: 0 });
    expect(d.lines.join('\n')).toMatch(/make not found.*\(plan, eplb, demo\) work without it; GPU calls fail with ERR_NO_ADDON/);
  });

  it('fails when a build was asked for and cannot run', () => {
    const forced = decideTyped({ env: { WIDEEP_FORCE_BUILD: '1' }, cuda: noCuda, missing: ['make'] });
    expect(forced).toMatchObject({ build: false, code: 1 });
    const prebuildsOnly = decideTyped({ env: { PREBUILDS_ONLY: '1' }, addon: { error: 'No native build was found' }, cuda: noCuda, missing: [] });
    expect(prebuildsOnly).toMatchObject({ build: false, code: 1 });
  });

  it('WIDEEP_SKIP_BUILD skips everything, WIDEEP_FORCE_BUILD rebuilds a working addon', () => {
    expect(decideTyped({ env: { WIDEEP_SKIP_BUILD: '1' }, cuda: withCuda, missing: [] })).toMatchObject({ build: false, code: 0 });
    expect(decideTyped({ env: { WIDEEP_FORCE_BUILD: '1' }, cuda: withCuda, missing: [] }).build).toBe(true);
  });
});

describe('CUDA build plan', () => {
  it('WIDEEP_NO_CUDA=1 turns CUDA off', () => {
    expect(planTyped({ ...process.env, WIDEEP_NO_CUDA: '1' })).toMatchObject({ cuda: false, reason: 'WIDEEP_NO_CUDA=1 is set' });
  });

  it('a CUDA_HOME that is not a toolkit is reported, not skipped', () => {
    const plan = planTyped({ ...process.env, CUDA_HOME: '/nonexistent/cuda' });
    expect(plan).toMatchObject({ cuda: false });
    expect(plan.reason).toMatch(/CUDA_HOME=\/nonexistent\/cuda is not a CUDA toolkit/);
  });

  it.skipIf(!existsSync('/usr/local/cuda/bin/nvcc'))('without CMake on PATH the kernels cannot be built', () => {
    const plan = planTyped({ PATH: '/nonexistent', CUDA_HOME: '/usr/local/cuda' });
    expect(plan).toMatchObject({ cuda: false });
    expect(plan.reason).toMatch(/CMake.*not on PATH/);
  });
});

describe('an install on a machine without a C++ toolchain', () => {
  // A copy of the package as npm would unpack it, minus any addon, and a PATH
  // that holds node and nothing else (no python3, make, g++, cmake).
  let pkg: string;
  let env: NodeJS.ProcessEnv;
  const run = (args: string[]) => spawnSync(process.execPath, args, { cwd: pkg, env, encoding: 'utf8' });

  beforeAll(() => {
    pkg = mkdtempSync(join(tmpdir(), 'wideep-notools-'));
    for (const p of ['package.json', 'bin', 'dist', 'scripts/install.mjs', 'scripts/find-cuda.mjs']) {
      cpSync(join(root, p), join(pkg, p), { recursive: true });
    }
    symlinkSync(join(root, 'node_modules'), join(pkg, 'node_modules'));
    const bin = join(pkg, '.bin-only-node');
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    env = { HOME: process.env.HOME, PATH: bin, CUDA_HOME: '/nonexistent/cuda' };
  });
  afterAll(() => rmSync(pkg, { recursive: true, force: true }));

  it('the install succeeds and says why there is no addon', () => {
    const r = run(['scripts/install.mjs']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/no prebuild or earlier build loads here/);
    expect(r.stdout).toMatch(/cannot build the native addon: python3, make, a C\+\+17 compiler \(g\+\+\) not found/);
  });

  it('the CPU-only commands run', () => {
    writeFileSync(join(pkg, 'load.json'), '[[10, 1, 1, 1, 5, 2, 3, 1]]');
    const r = run(['bin/wideep.js', 'eplb', '--weights', 'load.json', '--replicas', '8', '--gpus', '2', '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toHaveProperty('phy2log');
  });

  it('GPU calls fail with ERR_NO_ADDON and the fix, and doctor gets the same advice', () => {
    const probe = `
      const { Stream } = await import('./dist/index.js');
      const { rebuildAdvice } = await import('./dist/native/index.js');
      try { new Stream(0); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message, advice: rebuildAdvice() })); }`;
    const r = run(['--input-type=module', '-e', probe]);
    expect(r.status, `dist/ may be stale (npm run build:ts): ${r.stderr}`).toBe(0);
    const out = JSON.parse(r.stdout) as { code: string; message: string; advice: string };
    expect(out.code).toBe('ERR_NO_ADDON');
    expect(out.message).toMatch(/no compiled addon.*Fix: npm rebuild wideep/);
    expect(out.advice).toMatch(/npm rebuild wideep/);
  });
});
