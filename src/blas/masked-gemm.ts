/**
 * The launch behind groupedLinear's 'masked' strategy: fp8 experts with block
 * scales in one launch of our own kernel (native/moe/fp8_masked_gemm.cu),
 * which reads each expert's row count on the device and computes only those
 * rows. A decode step then streams every weight once and skips the experts
 * nobody routed to; cuBLASLt, with no grouped block-scaled fp8 GEMM on
 * Hopper, takes one launch per expert over all its padded rows. gemm.ts
 * checks the operands first.
 */
import { callNative } from '../cuda/call.js';
import type { Stream } from '../cuda/stream.js';
import { batonFor, moeFields } from '../moe/fields.js';
import { requireCuda } from '../native/index.js';
import type { Tensor } from '../tensor/tensor.js';

export interface MaskedGemmOperands {
  /** fp8 [E, M, K]. */
  x: Tensor;
  /** f32 scale of (e, row, k block b) at e * batch + row * row + b * block (in floats). */
  xScales: Tensor;
  xScaleStrides: { batch: number; row: number; block: number };
  /** fp8 [E, N, K] and f32 [E, N/128, K/128]. */
  weight: Tensor;
  weightScales: Tensor;
  /** i32 [E]. */
  counts: Tensor;
  /** bf16 [E, M, N]. */
  out: Tensor;
  E: number;
  M: number;
  N: number;
  K: number;
  stream: Stream;
}

export function enqueueFp8MaskedGemm(where: string, o: MaskedGemmOperands): void {
  const cuda = requireCuda(where);
  const f = moeFields().fp8MaskedGemm;
  const b = batonFor('fp8MaskedGemm');
  b[f.x!] = o.x.ptr;
  b[f.xScales!] = o.xScales.ptr;
  b[f.xsBatch!] = BigInt(o.xScaleStrides.batch);
  b[f.xsRow!] = BigInt(o.xScaleStrides.row);
  b[f.xsBlock!] = BigInt(o.xScaleStrides.block);
  b[f.w!] = o.weight.ptr;
  b[f.wScales!] = o.weightScales.ptr;
  b[f.counts!] = o.counts.ptr;
  b[f.out!] = o.out.ptr;
  b[f.experts!] = BigInt(o.E);
  b[f.rows!] = BigInt(o.M);
  b[f.n!] = BigInt(o.N);
  b[f.k!] = BigInt(o.K);
  callNative(() => cuda.fp8MaskedGemm(b, o.stream.native));
}
