/** `wideep demo` exits 1 and says FAIL when the comparison fails (the check is replaced by one whose comparison fails). */
import { describe, expect, it, vi } from 'vitest';

vi.mock('../../../src/simulation/index.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../../src/simulation/index.js')>();
  return {
    ...real,
    runMoeLayerCheck: async (options: Parameters<typeof real.runMoeLayerCheck>[0]) => {
      const r = await real.runMoeLayerCheck({ ...options, steps: ['decode'] });
      return { ...r, comparison: { ...r.comparison, maxRelError: 0.4, pass: false, worst: { step: 0, rank: 1, token: 2 } } };
    },
  };
});

const { command } = await import('../../../src/cli/commands/demo.js');

async function run(args: string[]): Promise<{ code: number; out: string }> {
  const out: string[] = [];
  // --backend cpu: the simulation is what this file tests, GPUs or not.
  const code = await command.run(['--backend', 'cpu', ...args], { out: (t) => out.push(t), err: (t) => out.push(t) });
  return { code, out: out.join('\n') };
}

describe('wideep demo on a failed comparison', () => {
  it('exits 1 and ends with FAIL', async () => {
    const r = await run(['--no-eplb']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/max relative 4\.00e-1 at step 0, rank 1, token 2/);
    expect(r.out.trimEnd().split('\n').pop()).toBe('FAIL: the pipeline on 4 simulated ranks does not match the dense reference');
  });

  it('exits 1 with pass: false in --json', async () => {
    const r = await run(['--json', '--no-eplb']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.out).pass).toBe(false);
  });
});
