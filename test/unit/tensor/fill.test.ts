import { describe, expect, it } from 'vitest';

import { counterHash, counterUniform, counterUniform24 } from '../../../src/tensor/counter-hash.js';
import { randomTensor } from '../../../src/tensor/fill.js';

/** murmur3's fmix32 over seed ^ (i * golden), in BigInt: an independent statement of the device hash. */
function reference(seed: number, i: number): number {
  const m = (v: bigint) => v & 0xffffffffn;
  let h = m(BigInt(seed) ^ m(BigInt(i) * 0x9e3779b9n));
  h ^= h >> 16n;
  h = m(h * 0x85ebca6bn);
  h ^= h >> 13n;
  h = m(h * 0xc2b2ae35n);
  h ^= h >> 16n;
  return Number(h);
}

describe('counter hash and host random tensors', () => {
  it('equals the 32-bit finaliser computed independently', () => {
    for (const [seed, i] of [[0, 0], [1, 1], [12345, 987654], [0xffffffff, 0xfffffff0], [7, 2 ** 31]]) {
      expect(counterHash(seed!, i!)).toBe(reference(seed!, i!));
    }
    expect(counterUniform(3, 4)).toBe(reference(3, 4) / 2 ** 32);
    expect(counterUniform24(3, 4)).toBe((reference(3, 4) >>> 8) / 2 ** 24);
  });

  it('uniform host tensors are float32 values of a + (b - a) * u, in [a, b), and differ by seed', () => {
    const t = randomTensor([1000], 'f32', { seed: 9, distribution: { kind: 'uniform', low: -2, high: 3 } });
    const d = t.data as Float32Array;
    for (let i = 0; i < d.length; i++) {
      expect(d[i]).toBe(Math.fround(-2 + Math.fround(5 * counterUniform24(9, i))));
      expect(d[i]).toBeGreaterThanOrEqual(-2);
      expect(d[i]).toBeLessThan(3);
    }
    const other = randomTensor([1000], 'f32', { seed: 10, distribution: { kind: 'uniform', low: -2, high: 3 } }).data as Float32Array;
    expect(other.some((v, i) => v !== d[i])).toBe(true);
  });

  it('normal host tensors have mean 0 and standard deviation 1', () => {
    const d = randomTensor([50_000], 'f32', { seed: 4 }).data as Float32Array;
    const mean = d.reduce((a, b) => a + b, 0) / d.length;
    const std = Math.sqrt(d.reduce((a, b) => a + (b - mean) ** 2, 0) / d.length);
    expect(Math.abs(mean)).toBeLessThan(0.02);
    expect(Math.abs(std - 1)).toBeLessThan(0.02);
  });
});
