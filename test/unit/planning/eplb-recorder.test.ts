import { describe, expect, it } from 'vitest';

import { EplbRecorder, balancedness, countPhysical, gpuLoadsOf, slotLoadsFromLogical } from '../../../src/planning/eplb-recorder.js';
import { ExpertLocationMap } from '../../../src/planning/expert-location.js';

describe('balancedness', () => {
  it('is mean over max GPU load', () => {
    expect(balancedness([1, 1, 1, 1])).toBe(1);
    expect(balancedness([4, 0, 0, 0])).toBe(0.25);
    expect(balancedness([3, 1])).toBeCloseTo(2 / 3);
    expect(balancedness([0, 0])).toBe(1);
  });

  it('sums GPU-contiguous slots, and splits logical load over replicas', () => {
    expect(Array.from(gpuLoadsOf([1, 2, 3, 4], 2))).toEqual([3, 7]);
    expect(() => gpuLoadsOf([1, 2, 3], 2)).toThrow(/3 slots do not split over 2 GPUs/);
    expect(Array.from(slotLoadsFromLogical([10, 4], [0, 1, 0], [2, 1]))).toEqual([5, 4, 5]);
  });
});

describe('EplbRecorder', () => {
  it('keeps a sliding window of passes', () => {
    const rec = new EplbRecorder({ numLayers: 1, numPhysical: 2, windowSize: 2 });
    rec.record([1, 0]);
    rec.record([0, 2]);
    expect(Array.from(rec.physicalLoad())).toEqual([1, 2]);
    rec.record([4, 4]); // evicts [1, 0]
    expect(Array.from(rec.physicalLoad())).toEqual([4, 6]);
    rec.record([0, 0]); // evicts [0, 2]
    expect(Array.from(rec.physicalLoad())).toEqual([4, 4]);
    expect(rec.size).toBe(2);
    expect(rec.passes).toBe(4);
    rec.reset();
    expect(Array.from(rec.physicalLoad())).toEqual([0, 0]);
    expect(rec.passes).toBe(0);
  });

  it('assembles a pass from the physical ids each layer dispatched', () => {
    const rec = new EplbRecorder({ numLayers: 2, numPhysical: 3, windowSize: 4 });
    rec.recordTopk(0, Int32Array.of(0, 2, -1, 2));
    rec.recordTopk(1, [1]);
    rec.recordTopk(0, [0]);
    rec.endPass();
    expect(Array.from(rec.physicalLoad())).toEqual([2, 0, 2, 0, 1, 0]);
    expect(() => rec.recordTopk(2, [0])).toThrow(/layer 2 is out of range/);
    expect(() => countPhysical([3], 3)).toThrow(/physical id 3 at index 0 is out of range/);
  });

  it('maps counts back to logical experts through phy2log', () => {
    const map = ExpertLocationMap.fromPhy2Log([[0, 1, 0, 2]], { numLogical: 3, numRanks: 2 });
    const rec = new EplbRecorder({ numLayers: 1, numPhysical: 4, windowSize: 8 });
    rec.record([5, 1, 3, 7]);
    expect(rec.logicalLoad(map)).toEqual([[8, 1, 7]]);
    expect(rec.balancedness(2)).toEqual({ perLayer: [0.8], mean: 0.8 });
    const other = ExpertLocationMap.trivial({ numLayers: 2, numLogical: 3, numPhysical: 4, numRanks: 2 });
    expect(() => rec.logicalLoad(other)).toThrow(/map has \[2, 4\], recorder has \[1, 4\]/);
  });

  it('refuses bad shapes', () => {
    expect(() => new EplbRecorder({ numLayers: 0, numPhysical: 4, windowSize: 1 })).toThrow(/EplbRecorder numLayers: expected an integer >= 1, got number 0/);
    const rec = new EplbRecorder({ numLayers: 1, numPhysical: 4, windowSize: 1 });
    expect(() => rec.record([1, 2])).toThrow(/expected 4 counts \(\[1, 4\]\), got 2/);
  });
});
