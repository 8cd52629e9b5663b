/** Narrow-float conversions round to nearest even and saturate like CUDA's. */
import { describe, expect, it } from 'vitest';

import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  f32ToFp8E4m3Bits,
  fp8E4m3BitsToF32,
} from '../../../src/tensor/convert.js';

describe('bf16', () => {
  it('round-trips every finite bf16 value', () => {
    for (let h = 0; h < 0x10000; h++) {
      const f = bf16BitsToF32(h);
      if (Number.isNaN(f)) continue;
      expect(f32ToBf16Bits(f)).toBe(h);
    }
  });

  it('rounds ties to even', () => {
    // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: even mantissa (1.0) wins.
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8))).toBe(1);
    // 1 + 3 * 2^-8 lies halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 3 * 2 ** -8))).toBe(1 + 2 ** -6);
    expect(bf16BitsToF32(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20))).toBe(1 + 2 ** -7);
  });

  it('keeps NaN a NaN and infinities infinite', () => {
    expect(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(NaN)))).toBe(true);
    expect(bf16BitsToF32(f32ToBf16Bits(Infinity))).toBe(Infinity);
    expect(bf16BitsToF32(f32ToBf16Bits(3.4e38))).toBe(Infinity);
  });
});

describe('f16', () => {
  it('round-trips every finite f16 value', () => {
    for (let h = 0; h < 0x10000; h++) {
      const f = f16BitsToF32(h);
      if (Number.isNaN(f)) continue;
      expect(f32ToF16Bits(f)).toBe(h);
    }
  });

  it('rounds ties to even and overflows to infinity', () => {
    expect(f16BitsToF32(f32ToF16Bits(1 + 2 ** -11))).toBe(1);
    expect(f16BitsToF32(f32ToF16Bits(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
    expect(f16BitsToF32(f32ToF16Bits(65520))).toBe(Infinity);
    expect(f16BitsToF32(f32ToF16Bits(65519))).toBe(65504);
    expect(f16BitsToF32(f32ToF16Bits(2 ** -25))).toBe(0);
    expect(f16BitsToF32(f32ToF16Bits(3 * 2 ** -26))).toBe(2 ** -24);
  });
});

describe('fp8 e4m3', () => {
  it('round-trips every finite code', () => {
    for (let c = 0; c < 256; c++) {
      const f = fp8E4m3BitsToF32(c);
      if (Number.isNaN(f)) continue;
      if (c === 0x80) continue; // -0 encodes as 0x80 and decodes to -0
      expect(f32ToFp8E4m3Bits(f)).toBe(c);
    }
    expect(f32ToFp8E4m3Bits(-0)).toBe(0x80);
  });

  it('saturates at ±448 and rounds ties to even', () => {
    expect(fp8E4m3BitsToF32(f32ToFp8E4m3Bits(1000))).toBe(448);
    expect(fp8E4m3BitsToF32(f32ToFp8E4m3Bits(-1e9))).toBe(-448);
    expect(fp8E4m3BitsToF32(f32ToFp8E4m3Bits(Infinity))).toBe(448);
    // 1.0625 is halfway between 1 and 1.125: even (1.0) wins; 1.1875 -> 1.25.
    expect(fp8E4m3BitsToF32(f32ToFp8E4m3Bits(1.0625))).toBe(1);
    expect(fp8E4m3BitsToF32(f32ToFp8E4m3Bits(1.1875))).toBe(1.25);
    // Subnormals step by 2^-9.
    expect(fp8E4m3BitsToF32(f32ToFp8E4m3Bits(3 * 2 ** -10))).toBe(2 ** -8);
    expect(Number.isNaN(fp8E4m3BitsToF32(f32ToFp8E4m3Bits(NaN)))).toBe(true);
  });

  it('matches the definition (nearest code, ties to even, saturating) on boundary and random floats', () => {
    // The nearest finite code by search over all of them: slow, but independent of the bit tricks.
    const positives = Array.from({ length: 0x7f }, (_, c) => c).filter((c) => !Number.isNaN(fp8E4m3BitsToF32(c)));
    const nearest = (a: number): number => {
      const m = Math.abs(a);
      let best = 0;
      for (const c of positives) {
        const d = Math.abs(fp8E4m3BitsToF32(c) - m) - Math.abs(fp8E4m3BitsToF32(best) - m);
        if (d < 0 || (d === 0 && (c & 1) === 0)) best = c;
      }
      return (a < 0 || Object.is(a, -0) ? 0x80 : 0) | best;
    };
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    const patterns: number[] = [];
    // Every exponent from far below the subnormals to past the max, at the mantissa's rounding boundaries.
    for (let exp = 100; exp <= 140; exp++) {
      for (let top = 0; top < 8; top++) {
        for (const low of [0, 1, 0x7ffff, 0x80000, 0x80001, 0xfffff]) patterns.push((exp << 23) | (top << 20) | low);
      }
    }
    let seed = 12345;
    for (let i = 0; i < 200_000; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      patterns.push((((seed >>> 8) % 41) + 100) * 2 ** 23 + (Math.imul(seed, 2654435761) >>> 9));
    }
    let bad = 0;
    let first = '';
    for (const p of patterns) {
      for (const sign of [0, 0x80000000]) {
        u32[0] = (p | sign) >>> 0;
        const x = f32[0]!;
        const got = f32ToFp8E4m3Bits(x);
        const want = nearest(x);
        if (got !== want) {
          if (!bad) first = `${x} (bits ${u32[0]!.toString(16)}): got ${got.toString(16)}, want ${want.toString(16)}`;
          bad++;
        }
      }
    }
    expect(bad, first).toBe(0);
  });
});
