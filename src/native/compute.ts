/**
 * The expert-compute half of the binding's shape: cuBLAS/cuBLASLt loaded at
 * run time (native/blas/) and the small kernels of a MoE layer (native/moe/).
 */
import type { NativeLibraryAttempt } from './index.js';

export interface NativeBlasLoad {
  loaded: boolean;
  /** libcublasLt's file, once loaded. */
  path?: string;
  /** cublasLtGetVersion(), e.g. 130100 for 13.1.0. */
  version?: number;
  attempts: NativeLibraryAttempt[];
}

export interface ComputeBinding {
  /** dlopen()s the first loadable libcublasLt candidate and resolves the API. Idempotent once loaded. */
  blasLoad(candidates: string[]): NativeBlasLoad;
}
