/**
 * Token rows padded to a fixed count and back, for the NCCL collectives that
 * need equal blocks per rank (all-gather, reduce-scatter). Stream-ordered.
 */
import { copyDeviceToDevice, memsetDevice } from '../cuda/memory.js';
import type { Stream } from '../cuda/stream.js';
import { Tensor } from '../tensor/tensor.js';

/** A new [rows, H] device tensor: x's T rows, then zeros (rows >= T). */
export function padRows(x: Tensor, rows: number, stream: Stream): Tensor {
  const out = Tensor.empty([rows, ...x.shape.slice(1)], x.dtype, { device: `cuda:${x.deviceIndex}`, stream });
  memsetDevice(out.ptr, 0, out.byteLength, stream);
  if (x.byteLength > 0) copyDeviceToDevice(out.ptr, x.ptr, x.byteLength, stream);
  return out;
}

/** A new device tensor holding the first `n` rows of t. */
export function firstRows(t: Tensor, n: number, stream: Stream): Tensor {
  const out = Tensor.empty([n, ...t.shape.slice(1)], t.dtype, { device: `cuda:${t.deviceIndex}`, stream });
  if (out.byteLength > 0) copyDeviceToDevice(out.ptr, t.ptr, out.byteLength, stream);
  return out;
}
