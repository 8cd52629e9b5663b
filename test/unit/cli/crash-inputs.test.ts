/**
 * Inputs that used to crash or mislead the CLI: each is now refused at once
 * with one line naming the value and the limit (exit 2), or, for a plan that
 * does not fit, a result that says so (exit 1).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import type { CliIo } from '../../../src/cli/command.js';
import { main } from '../../../src/cli/main.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../../fixtures/planning/${name}`, import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'wideep-cli-'));

function writeJson(name: string, value: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(value));
  return path;
}

function modelWith(fields: Record<string, unknown>): string {
  const base = JSON.parse(readFileSync(fixture('tiny-model.json'), 'utf8')) as Record<string, unknown>;
  return writeJson(`model-${Object.values(fields).join('-')}.json`, { ...base, ...fields });
}

async function wideep(...argv: string[]): Promise<{ code: number; out: string; err: string; ms: number }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (t) => out.push(t), err: (t) => err.push(t) };
  const started = performance.now();
  const code = await main(argv, io);
  return { code, out: out.join('\n'), err: err.join('\n'), ms: performance.now() - started };
}

/** A usage error: exit 2, nothing on stdout, one line on stderr that points at the command's --help. */
function expectUsageError(r: { code: number; out: string; err: string }, command: string, message: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.out).toBe('');
  expect(r.err.split('\n')).toHaveLength(1);
  expect(r.err).toMatch(message);
  expect(r.err.endsWith(` (run 'wideep ${command} --help' for usage)`)).toBe(true);
}

describe('wideep plan: model sizes', () => {
  it.each([
    [1e8, '100000000'],
    [2 ** 40, '1099511627776'],
  ])('refuses a model of %d experts at once', async (experts, shown) => {
    const r = await wideep('plan', '--model', modelWith({ numRoutedExperts: experts }));
    expectUsageError(r, 'plan', new RegExp(`numRoutedExperts must be an integer in \\[1, 65536\\], got ${shown}`));
    expect(r.ms).toBeLessThan(2_000);
  });

  it('refuses a world past the GPU limit', async () => {
    const r = await wideep('plan', '--tp', '65536', '--pp-size', '65536');
    expectUsageError(r, 'plan', /--tp 65536 × --pp-size 65536 = 4294967296 GPUs: more than the limit of 65536/);
  });

  it('refuses redundant experts whose placement table would pass the limit', async () => {
    const r = await wideep('plan', '--tp', '8', '--ep-size', '8', '--ep-num-redundant-experts', '65536');
    expectUsageError(r, 'plan', /--ep-num-redundant-experts 65536: the placement table would hold 58 layers × 256 experts × 65537 replica columns .* more than the limit of 4,194,304; use fewer redundant experts/);
  });

  it('refuses an unknown torch_dtype in a config.json, naming the accepted ones', async () => {
    const hf = JSON.parse(readFileSync(fixture('hf-qwen3-moe-config.json'), 'utf8')) as Record<string, unknown>;
    const r = await wideep('plan', '--tp', '8', '--ep-size', '8', '--model', writeJson('int4.json', { ...hf, torch_dtype: 'int4' }));
    expectUsageError(r, 'plan', /int4\.json: torch_dtype must be one of bfloat16, float16, float32, got "int4"/);
  });
});

describe('wideep plan: a plan that does not fit', () => {
  it('says so in text and exits 1', async () => {
    const r = await wideep('plan', '--gpu-memory-gb', '1');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/KV cache budget +none: the weights exceed the static budget by [\d.]+ GiB/);
    expect(r.out).not.toMatch(/-\d+\.\d+ GiB/);
    expect(r.err).toMatch(/^wideep: the plan does not fit: the weights need [\d.]+ GiB per GPU, more than the static budget of 0\.75 GiB/m);
  });

  it('says so in --json with fits: false and the reason, and exits 1', async () => {
    const r = await wideep('plan', '--gpu-memory-gb', '1', '--json');
    expect(r.code).toBe(1);
    const plan = JSON.parse(r.out) as { fits: boolean; fitReason: string };
    expect(plan.fits).toBe(false);
    expect(plan.fitReason).toMatch(/^the weights need/);
  });

  it('exits 0 when it fits', async () => {
    const r = await wideep('plan', '--tp', '8', '--ep-size', '8', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ fits: true, fitReason: null });
  });
});

describe('wideep eplb', () => {
  const weights = fixture('eplb-readme-weights.json');

  it('refuses --replicas 100000000 before allocating', async () => {
    const r = await wideep('eplb', '--weights', weights, '--replicas', '100000000', '--gpus', '8');
    expectUsageError(r, 'eplb', /numReplicas \(--replicas\): expected an integer in \[1, 131072\], got number 100000000/);
    expect(r.ms).toBeLessThan(2_000);
  });

  it('refuses loads of 1e308 with the position of the first bad value', async () => {
    const loads = writeJson('huge-loads.json', [
      [1, 2, 3, 4],
      [5, 1e308, 7, 8],
    ]);
    const r = await wideep('eplb', '--weights', loads, '--replicas', '4', '--gpus', '2');
    expectUsageError(r, 'eplb', /huge-loads\.json: \[1\]\[1\] is 1e\+308, which takes row 1's total load past 1e\+38/);
  });

  it('prints balancedness for the most slots it accepts', async () => {
    const r = await wideep('eplb', '--weights', writeJson('one.json', [[1, 3]]), '--replicas', '131072', '--gpus', '65536');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/layer 0: balancedness [\d.]+ -> 1\.000/);
    expect(r.ms).toBeLessThan(10_000);
  });
});
