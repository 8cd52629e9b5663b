import { WideepError, assertInteger } from '../errors.js';
import { requireCuda, type CudaBinding, type NativeDeviceMemory } from '../native/index.js';
import { awaitNative, callNative } from './call.js';
import type { Stream } from './stream.js';

/** What a device tensor's bytes live in: an allocation of ours or a range of an EP buffer. */
export interface DeviceStorage {
  readonly device: number;
  readonly ptr: bigint;
  readonly byteLength: number;
  readonly closed: boolean;
  /** Frees it (stream-ordered storage: after the work queued on `stream`, where given). */
  close(stream?: Stream): void;
}

/**
 * Each device's total memory, asked once: cudaMemGetInfo is a driver round
 * trip (tens of µs), too slow to pay on every allocation of a decode step.
 */
const totalBytes = new Map<number, number>();

function deviceTotalBytes(cuda: CudaBinding, device: number): number {
  let total = totalBytes.get(device);
  if (total === undefined) {
    total = cuda.memGetInfo(device).total;
    totalBytes.set(device, total);
  }
  return total;
}

/**
 * One stream-ordered allocation from the device's default pool
 * (cudaMallocAsync). Closing frees it in the order of its stream.
 */
export class DeviceAllocation implements DeviceStorage, Disposable {
  readonly device: number;
  readonly byteLength: number;
  #native: NativeDeviceMemory | undefined;
  readonly #ptr: bigint;

  constructor(bytes: number, stream: Stream) {
    assertInteger('bytes', bytes, 0);
    const cuda = requireCuda('DeviceAllocation');
    const total = deviceTotalBytes(cuda, stream.device);
    if (bytes > total) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `allocation of ${bytes} bytes exceeds cuda:${stream.device}'s total memory of ${total} bytes`,
      );
    }
    const n = callNative(() => new cuda.DeviceMemory(bytes, stream.native));
    this.#native = n;
    this.#ptr = n.ptr;
    this.device = stream.device;
    this.byteLength = bytes;
  }

  get ptr(): bigint {
    if (!this.#native) throw new WideepError('ERR_CLOSED', 'device memory is closed');
    return this.#ptr;
  }

  get closed(): boolean {
    return this.#native === undefined;
  }

  /** Frees after the work queued on `stream` (default: the allocation stream). */
  close(stream?: Stream): void {
    const n = this.#native;
    if (!n) return;
    this.#native = undefined;
    n.close(stream?.native);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export function copyHostToDevice(dst: bigint, src: ArrayBufferView, stream: Stream): Promise<void> {
  const cuda = requireCuda('copyHostToDevice');
  const s = stream.native;
  return awaitNative(() => cuda.copyHostToDevice(dst, src, s));
}

export function copyDeviceToHost(dst: ArrayBufferView, src: bigint, stream: Stream): Promise<void> {
  const cuda = requireCuda('copyDeviceToHost');
  const s = stream.native;
  return awaitNative(() => cuda.copyDeviceToHost(dst, src, s));
}

export function copyDeviceToDevice(dst: bigint, src: bigint, bytes: number, stream: Stream): void {
  const cuda = requireCuda('copyDeviceToDevice');
  callNative(() => cuda.copyDeviceToDevice(dst, src, bytes, stream.native));
}

export function memsetDevice(ptr: bigint, value: number, bytes: number, stream: Stream): void {
  const cuda = requireCuda('memset');
  callNative(() => cuda.memset(ptr, value, bytes, stream.native));
}
