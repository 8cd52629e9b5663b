/**
 * `wideep demo` on the cuda backend, without GPUs: the capability probe says
 * two H200s and the launch of the GPU workers is replaced by canned rank
 * reports, so the choice of backend, the flags and the output are tested
 * here; test/unit/simulation/demo-gpu.test.ts runs the real thing on GPUs.
 */
import { describe, expect, it, vi } from 'vitest';

import type { CudaDemoRun } from '../../../src/cli/demo/cuda-run.js';
import type { DemoRankReport } from '../../../src/cli/demo/gpu-layer.js';

const gpu = { index: 0, name: 'NVIDIA H200', computeCapability: '9.0', memoryBytes: 1, smCount: 132, pciBusId: '0', l2CacheBytes: 1, supported: true };
const launched: { ranks: number; env: Record<string, string>; seed: number }[] = [];
let failRank: number | undefined;

vi.mock('../../../src/capabilities.js', async (importOriginal) => ({
  ...(await importOriginal<typeof import('../../../src/capabilities.js')>()),
  capabilities: () => ({
    cuda: { available: true, deviceCount: 2 },
    gpus: [gpu, { ...gpu, index: 1 }],
    peerAccess: [[true, true], [true, true]],
    cublasLt: { found: true, version: '12.9.1', tried: [] },
  }),
}));

function report(rank: number, ranks: number): DemoRankReport {
  const steps = [
    { kind: 'prefill' as const, tokens: 100 + rank, ms: 5 + rank, hostUs: 900 },
    { kind: 'prefill' as const, tokens: rank === ranks - 1 ? 0 : 50, ms: 2, hostUs: 800 },
    ...Array.from({ length: 4 }, () => ({ kind: 'decode' as const, tokens: 32, ms: 0.2, hostUs: 6 + rank })),
  ];
  const failures = rank === failRank ? ['rank 1 decode replay 2: 3 of 8192 out of tolerance; worst [4, 7]: got NaN, expected 0.5000 ± 0.01600'] : [];
  return { rank, device: rank, checks: 8000, failures, tokens: 278, nearTies: 2, worstRatio: rank === failRank ? Infinity : 0.25, steps };
}

vi.mock('../../../src/cli/demo/cuda-run.js', () => ({
  runCudaDemo: async (ranks: number, env: Record<string, string>, settings: { seed: number }): Promise<CudaDemoRun> => {
    launched.push({ ranks, env, seed: settings.seed });
    return { ok: true, reports: Array.from({ length: ranks }, (_, r) => report(r, ranks)), log: '' };
  },
}));

const { command } = await import('../../../src/cli/commands/demo.js');

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await command.run(args, { out: (t) => out.push(t), err: (t) => err.push(t) });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('wideep demo with GPUs', () => {
  it('runs on cuda, one rank per GPU, says why, prints each step and PASS', async () => {
    launched.length = 0;
    failRank = undefined;
    const r = await run([]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(launched).toEqual([{ ranks: 2, env: {}, seed: 1 }]);
    expect(r.out).toMatch(/^backend {3}cuda, 2 ranks, one GPU each\n {10}why: 2 GPUs \(NVIDIA H200\) and cuBLASLt 12\.9\.1: one process per rank/m);
    expect(r.out).toMatch(/^plan {6}DP attention \+ DeepEP over 2 ranks: 32 experts per rank; 2 prefill steps, then 4 replays of a captured decode step$/m);
    expect(r.out).toMatch(/^step 0 {2}prefill: 201 tokens, per rank \[100, 101\]\n {8}normal dispatch, eager: 6\.00 ms \(the first step includes cuBLASLt planning\) \(slowest rank\)$/m);
    expect(r.out).toMatch(/^step 1 {2}prefill: 50 tokens, per rank \[50, 0\]; idle: rank 1$/m);
    expect(r.out).toMatch(/^step 5 {2}decode: 64 tokens, per rank \[32, 32\]\n {8}low-latency dispatch, one CUDA graph replay: 0\.200 ms, 7\.0 µs of host time to launch/m);
    expect(r.out).toMatch(/^error {5}worst \|error\| 0\.25 of its tolerance .* over 16000 elements; 4 of 556 tokens within rounding of a routing tie left out$/m);
    expect(r.out.trimEnd().split('\n').pop()).toBe('PASS: the MoE layer on 2 ranks (2 ranks, one GPU each) matches the host reference');
  });

  it('--json prints one object; a rank that does not match fails the run with exit 1', async () => {
    failRank = 1;
    const r = await run(['--json', '--seed', '9']);
    expect(r.code).toBe(1);
    const s = JSON.parse(r.out);
    expect(s).toMatchObject({ pass: false, backend: 'cuda', gpus: 2, ranks: 2, seed: 9, placement: '2 ranks, one GPU each' });
    expect(s.steps).toHaveLength(6);
    expect(s.comparison.failures).toEqual([expect.stringMatching(/^rank 1 decode replay 2: 3 of 8192 out of tolerance/)]);
    // JSON has no Infinity: a NaN that was never overwritten shows as null.
    expect(s.comparison.worstRatio).toBeNull();
    failRank = undefined;
  });

  it('shares GPU 0 when asked, and refuses more ranks than GPUs otherwise', async () => {
    launched.length = 0;
    expect((await run(['--ranks', '4', '--share-gpu'])).code).toBe(0);
    expect(launched).toEqual([{ ranks: 4, env: { WIDEEP_DEVICE: '0' }, seed: 1 }]);
    const r = await run(['--ranks', '4']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--ranks 4: the cuda backend runs one rank per GPU and 2 are visible; --share-gpu puts every rank on GPU 0/);
  });

  it('refuses the cpu simulation\'s options and rank counts the cuda demo cannot run', async () => {
    for (const [args, message] of [
      [['--no-tbo'], /--no-tbo: the cuda demo runs prefill and decode steps without two-batch overlap or EPLB yet; --backend cpu simulates them/],
      [['--ranks', '3', '--share-gpu'], /--ranks 3: the cuda demo runs 1, 2, 4 or 8 ranks/],
    ] as const) {
      const r = await run([...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err).toMatch(message);
    }
  });

  it('--backend cpu still simulates the ranks', async () => {
    const r = await run(['--backend', 'cpu', '--json', '--no-eplb']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ pass: true, backend: 'cpu', gpus: 2, backendReason: expect.stringMatching(/^--backend cpu: /) });
  });
});
