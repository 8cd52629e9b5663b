/**
 * Poisoning outputs before a run: every byte 0xff, which reads as NaN in
 * bf16, f16 and f32 (and -1 in the integer types), so an element the run
 * never wrote fails any closeness check instead of passing on stale values.
 */
import type { Stream } from '../cuda/stream.js';
import type { Tensor } from '../tensor/tensor.js';

export const POISON_BYTE = 0xff;

/** Fills each tensor with the poison byte, device tensors in order on `stream`; returns them. */
export function poison<T extends Tensor | readonly Tensor[]>(tensors: T, stream?: Stream): T {
  for (const t of Array.isArray(tensors) ? tensors : [tensors as Tensor]) t.fillBytes(POISON_BYTE, stream);
  return tensors;
}
