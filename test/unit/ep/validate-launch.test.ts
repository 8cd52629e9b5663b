// What the launch settings must satisfy before anything is taken: the SM budget, and the streams.
import { describe, expect, it, test } from 'vitest';
import { checkStreamOptions, resolveConfig, validateCombine, validateDispatch, validateLowLatencyDispatch } from '../../../src/ep/validate.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import type { DispatchRouting } from '../../../src/ep/backend.js';
import { expectWideepError } from '../../helpers/expect-error.js';
import { SeededRandom, fromRouting, randomBf16 } from '../../helpers/random.js';

// The cuda backend bounds numSms by the device's SM count (all blocks of a launch resident).
describe('numSms against the backend bound', () => {
  const config = resolveConfig(0, 2, 'cpu', { hidden: 256, numExperts: 8, maxTokensPerRank: 8 });
  const rng = new SeededRandom(3);
  const routed = () => ({ x: randomBf16(rng, [4, 256]), ...fromRouting([0, 1, 2, 3, 4, 5, 6, 7], new Array(8).fill(0.5), 4, 2) });
  const routing = { numRows: 6, numTokens: 4, topk: 2 } as unknown as DispatchRouting;

  test('dispatch and combine accept up to the bound and refuse more, before anything runs', async () => {
    expect(validateDispatch(config, 'cpu', { ...routed(), numSms: 132 }, undefined, 132).numSms).toBe(132);
    await expectWideepError(() => validateDispatch(config, 'cpu', { ...routed(), numSms: 133 }, undefined, 132), 'ERR_INVALID_ARG', 'dispatch: numSms', '[1, 132]', '133');
    const x = randomBf16(rng, [6, 256]);
    expect(validateCombine(config, 'cpu', { x, handle: {} as never, numSms: 132, numSendSms: 131 }, routing, 132).numSendSms).toBe(131);
    await expectWideepError(() => validateCombine(config, 'cpu', { x, handle: {} as never, numSms: 200 }, routing, 132), 'ERR_INVALID_ARG', 'combine: numSms', '[1, 132]');
  });

  test('without a bound (the cpu backend) any positive numSms passes', () => {
    expect(validateDispatch(config, 'cpu', { ...routed(), numSms: 1000 }, undefined).numSms).toBe(1000);
  });
});

describe('stream options of a GPU buffer', () => {
  it('are checked before anything is taken: a Stream and an Event, open, on the buffer GPU', () => {
    expect(() => checkStreamOptions('dispatch', 'cuda:0', { stream: {} as never })).toThrow(/dispatch: stream: expected a Stream/);
    expect(() => checkStreamOptions('combine', 'cuda:1', { previousEvent: 5 as never })).toThrow(/combine: previousEvent: expected a Event/);
    expect(() => checkStreamOptions('dispatch', 'cuda:0', {})).not.toThrow();
  });

  it('are ignored by the cpu backend, which has no streams', () => {
    expect(() => checkStreamOptions('dispatch', 'cpu', { stream: {} as never })).not.toThrow();
  });
});

describe('device rows', () => {
  it('must start on a 16-byte boundary (the kernels move 16-byte vectors)', () => {
    const config = resolveConfig(0, 2, 'cuda', { hidden: 256, numExperts: 8, maxTokensPerRank: 8, lowLatency: { maxTokensPerRank: 4 }, device: 0 });
    // Device storage as the validation sees it: an address and a size (nothing here touches a GPU).
    const storage = { device: 0, ptr: 0x10000n, byteLength: 1 << 20, closed: false, close: () => {} };
    const rows = (byteOffset: number) => Tensor.fromDeviceStorage(storage, 'bf16', [4, 256], byteOffset, false);
    const topkIdx = Tensor.fromDeviceStorage(storage, 'i32', [4, 2], 1 << 19, false);
    const args = (x: Tensor) => ({ x, topkIdx, maxTokensPerRank: 4, numExperts: 8 });
    expect(() => validateLowLatencyDispatch(config, 'cuda:0', args(rows(8)))).toThrow(/lowLatencyDispatch: x: device rows must start on a 16-byte boundary; this view starts 8 bytes past one/);
    expect(() => validateLowLatencyDispatch(config, 'cuda:0', args(rows(32)))).not.toThrow();
    const x = Tensor.fromDeviceStorage(storage, 'fp8e4m3', [4, 256], 0, false);
    const xScales = Tensor.fromDeviceStorage(storage, 'f32', [4, 2], 4100, false);
    const topkWeights = Tensor.fromDeviceStorage(storage, 'f32', [4, 2], 1 << 18, false);
    expect(() => validateDispatch(config, 'cuda:0', { x, xScales, topkIdx, topkWeights, numWorstTokens: 16 }, undefined)).toThrow(
      /dispatch: xScales: device rows must start on a 16-byte boundary; this view starts 4 bytes past one/,
    );
  });
});
