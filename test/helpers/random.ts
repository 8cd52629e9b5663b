/**
 * Seeded random tensors for EP tests (unit tests on the cpu backend and GPU
 * tests comparing against it). Everything derives from a SeededRandom, so a
 * failing seed reproduces anywhere.
 */
import { SeededRandom, randomRouting, type RandomRoutingOptions } from '../../src/ep/random-routing.js';
import { Tensor } from '../../src/tensor/tensor.js';
import { f32ToBf16Bits } from '../../src/tensor/convert.js';

export { SeededRandom };

/** bf16 [..shape] with N(0, scale²) values. */
export function randomBf16(rng: SeededRandom, shape: readonly number[], scale = 1): Tensor {
  const t = Tensor.empty(shape, 'bf16');
  const d = t.data as Uint16Array;
  for (let i = 0; i < d.length; i++) d[i] = f32ToBf16Bits(rng.normal() * scale);
  return t;
}

/** f32 [..shape] uniform in [min, max). */
export function randomF32(rng: SeededRandom, shape: readonly number[], min = 0, max = 1): Tensor {
  const t = Tensor.empty(shape, 'f32');
  const d = t.data as Float32Array;
  for (let i = 0; i < d.length; i++) d[i] = min + (max - min) * rng.uniform();
  return t;
}

/** fp8e4m3 [T, H] with random finite codes (no NaN) and positive f32 scales [T, H/128]. */
export function randomFp8(rng: SeededRandom, T: number, H: number): { x: Tensor; xScales: Tensor } {
  const x = Tensor.empty([T, H], 'fp8e4m3');
  const d = x.data as Uint8Array;
  for (let i = 0; i < d.length; i++) {
    const c = rng.nextUint32() & 0xff;
    d[i] = (c & 0x7f) === 0x7f ? c - 1 : c;
  }
  return { x, xScales: randomF32(rng, [T, H / 128], 0.01, 2) };
}

/** randomRouting as [T, k] tensors with topkIdx in `idxDtype`. */
export function routingTensors(options: RandomRoutingOptions, idxDtype: 'i32' | 'i64' = 'i32'): { topkIdx: Tensor; topkWeights: Tensor } {
  const { topkIdx, topkWeights } = randomRouting(options);
  return fromRouting(topkIdx, topkWeights, options.numTokens, options.topk, idxDtype);
}

/** Wraps flat routing arrays as [T, k] tensors. */
export function fromRouting(
  topkIdx: ArrayLike<number>,
  topkWeights: ArrayLike<number>,
  T: number,
  k: number,
  idxDtype: 'i32' | 'i64' = 'i32',
): { topkIdx: Tensor; topkWeights: Tensor } {
  return {
    topkIdx: Tensor.fromNumbers(topkIdx, [T, k], idxDtype),
    topkWeights: Tensor.fromNumbers(topkWeights, [T, k], 'f32'),
  };
}
