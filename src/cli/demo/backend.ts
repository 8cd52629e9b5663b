/**
 * Which backend `wideep demo` runs on, and why. The cuda backend runs one
 * process per GPU through the launcher; it needs a GPU this build has code
 * for and cuBLASLt (the expert GEMMs). NCCL is not needed: the EP buffer
 * moves tokens through CUDA IPC and the job's store. Where any of that is
 * missing the demo stays on the cpu backend, which simulates every rank in
 * one process and needs nothing.
 */
import type { Capabilities } from '../../capabilities.js';
import { WideepError } from '../../errors.js';

export type DemoBackendKind = 'cpu' | 'cuda';

export interface DemoBackend {
  backend: DemoBackendKind;
  /** GPUs the capability probe saw. */
  gpus: number;
  /** Why this backend. */
  reason: string;
}

export type DemoCapabilities = Pick<Capabilities, 'cuda' | 'gpus' | 'cublasLt'>;

/** Why the cuda backend cannot run here, or undefined when it can. */
function cudaBlocker(caps: DemoCapabilities): { code: 'ERR_NO_GPU' | 'ERR_BLAS_NOT_FOUND'; why: string } | undefined {
  if (!caps.cuda.available || caps.gpus.length === 0) return { code: 'ERR_NO_GPU', why: `no GPU: ${caps.cuda.reason ?? 'no CUDA GPU is visible'}` };
  const unsupported = caps.gpus.filter((g) => !g.supported);
  if (unsupported.length > 0) {
    const g = unsupported[0]!;
    return { code: 'ERR_NO_GPU', why: `GPU ${g.index} (${g.name}, compute capability ${g.computeCapability}) is not one this build has kernels for (Hopper, 9.0+)` };
  }
  if (!caps.cublasLt.found) return { code: 'ERR_BLAS_NOT_FOUND', why: `no cuBLASLt for the expert GEMMs: ${caps.cublasLt.reason ?? 'not found'}` };
  return undefined;
}

/** The backend from a capability report; `forced` is --backend. A forced cuda that cannot run is an error saying why. */
export function demoBackend(caps: DemoCapabilities, forced?: DemoBackendKind): DemoBackend {
  const gpus = caps.gpus.length;
  const blocker = cudaBlocker(caps);
  if (forced === 'cpu') return { backend: 'cpu', gpus, reason: '--backend cpu: every rank simulated in this process (the reference the GPU kernels are tested against)' };
  if (blocker) {
    if (forced === 'cuda') throw new WideepError(blocker.code, `--backend cuda: ${blocker.why}`);
    return { backend: 'cpu', gpus, reason: blocker.why };
  }
  const names = [...new Set(caps.gpus.map((g) => g.name))].join(', ');
  const blas = caps.cublasLt.version ? ` ${caps.cublasLt.version}` : '';
  return {
    backend: 'cuda',
    gpus,
    reason: `${forced === 'cuda' ? '--backend cuda: ' : ''}${gpus} GPU${gpus === 1 ? '' : 's'} (${names}) and cuBLASLt${blas}: one process per rank through wideep launch (--backend cpu simulates the ranks instead)`,
  };
}
