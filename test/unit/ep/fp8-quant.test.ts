import { describe, expect, test } from 'vitest';
import {
  FP8_AMAX_FLOOR,
  dequantizeFp8,
  fp8BlockScale,
  quantizeBf16RowsFp8,
  quantizeRowFp8,
  roundUpToPowerOfTwo,
} from '../../../src/ep/fp8-quant.js';
import { f32ToBf16Bits, fp8E4m3BitsToF32 } from '../../../src/tensor/convert.js';
import { assertBitwiseEqual } from '../../helpers/assert.js';
import { oracleQuantizeRow } from '../../helpers/ep-oracle.js';
import { SeededRandom } from '../../helpers/random.js';

describe('roundUpToPowerOfTwo', () => {
  test('powers of two stay, everything else rounds up', () => {
    expect(roundUpToPowerOfTwo(1)).toBe(1);
    expect(roundUpToPowerOfTwo(2 ** -20)).toBe(2 ** -20);
    expect(roundUpToPowerOfTwo(Math.fround(1 + 2 ** -23))).toBe(2);
    expect(roundUpToPowerOfTwo(Math.fround(2 - 2 ** -22))).toBe(2);
    expect(roundUpToPowerOfTwo(3)).toBe(4);
    expect(roundUpToPowerOfTwo(Math.fround(1e-4 / 448))).toBe(2 ** -22);
    expect(roundUpToPowerOfTwo(2 ** -149)).toBe(2 ** -149); // smallest subnormal
    expect(roundUpToPowerOfTwo(3 * 2 ** -149)).toBe(2 ** -147);
    expect(roundUpToPowerOfTwo(Math.fround(2 ** -126 - 2 ** -149))).toBe(2 ** -126);
  });

  test('matches 2^ceil(log2 x) on random float32 values', () => {
    const rng = new SeededRandom(1);
    for (let i = 0; i < 10000; i++) {
      const x = Math.fround(2 ** (rng.uniform() * 40 - 30) * (1 + rng.uniform()));
      expect(roundUpToPowerOfTwo(x)).toBe(2 ** Math.ceil(Math.log2(x)));
    }
  });
});

describe('fp8BlockScale', () => {
  test('plain and power-of-two scales', () => {
    expect(fp8BlockScale(448, false)).toEqual({ scale: 1, scaleInv: 1 });
    expect(fp8BlockScale(0, false)).toEqual({ scale: Math.fround(FP8_AMAX_FLOOR / 448), scaleInv: Math.fround(448 / FP8_AMAX_FLOOR) });
    expect(fp8BlockScale(3, false)).toEqual({ scale: Math.fround(3 / 448), scaleInv: Math.fround(448 / 3) });
    expect(fp8BlockScale(3, true)).toEqual({ scale: 2 ** -7, scaleInv: 128 });
    expect(fp8BlockScale(448 * 4, true)).toEqual({ scale: 4, scaleInv: 0.25 });
  });
});

describe('quantizeRowFp8', () => {
  test('the block maximum maps to ±448 and zeros stay zero', () => {
    const row = new Float32Array(256);
    row[5] = -3;
    row[7] = 1.5;
    row[200] = 0.25;
    const q = new Uint8Array(256);
    const scales = new Float32Array(2);
    quantizeRowFp8(row, q, 0, scales, 0, false);
    expect(fp8E4m3BitsToF32(q[5]!)).toBe(-448);
    expect(fp8E4m3BitsToF32(q[7]!)).toBe(224);
    expect(fp8E4m3BitsToF32(q[0]!)).toBe(0);
    expect(fp8E4m3BitsToF32(q[200]!)).toBe(448);
    expect([...scales]).toEqual([Math.fround(3 / 448), Math.fround(0.25 / 448)]);
  });

  test.each([false, true])('matches the oracle bit for bit on random bf16 rows (roundScale %s)', (roundScale) => {
    const rng = new SeededRandom(roundScale ? 2 : 3);
    const T = 64;
    const H = 512;
    // Mixed magnitudes per block, including tiny blocks that hit the 1e-4 floor.
    const bits = Uint16Array.from({ length: T * H }, (_, i) => f32ToBf16Bits(rng.normal() * 10 ** (Math.floor(i / 128) % 9 - 6)));
    const { q, scales } = quantizeBf16RowsFp8(bits, T, H, roundScale);
    for (let t = 0; t < T; t++) {
      const values = Float32Array.from(bits.subarray(t * H, (t + 1) * H), (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!);
      const want = oracleQuantizeRow(values, roundScale);
      assertBitwiseEqual(q.subarray(t * H, (t + 1) * H), want.q, `q of row ${t}`);
      assertBitwiseEqual(scales.subarray((t * H) / 128, ((t + 1) * H) / 128), want.scales, `scales of row ${t}`);
    }
    // Dequantising stays within fp8's precision (3 mantissa bits) of the input, relative to the block max.
    const back = dequantizeFp8(q, scales, T, H);
    for (let i = 0; i < T * H; i++) {
      const x = new Float32Array(new Uint32Array([bits[i]! << 16]).buffer)[0]!;
      const block = Math.floor(i / 128);
      expect(Math.abs(back[i]! - x)).toBeLessThanOrEqual(scales[block]! * 448 * 2 ** -4 + scales[block]! * 2 ** -9);
    }
  });
});
