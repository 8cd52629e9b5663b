/**
 * The plan's groups split from one world communicator: each rank's color is
 * the index of its group of a kind, the same partition as the planner's
 * processGroups, and kinds whose groups have one member get none.
 */
import { describe, expect, it } from 'vitest';

import { splitColors } from '../../../src/moe/comm-groups.js';
import { ParallelConfig } from '../../../src/planning/config.js';

describe('NCCL group colors from the plan', () => {
  it('DP attention with attention-TP 2 over 8 ranks: pairs for attention, one EP group, no MoE-TP', () => {
    const config = ParallelConfig.fromOptions({ tp: 8, dpSize: 4, enableDpAttention: true, epSize: 8, moeA2aBackend: 'deepep' });
    const colors = Array.from({ length: 8 }, (_, r) => splitColors(config, r));
    expect(colors.map((c) => c.get('attnTp'))).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
    expect(colors.map((c) => c.get('moeEp'))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(colors.map((c) => c.get('moeTp'))).toEqual([-1, -1, -1, -1, -1, -1, -1, -1]);
  });

  it('hybrid EP + TP (ep 2, moe-tp 2 over 4 ranks): the colors partition the ranks as processGroups does', () => {
    const config = ParallelConfig.fromOptions({ tp: 4, epSize: 2, moeA2aBackend: 'deepep' });
    const groups = config.processGroups();
    for (const kind of ['moeEp', 'moeTp', 'attnTp'] as const) {
      const byColor = new Map<number, number[]>();
      for (let r = 0; r < 4; r++) {
        const c = splitColors(config, r).get(kind)!;
        if (c >= 0) byColor.set(c, [...(byColor.get(c) ?? []), r]);
      }
      const multi = groups[kind].filter((g) => g.length > 1);
      expect([...byColor.values()].sort()).toEqual([...multi].sort());
    }
  });
});
