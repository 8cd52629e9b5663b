import { describe, expect, it } from 'vitest';

import { createSimulatedRanks } from '../../../src/ep/transport.js';
import { WideEp, moeLayerConfigOf, wideEpLayout } from '../../../src/moe/wide-ep.js';
import { ParallelConfig } from '../../../src/planning/config.js';
import { findModelPreset } from '../../../src/planning/models.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const model = { ...findModelPreset('DeepSeek-V3')!, hiddenSize: 128, numRoutedExperts: 16 };
const plan = (o: Record<string, unknown>) =>
  ParallelConfig.fromOptions({ tp: 4, dpSize: 4, enableDpAttention: true, epSize: 4, moeA2aBackend: 'deepep', ...o });

describe('WideEp.create: the plan sizes the EP runtime', () => {
  it('builds the EP buffer the plan implies on every rank (physical experts, low-latency slots)', async () => {
    const ranks = createSimulatedRanks(4);
    const config = plan({ epNumRedundantExperts: 4, numMaxDispatchTokensPerRank: 64 });
    const all = await Promise.all(ranks.map((t) => WideEp.create(t, config, { model, maxTokensPerRank: 8, backend: 'cpu' })));
    for (const [r, w] of all.entries()) {
      expect(w.ep.config).toMatchObject({ rank: r, worldSize: 4, hidden: 128, numExperts: 20, numLocalExperts: 5, maxTokensPerRank: 8, lowLatency: { maxTokensPerRank: 64 } });
    }
    await Promise.all(all.map((w) => w.close()));
  });

  it("takes the EP path the plan's --nnodes implies: ranksPerNode = world / nnodes", async () => {
    expect(wideEpLayout(plan({}), model, 4).ranksPerNode).toBe(4);
    const ranks = createSimulatedRanks(4);
    const twoNodes = plan({ nnodes: 2, distInitAddr: '10.0.0.1:5000' });
    const all = await Promise.all(ranks.map((t) => WideEp.create(t, twoNodes, { model, maxTokensPerRank: 8, backend: 'cpu' })));
    expect(all.map((w) => w.ep.config.ranksPerNode)).toEqual([2, 2, 2, 2]);
    await Promise.all(all.map((w) => w.close()));
  });

  it('refuses, on every rank and before communicating, what the runtime cannot serve', async () => {
    await expectWideepError(() => wideEpLayout(plan({ tp: 8, dpSize: 8, epSize: 8 }), model, 4), 'ERR_INVALID_ARG', 'needs 8 ranks', 'has 4');
    await expectWideepError(() => wideEpLayout(plan({ epNumRedundantExperts: 2 }), model, 4), 'ERR_INVALID_ARG', '16 routed + 2 redundant', 'do not divide over 4');
    await expectWideepError(() => wideEpLayout(plan({ moeA2aBackend: 'none', epSize: 1 }), model, 4), 'ERR_UNSUPPORTED', 'none');
    // A wrong world size is refused by every rank alone: nobody waits for a peer.
    const ranks = createSimulatedRanks(2);
    const results = await Promise.allSettled(ranks.map((t) => WideEp.create(t, plan({}), { model, backend: 'cpu' })));
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    await expectWideepError(() => WideEp.create(ranks[0]!, plan({}), {} as never), 'ERR_INVALID_ARG', 'model');
  });

  it("the model implies the layer config; a layer needs the buffer's GPU", async () => {
    const v3 = findModelPreset('DeepSeek-V3')!;
    expect(moeLayerConfigOf(v3)).toMatchObject({ hidden: 7168, moeIntermediate: 2048, numRoutedExperts: 256, numSharedExperts: 1, topK: 8, numExpertGroups: 8, topkGroup: 4 });
    expect(moeLayerConfigOf(v3, { scoringFunc: 'softmax' }).scoringFunc).toBe('softmax');
    await expectWideepError(() => moeLayerConfigOf(v3, { topkGroup: 9 }), 'ERR_INVALID_ARG', 'topkGroup');
    const [t] = createSimulatedRanks(1);
    const w = await WideEp.create(t!, plan({ tp: 1, dpSize: 1, epSize: 1, enableDpAttention: false }), { model, maxTokensPerRank: 8, backend: 'cpu' });
    try {
      await expectWideepError(() => w.createLayer(), 'ERR_UNSUPPORTED', 'cpu backend', 'runs on a GPU');
    } finally {
      await w.close();
    }
  });
});
