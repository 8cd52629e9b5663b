/**
 * The expert-compute half of the binding's shape: cuBLASLt loaded at run time
 * (native/blas/), the small kernels of a MoE layer (native/moe/) and the
 * device tensor fills (native/tensor/).
 */
import type { NativeFieldMap } from './ep.js';
import type { NativeLibraryAttempt, NativeStream } from './index.js';

export interface NativeBlasLoad {
  loaded: boolean;
  /** libcublasLt's file, once loaded. */
  path?: string;
  /** cublasLtGetVersion(), e.g. 130100 for 13.1.0. */
  version?: number;
  attempts: NativeLibraryAttempt[];
}

/** native/blas/blas_handle.cc: a cuBLASLt handle of one GPU and its prepared matmuls. */
export interface NativeBlasHandle {
  readonly closed: boolean;
  /** One cublasLtMatmul described by a baton (fields()). */
  matmul(baton: BigInt64Array, stream: NativeStream): void;
  close(): void;
}

export interface NativeMoeFields {
  topk: NativeFieldMap;
  swiglu: NativeFieldMap;
  quantizeRows: NativeFieldMap;
  fp8MaskedGemm: NativeFieldMap;
  permute: NativeFieldMap;
  unpermute: NativeFieldMap;
  maxTopkExperts: number;
  maxTopkGroups: number;
  maxTopk: number;
}

export interface ComputeBinding {
  /** dlopen()s the first loadable libcublasLt candidate and resolves the API. Idempotent once loaded. */
  blasLoad(candidates: string[]): NativeBlasLoad;
  BlasHandle: {
    new (device: number): NativeBlasHandle;
    fields(): NativeFieldMap;
  };
  moeFields(): NativeMoeFields;
  routerTopk(baton: BigInt64Array, stream: NativeStream): void;
  swiglu(baton: BigInt64Array, stream: NativeStream): void;
  /** bf16 [rows, hidden] -> fp8 e4m3 [rows, hidden] and f32 scales [rows, hidden/128] (fp8-quant.ts numerics). */
  quantizeRows(baton: BigInt64Array, stream: NativeStream): void;
  /** fp8 block-scaled grouped GEMM over each expert's first counts[e] rows, one launch (fp8_masked_gemm.cu). */
  fp8MaskedGemm(baton: BigInt64Array, stream: NativeStream): void;
  permute(baton: BigInt64Array, stream: NativeStream): void;
  unpermute(baton: BigInt64Array, stream: NativeStream): void;
  /** f32 [batch, rows, blocks] -> [batch, blocks, ldOut], rows past `rows` zeroed. */
  transposeScales(src: bigint, dst: bigint, batch: number, rows: number, blocks: number, ldOut: number, stream: NativeStream): void;
  fillValue(ptr: bigint, numel: number, type: number, value: number, stream: NativeStream): void;
  fillRandom(ptr: bigint, numel: number, type: number, distribution: number, seed: number, a: number, b: number, stream: NativeStream): void;
}
