import { describe, expect, it } from 'vitest';

import { GOALS, decodeRowsPerExpert, gemmFlops, groupedCases, hbmPeakGBps, tflops, weightBytes } from '../../../src/cli/bench/experts-cases.js';
import { buildReport, renderExperts } from '../../../src/cli/bench/experts.js';
import type { GroupedResult, HostResult, RouterResult } from '../../../src/cli/bench/experts-measure.js';

const timing = (us: number, c: { E: number; M: number; N: number; K: number }) => ({ us, tflops: tflops(gemmFlops(c), us) });

function result(id: number, bf16Us: number, fp8Us: number, denseUs: number): GroupedResult {
  const c = groupedCases()[id]!;
  return {
    ...c,
    bf16: timing(bf16Us, c),
    bf16Loop: timing(bf16Us * 2, c),
    fp8: timing(fp8Us, c),
    fp8Loop: timing(fp8Us * 3, c),
    fp8Masked: timing(fp8Us * 4, c),
    dense: timing(denseUs, c),
    bf16WeightGBps: weightBytes(c, false) / bf16Us / 1e3,
    fp8WeightGBps: weightBytes(c, true) / fp8Us / 1e3,
  };
}

const router: RouterResult = { topkUs: 8, gateGemm: { us: 100, tflops: 150 } };
const host: HostResult = { linearUs: 3, groupedLinearUs: 4, routerTopkUs: 2, swigluUs: 6, graphLaunchUs: 2.5, opsInGraph: 4 };

describe('bench experts: cases and metrics', () => {
  it("covers the issue's shapes with DeepSeek-V3's widths", () => {
    const cases = groupedCases();
    const ids = cases.map((c) => `${c.phase} ${c.E}x${c.M}`);
    for (const s of ['prefill 32x512', 'prefill 64x512', 'prefill 32x1024', 'prefill 64x1024', 'decode 32x16', 'decode 32x32', 'decode 256x128']) expect(ids).toContain(s);
    for (const c of cases) {
      expect(c.projection === 'gate_up' ? [c.N, c.K] : [c.N, c.K]).toEqual(c.projection === 'gate_up' ? [4096, 7168] : [7168, 2048]);
    }
  });

  it('computes FLOPs, TFLOP/s and weight bytes', () => {
    const c = { E: 2, M: 3, N: 256, K: 512 };
    expect(gemmFlops(c)).toBe(2 * 2 * 3 * 256 * 512);
    expect(tflops(1e12, 1e6)).toBe(1);
    expect(weightBytes(c, false)).toBe(2 * 2 * 256 * 512);
    expect(weightBytes(c, true)).toBe(2 * 256 * 512 + 2 * 2 * 4 * 4);
    expect(hbmPeakGBps('NVIDIA H200')).toBe(4800);
    expect(hbmPeakGBps('NVIDIA H100 80GB HBM3')).toBe(3350);
    expect(hbmPeakGBps('Tesla T4')).toBeUndefined();
  });
});

