/** What the GPU suites need to know before deciding to run or skip. */
import { deviceCount } from '../../src/cuda/device.js';

/** Visible GPUs (0 without a driver, a GPU or the CUDA build). */
export const gpus = deviceCount();

/** Why a suite is skipped, printed so that a skip is never mistaken for a pass. */
export function skipReason(needed: number): string {
  return `needs ${needed} GPU${needed === 1 ? '' : 's'}, ${gpus} visible`;
}
