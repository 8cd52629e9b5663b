import { describe, expect, it } from 'vitest';

import { rebalanceExperts } from '../../../src/planning/eplb.js';
import { ExpertLocationMap, seededRandom } from '../../../src/planning/expert-location.js';

/**
 * One layer, 4 logical experts, 8 slots on 4 ranks (2 per rank), 2 ranks per node:
 *   rank 0: [0, 1]   rank 1: [2, 3]   | node 0
 *   rank 2: [0, 0]   rank 3: [1, 2]   | node 1
 * Expert 0 has replicas in slots 0, 4, 5; expert 3 only in slot 3.
 */
function smallMap(): ExpertLocationMap {
  return ExpertLocationMap.fromPhy2Log([[0, 1, 2, 3, 0, 0, 1, 2]], { numLogical: 4, numRanks: 4, ranksPerNode: 2 });
}

describe('ExpertLocationMap tables', () => {
  it('builds log2phy and logcnt from phy2log, replicas in slot order', () => {
    const m = smallMap();
    expect(m.maxReplicas).toBe(5);
    expect(m.replicas(0, 0)).toEqual([0, 4, 5]);
    expect(m.replicas(0, 3)).toEqual([3]);
    expect(m.layerLogcnt(0)).toEqual([3, 2, 2, 1]);
    expect(m.rankOfPhysical(5)).toBe(2);
    expect(m.nodeOfRank(3)).toBe(1);
    expect(m.expertsOfRank(0, 3)).toEqual([1, 2]);
  });

  it("places SGLang's trivial layout: slot p holds expert p mod E", () => {
    const m = ExpertLocationMap.trivial({ numLayers: 2, numLogical: 4, numPhysical: 6, numRanks: 3 });
    expect(m.layerPhy2Log(1)).toEqual([0, 1, 2, 3, 0, 1]);
    expect(m.replicas(1, 1)).toEqual([1, 5]);
  });

  it('keeps the EPLB replica numbering', () => {
    const weights = [[90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86]];
    const r = rebalanceExperts(weights, { numReplicas: 16, numGroups: 4, numNodes: 2, numGpus: 8 });
    const m = ExpertLocationMap.fromEplb(r, { numRanks: 8, ranksPerNode: 4 });
    expect(m.toJSON()).toEqual({ phy2log: r.phy2log, log2phy: r.log2phy, logcnt: r.logcnt });
  });

  it('refuses inconsistent or uncovered tables', () => {
    expect(() => ExpertLocationMap.fromPhy2Log([[0, 1, 1, 1]], { numLogical: 3, numRanks: 2 })).toThrow(/logical expert 1 has more than 2 replicas/);
    expect(() => ExpertLocationMap.fromPhy2Log([[0, 1, 1, 0]], { numLogical: 3, numRanks: 2 })).toThrow(/logical expert 2 has no physical slot/);
    expect(() => ExpertLocationMap.fromPhy2Log([[0, 5]], { numLogical: 2, numRanks: 2 })).toThrow(/logical expert 5 is out of range/);
    expect(() => ExpertLocationMap.trivial({ numLayers: 1, numLogical: 4, numPhysical: 6, numRanks: 4 })).toThrow(/numPhysical 6: must be a multiple of numRanks \(4\)/);
    const r = { phy2log: [[0, 1]], log2phy: [[[1], [0]]], logcnt: [[1, 1]] };
    expect(() => ExpertLocationMap.fromEplb(r, { numRanks: 1 })).toThrow(/phy2log says expert 0, which log2phy does not place there/);
    expect(() => ExpertLocationMap.fromEplb({ ...r, logcnt: [] }, { numRanks: 1 })).toThrow(/have 1, 1 and 0 layers/);
  });

  it('updates in place, so captured arrays see the new placement', () => {
    const m = smallMap();
    const captured = m.phy2log;
    m.staticDispatchTable(0);
    const next = ExpertLocationMap.fromPhy2Log([[3, 2, 1, 0, 0, 1, 2, 3]], { numLogical: 4, numRanks: 4, ranksPerNode: 2 });
    m.update(next);
    expect(m.phy2log).toBe(captured);
    expect(Array.from(captured)).toEqual([3, 2, 1, 0, 0, 1, 2, 3]);
    expect(m.staticDispatchTable(0)[3]).toBe(0); // recomputed: expert 3 now in slot 0 on rank 0
    const other = ExpertLocationMap.trivial({ numLayers: 2, numLogical: 4, numPhysical: 8, numRanks: 4 });
    expect(() => m.update(other)).toThrow(/shape .* differs/);
  });
});

