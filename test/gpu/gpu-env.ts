/** What the GPU suites need to know before deciding to run or skip. */
import { deviceCount } from '../../src/cuda/device.js';

/** Visible GPUs (0 without a driver, a GPU or the CUDA build). */
export const gpus = deviceCount();

/** Rank counts the multi-GPU suites run at: EP2, EP4 and one NVLink domain (EP8), each where enough GPUs are visible. */
export const RANK_COUNTS = [2, 4, 8] as const;

/** Why a suite is skipped, printed so that a skip is never mistaken for a pass. */
export function skipReason(needed: number): string {
  return `needs ${needed} GPU${needed === 1 ? '' : 's'}, ${gpus} visible`;
}

/**
 * WIDEEP_TEST_SHARE_GPU=1 runs the multi-rank EP suites that lack GPUs with
 * every rank on GPU 0 (WIDEEP_DEVICE=0). That tests their logic across ranks and
 * processes, not NVLink; NCCL suites cannot share a GPU and still skip.
 */
export const shareGpu = process.env.WIDEEP_TEST_SHARE_GPU === '1' && gpus >= 1;

/** How a suite of `n` ranks runs here: on n GPUs, sharing GPU 0, or not at all (with the reason to print). */
export function placement(n: number): { runs: boolean; shared: boolean; env: Record<string, string>; title: string } {
  const shared = gpus < n && shareGpu;
  const hint = n > 1 ? '; WIDEEP_TEST_SHARE_GPU=1 runs them on one' : '';
  return {
    runs: gpus >= n || shared,
    shared,
    env: shared ? { WIDEEP_DEVICE: '0' } : {},
    title: shared ? `${n} ranks sharing GPU 0` : `${n} GPU${n === 1 ? '' : 's'} (${skipReason(n)}${hint})`,
  };
}
