/**
 * Finds and loads cuBLASLt at run time, as NCCL is: the addon links no cuBLAS,
 * so it builds and loads where none is installed, and a missing library is a
 * typed error that lists every path tried.
 */
import { WideepError } from '../errors.js';
import { requireCuda } from '../native/index.js';
import { describeTried, loadRuntimeLibrary, type RuntimeLibrarySpec } from '../runtime/shared-libraries.js';

export const CUBLASLT_LIBRARY: RuntimeLibrarySpec = {
  soname: 'libcublasLt.so.13',
  overrideVar: 'WIDEEP_CUBLASLT_LIBRARY',
  // The CUDA toolkit keeps it under lib64/ of its root.
  homeVar: 'CUDA_HOME',
  // NVIDIA's wheels: the CUDA 13 bundle (nvidia-cublas for cu13) or the older per-library layout.
  wheelDirs: ['nvidia/cu13/lib', 'nvidia/cublas/lib'],
};

export interface LoadedCublasLt {
  path: string;
  /** cublasLtGetVersion(): major * 10000 + minor * 100 + patch. */
  version: number;
}

let loaded: LoadedCublasLt | undefined;

/** "13.1.0" from 130100. */
export function formatBlasVersion(v: number): string {
  return `${Math.floor(v / 10000)}.${Math.floor(v / 100) % 100}.${v % 100}`;
}

/** Loads libcublasLt (override, CUDA_HOME, system path, Python wheels); ERR_BLAS_NOT_FOUND lists every path tried. */
export function loadCublasLt(): LoadedCublasLt {
  if (loaded) return loaded;
  const cuda = requireCuda('cuBLASLt');
  const r = loadRuntimeLibrary(CUBLASLT_LIBRARY, (paths) => cuda.blasLoad(paths));
  if (!r.loaded || r.path === undefined || r.version === undefined) {
    throw new WideepError(
      'ERR_BLAS_NOT_FOUND',
      `${CUBLASLT_LIBRARY.soname} (12.9 or newer) was not found. Tried, in order:\n${describeTried(r.tried)}\n` +
        'Install cuBLAS (pip install nvidia-cublas, the CUDA toolkit, or the libcublas package) or set ' +
        `${CUBLASLT_LIBRARY.overrideVar} to the file.`,
    );
  }
  loaded = { path: r.path, version: r.version };
  return loaded;
}
