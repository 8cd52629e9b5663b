import { describe, expect, it } from 'vitest';

import { SeededRandom } from '../../../src/ep/random-routing.js';
import { moeLayerConfig } from '../../../src/simulation/config.js';
import { expertForward, expertRows } from '../../../src/simulation/experts.js';
import { gateForward } from '../../../src/simulation/gate.js';
import { roundRowsToBf16 } from '../../../src/simulation/math.js';
import { generateMoeLayerWeights } from '../../../src/simulation/weights.js';
import { moeLayerReference } from '../../../src/testing/moe-reference.js';

const config = moeLayerConfig({ hidden: 64, moeIntermediate: 32, numRoutedExperts: 16, topK: 4, numExpertGroups: 4, topkGroup: 2 });

describe('wideep/testing: moeLayerReference', () => {
  it('matches the simulation layer (float32) on tokens away from a tie', () => {
    const w = generateMoeLayerWeights(config, 3);
    const T = 40;
    const H = config.hidden;
    const rng = new SeededRandom(5);
    const x = roundRowsToBf16(Float32Array.from({ length: T * H }, () => rng.normal()));
    const ref = moeLayerReference(w, x, T);
    const gate = gateForward(w, x, T);
    const shared = expertRows(w.shared, x, H);
    const y = new Float32Array(H);
    let compared = 0;
    for (let t = 0; t < T; t++) {
      if (ref.nearTie[t]) continue;
      compared++;
      expect(Array.from(ref.topkIdx.subarray(t * 4, t * 4 + 4))).toEqual(Array.from(gate.topkIdx.subarray(t * 4, t * 4 + 4)));
      const want = shared.slice(t * H, (t + 1) * H);
      for (let j = 0; j < 4; j++) {
        expertForward(w.experts[gate.topkIdx[t * 4 + j]!]!, x, t * H, y, 0);
        for (let h = 0; h < H; h++) want[h]! += gate.topkWeights[t * 4 + j]! * y[h]!;
      }
      for (let h = 0; h < H; h++) {
        expect(Math.abs(ref.out[t * H + h]! - want[h]!)).toBeLessThan(1e-4 * ref.scale[t * H + h]! + 1e-6);
        expect(ref.scale[t * H + h]!).toBeGreaterThanOrEqual(Math.abs(ref.out[t * H + h]!));
      }
    }
    expect(compared).toBeGreaterThan(T / 2);
  });

  it('flags a token whose k-th and (k+1)-th experts score the same', () => {
    const c = moeLayerConfig({ hidden: 8, moeIntermediate: 8, numRoutedExperts: 4, topK: 1, numExpertGroups: 1, topkGroup: 1, numSharedExperts: 0 });
    const w = generateMoeLayerWeights(c, 1);
    // Experts 0 and 1 get the same gate row and the largest bias: both lead, tied.
    w.gate.copyWithin(8, 0, 8);
    w.gateBias.set([5, 5, 0, 0]);
    const x = Float32Array.from({ length: 8 }, (_, i) => i / 8);
    expect(moeLayerReference(w, x, 1).nearTie[0]).toBe(1);
    w.gateBias[1] = 4;
    expect(moeLayerReference(w, x, 1).nearTie[0]).toBe(0);
    // A margin past the gap flags it again, given as a number or as an option.
    expect(moeLayerReference(w, x, 1, 2).nearTie[0]).toBe(1);
    expect(moeLayerReference(w, x, 1, { tieMargin: 2 }).nearTie[0]).toBe(1);
  });
});
