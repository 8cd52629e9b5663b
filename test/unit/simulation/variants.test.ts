import { describe, expect, it } from 'vitest';

import {
  SMALL_MOE_CONFIG,
  causalAttention,
  generateMoeLayerWeights,
  generateWorkload,
  numTokens,
  runMoeLayerCheck,
  runMoePipeline,
  type AttentionFn,
} from '../../../src/simulation/index.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const model = SMALL_MOE_CONFIG;

describe('pipeline variants (small layer: 32 experts, top-4 of 2 of 4 groups)', () => {
  it('EPLB with the dynamic replica choice and several redundant slots per rank', async () => {
    const r = await runMoeLayerCheck({ numRanks: 8, model, tbo: true, eplb: { replicaChoice: 'dynamic', redundantExperts: 16, rebalanceAfterSteps: 2 } });
    expect(r.comparison.pass, String(r.comparison.maxRelError)).toBe(true);
    expect(r.pipeline.numPhysical).toBe(48);
    expect(r.pipeline.eplb!.replicaChoice).toBe('dynamic');
    expect(r.pipeline.eplb!.replicatedExperts).toBeGreaterThan(1);
  });

  it('EPLB over two simulated nodes (hierarchical policy)', async () => {
    const r = await runMoeLayerCheck({ numRanks: 8, ranksPerNode: 4, model, eplb: true });
    expect(r.comparison.pass).toBe(true);
    expect(r.pipeline.eplb!.policy).toBe('hierarchical');
    expect(r.pipeline.parallel.nnodes).toBe(2);
  });

  it('softmax scoring without normalisation (DeepSeek-V2 style gate)', async () => {
    const r = await runMoeLayerCheck({ numRanks: 4, model: { ...model, scoringFunc: 'softmax', normTopkProb: false, routedScalingFactor: 1 }, tbo: true });
    expect(r.comparison.pass).toBe(true);
  });

  it('--deepep-mode normal: decode steps use normal dispatch, with the decode stage schedule', async () => {
    const r = await runMoeLayerCheck({ numRanks: 4, model, tbo: true, deepepMode: 'normal', steps: ['decode', 'decode'] });
    expect(r.comparison.pass).toBe(true);
    expect(r.pipeline.steps.map((s) => s.deepepMode)).toEqual(['normal', 'normal']);
    expect(r.pipeline.steps[0]!.stageTrace).toContain('b:dispatch-recv');
  });

  it('--deepep-mode low_latency: prefill steps use the low-latency kernels', async () => {
    const r = await runMoeLayerCheck({ numRanks: 4, model, tbo: true, eplb: true, deepepMode: 'low_latency', steps: ['extend', 'mixed', 'extend'] });
    expect(r.comparison.pass).toBe(true);
    expect(r.pipeline.steps.map((s) => s.deepepMode)).toEqual(['low_latency', 'low_latency', 'low_latency']);
  });

  it('idle ranks anywhere (rank 0 included) still join every collective, with and without TBO', async () => {
    for (const tbo of [false, true]) {
      const r = await runMoeLayerCheck({ numRanks: 8, model, tbo, eplb: true, idleRanks: [0, 3, 7], steps: ['extend', 'decode', 'extend'] });
      expect(r.comparison.pass).toBe(true);
      for (const s of r.pipeline.steps) {
        expect(s.idleRanks).toEqual([0, 3, 7]);
        expect(s.useTbo).toBe(tbo);
        expect(s.microBatchTokens[0]).toEqual(tbo ? [0, 0] : [0]);
      }
      expect(r.pipeline.outputs.every((ranks) => ranks[0]!.length === 0 && ranks[1]!.length > 0)).toBe(true);
    }
  });

  it('a single busy rank among idle ones', async () => {
    const r = await runMoeLayerCheck({ numRanks: 4, model, tbo: true, idleRanks: [0, 1, 2], steps: ['extend', 'decode'] });
    expect(r.comparison.pass).toBe(true);
    expect(r.pipeline.steps.every((s) => s.useTbo)).toBe(true);
  });

  it('takes a user attention function, in the pipeline and in the reference', async () => {
    let calls = 0;
    // Causal running mean over the prefix and the tokens so far (order-fixed sums, so the bits do not depend on batching).
    const meanAttention: AttentionFn = ({ hidden: H, x, seqLens, prefixes }) => {
      calls++;
      const out = new Float32Array(x.length);
      let token = 0;
      seqLens.forEach((len, s) => {
        const prefix = prefixes[s]!;
        const P = prefix.length / H;
        for (let i = 0; i < len; i++) {
          for (let c = 0; c < H; c++) {
            let sum = 0;
            for (let j = 0; j < P; j++) sum += prefix[j * H + c]!;
            for (let j = 0; j <= i; j++) sum += x[(token + j) * H + c]!;
            out[(token + i) * H + c] = sum / (P + i + 1);
          }
        }
        token += len;
      });
      return out;
    };
    const r = await runMoeLayerCheck({ numRanks: 4, model, tbo: true, attention: meanAttention });
    expect(r.comparison.pass).toBe(true);
    expect(calls).toBeGreaterThan(4);
  });

  it('refuses a decode batch larger than the low-latency slots, on every rank, without hanging', async () => {
    await expectWideepError(
      runMoeLayerCheck({ numRanks: 4, model, numMaxDispatchTokensPerRank: 2, steps: ['decode'] }),
      'ERR_INVALID_ARG',
      'exceeds --num-max-dispatch-tokens-per-rank 2',
    );
  });

  it('refuses an expert count the ranks do not divide', async () => {
    await expectWideepError(runMoeLayerCheck({ numRanks: 3, model, steps: ['decode'] }), 'ERR_INVALID_ARG', "the model's 32 routed experts must be divisible by ep-size");
  });

  it('stops every rank at once when one rank fails, and reports that rank\'s error', async () => {
    const weights = generateMoeLayerWeights(model, 1);
    const workload = generateWorkload({ numRanks: 4, hidden: model.hidden, steps: ['extend', 'decode'], seed: 3 });
    const bad = numTokens(workload[1]![2]!);
    const attention = causalAttention(weights.attention);
    const failing: AttentionFn = (batch) => {
      if (batch.seqLens.length === bad && batch.seqLens.every((n) => n === 1)) throw new Error('attention exploded');
      return attention(batch);
    };
    const t0 = performance.now();
    await expect(runMoePipeline({ weights, workload, numRanks: 4, attention: failing, eplb: true })).rejects.toThrow('attention exploded');
    expect(performance.now() - t0).toBeLessThan(10_000);
  });

  it('checks the workload against the rank count', async () => {
    const weights = generateMoeLayerWeights(model, 1);
    const workload = generateWorkload({ numRanks: 4, hidden: model.hidden, steps: ['decode'], seed: 3 });
    await expectWideepError(runMoePipeline({ weights, workload, numRanks: 8 }), 'ERR_INVALID_ARG', 'step 0 has 4 rank batches, expected 8');
    await expectWideepError(runMoePipeline({ weights, workload: [], numRanks: 4 }), 'ERR_INVALID_ARG', 'at least one step');
  });
});
