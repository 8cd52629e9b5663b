/**
 * The cuBLASLt state a GEMM needs: one handle per GPU (with its cache of
 * prepared matmuls) and one workspace per stream, since a workspace used by
 * two streams at once would be shared scratch memory.
 */
import { WideepError } from '../errors.js';
import { callNative } from '../cuda/call.js';
import type { Stream } from '../cuda/stream.js';
import { requireCuda, type NativeBlasHandle, type NativeFieldMap } from '../native/index.js';
import { Tensor } from '../tensor/tensor.js';
import { loadCublasLt } from './library.js';

/** cuBLASLt's recommended workspace for Hopper. */
export const BLAS_WORKSPACE_BYTES = 32 * 1024 * 1024;

const handles = new Map<number, NativeBlasHandle>();
const workspaces = new Map<Stream, Tensor>();
const scratches = new Map<Stream, Tensor>();
let fields: NativeFieldMap | undefined;

export function matmulFields(): NativeFieldMap {
  fields ??= requireCuda('cuBLASLt').BlasHandle.fields();
  return fields;
}

export function blasHandle(device: number): NativeBlasHandle {
  let h = handles.get(device);
  if (!h || h.closed) {
    loadCublasLt();
    const cuda = requireCuda('cuBLASLt');
    h = callNative(() => new cuda.BlasHandle(device));
    handles.set(device, h);
  }
  return h;
}

function perStream(cache: Map<Stream, Tensor>, stream: Stream, bytes: number, what: string): Tensor {
  const have = cache.get(stream);
  if (have && !have.closed && have.byteLength >= bytes) return have;
  for (const [s, t] of cache) if (s.closed) (t.close(), cache.delete(s));
  if (stream.isCapturing()) {
    throw new WideepError(
      'ERR_UNSUPPORTED',
      `a GEMM was captured on a stream whose ${what} is missing or too small: run the same operation once on this stream before capturing`,
    );
  }
  have?.close(stream);
  const t = Tensor.empty([bytes], 'u8', { device: `cuda:${stream.device}`, stream });
  cache.set(stream, t);
  return t;
}

/**
 * The stream's workspace, allocated on first use. A capture cannot allocate
 * it (the graph would own the memory): run one eager call on the stream first.
 */
export function blasWorkspace(stream: Stream): Tensor {
  return perStream(workspaces, stream, BLAS_WORKSPACE_BYTES, 'cuBLASLt workspace');
}

/** At least `bytes` of scratch for re-laid-out scales, per stream, grown as needed (same capture rule). */
export function blasScratch(stream: Stream, bytes: number): Tensor {
  return perStream(scratches, stream, Math.max(bytes, 4096), 'scale scratch');
}
