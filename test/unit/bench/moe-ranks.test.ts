import { describe, expect, it } from 'vitest';

import { moeShape, parseMoeArgs } from '../../../src/cli/bench/moe-cases.js';
import type { LayerResult } from '../../../src/cli/bench/moe-measure.js';
import { buildMoeReport, renderMoe } from '../../../src/cli/bench/moe-report.js';
import { foldRanks } from '../../../src/cli/bench/moe-ranks.js';

function rankResult(scale: number, rank: number): LayerResult {
  return {
    prefill: {
      step: { gpuUs: 8000 * scale },
      tbo: { gpuUs: 6000 * scale },
      stages: { router: 100 * scale, experts: 5000 * scale },
      tboSpans: [{ label: 'router', lane: 0, startUs: 0, endUs: 50, hostUs: 7 + rank }],
    },
    decode: {
      eager: { gpuUs: 900 * scale, hostUs: 200 * scale },
      tbo: { gpuUs: 800 * scale, hostUs: 300 * scale },
      graph: { gpuUs: 700 * scale, hostUs: 5 * scale, hostBackToBackUs: 2 * scale },
      stages: { router: 10 * scale, experts: 600 * scale },
      hostStages: { router: 20 * scale, experts: 40 * scale },
    },
  };
}

const noTorch = { available: false, reason: "PyTorch's layer runs at one rank; this run has 4" } as const;

describe('bench moe --ranks: folding the ranks', () => {
  it("takes the median over ranks of every timing and stage, and rank 0's timeline", () => {
    const folded = foldRanks([rankResult(1, 0), rankResult(3, 1), rankResult(2, 2)]);
    expect(folded.prefill.step).toEqual({ gpuUs: 16000 });
    expect(folded.decode.graph).toEqual({ gpuUs: 1400, hostUs: 10, hostBackToBackUs: 4 });
    expect(folded.decode.eager).toEqual({ gpuUs: 1800, hostUs: 400 });
    expect(folded.decode.hostStages).toEqual({ router: 40, experts: 80 });
    expect(folded.prefill.stages).toEqual({ router: 200, experts: 10000 });
    expect(folded.prefill.tboSpans[0]!.hostUs).toBe(7);
  });

  it('parses --ranks and --share-gpu into the shape; sharing means nothing at one rank', () => {
    expect(moeShape(parseMoeArgs(['--ranks', '4', '--share-gpu', '--experts', '32']))).toMatchObject({ ranks: 4, sharedGpu: true, experts: 32 });
    expect(moeShape(parseMoeArgs(['--share-gpu']))).toMatchObject({ ranks: 1, sharedGpu: false });
  });
});

describe('bench moe --ranks: the report', () => {
  const inputs = (args: string[]) => ({
    deviceName: 'NVIDIA H100 80GB HBM3',
    shape: moeShape(parseMoeArgs(args)),
    method: { iters: 20, warmup: 5, timelineRuns: 5 },
    layer: rankResult(1, 0),
    torch: noTorch,
    warnings: [],
  });

  it('holds two-batch overlap to its goal on 4 GPUs of their own', () => {
    const r = buildMoeReport(inputs(['--ranks', '4']));
    expect(r.goals.slice(3)).toEqual([
      { goal: 'prefill, two-batch overlap speedup at 4 ranks', target: 1.2, value: 1.333, met: true },
      { goal: 'decode, two-batch overlap speedup at 4 ranks', target: 1.2, value: 1.125, met: false },
    ]);
    // PyTorch's goals stay unchecked, with the reason.
    expect(r.goals[0]).toMatchObject({ met: null, why: expect.stringContaining("PyTorch's layer runs at one rank") });
    expect(renderMoe(r)).toContain('4 ranks, one GPU each (64 experts and the tokens below per rank; medians over ranks)');
  });

  it('does not judge overlap where the ranks share one GPU, and says why', () => {
    const r = buildMoeReport(inputs(['--ranks', '4', '--share-gpu']));
    expect(r.goals.slice(3).map((g) => [g.met, g.why])).toEqual([
      [null, 'the ranks share one GPU, time-sliced: no measure of overlap'],
      [null, 'the ranks share one GPU, time-sliced: no measure of overlap'],
    ]);
    const text = renderMoe(r);
    expect(text).toContain('4 ranks sharing GPU 0');
    expect(text).toContain('two-batch overlap (no / with), 4 ranks: prefill 1.333x, decode 1.125x');
  });
});
