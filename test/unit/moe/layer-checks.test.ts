/**
 * The MoE layer, its device placement and the weight moves refuse what they
 * cannot serve before anything reaches a GPU: more expert slots than experts
 * without a placement, a rebalance without one, a rebalance that moves
 * weights between ranks without a communicator (on every rank alike), bad
 * placement options, fp8 experts without their scales or of shapes the
 * block-scaled GEMMs cannot take, and a masked expert GEMM for bf16 experts.
 */
import { describe, expect, it } from 'vitest';

import { EpBuffer } from '../../../src/ep/buffer.js';
import { createSimulatedRanks } from '../../../src/ep/transport.js';
import { MoeLayer } from '../../../src/moe/layer.js';
import { DevicePlacement } from '../../../src/moe/placement.js';
import { moveExpertWeights } from '../../../src/moe/weight-moves.js';
import { ExpertLocationMap } from '../../../src/planning/expert-location.js';
import { planRebalanceMoves } from '../../../src/planning/rebalance-moves.js';
import { moeLayerConfig } from '../../../src/simulation/config.js';
import type { DeviceStorage } from '../../../src/cuda/memory.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const config = moeLayerConfig({ hidden: 64, moeIntermediate: 32, numRoutedExperts: 8, numSharedExperts: 0, topK: 2, numExpertGroups: 1, topkGroup: 1 });
const host = (shape: number[]) => Tensor.empty(shape, 'bf16');

