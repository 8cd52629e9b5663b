import { describe, expect, it } from 'vitest';

import { ExpertLocationMap } from '../../../src/planning/expert-location.js';
import { assertPlanForLayer, planRebalanceMoves, rebalanceOpsForRank } from '../../../src/planning/rebalance-moves.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const shape = { numLogical: 6, numRanks: 4, ranksPerNode: 2 };

describe('planRebalanceMoves', () => {
  // 8 slots, 2 per rank; ranks 0-1 on node 0, ranks 2-3 on node 1.
  const before = ExpertLocationMap.fromPhy2Log([[0, 1, 2, 3, 4, 5, 0, 1]], shape);

  it('copies locally, reuses an arriving copy, and receives preferring the same node', () => {
    const after = ExpertLocationMap.fromPhy2Log([[1, 0, 5, 5, 4, 3, 2, 0]], shape);
    const plan = planRebalanceMoves(before, after);
    expect(plan.moves).toEqual([
      // Rank 0 swaps its two experts: both local copies of the old contents.
      { kind: 'local', layer: 0, rank: 0, slot: 0, logical: 1, srcRank: 0, srcSlot: 1 },
      { kind: 'local', layer: 0, rank: 0, slot: 1, logical: 0, srcRank: 0, srcSlot: 0 },
      // Rank 1 needs expert 5 twice: receive once (from rank 2, the only holder), then reuse.
      { kind: 'recv', layer: 0, rank: 1, slot: 2, logical: 5, srcRank: 2, srcSlot: 5 },
      { kind: 'reuse', layer: 0, rank: 1, slot: 3, logical: 5, srcRank: 1, srcSlot: 2 },
      // Rank 2 needs expert 3: only rank 1 (node 0) has it.
      { kind: 'recv', layer: 0, rank: 2, slot: 5, logical: 3, srcRank: 1, srcSlot: 3 },
      // Rank 3 needs expert 2, held only by rank 1, and expert 0, which its own slot 6 held.
      { kind: 'recv', layer: 0, rank: 3, slot: 6, logical: 2, srcRank: 1, srcSlot: 2 },
      { kind: 'local', layer: 0, rank: 3, slot: 7, logical: 0, srcRank: 3, srcSlot: 6 },
    ]);
    expect(plan.counts).toEqual({ unchanged: 1, local: 3, reuse: 1, recv: 3 });
  });

  it('prefers a holder on the same node', () => {
    // Expert 0 is on rank 0 (node 0) and rank 3 (node 1); rank 2 (node 1) should take it from rank 3.
    const after = ExpertLocationMap.fromPhy2Log([[0, 1, 2, 3, 0, 5, 4, 1]], shape);
    const recv = planRebalanceMoves(before, after).moves.filter((m) => m.kind === 'recv');
    expect(recv).toContainEqual({ kind: 'recv', layer: 0, rank: 2, slot: 4, logical: 0, srcRank: 3, srcSlot: 6 });
    expect(recv).toContainEqual({ kind: 'recv', layer: 0, rank: 3, slot: 6, logical: 4, srcRank: 2, srcSlot: 4 });
  });

  it('plans nothing when nothing changes', () => {
    expect(planRebalanceMoves(before, before)).toEqual({ moves: [], counts: { unchanged: 8, local: 0, reuse: 0, recv: 0 } });
  });

  it('lists each rank’s copies, sends and receives', () => {
    const after = ExpertLocationMap.fromPhy2Log([[1, 0, 5, 5, 4, 3, 2, 0]], shape);
    const ops = rebalanceOpsForRank(planRebalanceMoves(before, after), 1);
    expect(ops.copies.map((m) => m.kind)).toEqual(['reuse']);
    expect(rebalanceOpsForRank(planRebalanceMoves(before, after), 3).copies.map((m) => m.kind)).toEqual(['local']);
    expect(ops.recvs.map((m) => m.logical)).toEqual([5]);
    expect(ops.sends.map((m) => [m.rank, m.logical])).toEqual([[2, 3], [3, 2]]);
  });

  it('refuses placements of different shapes', () => {
    const other = ExpertLocationMap.trivial({ numLayers: 2, numLogical: 6, numPhysical: 8, numRanks: 4 });
    expect(() => planRebalanceMoves(before, other)).toThrow(/placements differ in shape/);
  });

  it('checks that a plan handed in carries a layer between the maps it was made for', async () => {
    const after = ExpertLocationMap.fromPhy2Log([[1, 0, 5, 5, 4, 3, 2, 0]], shape);
    const plan = planRebalanceMoves(before, after);
    assertPlanForLayer(plan, before, after, 0);
    // Made for other maps: the next map puts other experts where it moves.
    const other = ExpertLocationMap.fromPhy2Log([[0, 1, 2, 3, 4, 5, 1, 0]], shape);
    await expectWideepError(() => assertPlanForLayer(plan, before, other, 0), 'ERR_INVALID_ARG', 'layer 0');
    // A changed slot without a move, and two moves into one slot.
    await expectWideepError(() => assertPlanForLayer({ ...plan, moves: plan.moves.slice(1) }, before, after, 0), 'ERR_INVALID_ARG', 'no move fills it');
    await expectWideepError(() => assertPlanForLayer({ ...plan, moves: [plan.moves[0]!, ...plan.moves] }, before, after, 0), 'ERR_INVALID_ARG', 'two moves into slot 0');
    await expectWideepError(() => assertPlanForLayer({} as never, before, after, 0), 'ERR_INVALID_ARG', 'expected { moves, counts }');
    // The right destinations, the wrong sources: a plan from [2, 0, 1, 3] to [1, 2, 0, 3], checked as if from [0, 1, 2, 3].
    const one = { numLogical: 4, numRanks: 1 };
    const [a, b, c] = [[0, 1, 2, 3], [2, 0, 1, 3], [1, 2, 0, 3]].map((row) => ExpertLocationMap.fromPhy2Log([row], one));
    assertPlanForLayer(planRebalanceMoves(a!, c!), a!, c!, 0);
    await expectWideepError(() => assertPlanForLayer(planRebalanceMoves(b!, c!), a!, c!, 0), 'ERR_INVALID_ARG', 'does not find expert');
    // A recv that claims another rank's slot as its own, and a reuse of a slot that receives something else.
    const recv = plan.moves.find((m) => m.kind === 'recv')!;
    const stolen = plan.moves.map((m) => (m === recv ? { ...m, rank: (m.rank + 1) % 4 } : m));
    await expectWideepError(() => assertPlanForLayer({ ...plan, moves: stolen }, before, after, 0), 'ERR_INVALID_ARG', 'do not own its slots');
    const reuse = plan.moves.find((m) => m.kind === 'reuse')!;
    const wrongReuse = plan.moves.map((m) => (m === reuse ? { ...m, srcSlot: m.slot - 2 } : m));
    await expectWideepError(() => assertPlanForLayer({ ...plan, moves: wrongReuse }, before, after, 0), 'ERR_INVALID_ARG');
    await expectWideepError(() => assertPlanForLayer({ ...plan, moves: [{ ...plan.moves[0]!, logical: 0 }, ...plan.moves.slice(1)] }, before, after, 0), 'ERR_INVALID_ARG', 'holds already');
  });
});
