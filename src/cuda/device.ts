import { WideepError, assertInteger } from '../errors.js';
import { requireCuda, type NativeProbe } from '../native/index.js';

let probeCache: NativeProbe | undefined;

/** The CUDA probe (cached): driver/runtime versions, GPUs and peer access. */
export function cudaProbe(): NativeProbe {
  probeCache ??= requireCuda('cudaProbe').probe();
  return probeCache;
}

/** Number of visible GPUs; 0 when CUDA is unavailable for any reason. */
export function deviceCount(): number {
  try {
    return cudaProbe().deviceCount;
  } catch {
    return 0;
  }
}

/** Checks that `device` names a visible GPU and returns it. */
export function checkDevice(device: unknown): number {
  const d = assertInteger('device', device, 0);
  const probe = cudaProbe();
  if (probe.error) {
    throw new WideepError('ERR_NO_GPU', `no usable GPU: ${probe.error.message}`, { status: probe.error.status });
  }
  if (d >= probe.deviceCount) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `device: expected an index below ${probe.deviceCount} (the number of visible GPUs), got ${d}`,
    );
  }
  return d;
}

/** Free and total bytes on `device`, as cudaMemGetInfo reports them. */
export function memGetInfo(device: number): { free: number; total: number } {
  return requireCuda('memGetInfo').memGetInfo(checkDevice(device));
}

/**
 * Makes `device` the calling thread's current GPU. A rank's process works on
 * one GPU; with it current, native calls never switch devices (which would
 * cost time and open a context on every other GPU).
 */
export function setCurrentDevice(device: number): void {
  requireCuda('setCurrentDevice').setDevice(checkDevice(device));
}

/** Returns unused memory cached by the stream-ordered pool to the driver. */
export function trimMemoryPool(device: number): void {
  requireCuda('trimMemoryPool').trimMemoryPool(checkDevice(device));
}

/** Parses 'cuda:N' (or a bare index) into N. */
export function parseCudaDevice(device: string | number): number {
  if (typeof device === 'number') return checkDevice(device);
  const m = /^cuda:(\d+)$/.exec(device);
  if (!m) throw new WideepError('ERR_INVALID_ARG', `device: expected 'cpu' or 'cuda:N', got ${JSON.stringify(device)}`);
  return checkDevice(Number(m[1]));
}