describe('MoE layer placement checks', () => {
  it('a buffer with more slots than the layer has experts needs a placement', async () => {
    const [t] = createSimulatedRanks(1);
    const ep = await EpBuffer.create(t!, { hidden: 64, numExperts: 12, maxTokensPerRank: 8, backend: 'cpu' });
    try {
      const weights = { gate: host([8, 64]), experts: { w13: host([12, 64, 64]), w2: host([12, 64, 32]) } };
      await expectWideepError(() => new MoeLayer(ep, config, weights), 'ERR_INVALID_ARG', '12 expert slots', 'needs a placement');
    } finally {
      await ep.close();
    }
  });

  it('a rebalance that moves weights between ranks needs a communicator, and says so on every rank before any copy', async () => {
    const from = ExpertLocationMap.trivial({ numLayers: 1, numLogical: 4, numPhysical: 4, numRanks: 2 });
    // Rank 0 takes expert 2 from rank 1 and rank 1 takes expert 0 from rank 0.
    const to = ExpertLocationMap.fromPhy2Log([[2, 1, 0, 3]], { numLogical: 4, numRanks: 2 });
    const plan = planRebalanceMoves(from, to);
    expect(plan.counts.recv).toBe(2);
    for (const rank of [0, 1]) {
      // Host tensors: the refusal comes before anything would touch them.
      const weights = { w13: host([2, 16, 8]), w2: host([2, 8, 8]) };
      await expectWideepError(
        () => moveExpertWeights({ plan, layer: 0, rank, weights, stream: undefined as never }),
        'ERR_UNSUPPORTED',
        'between ranks',
        'NCCL communicator',
      );
    }
  });

  it('placement options are checked before any upload', async () => {
    const map = ExpertLocationMap.trivial({ numLayers: 2, numLogical: 4, numPhysical: 6, numRanks: 2 });
    await expectWideepError(() => DevicePlacement.create(map, { layer: 2, rank: 0, device: 0 }), 'ERR_INVALID_ARG', 'layer');
    await expectWideepError(() => DevicePlacement.create(map, { layer: 0, rank: 2, device: 0 }), 'ERR_INVALID_ARG', 'rank');
    await expectWideepError(() => DevicePlacement.create(map, { layer: 0, rank: 0, device: 0, algorithm: 'random' as never }), 'ERR_INVALID_ARG', "'static' or 'dynamic'");
    await expectWideepError(() => DevicePlacement.create(map, { layer: 0, rank: 0, device: 0, seed: -1 }), 'ERR_INVALID_ARG', 'seed');
  });

  it('fp8 experts need their block scales, K in whole 512s and low-latency rows in 4s; bf16 experts refuse scales', async () => {
    // Views of fake device storage: the constructor refuses before anything reaches a GPU.
    const storage: DeviceStorage = { device: 0, ptr: 0x10000n, byteLength: 1 << 30, closed: false, close: () => {} };
    const dev = (shape: number[], dtype: Tensor['dtype']) => Tensor.fromDeviceStorage(storage, dtype, shape, 0, false);
    const layerOf = (H: number, I: number) => moeLayerConfig({ hidden: H, moeIntermediate: I, numRoutedExperts: 4, numSharedExperts: 0, topK: 2, numExpertGroups: 1, topkGroup: 1 });
    const weightsOf = (H: number, I: number, dtype: 'bf16' | 'fp8e4m3', scales: boolean) => ({
      gate: dev([4, H], 'bf16'),
      experts: {
        w13: dev([4, 2 * I, H], dtype),
        w2: dev([4, H, I], dtype),
        ...(scales ? { w13Scales: dev([4, (2 * I) / 128, H / 128], 'f32'), w2Scales: dev([4, H / 128, I / 128], 'f32') } : {}),
      },
    });
    const [t] = createSimulatedRanks(1);
    const ep = await EpBuffer.create(t!, { hidden: 1024, numExperts: 4, maxTokensPerRank: 8, lowLatency: { maxTokensPerRank: 8 }, backend: 'cpu' });
    const odd = await EpBuffer.create(t!, { hidden: 1024, numExperts: 4, maxTokensPerRank: 8, lowLatency: { maxTokensPerRank: 6 }, backend: 'cpu' });
    try {
      expect(new MoeLayer(ep, layerOf(512, 512), weightsOf(512, 512, 'fp8e4m3', true)).expertDType).toBe('fp8e4m3');
      expect(new MoeLayer(ep, layerOf(512, 512), weightsOf(512, 512, 'bf16', false)).expertDType).toBe('bf16');
      // The expert GEMMs: cuBLASLt by default; wideep's masked kernel for fp8 experts only.
      expect(new MoeLayer(ep, layerOf(512, 512), weightsOf(512, 512, 'fp8e4m3', true)).expertGemm).toBe('cublaslt');
      expect(new MoeLayer(ep, layerOf(512, 512), weightsOf(512, 512, 'fp8e4m3', true), { expertGemm: 'masked' }).expertGemm).toBe('masked');
      await expectWideepError(() => new MoeLayer(ep, layerOf(512, 512), weightsOf(512, 512, 'bf16', false), { expertGemm: 'masked' }), 'ERR_INVALID_ARG', "expertGemm 'masked' runs fp8 experts", 'bf16');
      await expectWideepError(() => new MoeLayer(ep, layerOf(512, 512), weightsOf(512, 512, 'fp8e4m3', true), { expertGemm: 'cutlass' as never }), 'ERR_INVALID_ARG', "expected 'cublaslt' or 'masked'", 'cutlass');
      await expectWideepError(() => new MoeLayer(ep, layerOf(512, 512), weightsOf(512, 512, 'fp8e4m3', false)), 'ERR_INVALID_ARG', 'w13Scales');
      await expectWideepError(() => new MoeLayer(ep, layerOf(512, 512), weightsOf(512, 512, 'bf16', true)), 'ERR_INVALID_ARG', 'belong to fp8 experts');
      await expectWideepError(() => new MoeLayer(ep, layerOf(640, 512), weightsOf(640, 512, 'fp8e4m3', true)), 'ERR_SHAPE', 'multiples of 512');
      await expectWideepError(() => new MoeLayer(odd, layerOf(512, 512), weightsOf(512, 512, 'fp8e4m3', true)), 'ERR_INVALID_ARG', 'multiple of 4');
      const wrong = weightsOf(512, 512, 'fp8e4m3', true);
      wrong.experts.w2Scales = dev([4, 4, 8], 'f32');
      await expectWideepError(() => new MoeLayer(ep, layerOf(512, 512), wrong), 'ERR_SHAPE', 'weights.experts.w2Scales');
    } finally {
      await ep.close();
      await odd.close();
    }
  });
});
