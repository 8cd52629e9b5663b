import { describe, expect, it } from 'vitest';

import { combineRowBytes, dispatchRowBytes, layerTraffic, noneBackendTraffic, rankHitProbability } from '../../../src/planning/comm-cost.js';

describe('row sizes', () => {
  it('dispatches FP8 plus a float32 scale per 128 channels, combines BF16', () => {
    expect(dispatchRowBytes(7168)).toBe(7168 + 56 * 4);
    expect(dispatchRowBytes(128)).toBe(132);
    expect(dispatchRowBytes(130)).toBe(130 + 2 * 4);
    expect(combineRowBytes(7168)).toBe(14336);
  });
});

describe('rankHitProbability', () => {
  it('is 1 − C(E − m, k) / C(E, k)', () => {
    // E = 4, m = 2, k = 2: misses only when both picks are the other 2 experts: 1 of 6 pairs.
    expect(rankHitProbability(4, 2, 2)).toBeCloseTo(5 / 6, 12);
    expect(rankHitProbability(4, 1, 2)).toBeCloseTo(1 / 2, 12);
    expect(rankHitProbability(4, 3, 2)).toBe(1);
    expect(rankHitProbability(8, 8, 1)).toBe(1);
  });

  it('matches the anchors: top-8 of 256 over 4 ranks reaches about 3.6 ranks', () => {
    expect(4 * rankHitProbability(256, 64, 8)).toBeCloseTo(3.6, 1);
  });
});

describe('layerTraffic', () => {
  it('works out a two-node case by hand', () => {
    // E = 4, k = 2, N = 2 ranks on 2 nodes, 6 tokens of hidden 128.
    // pHit = 5/6: 5 rows to itself and 5 rows over RDMA to the other rank.
    const t = layerTraffic({ tokensPerRank: 6, hidden: 128, numExperts: 4, topK: 2, numRanks: 2, ranksPerNode: 1, nvlinkGBps: 450, rdmaGBps: 50 });
    expect(t.destinationsPerToken).toBeCloseTo(5 / 3, 12);
    expect(t.rowsPerRank).toBeCloseTo(10, 12);
    expect(t.dispatch.selfBytes).toBeCloseTo(5 * 132, 9);
    expect(t.dispatch.nvlinkBytes).toBe(0);
    expect(t.dispatch.rdmaBytes).toBeCloseTo(660, 9);
    expect(t.combine.rdmaBytes).toBeCloseTo(1280, 9);
    expect(t.dispatch.totalBytes).toBeCloseTo(1320, 9);
    expect(t.dispatch.timeUs).toBeCloseTo((660 / 50e9) * 1e6, 12);
  });

  it('splits NVLink from RDMA and takes the slower link', () => {
    // E = 4, k = 2, N = 4 ranks, 2 per node: pHit = 1/2. Per 6 tokens: 3 rows each to self,
    // the node peer (NVLink) and each of the 2 remote ranks (6 over RDMA).
    const t = layerTraffic({ tokensPerRank: 6, hidden: 128, numExperts: 4, topK: 2, numRanks: 4, ranksPerNode: 2, nvlinkGBps: 1, rdmaGBps: 1 });
    expect(t.destinationsPerToken).toBeCloseTo(2, 12);
    expect(t.dispatch.nvlinkBytes).toBeCloseTo(396, 9);
    expect(t.dispatch.rdmaBytes).toBeCloseTo(792, 9);
    expect(t.combine.nvlinkBytes).toBeCloseTo(768, 9);
    expect(t.combine.rdmaBytes).toBeCloseTo(1536, 9);
    expect(t.dispatch.timeUs).toBeCloseTo(0.792, 9);
    const fastRdma = layerTraffic({ tokensPerRank: 6, hidden: 128, numExperts: 4, topK: 2, numRanks: 4, ranksPerNode: 2, nvlinkGBps: 1, rdmaGBps: 100 });
    expect(fastRdma.dispatch.timeUs).toBeCloseTo(0.396, 9);
  });

  it('sends nothing over RDMA inside one node', () => {
    const t = layerTraffic({ tokensPerRank: 128, hidden: 7168, numExperts: 256, topK: 8, numRanks: 8, ranksPerNode: 8, nvlinkGBps: 450, rdmaGBps: 50 });
    expect(t.dispatch.rdmaBytes).toBe(0);
    expect(t.dispatch.nvlinkBytes).toBeGreaterThan(0);
  });

  it('checks its input', () => {
    const ok = { tokensPerRank: 6, hidden: 128, numExperts: 4, topK: 2, numRanks: 2, ranksPerNode: 1, nvlinkGBps: 450, rdmaGBps: 50 };
    expect(() => layerTraffic({ ...ok, numRanks: 3 })).toThrow(/4 experts do not split evenly over 3 ranks/);
    expect(() => layerTraffic({ ...ok, topK: 5 })).toThrow(/topK 5 exceeds 4 experts/);
    expect(() => layerTraffic({ ...ok, rdmaGBps: 0 })).toThrow(/rdmaGBps 0: must be a number > 0/);
    expect(() => layerTraffic({ ...ok, hidden: 0 })).toThrow(/hidden 0: must be an integer >= 1/);
  });
});

describe('noneBackendTraffic', () => {
  const t = { tokensPerRank: 6, hidden: 128, numRanks: 4, ranksPerNode: 4, nvlinkGBps: 1, rdmaGBps: 1 };

  it('all-gathers and reduce-scatters (N − 1) × T rows when each rank owns its tokens', () => {
    const r = noneBackendTraffic(t, false);
    expect(r.allGatherBytes).toBe(3 * 6 * 256);
    expect(r.reduceScatterBytes).toBe(3 * 6 * 256);
    expect(r.timeUs).toBeCloseTo(2 * 4608 / 1e3, 9);
  });

  it('all-reduces T rows when the tokens are replicated', () => {
    expect(noneBackendTraffic(t, true).allGatherBytes).toBeCloseTo(0.75 * 6 * 256, 9);
  });
});
