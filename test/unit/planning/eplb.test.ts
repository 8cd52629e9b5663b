import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { balancedness, gpuLoadsOf, slotLoadsFromLogical } from '../../../src/planning/eplb-recorder.js';
import { balancedPacking, eplbPolicy, rebalanceExperts, replicateExperts, type EplbParams } from '../../../src/planning/eplb.js';
import { seededRandom } from '../../../src/planning/expert-location.js';

const fixture = (name: string): unknown => JSON.parse(readFileSync(fileURLToPath(new URL(`../../fixtures/planning/${name}`, import.meta.url)), 'utf8'));

const README_WEIGHTS = fixture('eplb-readme-weights.json') as number[][];
const README_PARAMS: EplbParams = { numReplicas: 16, numGroups: 4, numNodes: 2, numGpus: 8 };

/** Checks that log2phy and logcnt describe exactly phy2log. */
function expectConsistent(r: { phy2log: number[][]; log2phy: number[][][]; logcnt: number[][] }, E: number, R: number): void {
  r.phy2log.forEach((row, l) => {
    expect(row).toHaveLength(R);
    for (let e = 0; e < E; e++) {
      const slots = row.flatMap((x, p) => (x === e ? [p] : []));
      expect(r.logcnt[l]![e]).toBe(slots.length);
      expect(slots.length).toBeGreaterThan(0);
      const listed = r.log2phy[l]![e]!;
      expect(listed).toHaveLength(R - E + 1);
      expect(listed.slice(0, slots.length).sort((a, b) => a - b)).toEqual(slots);
      expect(listed.slice(slots.length).every((x) => x === -1)).toBe(true);
    }
  });
}

describe("DeepSeek's published EPLB example", () => {
  it('reproduces both layers of the README placement exactly', () => {
    const r = rebalanceExperts(README_WEIGHTS, README_PARAMS);
    expect(r.policy).toBe('hierarchical');
    expect(r.phy2log[0]).toEqual([5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1]);
    expect(r.phy2log[1]).toEqual([7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1]);
    expect(r.phy2log).toEqual(fixture('eplb-readme-phy2log.json'));
  });

  it('returns log2phy by replica number and logcnt that agree with phy2log', () => {
    const r = rebalanceExperts(README_WEIGHTS, README_PARAMS);
    expectConsistent(r, 12, 16);
    expect(r.logcnt[0]).toEqual([1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1]);
    // Expert 1's original copy (replica 0) sits in slot 15, its replica in slot 13.
    expect(r.log2phy[0]![1]).toEqual([15, 13, -1, -1, -1]);
  });

  it('balances GPU load far better than one copy per expert', () => {
    const r = rebalanceExperts(README_WEIGHTS, README_PARAMS);
    r.phy2log.forEach((row, l) => {
      const after = balancedness(gpuLoadsOf(slotLoadsFromLogical(README_WEIGHTS[l]!, row, r.logcnt[l]!), 8));
      expect(after).toBeGreaterThan(0.8);
    });
  });
});

describe('balancedPacking tie rules', () => {
  it('puts equal weights in index order into the first lightest pack', () => {
    expect(balancedPacking([1, 1, 1, 1], 2)).toEqual({ pack: [0, 1, 0, 1], rankInPack: [0, 0, 1, 1] });
  });

  it('sorts stably by weight descending', () => {
    // Order 1, 3 (weight 5, index order), then 0, 2.
    expect(balancedPacking([3, 5, 3, 5], 2)).toEqual({ pack: [0, 0, 1, 1], rankInPack: [1, 0, 1, 0] });
  });

  it('skips full packs', () => {
    // 10 -> p0; 1 -> p1; 1 -> p1 (lighter); p1 is full, so the last 1 goes to p0.
    expect(balancedPacking([10, 1, 1, 1], 2).pack).toEqual([0, 1, 1, 0]);
  });

  it('maps item i to pack i when each pack holds one item', () => {
    expect(balancedPacking([1, 5, 3], 3)).toEqual({ pack: [0, 1, 2], rankInPack: [0, 0, 0] });
  });

  it('refuses counts that do not split evenly', () => {
    expect(() => balancedPacking([1, 2, 3], 2)).toThrow(/3 items do not split into 2 equal packs/);
  });
});