describe('bench experts: report', () => {
  const torchGrouped = (r: GroupedResult, us: number) => ({ E: r.E, M: r.M, N: r.N, K: r.K, bf16Us: us, fp8RowwiseUs: us / 1.5 });

  it('checks every goal against the measured ratios, met or not', () => {
    const prefill = result(0, 1000, 500, 800); // fp8 2x, dense/bf16 0.8
    const slow = result(1, 1000, 900, 500); // fp8 1.1x, dense/bf16 0.5
    const torch = { available: true as const, torch: '2.11', device: 'H100', grouped: [torchGrouped(prefill, 1100), torchGrouped(slow, 900)], router: { topkUs: 40 } };
    const report = buildReport('NVIDIA H100 80GB HBM3', { version: '13.1.0', path: '/x' }, [prefill, slow], router, host, torch);
    const goal = (text: string) => report.goals.find((g) => g.goal.startsWith(text))!;
    expect(goal(`${prefill.id}: bf16 vs torch`)).toMatchObject({ target: GOALS.prefillBf16VsTorch, value: 1.1, met: true });
    expect(goal(`${slow.id}: bf16 vs torch`)).toMatchObject({ value: 0.9, met: false });
    expect(goal(`${prefill.id}: bf16 vs dense`)).toMatchObject({ value: 0.8, met: true });
    expect(goal(`${slow.id}: bf16 vs dense`)).toMatchObject({ value: 0.5, met: false });
    expect(goal(`${prefill.id}: fp8 vs our bf16`)).toMatchObject({ value: 2, met: true });
    expect(goal(`${slow.id}: fp8 vs our bf16`).met).toBe(false);
    expect(goal('router top-k, 4096')).toMatchObject({ value: 8, met: true });
    expect(goal('router top-k vs PyTorch')).toMatchObject({ value: 5, met: true });
    expect(goal('host time per swiglu')).toMatchObject({ value: 6, met: false });
    expect(report.grouped[0]!.torchBf16Us).toBe(1100);
    expect(renderExperts(report)).toMatch(/NOT MET .*fp8 vs our bf16/);
  });

  it('a batched fp8 run that cuBLASLt refused: the table says n/a and the fp8 goal uses the faster of the loop and the masked kernel', () => {
    const { fp8: _, ...refused } = { ...result(0, 1000, 500, 800), fp8Batched: 'cuBLASLt has no algorithm for this matmul' };
    const report = buildReport('NVIDIA H100 80GB HBM3', { version: '13.1.0', path: '/x' }, [refused], router, host, { available: false, reason: 'no torch' });
    // fp8Loop is 3x and fp8Masked 4x the fp8 time in result(): the faster, 1500 µs, against bf16's 1000.
    expect(report.goals.find((g) => g.goal.includes('fp8 vs our bf16'))).toMatchObject({ value: 0.667, met: false });
    expect(renderExperts(report)).toMatch(/n\/a/);
  });

  it("times the masked kernel at a decode step's rows where they are fewer than M, and holds its weight reads to the HBM goal", () => {
    expect(groupedCases().filter((c) => c.phase === 'decode').map((c) => [c.E, c.M, decodeRowsPerExpert(c)])).toEqual([
      [32, 16, 16], [32, 16, 16], [32, 32, 32], [32, 32, 32], [256, 128, 4], [256, 128, 4],
    ]);
    const wide = result(12, 9000, 6000, 5000); // decode E256 M128 gate_up
    expect([wide.E, wide.M]).toEqual([256, 128]);
    const bytes = weightBytes(wide, true);
    const step = { ...wide, fp8MaskedStep: { us: 2000, tflops: 1, rows: 4, weightGBps: bytes / 2000 / 1e3 } };
    const report = buildReport('NVIDIA H100 80GB HBM3', { version: '13.1.0', path: '/x' }, [step], router, host, { available: false, reason: 'no torch' });
    const goal = report.goals.find((g) => g.goal.includes('fp8 masked, 4 rows per expert'))!;
    expect(goal.value).toBeCloseTo(bytes / 2000 / 1e3 / 3350, 3);
    expect(goal.met).toBe(bytes / 2000 / 1e3 / 3350 >= GOALS.decodeHbmFraction);
    expect(renderExperts(report)).toContain("fp8 masked at 4 rows per expert (a decode step's): 2000 µs");
  });

  it('says when PyTorch is absent and checks the goals that need no baseline', () => {
    const decode = result(9, 600, 400, 300);
    const report = buildReport('NVIDIA H100 80GB HBM3', { version: '13.1.0', path: '/x' }, [decode], router, host, { available: false, reason: 'no module named torch' });
    expect(report.torch).toEqual({ available: false, reason: 'no module named torch' });
    expect(report.goals.some((g) => g.goal.includes('torch'))).toBe(false);
    const hbm = report.goals.find((g) => g.goal.includes('bf16 weight reads / HBM'))!;
    expect(hbm.value).toBeCloseTo(decode.bf16WeightGBps / 3350, 3);
    const hbm8 = report.goals.find((g) => g.goal.includes('fp8 weight reads / HBM'))!;
    expect(hbm8.value).toBeCloseTo(decode.fp8WeightGBps / 3350, 3);
    expect(renderExperts(report)).toContain('PyTorch absent (no module named torch)');
  });
});
