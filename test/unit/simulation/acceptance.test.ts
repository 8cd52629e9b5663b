/** The acceptance matrix of the MoE layer pipeline: 4, 8 and 16 simulated ranks × TBO on/off × EPLB on/off. */
import { describe, expect, it } from 'vitest';

import { DEFAULT_STEPS, DEFAULT_TOLERANCE, runMoeLayerCheck } from '../../../src/simulation/index.js';

for (const numRanks of [4, 8, 16]) {
  describe(`the MoE layer on ${numRanks} simulated ranks matches the dense reference`, () => {
    for (const tbo of [false, true]) {
      for (const eplb of [false, true]) {
        it(`TBO ${tbo ? 'on' : 'off'}, EPLB ${eplb ? 'on' : 'off'}`, async () => {
          const r = await runMoeLayerCheck({ numRanks, tbo, eplb });
          const { comparison: cmp, pipeline: p } = r;
          expect(cmp.problem).toBeUndefined();
          expect(cmp.pass, `max relative error ${cmp.maxRelError}`).toBe(true);
          expect(cmp.maxRelError).toBeLessThan(DEFAULT_TOLERANCE);
          expect(cmp.tokens).toBe(r.totalTokens);
          expect(r.totalTokens).toBeGreaterThan(numRanks * 10);

          // Every step ran, both dispatch modes were used, and the last rank was idle throughout.
          expect(p.steps).toHaveLength(DEFAULT_STEPS.length);
          expect(p.steps.map((s) => s.deepepMode)).toEqual(['normal', 'low_latency', 'normal', 'normal', 'low_latency']);
          for (const s of p.steps) {
            expect(s.idleRanks).toEqual([numRanks - 1]);
            expect(s.dispatchRows).toBeGreaterThan(0);
            expect(s.combineRows).toBe(s.dispatchRows);
          }
          expect(p.outputs.every((ranks) => ranks[numRanks - 1]!.length === 0)).toBe(true);

          // TBO ran in every step whose ranks share one mode, and only when asked for.
          expect(p.steps.map((s) => s.useTbo)).toEqual(tbo ? [true, true, false, true, true] : [false, false, false, false, false]);
          if (tbo) {
            const decode = p.steps[1]!;
            expect(decode.microBatchTokens.slice(0, -1).every((m) => m.length === 2 && m[0]! > 0 && m[1]! > 0)).toBe(true);
            expect(decode.microBatchTokens[numRanks - 1]).toEqual([0, 0]);
            // B starts two stages behind A, and A's dispatch is in flight while B computes.
            expect(decode.stageTrace.slice(0, 5)).toEqual(['a:attn-prep', 'a:attn-core', 'a:dispatch-send', 'b:attn-prep', 'a:dispatch-recv']);
            expect(p.steps[0]!.stageTrace).toEqual(['a:attn-dispatch-send', 'b:attn-dispatch-send', 'a:experts', 'b:experts', 'a:output', 'b:output']);
          }

          if (!eplb) {
            expect(p.eplb).toBeNull();
            expect(p.numPhysical).toBe(r.config.numRoutedExperts);
            expect(p.steps.every((s) => s.placement === 'identity')).toBe(true);
            return;
          }
          // EPLB: one redundant slot per rank, a real rebalance (weights moved, experts replicated), steps on both placements.
          const e = p.eplb!;
          expect(p.numPhysical).toBe(r.config.numRoutedExperts + numRanks);
          expect(e.replicatedExperts).toBeGreaterThan(0);
          expect(e.moves.recv + e.moves.local + e.moves.reuse).toBeGreaterThan(0);
          expect(e.balancednessPredicted).toBeGreaterThan(e.balancednessBefore);
          expect(p.steps.map((s) => s.placement)).toEqual(['initial', 'initial', 'rebalanced', 'rebalanced', 'rebalanced']);
          expect(new Set(e.phy2log).size).toBe(r.config.numRoutedExperts);
        });
      }
    }
  });
}