describe('replicateExperts', () => {
  it('gives each extra slot to the largest load per replica, first index on ties', () => {
    expect(replicateExperts([6, 6, 3], 5)).toEqual({ phy2log: [0, 1, 2, 0, 1], replicaRank: [0, 0, 0, 1, 1], logcnt: [2, 2, 1] });
  });

  it('compares load per replica, not load', () => {
    // After one copy each: 9/1 wins; then 9/2 = 4.5 vs 4 -> 0 again; then 3 vs 4 -> 1.
    expect(replicateExperts([9, 4], 5).phy2log).toEqual([0, 1, 0, 0, 1]);
  });
});

describe('policies and validation', () => {
  it('uses the global policy when groups do not split over nodes', () => {
    expect(eplbPolicy(3, 2)).toBe('global');
    expect(eplbPolicy(4, 2)).toBe('hierarchical');
    const params = { numReplicas: 16, numGroups: 3, numNodes: 2, numGpus: 8 };
    const auto = rebalanceExperts(README_WEIGHTS, params);
    expect(auto.policy).toBe('global');
    expect(auto.phy2log).toEqual(rebalanceExperts(README_WEIGHTS, { ...README_PARAMS, policy: 'global' }).phy2log);
    expectConsistent(auto, 12, 16);
  });

  it('keeps every group on one node under the hierarchical policy', () => {
    const r = rebalanceExperts(README_WEIGHTS, README_PARAMS);
    for (const row of r.phy2log) {
      for (const node of [0, 1]) {
        const groups = new Set(row.slice(node * 8, node * 8 + 8).map((e) => Math.floor(e / 3)));
        expect(groups.size).toBe(2);
      }
    }
  });

  it('holds its invariants on random loads', () => {
    const rand = seededRandom(7);
    const E = 32;
    const weights = Array.from({ length: 5 }, () => Array.from({ length: E }, () => Math.floor(rand() ** 3 * 1000)));
    for (const params of [
      { numReplicas: 48, numGroups: 8, numNodes: 2, numGpus: 8 },
      { numReplicas: 40, numGroups: 4, numNodes: 1, numGpus: 4 },
      { numReplicas: 32, numGroups: 1, numNodes: 1, numGpus: 32 },
    ]) {
      const r = rebalanceExperts(weights, params);
      expectConsistent(r, E, params.numReplicas);
      for (const cnt of r.logcnt) expect(cnt.reduce((a, b) => a + b, 0)).toBe(params.numReplicas);
    }
  });

  it('names the parameter and the rule', () => {
    expect(() => rebalanceExperts(README_WEIGHTS, { ...README_PARAMS, numReplicas: 10 })).toThrow(/numReplicas \(--replicas\) 10: must be at least the number of logical experts \(12\)/);
    expect(() => rebalanceExperts(README_WEIGHTS, { ...README_PARAMS, numReplicas: 20 })).toThrow(/numReplicas \(--replicas\) 20: must be a multiple of numGpus \(--gpus 8\)/);
    expect(() => rebalanceExperts(README_WEIGHTS, { ...README_PARAMS, numNodes: 3 })).toThrow(/numGpus \(--gpus\) 8: must be a multiple of numNodes \(--nodes 3\)/);
    expect(() => rebalanceExperts(README_WEIGHTS, { ...README_PARAMS, numGroups: 3, policy: 'hierarchical' })).toThrow(/numGroups \(--groups\) 3: the hierarchical policy needs it to be a multiple of numNodes/);
    expect(() => rebalanceExperts(README_WEIGHTS, { ...README_PARAMS, numGroups: 8 })).toThrow(/the 12 logical experts must split into equal groups/);
    expect(() => rebalanceExperts(README_WEIGHTS, { ...README_PARAMS, numGpus: 0 })).toThrow(/numGpus \(--gpus\): expected an integer >= 1, got number 0/);
    expect(() => rebalanceExperts(README_WEIGHTS, { ...README_PARAMS, policy: 'best' as never })).toThrow(/policy \(--policy\) best/);
    expect(() => rebalanceExperts([[1, 2], [3]], README_PARAMS)).toThrow(/weight: row 1 has 1 entries, expected 2/);
    expect(() => rebalanceExperts([[1, -2]], README_PARAMS)).toThrow(/weight: \[0\]\[1\] is -2, expected a finite number >= 0/);
    expect(() => rebalanceExperts([], README_PARAMS)).toThrow(/non-empty \[layers\]\[experts\]/);
  });
});
