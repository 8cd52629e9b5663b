import { describe, expect, it } from 'vitest';

import { createSimulatedRanks } from '../../../src/ep/transport.js';
import { rebalanceExperts } from '../../../src/planning/eplb.js';
import { ExpertLocationMap } from '../../../src/planning/expert-location.js';
import { planRebalanceMoves } from '../../../src/planning/rebalance-moves.js';
import { LAYER, RankEplb, RankExperts, SMALL_MOE_CONFIG, allReduceSum, generateMoeLayerWeights, moveExpertWeights, rebalanceRank } from '../../../src/simulation/index.js';

const weights = generateMoeLayerWeights({ ...SMALL_MOE_CONFIG, numRoutedExperts: 16, numExpertGroups: 4, moeIntermediate: 8 }, 4);
const E = 16;

function expectSlotsHoldTheirExperts(experts: RankExperts, map: ExpertLocationMap): void {
  map.expertsOfRank(LAYER, experts.rank).forEach((e, l) => expect(experts.local(l).packed, `rank ${experts.rank} slot ${l}`).toEqual(weights.experts[e]!.packed));
}

describe('EPLB weight moves', () => {
  it('after moving, every slot holds the weights of its new logical expert', async () => {
    const R = 4;
    const shape = { numLayers: 1, numLogical: E, numPhysical: 24, numRanks: R, ranksPerNode: 2 };
    const from = ExpertLocationMap.trivial(shape);
    const load = Array.from({ length: E }, (_, e) => (e % 5 === 0 ? 50 : 1 + e));
    const to = ExpertLocationMap.fromEplb(rebalanceExperts([load], { numReplicas: 24, numGroups: 4, numNodes: 2, numGpus: R }), shape);
    const plan = planRebalanceMoves(from, to);
    expect(plan.counts.recv).toBeGreaterThan(0);
    const ranks = createSimulatedRanks(R);
    const experts = ranks.map((_, r) => RankExperts.load(weights, from, r));
    const moved = await Promise.all(ranks.map((t, r) => moveExpertWeights(t, plan, experts[r]!)));
    moved.forEach((slots, r) => experts[r]!.replace(slots));
    experts.forEach((x) => expectSlotsHoldTheirExperts(x, to));
  });

  it('rebalanceRank all-reduces the loads, agrees on one placement, and updates the map in place', async () => {
    const R = 4;
    const shape = { numLayers: 1, numLogical: E, numPhysical: 20, numRanks: R };
    const ranks = createSimulatedRanks(R);
    const maps = ranks.map(() => ExpertLocationMap.trivial(shape));
    const eplb = maps.map((m, r) => new RankEplb(m, r, 'static', 0, 4));
    const experts = maps.map((m, r) => RankExperts.load(weights, m, r));
    // Rank r's tokens all choose expert 3 and expert r: expert 3 is hot.
    eplb.forEach((x, r) => {
      x.toPhysical(Int32Array.from([3, r, 3, 3]));
      x.recorder.endPass();
    });
    const phy2logBefore = maps[0]!.phy2log;
    const outcomes = await Promise.all(ranks.map((t, r) => rebalanceRank(t, eplb[r]!, experts[r]!, { numGroups: 4, ranksPerNode: 4 })));
    expect(outcomes[0]!.logicalLoad[3]).toBe(13); // 3 from each of ranks 0-2, 4 from rank 3
    expect(outcomes.every((o) => o.phy2log.join() === outcomes[0]!.phy2log.join())).toBe(true);
    expect(outcomes[0]!.logcnt[3]).toBeGreaterThan(1);
    expect(outcomes[0]!.balancednessPredicted).toBeGreaterThan(outcomes[0]!.balancednessBefore);
    expect(maps[0]!.phy2log).toBe(phy2logBefore); // same array, rewritten
    expect(Array.from(maps[0]!.phy2log)).toEqual(outcomes[0]!.phy2log);
    expect(eplb[0]!.recorder.passes).toBe(0);
    experts.forEach((x, r) => expectSlotsHoldTheirExperts(x, maps[r]!));
  });

  it('allReduceSum sums elementwise on every rank', async () => {
    const ranks = createSimulatedRanks(3);
    const out = await Promise.all(ranks.map((t, r) => allReduceSum(t, Float64Array.from([r, 1, 0.5]))));
    for (const o of out) expect(Array.from(o)).toEqual([3, 3, 1.5]);
  });
});
