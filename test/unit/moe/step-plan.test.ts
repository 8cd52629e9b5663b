/**
 * A DP-attention step is decided together: each simulated rank contributes
 * its tokens and forward mode, and every rank gets the same plan — the
 * dispatch mode (auto: normal as soon as one rank prefills), the idle ranks,
 * two-batch overlap only when every busy rank can split — or the same error.
 */
import { describe, expect, it } from 'vitest';

import { createSimulatedRanks } from '../../../src/ep/transport.js';
import { agreeOnStep, stepMetadata, type StepInput } from '../../../src/moe/step-plan.js';
import type { DpStepSettings } from '../../../src/planning/dp-step.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const settings: DpStepSettings = { attnTpSize: 1, moeA2aBackend: 'deepep', deepepMode: 'auto', enableTwoBatchOverlap: true, numMaxDispatchTokensPerRank: 128 };

async function agree(inputs: StepInput[], s = settings) {
  const ranks = createSimulatedRanks(inputs.length);
  return Promise.all(ranks.map((t, r) => agreeOnStep(t, s, inputs[r]!)));
}

describe('agreeing on a DP-attention step', () => {
  it('one prefilling rank makes the whole step normal mode; an idle rank is listed and still gets the plan', async () => {
    const plans = await agree([
      { numTokens: 3, forwardMode: 'decode' },
      { numTokens: 700, forwardMode: 'extend', seqLens: [500, 200] },
      { numTokens: 0, forwardMode: 'decode' },
      { numTokens: 5, forwardMode: 'decode' },
    ]);
    for (const p of plans) expect(p).toEqual(plans[0]);
    expect(plans[0]).toMatchObject({ deepepMode: 'normal', idleRanks: [2], numTokens: [3, 700, 0, 5], anyExtend: true, useCudaGraph: false });
    // Mixed forward modes among busy ranks: no two-batch overlap.
    expect(plans[0]!.useTbo).toBe(false);
  });

  it('all decoding: low-latency, two-batch overlap when every busy rank splits, a graph when every rank can replay one', async () => {
    const decode = (numTokens: number): StepInput => ({ numTokens, forwardMode: 'decode', canCudaGraph: true });
    const [p] = await agree([decode(8), decode(0), decode(2)]);
    expect(p).toMatchObject({ deepepMode: 'low_latency', useTbo: true, useCudaGraph: true, idleRanks: [1] });
    // A rank with one token cannot split, so nobody overlaps.
    const [q] = await agree([decode(8), decode(1)]);
    expect(q!.useTbo).toBe(false);
  });

  it('a rank over the low-latency slots makes every rank throw the same error', async () => {
    const ranks = createSimulatedRanks(2);
    const inputs: StepInput[] = [
      { numTokens: 4, forwardMode: 'decode' },
      { numTokens: 300, forwardMode: 'decode' },
    ];
    const noTbo = { ...settings, enableTwoBatchOverlap: false };
    const results = await Promise.allSettled(ranks.map((t, r) => agreeOnStep(t, noTbo, inputs[r]!)));
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect(String((r as PromiseRejectedResult).reason)).toMatch(/DP rank 1: 300 tokens exceeds --num-max-dispatch-tokens-per-rank 128/);
    }
  });

  it('bad inputs are refused before anything is sent', async () => {
    await expectWideepError(() => stepMetadata({ numTokens: -1, forwardMode: 'decode' }), 'ERR_INVALID_ARG', 'numTokens');
    await expectWideepError(() => stepMetadata({ numTokens: 2, forwardMode: 'prefill' as never }), 'ERR_INVALID_ARG', 'extend or decode');
    await expectWideepError(() => stepMetadata({ numTokens: 4, forwardMode: 'extend', seqLens: [1, 2] }), 'ERR_INVALID_ARG', 'sum to numTokens');
  });
});
