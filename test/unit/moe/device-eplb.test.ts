/**
 * EPLB on the device, its loop logic on simulated ranks with layers whose
 * counters are faked (the GPU parts, counting and moving, are in the GPU
 * suites): nothing happens between intervals; on the interval every rank sums
 * the same loads, gets the same new placement (the hot expert replicated),
 * and reports balancedness improving; by default the counters read on the
 * interval step are used one step later; bad setups are refused.
 */
import { describe, expect, it } from 'vitest';

import type { Stream } from '../../../src/cuda/stream.js';
import { createSimulatedRanks } from '../../../src/ep/transport.js';
import { DeviceEplb, type RebalancingLayer } from '../../../src/moe/device-eplb.js';
import { ExpertLocationMap } from '../../../src/planning/expert-location.js';
import { assertPlanForLayer, planRebalanceMoves, type RebalancePlan } from '../../../src/planning/rebalance-moves.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const [E, P, R] = [8, 12, 2];
const stream = {} as Stream;

/** A layer whose router counted `loads` per slot; rebalance records the new map. */
function fakeLayer(map: ExpertLocationMap, layer: number, loads: () => Int32Array): RebalancingLayer & { maps: ExpertLocationMap[]; plans: RebalancePlan[] } {
  const placement = { map, layer, takeLoads: async () => loads() };
  const maps: ExpertLocationMap[] = [];
  const plans: RebalancePlan[] = [];
  return {
    placement,
    maps,
    plans,
    async rebalance(next, o) {
      const plan = o.plan ?? planRebalanceMoves(placement.map, next);
      assertPlanForLayer(plan, placement.map, next, layer);
      placement.map = next;
      maps.push(next);
      plans.push(plan);
      return plan;
    },
  };
}

describe('DeviceEplb', () => {
  it('rebalances on every interval-th step, the same way on every rank, with the hot expert replicated', async () => {
    const map = ExpertLocationMap.trivial({ numLayers: 1, numLogical: E, numPhysical: P, numRanks: R });
    const ranks = createSimulatedRanks(R);
    // Expert 5 is hot on every rank; slots hold p % E initially, so only slot 5 holds it.
    const loads = () => Int32Array.from({ length: P }, (_, p) => (p % E === 5 && p < E ? 100 : 2));
    const layers = ranks.map(() => fakeLayer(map, 0, loads));
    const eplbs = ranks.map((t, r) => new DeviceEplb([layers[r]!], { interval: 3, numGroups: 1, transport: t, lagSteps: 0 }));
    for (let step = 1; step <= 2; step++) expect(await Promise.all(eplbs.map((e) => e.afterStep(stream)))).toEqual([undefined, undefined]);
    const reports = await Promise.all(eplbs.map((e) => e.afterStep(stream)));
    expect(reports[0]).toEqual(reports[1]);
    const report = reports[0]!;
    expect(report.step).toBe(3);
    expect(report.balancednessPredicted).toBeGreaterThan(report.balancednessBefore);
    expect(report.moves.local + report.moves.reuse + report.moves.recv).toBeGreaterThan(0);
    const [a, b] = layers.map((l) => l.maps[0]!);
    expect(a!.layerPhy2Log(0)).toEqual(b!.layerPhy2Log(0));
    expect(a!.layerLogcnt(0)[5]).toBeGreaterThan(1);
  });

  it('by default reads the counters out on the interval step and rebalances with them one step later', async () => {
    const map = ExpertLocationMap.trivial({ numLayers: 1, numLogical: E, numPhysical: P, numRanks: 1 });
    const [t] = createSimulatedRanks(1);
    const reads: number[] = [];
    let step = 0;
    const layer = fakeLayer(map, 0, () => (reads.push(step), Int32Array.from({ length: P }, (_, p) => (p === 2 ? 50 : 1))));
    const eplb = new DeviceEplb([layer], { interval: 2, numGroups: 1, transport: t! });
    const reports = [];
    for (step = 1; step <= 5; step++) reports.push(await eplb.afterStep(stream));
    // Read on steps 2 and 4, rebalanced after steps 3 and 5.
    expect(reads).toEqual([2, 4]);
    expect(reports.map((r) => r?.step)).toEqual([undefined, undefined, 3, undefined, 5]);
    expect(layer.maps).toHaveLength(2);
    // An interval of 1 has no step between: the default lag is 0 there.
    const every = new DeviceEplb([fakeLayer(map, 0, () => new Int32Array(P))], { interval: 1, numGroups: 1, transport: t! });
    expect((await every.afterStep(stream))?.step).toBe(1);
  });

  it('plans the moves once for all its layers, and counts only its own layers\' moves', async () => {
    const map = ExpertLocationMap.trivial({ numLayers: 3, numLogical: E, numPhysical: P, numRanks: 1 });
    const [t] = createSimulatedRanks(1);
    // Layers 0 and 2 run here (layer 1 elsewhere); expert 1 is hot in both.
    const loads = () => Int32Array.from({ length: P }, (_, p) => (p === 1 ? 100 : 2));
    const layers = [fakeLayer(map, 0, loads), fakeLayer(map, 2, loads)];
    const report = await new DeviceEplb(layers, { interval: 1, numGroups: 1, transport: t! }).afterStep(stream);
    const [a, b] = layers.map((l) => l.plans[0]!);
    expect(a).toBe(b);
    const own = a!.moves.filter((m) => m.layer !== 1).length;
    expect(own).toBeGreaterThan(0);
    expect(report!.moves.local + report!.moves.reuse + report!.moves.recv).toBe(own);
    expect(report!.moves.unchanged).toBe(2 * P - own);
  });

  it('refuses layers without a placement, placements of different maps or the same layer, and a transport of another size', async () => {
    const map = ExpertLocationMap.trivial({ numLayers: 2, numLogical: E, numPhysical: P, numRanks: R });
    const other = ExpertLocationMap.trivial({ numLayers: 2, numLogical: E, numPhysical: P, numRanks: R });
    const [t] = createSimulatedRanks(R);
    const zero = () => new Int32Array(P);
    const o = { interval: 1, numGroups: 1, transport: t! };
    const noPlacement = { placement: undefined, rebalance: async () => ({ moves: [], counts: { unchanged: 0, local: 0, reuse: 0, recv: 0 } }) };
    await expectWideepError(() => new DeviceEplb([noPlacement], o), 'ERR_INVALID_ARG', 'no placement');
    await expectWideepError(() => new DeviceEplb([fakeLayer(map, 0, zero), fakeLayer(other, 1, zero)], o), 'ERR_INVALID_ARG', 'one ExpertLocationMap');
    await expectWideepError(() => new DeviceEplb([fakeLayer(map, 0, zero), fakeLayer(map, 0, zero)], o), 'ERR_INVALID_ARG', 'layer index 0');
    const [single] = createSimulatedRanks(1);
    await expectWideepError(() => new DeviceEplb([fakeLayer(map, 0, zero)], { ...o, transport: single! }), 'ERR_INVALID_ARG', 'transport has 1 ranks');
    await expectWideepError(() => new DeviceEplb([fakeLayer(map, 0, zero)], { ...o, interval: 0 }), 'ERR_INVALID_ARG', 'interval');
    await expectWideepError(() => new DeviceEplb([fakeLayer(map, 0, zero)], { ...o, interval: 3, lagSteps: 3 }), 'ERR_INVALID_ARG', 'lagSteps');
  });
});
