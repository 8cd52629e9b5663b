/**
 * The float32 arithmetic of the layer, shared by the pipeline and the dense
 * reference. Every function is a deterministic function of its inputs (fixed
 * summation order), so the same row gives the same bits wherever it runs.
 */
import { f32ToBf16Bits } from '../tensor/convert.js';

/**
 * out[o] = sum_i W[o, i] * x[i] for a row-major `W[rows, cols]`, with x read at
 * `xAt` and out written at `outAt`. Each dot product is summed in double in
 * index order and rounded once to float32.
 */
export function matVec(W: Float32Array, rows: number, cols: number, x: Float32Array, xAt: number, out: Float32Array, outAt: number): void {
  for (let o = 0; o < rows; o++) {
    let s = 0;
    const w = o * cols;
    for (let i = 0; i < cols; i++) s += W[w + i]! * x[xAt + i]!;
    out[outAt + o] = s;
  }
}

export const RMS_NORM_EPS = 1e-6;

/** RMSNorm of each `H`-wide row of `x` times `weight`, into a new array. */
export function rmsNormRows(x: Float32Array, H: number, weight: Float32Array): Float32Array {
  const out = new Float32Array(x.length);
  for (let at = 0; at < x.length; at += H) {
    let ss = 0;
    for (let i = 0; i < H; i++) ss += x[at + i]! * x[at + i]!;
    const inv = 1 / Math.sqrt(ss / H + RMS_NORM_EPS);
    for (let i = 0; i < H; i++) out[at + i] = x[at + i]! * inv * weight[i]!;
  }
  return out;
}

export function silu(v: number): number {
  return v / (1 + Math.exp(-v));
}

export function sigmoid(v: number): number {
  return 1 / (1 + Math.exp(-v));
}

/** bf16 bits of every element (round to nearest even). */
export function toBf16Bits(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = f32ToBf16Bits(x[i]!);
  return out;
}

/** float32 values of bf16 bits (exact). */
export function fromBf16Bits(bits: Uint16Array, at = 0, n = bits.length - at): Float32Array {
  const u = new Uint32Array(n);
  for (let i = 0; i < n; i++) u[i] = bits[at + i]! << 16;
  return new Float32Array(u.buffer);
}

/** x rounded to the nearest bf16 values, as float32. */
export function roundRowsToBf16(x: Float32Array): Float32Array {
  return fromBf16Bits(toBf16Bits(x));
}

/** The sum of equal-width rows, elementwise, into a new array: a + b (+ c). */
export function addRows(a: Float32Array, b: Float32Array, c?: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! + b[i]! + (c ? c[i]! : 0);
  return out;
}

/** Concatenates float32 arrays. */
export function concatF32(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
