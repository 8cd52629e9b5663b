/**
 * Scalar conversions between float32 and the narrow float formats, all rounding
 * to nearest even. fp8 is OCP e4m3 ("e4m3fn": no infinities, max 448, NaN =
 * S.1111.111) and saturates to ±448 like CUDA's __NV_SATFINITE conversion.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

function fromBits(b: number): number {
  u32[0] = b >>> 0;
  return f32[0]!;
}

/** The float32 bits of x (rounded to float32 first), e.g. for a float slot of a launch baton. */
export function f32Bits(x: number): number {
  return bitsOf(x);
}

/** Rounds a non-negative double to the nearest integer, ties to even. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export function f32ToBf16Bits(x: number): number {
  const b = bitsOf(x);
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x007fffff) !== 0) return ((b >>> 16) | 0x0040) & 0xffff;
  const lsb = (b >>> 16) & 1;
  return ((b + 0x7fff + lsb) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  return fromBits((h & 0xffff) << 16);
}

export function f32ToF16Bits(x: number): number {
  const b = bitsOf(x);
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const man = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man !== 0 ? 0x200 : 0);
  const a = Math.abs(fromBits(b));
  if (a >= 65520) return sign | 0x7c00; // rounds past the largest finite half (65504)
  if (a < 2 ** -14) return sign | roundHalfEven(a / 2 ** -24); // subnormal (may round up to min normal)
  const e = exp - 127;
  const q = roundHalfEven(a / 2 ** (e - 10)); // in [1024, 2048]
  return q === 2048 ? sign | ((e + 16) << 10) : sign | ((e + 15) << 10) | (q - 1024);
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

export const FP8_E4M3_MAX = 448;

const F32_FP8_MAX = 0x43e00000; // 448 as float32 bits
const F32_FP8_MIN_NORMAL = 0x3c800000; // 2^-6
const FP8_EXP_REBIAS = (127 - 7) << 23;

/** Integer arithmetic on the float's bits: this runs once per element of every FP8 cast. */
export function f32ToFp8E4m3Bits(x: number): number {
  const b = bitsOf(x);
  const sign = (b >>> 24) & 0x80;
  const abs = b & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7f; // NaN
  if (abs >= F32_FP8_MAX) return sign | 0x7e; // saturates, infinities too
  if (abs < F32_FP8_MIN_NORMAL) return sign | roundHalfEven(fromBits(abs) * 512); // subnormal steps of 2^-9; 8 is the min normal
  // Rebias the exponent, then round the 23-bit mantissa to 3 bits, ties to
  // even; a carry out of the mantissa moves into the exponent.
  const v = abs - FP8_EXP_REBIAS;
  return sign | Math.min((v + 0x7ffff + ((v >>> 20) & 1)) >>> 20, 0x7e);
}

const FP8_TABLE = (() => {
  const t = new Float32Array(256);
  for (let c = 0; c < 256; c++) {
    const sign = c & 0x80 ? -1 : 1;
    const exp = (c >>> 3) & 0xf;
    const man = c & 7;
    if (exp === 0xf && man === 7) t[c] = NaN;
    else if (exp === 0) t[c] = sign * man * 2 ** -9;
    else t[c] = sign * (1 + man / 8) * 2 ** (exp - 7);
  }
  return t;
})();

export function fp8E4m3BitsToF32(c: number): number {
  return FP8_TABLE[c & 0xff]!;
}

/** Rounds a number to the nearest representable bf16 value (as a JS number). */
export function roundToBf16(x: number): number {
  return bf16BitsToF32(f32ToBf16Bits(x));
}
