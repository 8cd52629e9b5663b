import { describe, expect, it } from 'vitest';

import { capabilities } from '../../../src/capabilities.js';
import { command } from '../../../src/cli/commands/demo.js';
import type { CliIo } from '../../../src/cli/command.js';

// Where the cuda backend could run, the cpu demo is asked for by name.
const cpu = capabilities().gpus.length > 0 ? ['--backend', 'cpu'] : [];

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (t) => out.push(t), err: (t) => err.push(t) };
  const code = await command.run([...cpu, ...args], io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('wideep demo', () => {
  it('runs 4 ranks with TBO and EPLB by default, prints each stage and ends with PASS', async () => {
    const r = await run([]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^backend {3}cpu, 4 simulated ranks in this process\n {10}why: /m);
    expect(r.out).toMatch(/^ranks {5}4 \(DP attention: each rank its own batch; EP: 68 expert slots, 17 per rank; 1 node of 4\)/m);
    expect(r.out).toMatch(/TBO on, EPLB on: 4 redundant slots, static replica choice/);
    expect(r.out).toMatch(/^step 0 {2}extend: \d+ tokens, per rank \[\d+, \d+, \d+, 0\]; idle: rank 3$/m);
    expect(r.out).toMatch(/normal dispatch \(prefill\), two-batch overlap, micro-batches \[\d+\+\d+/);
    expect(r.out).toMatch(/low_latency dispatch \(decode\), two-batch overlap/);
    expect(r.out).toMatch(/dispatch \d+ token-rank rows \([\d.]+ KiB\), combine \d+/);
    expect(r.out).toMatch(/^eplb {4}rebalanced after step 1 \((hierarchical|global) policy\): balancedness 0\.\d+ -> [01]\.\d+ predicted/m);
    expect(r.out).toMatch(/^error {5}max abs \S+, max relative \S+ .*tolerance 2\.00e-2\)$/m);
    expect(r.out.trimEnd().split('\n').pop()).toBe('PASS: the pipeline on 4 simulated ranks matches the dense reference');
  });

  it('--json prints one summary object', async () => {
    const r = await run(['--json', '--ranks', '8', '--no-tbo', '--replica-choice', 'dynamic']);
    expect(r.code).toBe(0);
    const s = JSON.parse(r.out);
    expect(s).toMatchObject({ pass: true, backend: 'cpu', ranks: 8, tbo: false, eplb: true, replicaChoice: 'dynamic' });
    expect(s.parallel).toMatchObject({ tp: 8, dpSize: 8, attnTpSize: 1, epSize: 8, moeA2aBackend: 'deepep', numPhysicalExperts: 72 });
    expect(s.steps).toHaveLength(5);
    expect(s.steps.every((x: { useTbo: boolean }) => !x.useTbo)).toBe(true);
    expect(s.eplbReport.replicaChoice).toBe('dynamic');
    expect(s.comparison.maxRelError).toBeLessThan(s.comparison.tolerance);
    expect(s.totals.dispatchRows).toBeGreaterThan(s.totals.tokens);
  });

  it('--no-eplb --no-tbo on 16 ranks', async () => {
    const r = await run(['--ranks', '16', '--no-eplb', '--no-tbo', '--seed', '7']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/TBO off, EPLB off/);
    expect(r.out).toMatch(/per rank \[(\d+, ){15}0\]/);
    expect(r.out).not.toMatch(/^eplb/m);
  });

  it('refuses bad arguments with exit 2', async () => {
    for (const [args, message] of [
      [['--ranks', '3'], /--ranks 3: must divide the demo model's 64 routed experts/],
      [['--ranks', '1'], /--ranks 1: must be an integer >= 2/],
      [['--ranks', '128'], /--ranks 128: must divide/],
      [['--tbo', '--no-tbo'], /--tbo and --no-tbo contradict each other/],
      [['--replica-choice', 'random'], /--replica-choice random: must be static or dynamic/],
      [['--bogus'], /Unknown option '--bogus'/],
      [['--backend', 'tpu'], /--backend tpu: must be cpu or cuda/],
      [['--backend', 'cpu', '--share-gpu'], /--share-gpu: only the cuda backend runs ranks on GPUs/],
    ] as const) {
      const r = await run([...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(message);
      expect(r.err).toMatch(/\(run 'wideep demo --help' for usage\)\n?$/);
      expect(r.err.trim().split('\n')).toHaveLength(1);
    }
  });
});
