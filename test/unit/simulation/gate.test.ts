import { describe, expect, it } from 'vitest';

import { SMALL_MOE_CONFIG, gateForward, generateMoeLayerWeights, groupedTopk, moeLayerConfig, validateMoeLayerConfig, type GateOutput, type MoeLayerConfig } from '../../../src/simulation/index.js';
import { expectWideepError } from '../../helpers/expect-error.js';

// 8 experts in 4 groups of 2; pick top-2 from the best 2 groups.
const config: MoeLayerConfig = {
  ...SMALL_MOE_CONFIG,
  numRoutedExperts: 8,
  numExpertGroups: 4,
  topkGroup: 2,
  topK: 2,
  routedScalingFactor: 2,
  scoringFunc: 'sigmoid',
  normTopkProb: true,
};

function route(c: MoeLayerConfig, logits: number[], bias = new Array<number>(logits.length).fill(0)): GateOutput {
  const out: GateOutput = { topkIdx: new Int32Array(c.topK), topkWeights: new Float32Array(c.topK) };
  groupedTopk(c, Float32Array.from(bias), Float32Array.from(logits), 0, 0, out);
  return out;
}

const sig = (v: number) => 1 / (1 + Math.exp(-v));

describe('grouped top-k gate', () => {
  it('keeps the groups with the best top-2 sums, then the best experts inside them', () => {
    // Expert 0 alone is the best, but its group (0,1) sums lower than groups (2,3) and (6,7).
    const logits = [3, -4, 2, 2, 0, 0, 2.2, 1.9];
    const r = route(config, logits);
    expect(Array.from(r.topkIdx)).toEqual([6, 2]);
    const s = [sig(2.2), sig(2)];
    expect(r.topkWeights[0]).toBeCloseTo((2 * s[0]!) / (s[0]! + s[1]!), 6);
    expect(r.topkWeights[0]! + r.topkWeights[1]!).toBeCloseTo(2, 6);
  });

  it('lets the bias choose experts without weighting them', () => {
    const logits = [0, 0, 0, 0, 0.5, 0.4, 0, 0];
    const bias = [0, 0, 0, 0, 0, 0, 1, 1];
    const r = route(config, logits, bias);
    expect(Array.from(r.topkIdx)).toEqual([6, 7]);
    // Equal unbiased scores, so equal weights.
    expect(r.topkWeights[0]).toBeCloseTo(1, 6);
    expect(r.topkWeights[1]).toBeCloseTo(1, 6);
  });

  it('breaks ties toward the lower index', () => {
    const r = route(config, new Array<number>(8).fill(0));
    expect(Array.from(r.topkIdx)).toEqual([0, 1]);
  });

  it('softmax scoring without normalisation keeps the raw probabilities, scaled', () => {
    const c = { ...config, scoringFunc: 'softmax' as const, normTopkProb: false, routedScalingFactor: 1, numExpertGroups: 1, topkGroup: 1 };
    const logits = [1, 2, 3, 0, 0, 0, 0, 0];
    const r = route(c, logits);
    const z = logits.reduce((a, v) => a + Math.exp(v), 0);
    expect(Array.from(r.topkIdx)).toEqual([2, 1]);
    expect(r.topkWeights[0]).toBeCloseTo(Math.exp(3) / z, 6);
    expect(r.topkWeights[1]).toBeCloseTo(Math.exp(2) / z, 6);
  });

  it('gateForward is deterministic and only picks kept groups', () => {
    const weights = generateMoeLayerWeights(SMALL_MOE_CONFIG, 3);
    const H = SMALL_MOE_CONFIG.hidden;
    const T = 20;
    const x = new Float32Array(T * H).map((_, i) => Math.sin(i * 0.37));
    const a = gateForward(weights, x, T);
    const b = gateForward(weights, x, T);
    expect(a.topkIdx).toEqual(b.topkIdx);
    expect(a.topkWeights).toEqual(b.topkWeights);
    const per = SMALL_MOE_CONFIG.numRoutedExperts / SMALL_MOE_CONFIG.numExpertGroups;
    for (let t = 0; t < T; t++) {
      const row = Array.from(a.topkIdx.subarray(t * 4, t * 4 + 4));
      expect(new Set(row).size).toBe(4);
      expect(new Set(row.map((e) => Math.floor(e / per))).size).toBeLessThanOrEqual(SMALL_MOE_CONFIG.topkGroup);
    }
  });

  it('validates the config', async () => {
    expect(moeLayerConfig().numRoutedExperts).toBe(64);
    await expectWideepError(() => validateMoeLayerConfig({ ...config, numExpertGroups: 3 }), 'ERR_INVALID_ARG', 'numExpertGroups 3 must divide numRoutedExperts 8');
    await expectWideepError(() => validateMoeLayerConfig({ ...config, topK: 5 }), 'ERR_INVALID_ARG', 'topK');
    await expectWideepError(() => validateMoeLayerConfig({ ...config, hidden: 12 }), 'ERR_INVALID_ARG', 'multiple of 8');
    await expectWideepError(() => validateMoeLayerConfig({ ...config, scoringFunc: 'relu' as never }), 'ERR_INVALID_ARG', 'sigmoid or softmax');
  });
});
