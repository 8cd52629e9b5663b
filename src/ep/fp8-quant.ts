/**
 * The fp8 e4m3 cast of low-latency dispatch, per token row and per 128-channel
 * block, in float32 with Math.fround after every operation (so the cuda kernel
 * can match it bit for bit):
 *
 *   amax     = max(max |x| over the block, 1e-4)
 *   scale    = amax / 448                       scaleInv = 448 / amax
 *   roundScale: scale = roundUpToPowerOfTwo(amax / 448), scaleInv = 1 / scale
 *   q        = fp8(x * scaleInv)   (saturating, round to nearest even)
 *
 * The stored scale is `scale`: x ≈ q * scale.
 */
import { FP8_E4M3_MAX, f32ToFp8E4m3Bits, fp8E4m3BitsToF32 } from '../tensor/convert.js';

export const FP8_BLOCK = 128;
/** The floor on amax, as float32 (fmaxf(amax, 1e-4f)). */
export const FP8_AMAX_FLOOR = Math.fround(1e-4);

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/**
 * The smallest power of two >= x, for a positive finite float32 x, computed
 * from its bits (a power of two stays itself; subnormals included).
 */
export function roundUpToPowerOfTwo(x: number): number {
  f32[0] = x;
  const bits = u32[0]!;
  const exp = (bits >>> 23) & 0xff;
  const man = bits & 0x7fffff;
  if (man === 0) return f32[0]!;
  if (exp === 0) {
    // Subnormal: man * 2^-149; the next power of two of man, scaled.
    const p = (man & (man - 1)) === 0 ? man : 2 ** (32 - Math.clz32(man));
    return p * 2 ** -149;
  }
  u32[0] = (exp + 1) << 23;
  return f32[0]!;
}

/** scale and scaleInv of a block whose largest magnitude is `amax`. */
export function fp8BlockScale(amax: number, roundScale: boolean): { scale: number; scaleInv: number } {
  const a = Math.fround(amax > FP8_AMAX_FLOOR ? amax : FP8_AMAX_FLOOR);
  if (roundScale) {
    const scale = roundUpToPowerOfTwo(Math.fround(a / FP8_E4M3_MAX));
    return { scale, scaleInv: Math.fround(1 / scale) };
  }
  return { scale: Math.fround(a / FP8_E4M3_MAX), scaleInv: Math.fround(FP8_E4M3_MAX / a) };
}

/**
 * Quantises one row of float32 values (length H, a multiple of 128) into
 * `q[qOffset ..]` and its H/128 scales into `scales[sOffset ..]`.
 */
export function quantizeRowFp8(row: Float32Array, q: Uint8Array, qOffset: number, scales: Float32Array, sOffset: number, roundScale: boolean): void {
  for (let b = 0; b * FP8_BLOCK < row.length; b++) {
    const begin = b * FP8_BLOCK;
    let amax = 0;
    for (let i = begin; i < begin + FP8_BLOCK; i++) {
      const a = Math.abs(row[i]!);
      if (a > amax) amax = a; // NaN never wins, as with fmaxf
    }
    const { scale, scaleInv } = fp8BlockScale(amax, roundScale);
    scales[sOffset + b] = scale;
    for (let i = begin; i < begin + FP8_BLOCK; i++) q[qOffset + i] = f32ToFp8E4m3Bits(Math.fround(row[i]! * scaleInv));
  }
}

/** Quantises `rows` bf16 rows (raw bits, [rows, H]) into fp8 [rows, H] and f32 scales [rows, H/128]. */
export function quantizeBf16RowsFp8(bits: Uint16Array, rows: number, H: number, roundScale: boolean): { q: Uint8Array; scales: Float32Array } {
  const q = new Uint8Array(rows * H);
  const scales = new Float32Array((rows * H) / FP8_BLOCK);
  const wide = new Uint32Array(H);
  const row = new Float32Array(wide.buffer);
  for (let r = 0; r < rows; r++) {
    for (let i = 0; i < H; i++) wide[i] = bits[r * H + i]! << 16; // bf16 -> f32 is a shift
    quantizeRowFp8(row, q, r * H, scales, (r * H) / FP8_BLOCK, roundScale);
  }
  return { q, scales };
}

/** q * scale per element: fp8 [rows, H] with f32 scales [rows, H/128] back to float32. */
export function dequantizeFp8(q: Uint8Array, scales: Float32Array, rows: number, H: number): Float32Array {
  const out = new Float32Array(rows * H);
  for (let i = 0; i < rows * H; i++) {
    const r = Math.floor(i / H);
    const b = Math.floor((i % H) / FP8_BLOCK);
    out[i] = fp8E4m3BitsToF32(q[i]!) * scales[(r * H) / FP8_BLOCK + b]!;
  }
  return out;
}
