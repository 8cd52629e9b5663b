/**
 * The MoE layer, its device placement and the weight moves refuse what they
 * cannot serve before anything reaches a GPU: more expert slots than experts
 * without a placement, a rebalance without one, a rebalance that moves
 * weights between ranks without a communicator (on every rank alike), and bad
 * placement options.
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
});
