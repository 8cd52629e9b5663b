import { describe, expect, test } from 'vitest';
import { SeededRandom, randomRouting } from '../../../src/ep/random-routing.js';

describe('SeededRandom', () => {
  test('is deterministic and roughly uniform/normal', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    const xs = Array.from({ length: 20000 }, () => a.uniform());
    expect(xs.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => b.uniform()));
    expect(new SeededRandom(43).uniform()).not.toBe(xs[0]);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.49);
    expect(mean).toBeLessThan(0.51);
    const ns = Array.from({ length: 20000 }, () => a.normal());
    const nMean = ns.reduce((s, x) => s + x, 0) / ns.length;
    const nVar = ns.reduce((s, x) => s + (x - nMean) ** 2, 0) / ns.length;
    expect(Math.abs(nMean)).toBeLessThan(0.03);
    expect(nVar).toBeGreaterThan(0.95);
    expect(nVar).toBeLessThan(1.05);
  });
});

describe('randomRouting', () => {
  test.each(['uniform', 'zipf'] as const)('%s: distinct experts, softmax weights, deterministic', (kind) => {
    const options = { numTokens: 500, numExperts: 64, topk: 8, kind, seed: 9 };
    const { topkIdx, topkWeights } = randomRouting(options);
    expect(randomRouting(options).topkIdx).toEqual(topkIdx);
    expect(randomRouting({ ...options, seed: 10 }).topkIdx).not.toEqual(topkIdx);
    for (let t = 0; t < 500; t++) {
      const row = [...topkIdx.subarray(t * 8, t * 8 + 8)];
      expect(new Set(row).size).toBe(8);
      for (const e of row) expect(e >= 0 && e < 64).toBe(true);
      const w = [...topkWeights.subarray(t * 8, t * 8 + 8)];
      expect(w.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      for (let j = 1; j < 8; j++) expect(w[j]!).toBeLessThanOrEqual(w[j - 1]!); // highest score first
    }
  });

  test('zipf concentrates load on a few experts, uniform does not', () => {
    const load = (kind: 'uniform' | 'zipf') => {
      const counts = new Array(64).fill(0);
      for (const e of randomRouting({ numTokens: 2000, numExperts: 64, topk: 4, kind, zipfExponent: 1.2, seed: 1 }).topkIdx) counts[e]++;
      return Math.max(...counts) / (2000 * 4 / 64);
    };
    expect(load('uniform')).toBeLessThan(1.5);
    expect(load('zipf')).toBeGreaterThan(4);
  });

  test('dropProbability sets slots to -1 with weight 0', () => {
    const { topkIdx, topkWeights } = randomRouting({ numTokens: 1000, numExperts: 16, topk: 4, kind: 'uniform', dropProbability: 0.25, seed: 3 });
    const dropped = [...topkIdx].filter((e) => e === -1).length / topkIdx.length;
    expect(dropped).toBeGreaterThan(0.2);
    expect(dropped).toBeLessThan(0.3);
    topkIdx.forEach((e, i) => e === -1 && expect(topkWeights[i]).toBe(0));
  });

  test('rejects impossible requests', () => {
    expect(() => randomRouting({ numTokens: 1, numExperts: 4, topk: 5, kind: 'uniform', seed: 1 })).toThrow(/topk/);
    expect(() => randomRouting({ numTokens: 1, numExperts: 4, topk: 1, kind: 'x' as never, seed: 1 })).toThrow(/kind/);
  });
});