describe('replica choice at dispatch', () => {
  it('static: prefers the same GPU, then the same node, then spreads', () => {
    const m = smallMap();
    // Rank 2 holds expert 0 twice: first local slot.
    expect(m.staticDispatchTable(2)[0]).toBe(4);
    // Rank 1 (node 0) has no copy of expert 0; rank 0 on its node has slot 0.
    expect(m.staticDispatchTable(1)[0]).toBe(0);
    // Expert 3 lives only on rank 1: rank 2 and 3 (node 1) fall back to it.
    expect(m.staticDispatchTable(2)[3]).toBe(3);
    // Expert 1: rank 1 shares node 0 with slot 1; rank 2 shares node 1 with slot 6.
    expect(m.staticDispatchTable(1)[1]).toBe(1);
    expect(m.staticDispatchTable(2)[1]).toBe(6);
  });

  it('static: spreads remote ranks evenly over the replicas', () => {
    // 8 ranks, one node each; expert 0 has replicas on ranks 0 and 1 only.
    const phy2log = [[0, 0, 1, 2, 3, 4, 5, 6]];
    const m = ExpertLocationMap.fromPhy2Log(phy2log, { numLogical: 7, numRanks: 8, ranksPerNode: 1 });
    const picks = Array.from({ length: 8 }, (_, r) => m.staticDispatchTable(r)[0]);
    expect(picks[0]).toBe(0);
    expect(picks[1]).toBe(1);
    const remote = picks.slice(2);
    expect(remote.filter((p) => p === 0)).toHaveLength(3);
    expect(remote.filter((p) => p === 1)).toHaveLength(3);
  });

  it('maps whole top-k arrays, keeping -1', () => {
    const m = smallMap();
    const topk = Int32Array.of(0, 3, -1, 1, 2, 0);
    expect(Array.from(m.choosePhysical(0, topk, { kind: 'static', rank: 2 }))).toEqual([4, 3, -1, 6, 7, 4]);
  });

  it('dynamic: draws every replica, uniformly, and only replicas', () => {
    const m = smallMap();
    const topk = new Int32Array(30000).fill(0);
    const out = m.choosePhysical(0, topk, { kind: 'dynamic', random: seededRandom(1) });
    const counts = new Map<number, number>();
    for (const p of out) counts.set(p, (counts.get(p) ?? 0) + 1);
    expect([...counts.keys()].sort()).toEqual([0, 4, 5]);
    for (const c of counts.values()) expect(c / 30000).toBeCloseTo(1 / 3, 1);
    expect(Array.from(m.choosePhysical(0, [3, -1], { kind: 'dynamic' }))).toEqual([3, -1]);
  });

  it('refuses ids outside [-1, E) and bad layers or ranks', () => {
    const m = smallMap();
    expect(() => m.choosePhysical(0, [0, 4], { kind: 'static', rank: 0 })).toThrow(/topkIds\[1\] is 4, expected -1 or a logical expert in \[0, 4\)/);
    expect(() => m.choosePhysical(0, [-2], { kind: 'dynamic' })).toThrow(/topkIds\[0\] is -2/);
    expect(() => m.choosePhysical(1, [0], { kind: 'dynamic' })).toThrow(/layer 1: must be an integer in \[0, 1\)/);
    expect(() => m.staticDispatchTable(4)).toThrow(/static dispatch rank 4/);
  });
});
