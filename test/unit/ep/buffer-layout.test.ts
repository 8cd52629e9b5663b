/** The cuda backend's buffer layout: pure arithmetic, checked without a GPU. */
import { describe, expect, it } from 'vitest';

import { CONTROL_BYTES, computeCudaLayout, type SizingConfig } from '../../../src/ep/cuda/buffer-layout.js';

const CONFIGS: SizingConfig[] = [
  { worldSize: 4, hidden: 7168, numExperts: 256, maxTokensPerRank: 4096, maxTopk: 8, numRecvSlots: 2, lowLatency: { maxTokensPerRank: 128 } },
  { worldSize: 2, hidden: 2048, numExperts: 2, maxTokensPerRank: 7, maxTopk: 16, numRecvSlots: 3, lowLatency: undefined },
  { worldSize: 8, hidden: 4096, numExperts: 8192, maxTokensPerRank: 64, maxTopk: 9, numRecvSlots: 2, lowLatency: { maxTokensPerRank: 1 } },
];

/** Where the buffer's top-level regions start, in their order. */
function regionStarts(f: Record<string, number>): number[] {
  return [f.slab0!, f.combineX!, f.combineWeights!, f.combineFlags!, f.notifyScratch!, f.llHalf0!];
}

describe('cuda buffer layout', () => {
  it('places every region after the control block, in order, 256-byte aligned, inside the buffer', () => {
    for (const c of CONFIGS) {
      const { fields, totalBytes } = computeCudaLayout(c);
      const starts = regionStarts(fields);
      expect(starts[0]).toBe(CONTROL_BYTES);
      for (let i = 1; i < starts.length; i++) expect(starts[i]!, JSON.stringify(c)).toBeGreaterThan(starts[i - 1]!);
      for (const s of starts) expect(s % 256).toBe(0);
      expect(fields.llHalf0! + 2 * fields.llHalfStride!).toBe(totalBytes);
    }
  });

  it('gives the notify scratch room for its barrier, 32 blocks x 8 ranks of row counts, and every expert', () => {
    for (const c of CONFIGS) {
      const { fields } = computeCudaLayout(c);
      expect(fields.llHalf0! - fields.notifyScratch!).toBeGreaterThanOrEqual(8 + 32 * 8 * 4 + c.numExperts * 4);
      // The combine flags end before it: R x maxTokens u32.
      expect(fields.notifyScratch! - fields.combineFlags!).toBeGreaterThanOrEqual(c.worldSize * c.maxTokensPerRank * 4);
    }
  });
});
