/**
 * Host references for the expert-compute kernels: plain loops in double over
 * the exact values the GPU reads (bf16 and fp8 decoded), so a GPU result is
 * checked against the mathematics, within the rounding of its output type.
 */
import { AssertionError } from 'node:assert';

import { Tensor } from '../../src/tensor/tensor.js';

/** y[m, n] = sum_k x[m, k] * w[n, k] in double, over decoded float values. */
export function refLinear(x: Float32Array, w: Float32Array, M: number, N: number, K: number): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(M * N);
  const mag = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < K; k++) {
        const p = x[m * K + k]! * w[n * K + k]!;
        s += p;
        a += Math.abs(p);
      }
      y[m * N + n] = s;
      mag[m * N + n] = a;
    }
  }
  return { y, mag };
}

/**
 * Every checked element within rel * magnitude + abs of the reference; the
 * elements not listed in `rows` (unwritten rows) must still hold the poison.
 */
export function assertClose(
  actual: Float32Array,
  expected: ArrayLike<number>,
  magnitude: ArrayLike<number>,
  what: string,
  tol: { rel: number; abs: number },
): void {
  let bad = 0;
  let first = '';
  for (let i = 0; i < expected.length; i++) {
    const limit = tol.rel * magnitude[i]! + tol.abs;
    if (!(Math.abs(actual[i]! - expected[i]!) <= limit)) {
      if (bad++ === 0) first = `element ${i}: got ${actual[i]}, expected ${expected[i]} ± ${limit}`;
    }
  }
  if (bad > 0) throw new AssertionError({ message: `${what}: ${bad} of ${expected.length} element(s) out of tolerance; first at ${first}` });
}

/** The float values of a host tensor's rows [begin, end) of width `width`. */
export function rowsOf(t: Tensor, begin: number, end: number, width: number): Float32Array {
  return t.toFloat32().subarray(begin * width, end * width);
}

/** silu(g) * u in double. */
export function refSwiglu(g: number, u: number): number {
  return (g / (1 + Math.exp(-g))) * u;
}
