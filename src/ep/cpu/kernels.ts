/**
 * The numeric inner loops of the cpu backend, on raw TypedArrays. Float32
 * accumulators are Float32Arrays: storing `a + b` (a, b float32) rounds the
 * exact double sum once, which is float32 addition.
 */

/** bf16 bits -> float32 value. */
export const BF16_TO_F32: Float32Array = (() => {
  const bits = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) bits[h] = h << 16;
  return new Float32Array(bits.buffer);
})();

/** acc[accAt + i] += bf16(src[srcAt + i]) for i < n, in float32. */
export function addBf16(acc: Float32Array, accAt: number, src: Uint16Array, srcAt: number, n: number): void {
  for (let i = 0; i < n; i++) acc[accAt + i] += BF16_TO_F32[src[srcAt + i]!]!;
}

/** acc[accAt + i] += fround(w * bf16(src[srcAt + i])): multiply, round, add (no fused multiply-add). */
export function addScaledBf16(acc: Float32Array, accAt: number, w: number, src: Uint16Array, srcAt: number, n: number): void {
  for (let i = 0; i < n; i++) acc[accAt + i] += Math.fround(w * BF16_TO_F32[src[srcAt + i]!]!);
}

/** dst[i] = bf16 bits of src[i], round to nearest even (NaN stays NaN), like f32ToBf16Bits. */
export function roundToBf16(src: Float32Array, dst: Uint16Array, dstAt = 0): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    dst[dstAt + i] =
      (b & 0x7f800000) === 0x7f800000 && (b & 0x007fffff) !== 0 ? ((b >>> 16) | 0x0040) & 0xffff : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
}

/** Copies row `srcRow` of `src` to row `dstRow` of `dst` (rows of `rowBytes`). */
export function copyRow(dst: Uint8Array, dstRow: number, src: Uint8Array, srcRow: number, rowBytes: number): void {
  dst.set(src.subarray(srcRow * rowBytes, (srcRow + 1) * rowBytes), dstRow * rowBytes);
}

/** Row i of `dst` = row rows[i] of `src` (rows of `rowBytes`), for every listed row. */
export function copyRows(dst: Uint8Array, src: Uint8Array, rows: ArrayLike<number>, rowBytes: number): void {
  for (let i = 0; i < rows.length; i++) copyRow(dst, i, src, rows[i]!, rowBytes);
}
