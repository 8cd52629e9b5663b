/**
 * FP8 expert weights on the host: 128x128-block quantisation (the block's
 * largest magnitude lands on 448, every value within half an e4m3 step of
 * its original), the dequantised layer a fp8 GPU layer computes with (routed
 * experts only, memoised), and the reference layer in fp8 mode: the same
 * routing, outputs close to bf16's but not equal.
 */
import { describe, expect, it } from 'vitest';

import type { DeviceStorage } from '../../../src/cuda/memory.js';
import { SeededRandom } from '../../../src/ep/random-routing.js';
import { expertsForward } from '../../../src/moe/experts.js';
import { dequantizeWeightFp8, fp8RoutedExperts, quantizeExpertFp8, quantizeWeightFp8 } from '../../../src/moe/fp8-weights.js';
import { moeLayerConfig } from '../../../src/simulation/config.js';
import { roundRowsToBf16 } from '../../../src/simulation/math.js';
import { generateMoeLayerWeights } from '../../../src/simulation/weights.js';
import { moeLayerReference } from '../../../src/testing/moe-reference.js';
import { fp8E4m3BitsToF32 } from '../../../src/tensor/convert.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import { expectWideepError } from '../../helpers/expect-error.js';

describe('fp8 expert weights', () => {
  it('quantises 128x128 blocks: each block scaled to its own amax, values within half a step', () => {
    const [rows, cols] = [256, 384];
    const rng = new SeededRandom(11);
    // Blocks of very different magnitudes, and one all-zero block.
    const v = Float32Array.from({ length: rows * cols }, (_, i) => {
      const [r, c] = [Math.floor(i / cols), i % cols];
      const block = Math.floor(r / 128) * 3 + Math.floor(c / 128);
      return block === 4 ? 0 : rng.normal() * 10 ** (block - 3);
    });
    const m = quantizeWeightFp8(v, rows, cols);
    expect(m.scales).toHaveLength(2 * 3);
    const back = dequantizeWeightFp8(m, rows, cols);
    let worst = 0;
    for (let b = 0; b < 6; b++) {
      const [bi, bj] = [Math.floor(b / 3), b % 3];
      let amax = 0;
      let qmax = 0;
      for (let r = bi * 128; r < bi * 128 + 128; r++) {
        for (let c = bj * 128; c < bj * 128 + 128; c++) {
          const i = r * cols + c;
          amax = Math.max(amax, Math.abs(v[i]!));
          qmax = Math.max(qmax, Math.abs(fp8E4m3BitsToF32(m.q[i]!)));
          // e4m3 keeps 3 mantissa bits: half a step is 1/16 of the value (subnormals: of the block's step).
          worst = Math.max(worst, Math.abs(back[i]! - v[i]!) / (Math.abs(v[i]!) / 16 + m.scales[b]! * 2 ** -10));
        }
      }
      if (b === 4) expect(qmax).toBe(0);
      else {
        expect(qmax).toBe(448);
        expect(m.scales[b]).toBeCloseTo(amax / 448, 6);
      }
    }
    expect(worst).toBeLessThanOrEqual(1);
  });

  it('refuses shapes that are not whole 128x128 blocks', async () => {
    await expectWideepError(() => quantizeWeightFp8(new Float32Array(128 * 100), 128, 100), 'ERR_SHAPE', 'multiples of 128');
    await expectWideepError(() => quantizeWeightFp8(new Float32Array(10), 128, 128), 'ERR_SHAPE', '10 values');
  });

  const config = moeLayerConfig({ hidden: 128, moeIntermediate: 128, numRoutedExperts: 8, numSharedExperts: 1, topK: 2, numExpertGroups: 2, topkGroup: 1 });

  it('the fp8 layer dequantises the routed experts only, w13 as [gate; up], memoised', () => {
    const w = generateMoeLayerWeights(config, 5);
    const f = fp8RoutedExperts(w);
    expect(fp8RoutedExperts(w)).toBe(f);
    expect(f.shared).toBe(w.shared);
    expect(f.gate).toBe(w.gate);
    const e = w.experts[3]!;
    const { w13, w2 } = quantizeExpertFp8(e);
    const gateUp = dequantizeWeightFp8(w13, 256, 128);
    expect(Array.from(f.experts[3]!.gate)).toEqual(Array.from(gateUp.subarray(0, 128 * 128)));
    expect(Array.from(f.experts[3]!.up)).toEqual(Array.from(gateUp.subarray(128 * 128)));
    expect(Array.from(f.experts[3]!.down)).toEqual(Array.from(dequantizeWeightFp8(w2, 128, 128)));
    expect(Array.from(f.experts[3]!.gate)).not.toEqual(Array.from(e.gate));
  });

  it('the reference in fp8 routes as in bf16 and lands near, not on, the bf16 output', () => {
    const w = generateMoeLayerWeights(config, 9);
    const T = 12;
    const rng = new SeededRandom(2);
    const x = roundRowsToBf16(Float32Array.from({ length: T * config.hidden }, () => rng.normal()));
    const a = moeLayerReference(w, x, T);
    const b = moeLayerReference(w, x, T, { expertDType: 'fp8e4m3' });
    expect(Array.from(b.topkIdx)).toEqual(Array.from(a.topkIdx));
    let differ = 0;
    let worst = 0;
    for (let i = 0; i < a.out.length; i++) {
      if (a.out[i] !== b.out[i]) differ++;
      worst = Math.max(worst, Math.abs(a.out[i]! - b.out[i]!) / a.scale[i]!);
    }
    // Casts of the weights, the tokens and the activation: each at most 1/16 of a term.
    expect(worst).toBeLessThan(3 / 16);
    expect(differ).toBeGreaterThan(a.out.length / 2);
  });

  it('expertsForward: fp8 experts given scratch need its activation scales, bf16 ones refuse them (before any launch)', async () => {
    // Views of fake device storage: the check comes before anything reaches a GPU.
    const storage: DeviceStorage = { device: 0, ptr: 0x10000n, byteLength: 1 << 26, closed: false, close: () => {} };
    const dev = (shape: number[], dtype: Tensor['dtype']) => Tensor.fromDeviceStorage(storage, dtype, shape, 0, false);
    const [E, M, H, I] = [2, 8, 512, 512];
    const fp8 = { w13: dev([E, 2 * I, H], 'fp8e4m3'), w2: dev([E, H, I], 'fp8e4m3'), w13Scales: dev([E, 8, 4], 'f32'), w2Scales: dev([E, 4, 4], 'f32') };
    const scratch = { h: dev([E, M, 2 * I], 'bf16'), a: dev([E, M, I], 'fp8e4m3') };
    await expectWideepError(() => expertsForward({ x: dev([E, M, H], 'fp8e4m3'), xScales: dev([E, M, 4], 'f32'), weights: fp8, scratch }), 'ERR_INVALID_ARG', 'scratch.aScales', 'fp8 experts need it');
    const bf16 = { w13: dev([E, 2 * I, H], 'bf16'), w2: dev([E, H, I], 'bf16') };
    const withScales = { h: scratch.h, a: dev([E, M, I], 'bf16'), aScales: dev([E, 4, M], 'f32') };
    await expectWideepError(() => expertsForward({ x: dev([E, M, H], 'bf16'), weights: bf16, scratch: withScales }), 'ERR_INVALID_ARG', 'scratch.aScales', 'belongs to fp8');
  });
});
