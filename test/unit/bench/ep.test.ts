import { describe, expect, it } from 'vitest';

import { compareWithDeepEp } from '../../../src/bench/ep.js';

const row = { gbps: 300, kernelUs: 40 };

describe('bench ep: DeepEP comparison by rank count', () => {
  it('at 4 ranks uses the same-machine figures with the issue goals', () => {
    expect(compareWithDeepEp('normal', 'dispatch-bf16', 24, row, 4)).toEqual({ value: 261, unit: 'GB/s', ratio: 1.149, goal: 1.4 });
    expect(compareWithDeepEp('normal', 'combine-bf16', 24, row, 4)).toEqual({ value: 355, unit: 'GB/s', ratio: 0.845, goal: 1.2 });
    expect(compareWithDeepEp('normal', 'dispatch-fp8-cached', 48, row, 4)).toEqual({ value: 371, unit: 'GB/s', ratio: 0.809 });
    expect(compareWithDeepEp('low-latency', 'll-dispatch', undefined, row, 4)).toEqual({ value: 33, unit: 'us', ratio: 1.212, goal: 0.7 });
    expect(compareWithDeepEp('normal', 'dispatch-bf16', 128, row, 4)).toBeUndefined();
  });

  it("at 8 ranks uses DeepEP's published EP8 figures, without goals", () => {
    expect(compareWithDeepEp('normal', 'dispatch-fp8', 24, row, 8)).toEqual({ value: 153, unit: 'GB/s', ratio: 1.961 });
    expect(compareWithDeepEp('normal', 'combine-bf16', 24, row, 8)).toEqual({ value: 158, unit: 'GB/s', ratio: 1.899 });
    expect(compareWithDeepEp('normal', 'dispatch-bf16', 24, row, 8)).toBeUndefined();
    expect(compareWithDeepEp('low-latency', 'll-combine', undefined, row, 8)).toEqual({ value: 114, unit: 'us', ratio: 0.351 });
  });

  it('has no figures at other rank counts', () => {
    expect(compareWithDeepEp('normal', 'dispatch-bf16', 24, row, 2)).toBeUndefined();
    expect(compareWithDeepEp('low-latency', 'll-dispatch', undefined, row, 2)).toBeUndefined();
  });
});
