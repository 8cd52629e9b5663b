import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { EpBuffer } from '../../../src/ep/buffer.js';
import type { ErrorCode } from '../../../src/errors.js';
import type { Stream } from '../../../src/cuda/stream.js';
import type { DispatchOptions } from '../../../src/ep/types.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import { closeAll, onAllRanks, simulatedBuffers } from '../../helpers/ep-sim.js';
import { expectWideepError } from '../../helpers/expect-error.js';
import { SeededRandom, fromRouting, randomBf16, randomF32, randomFp8 } from '../../helpers/random.js';

// hidden 256, E = 8 over 2 ranks (L = 4), maxTokensPerRank 8, maxTopk 8, low-latency M = 4.
const OPTIONS = { hidden: 256, numExperts: 8, maxTokensPerRank: 8, maxTopk: 8, lowLatency: { maxTokensPerRank: 4 }, timeoutMs: 5000 };
const rng = new SeededRandom(7);

/** A stream as seen by validation while a CUDA graph is being captured on it. */
const CAPTURING = { isCapturing: () => true } as unknown as Stream;

function inputs(T = 4, H = 256) {
  const idx = Array.from({ length: T * 2 }, (_, i) => (i * 3) % 8);
  return { x: randomBf16(rng, [T, H]), ...fromRouting(idx, new Array(T * 2).fill(0.5), T, 2) };
}

let buffers: EpBuffer[];
let other: EpBuffer[];
const b0 = () => buffers[0]!;

beforeAll(async () => {
  buffers = await simulatedBuffers(2, OPTIONS);
  other = await simulatedBuffers(2, OPTIONS);
});
afterAll(async () => {
  await closeAll(buffers);
  await closeAll(other);
});

/** Proves that the failed calls left the ranks in step: both still meet. */
async function ranksStillInStep(): Promise<void> {
  const results = await onAllRanks(buffers, (b) => b.dispatch(inputs()));
  await onAllRanks(buffers, (b, r) => b.combine({ x: results[r]!.recvX, handle: results[r]!.handle }));
}

/** The error a settled promise rejected with (a fulfilled one fails the caller's expectWideepError). */
const reason = (s: PromiseSettledResult<unknown>) => Promise.reject(s.status === 'rejected' ? s.reason : undefined);

/**
 * Every rank makes the call, rank 0 with a bad argument: rank 0 gets its own
 * error before anything moves, and its peer ERR_PEER naming it and its code
 * (a rank that fails locally still takes part in the call, flagged).
 */
async function failsOnRank0(kind: string, call: (b: EpBuffer, r: number) => Promise<unknown>, code: ErrorCode, ...fragments: string[]): Promise<void> {
  const [mine, peer] = await Promise.allSettled(buffers.map((b, r) => call(b, r)));
  await expectWideepError(reason(mine!), code, ...fragments);
  await expectWideepError(reason(peer!), 'ERR_PEER', `rank 0 failed this ${kind} (${code})`, 'nothing moved', 'stays usable');
}

describe('dispatch argument errors (rank 0 gets its own, rank 1 ERR_PEER naming it)', () => {
  const base = (): DispatchOptions => inputs();
  const cases: [string, () => DispatchOptions, ErrorCode, ...string[]][] = [
    ['x is not a tensor', () => ({ ...base(), x: [1, 2] as unknown as Tensor }), 'ERR_INVALID_ARG', 'x: expected a Tensor', 'array of length 2'],
    ['x is f32', () => ({ ...base(), x: randomF32(rng, [4, 256]) }), 'ERR_DTYPE', 'expected dtype bf16 or fp8e4m3, got f32'],
    ['x is 1-d', () => ({ ...base(), x: randomBf16(rng, [256]) }), 'ERR_SHAPE', 'expected a 2-d tensor [T, H]', 'got shape [256]'],
    ['H is not a multiple of 8', () => ({ ...inputs(4, 12) }), 'ERR_SHAPE', 'multiple of 8', 'H = 12'],
    ['H exceeds hidden', () => ({ ...inputs(4, 512) }), 'ERR_INVALID_ARG', "exceeds the buffer's hidden = 256", 'H = 512'],
    ['T exceeds maxTokensPerRank', () => inputs(9), 'ERR_INVALID_ARG', "maxTokensPerRank = 8", 'T = 9'],
    ['counts awaited during a graph capture', () => ({ ...base(), stream: CAPTURING }), 'ERR_UNSUPPORTED', 'needs numWorstTokens or a handle'],
    ['fp8 H is not a multiple of 128', () => ({ ...base(), x: Tensor.empty([4, 64], 'fp8e4m3'), xScales: Tensor.empty([4, 1], 'f32') }), 'ERR_SHAPE', 'multiple of 128', 'H = 64'],
    ['fp8 without scales', () => ({ ...base(), x: randomFp8(rng, 4, 256).x }), 'ERR_INVALID_ARG', 'xScales: required with fp8e4m3 x', 'f32 [4, 2]'],
    ['bf16 with scales', () => ({ ...base(), xScales: randomF32(rng, [4, 2]) }), 'ERR_INVALID_ARG', 'only fp8e4m3 x takes scales'],
    ['scales of the wrong shape', () => ({ ...base(), x: randomFp8(rng, 4, 256).x, xScales: randomF32(rng, [4, 1]) }), 'ERR_SHAPE', 'expected shape [4, 2] ([T, H/128]), got [4, 1]'],
    ['scales of the wrong dtype', () => ({ ...base(), x: randomFp8(rng, 4, 256).x, xScales: randomBf16(rng, [4, 2]) }), 'ERR_DTYPE', 'xScales: expected dtype f32, got bf16'],
    ['topkIdx missing', () => ({ ...base(), topkIdx: undefined }), 'ERR_INVALID_ARG', 'topkIdx: required without a handle'],
    ['topkIdx is f32', () => ({ ...base(), topkIdx: randomF32(rng, [4, 2]) }), 'ERR_DTYPE', 'topkIdx: expected dtype i32 or i64, got f32'],
    ['topkIdx rows differ from x', () => ({ ...base(), ...fromRouting([0, 1, 2, 3, 4, 5], [1, 1, 1, 1, 1, 1], 3, 2) }), 'ERR_SHAPE', 'expected shape [4, 2] ([T, k]), got [3, 2]'],
    ['k exceeds maxTopk', () => ({ ...base(), ...fromRouting(new Array(36).fill(0), new Array(36).fill(1), 4, 9) }), 'ERR_INVALID_ARG', "k = 9 exceeds the buffer's maxTopk = 8"],
    ['expert id too large', () => ({ ...base(), ...fromRouting([0, 1, 8, 2, 0, 0, 0, 0], new Array(8).fill(1), 4, 2) }), 'ERR_INVALID_ARG', 'topkIdx[1, 0] = 8', '[0, 8)', 'numExperts = 8'],
    ['expert id below -1', () => ({ ...base(), ...fromRouting([0, 1, 2, 3, 4, 5, 6, -2], new Array(8).fill(1), 4, 2, 'i64') }), 'ERR_INVALID_ARG', 'topkIdx[3, 1] = -2'],
    ['topkWeights missing', () => ({ ...base(), topkWeights: undefined }), 'ERR_INVALID_ARG', 'topkWeights: required without a handle'],
    ['topkWeights of the wrong shape', () => ({ ...base(), topkWeights: randomF32(rng, [4, 3]) }), 'ERR_SHAPE', 'topkWeights: expected shape [4, 2] ([T, k]), got [4, 3]'],
    ['topkWeights of the wrong dtype', () => ({ ...base(), topkWeights: randomBf16(rng, [4, 2]) }), 'ERR_DTYPE', 'topkWeights: expected dtype f32, got bf16'],
    ['numExperts differs', () => ({ ...base(), numExperts: 16 }), 'ERR_INVALID_ARG', "numExperts = 8", 'got number 16'],
    ['expertAlignment 0', () => ({ ...base(), expertAlignment: 0 }), 'ERR_INVALID_ARG', 'expertAlignment', 'got number 0'],
    ['numWorstTokens negative', () => ({ ...base(), numWorstTokens: -1 }), 'ERR_INVALID_ARG', 'numWorstTokens'],
    ['numWorstTokens past a receive slot (R * maxTokensPerRank rows)', () => ({ ...base(), numWorstTokens: 17 }), 'ERR_INVALID_ARG', 'numWorstTokens', '[0, 16]'],
    ['layout for another T', () => { const a = base(); return { ...a, layout: b0().getDispatchLayout(inputs(3).topkIdx) }; }, 'ERR_SHAPE', 'layout.isTokenInRank: expected shape [4, 2] ([T, R]), got [3, 2]'],
    [
      'layout of another routing',
      () => ({ ...base(), layout: b0().getDispatchLayout(fromRouting(new Array(8).fill(0), new Array(8).fill(1), 4, 2).topkIdx) }),
      'ERR_INVALID_ARG',
      'does not belong to this topkIdx',
    ],
  ];
  test.each(cases)('%s', async (_, make, code, ...fragments) => {
    await failsOnRank0('dispatch', (b, r) => b.dispatch(r === 0 ? make() : inputs()), code, ...fragments);
  });
  test('afterwards the ranks are still in step', ranksStillInStep);

  test('getDispatchLayout is refused during a CUDA-graph capture (its outputs would live in the graph)', async () => {
    await expectWideepError(() => b0().getDispatchLayout(inputs().topkIdx, undefined, { stream: CAPTURING }), 'ERR_UNSUPPORTED', 'getDispatchLayout: not during a CUDA-graph capture');
  });
});

describe('handle errors', () => {
  test('a handle with topkIdx, from another buffer, of the wrong kind, released, with the wrong T', async () => {
    const results = await onAllRanks(buffers, (b) => b.dispatch(inputs()));
    const cachedArgs = (r: number) => ({ x: inputs().x, handle: results[r]!.handle });
    const fails = (call: (b: EpBuffer, r: number) => Promise<unknown>, code: ErrorCode, ...fragments: string[]) => failsOnRank0('dispatch', call, code, ...fragments);
    await fails((b, r) => b.dispatch(r === 0 ? { ...inputs(), handle: results[0]!.handle } : cachedArgs(r)), 'ERR_INVALID_ARG', 'topkIdx: must be omitted with a handle');
    await fails((b, r) => b.dispatch(r === 0 ? { x: inputs(3).x, handle: results[0]!.handle } : cachedArgs(r)), 'ERR_SHAPE', "expected 4 rows (the handle's token count)");
    await fails((b, r) => b.dispatch({ ...cachedArgs(r), numWorstTokens: r === 0 ? results[0]!.handle.numRows + 1 : 0 }), 'ERR_INVALID_ARG', 'cached dispatch keeps');
    // Another buffer's handle, on that buffer: its ranks take part as in any dispatch.
    const [mine, peer] = await Promise.allSettled(other.map((b, r) => b.dispatch(r === 0 ? cachedArgs(0) : inputs())));
    await expectWideepError(reason(mine!), 'ERR_INVALID_ARG', 'belongs to another EpBuffer');
    await expectWideepError(reason(peer!), 'ERR_PEER', 'rank 0 failed this dispatch (ERR_INVALID_ARG)');
    // A combine on a buffer with no live dispatch result names no dispatch: rank 0 fails alone, nothing is sent.
    await expectWideepError(other[0]!.combine({ x: results[0]!.recvX, handle: results[0]!.handle }), 'ERR_INVALID_ARG', 'belongs to another EpBuffer');
    // A combine whose handle is unusable takes part in the combine of the oldest dispatch no combine took.
    await failsOnRank0('combine', (b, r) => b.combine({ x: results[r]!.recvX, handle: r === 0 ? ({} as never) : results[r]!.handle }), 'ERR_INVALID_ARG', 'a DispatchHandle');
    expect(results.map((d) => d.handle.released)).toEqual([true, true]); // the call ended both handles
    // A combine took the handle already, so the refusal is no call: rank 0 alone.
    await expectWideepError(b0().combine({ x: results[0]!.recvX, handle: results[0]!.handle }), 'ERR_CLOSED', 'released by combine()', 'keepHandle: true');
    await expectWideepError(b0().combine({ x: results[0]!.recvX } as never), 'ERR_INVALID_ARG', 'handle: expected a DispatchHandle', 'undefined');
    await failsOnRank0('dispatch', (b, r) => b.dispatch(r === 0 ? cachedArgs(0) : inputs()), 'ERR_CLOSED', 'released by combine()', 'keepHandle: true');
    await ranksStillInStep();
  });
});

describe('combine argument errors', () => {
  test('x, topkWeights and bias are checked against the handle', async () => {
    const results = await onAllRanks(buffers, (b) => b.dispatch(inputs()));
    const { handle, recvX } = results[0]!;
    const N = handle.numRows;
    const cases: [Parameters<EpBuffer['combine']>[0], ErrorCode, ...string[]][] = [
      [{ x: randomBf16(rng, [N + 1, 256]), handle }, 'ERR_SHAPE', `expected shape [${N}, 256] (`, 'rows of the handle'],
      [{ x: randomF32(rng, [N, 256]), handle }, 'ERR_DTYPE', 'x: expected dtype bf16, got f32'],
      [{ x: randomBf16(rng, [N, 512]), handle }, 'ERR_INVALID_ARG', "exceeds the buffer's hidden = 256"],
      [{ x: recvX, handle, topkWeights: randomF32(rng, [N, 3]) }, 'ERR_SHAPE', `topkWeights: expected shape [${N}, 2] ([N, k])`],
      [{ x: recvX, handle, bias: randomBf16(rng, [3, 256]) }, 'ERR_SHAPE', 'bias: expected shape [4, 256] ([T, H]), got [3, 256]'],
      [{ x: recvX, handle, bias: [randomBf16(rng, [4, 256]), randomF32(rng, [4, 256])] }, 'ERR_DTYPE', 'bias[1]: expected dtype bf16, got f32'],
      [{ x: recvX, handle, bias: [randomBf16(rng, [4, 256])] as never }, 'ERR_INVALID_ARG', 'a bf16 [T, H] tensor or a pair of them'],
      [{ x: recvX, handle, out: randomBf16(rng, [4, 128]) }, 'ERR_SHAPE', 'out: expected shape [4, 256] ([T, H]), got [4, 128]'],
      [{ x: recvX, handle, out: randomF32(rng, [4, 256]) }, 'ERR_DTYPE', 'out: expected dtype bf16, got f32'],
      [{ x: recvX, handle, numSendSms: 0 }, 'ERR_INVALID_ARG', 'numSendSms'],
      [{ x: recvX, handle, numSendSms: 1.5 }, 'ERR_INVALID_ARG', 'numSendSms'],
      [{ x: recvX, handle, numSendSms: 24 }, 'ERR_INVALID_ARG', 'numSendSms: expected fewer than numSms (24): the other SMs reduce', '24'],
      [{ x: recvX, handle, numSms: 8, numSendSms: 8 }, 'ERR_INVALID_ARG', 'fewer than numSms (8)'],
    ];
    // During a graph capture, outputs must not be allocated inside the graph.
    cases.push([{ x: recvX, handle, stream: CAPTURING }, 'ERR_UNSUPPORTED', 'pass out and no topkWeights']);
    cases.push([{ x: recvX, handle, topkWeights: results[0]!.recvTopkWeights, out: randomBf16(rng, [4, 256]), stream: CAPTURING }, 'ERR_UNSUPPORTED', 'pass out and no topkWeights']);
    // out overlapping x: both rows of one buffer.
    const shared = randomBf16(rng, [N + 4, 256]);
    cases.push([{ x: shared.narrow(0, N), handle, out: shared.narrow(N - 1, 4) }, 'ERR_INVALID_ARG', 'out: must not share memory with x']);
    // Each failed combine is a combine on every rank: keepHandle keeps both ranks' handles for the next case.
    const good = (r: number) => ({ x: results[r]!.recvX, handle: results[r]!.handle, keepHandle: true });
    for (const [args, code, ...fragments] of cases) {
      await failsOnRank0('combine', (b, r) => b.combine(r === 0 ? { ...args, keepHandle: true } : good(r)), code, ...fragments);
    }
    expect(results.map((d) => d.handle.released)).toEqual([false, false]);
    // Without keepHandle, a failed combine ends the handle on every rank, as a combine does.
    await failsOnRank0('combine', (b, r) => b.combine(r === 0 ? { x: recvX, handle, keepHandle: 1 as never } : { ...good(r), keepHandle: false }), 'ERR_INVALID_ARG', 'keepHandle: expected a boolean');
    expect(results.map((d) => d.handle.released)).toEqual([true, true]);
    // A captured combine that would end a handle made outside the capture.
    const again = await onAllRanks(buffers, (b) => b.dispatch(inputs()));
    await failsOnRank0(
      'combine',
      (b, r) => b.combine({ x: again[r]!.recvX, handle: again[r]!.handle, ...(r === 0 ? { out: randomBf16(rng, [4, 256]), stream: CAPTURING } : {}) }),
      'ERR_UNSUPPORTED',
      'capture the dispatch with it, or pass keepHandle',
    );
    await ranksStillInStep();
  });
});

describe('collective mismatches fail on every rank', () => {
  test('numWorstTokens too small for one rank', async () => {
    const res = await Promise.allSettled(buffers.map((b, r) => b.dispatch({ ...inputs(), numWorstTokens: r === 1 ? 1 : 16 })));
    for (const r of res) {
      expect(r.status).toBe('rejected');
      await expectWideepError(Promise.reject((r as PromiseRejectedResult).reason), 'ERR_INVALID_ARG', 'rank 1 receives', 'more than its numWorstTokens = 1');
    }
    await ranksStillInStep(); // and the slots were given back
  });

  test('ranks disagreeing on dtype or operation', async () => {
    const dtypes = await Promise.allSettled(
      buffers.map((b, r) => b.dispatch(r === 0 ? inputs() : { ...inputs(), ...randomFp8(rng, 4, 256) })),
    );
    for (const r of dtypes) await expectWideepError(Promise.reject((r as PromiseRejectedResult).reason), 'ERR_INVALID_ARG', 'ranks disagree on the dtype of x', 'rank 0 has bf16, rank 1 has fp8e4m3');
    const ops = await Promise.allSettled(
      buffers.map((b, r) => {
        const { x, topkIdx } = inputs();
        return r === 0 ? b.dispatch(inputs()) : b.lowLatencyDispatch({ x, topkIdx, maxTokensPerRank: 4, numExperts: 8, useFp8: false });
      }),
    );
    await expectWideepError(Promise.reject((ops[0] as PromiseRejectedResult).reason), 'ERR_PROTOCOL', 'rank 1 called lowLatencyDispatch where this rank called dispatch');
    await expectWideepError(Promise.reject((ops[1] as PromiseRejectedResult).reason), 'ERR_PROTOCOL', 'rank 0 called dispatch where this rank called lowLatencyDispatch');
    await ranksStillInStep();
  });

  test('ranks disagreeing on the low-latency top-k width (the GPU kernels read every source with their own k)', async () => {
    const res = await Promise.allSettled(
      buffers.map((b, r) => {
        const { x } = inputs();
        const { topkIdx } = fromRouting(new Array(4 * (r + 1)).fill(0), new Array(4 * (r + 1)).fill(1), 4, r + 1);
        return b.lowLatencyDispatch({ x, topkIdx, maxTokensPerRank: 4, numExperts: 8, useFp8: false });
      }),
    );
    for (const r of res) await expectWideepError(Promise.reject((r as PromiseRejectedResult).reason), 'ERR_INVALID_ARG', 'ranks disagree on the top-k width k', 'rank 0 has 1, rank 1 has 2');
    await ranksStillInStep();
  });
});

describe('low-latency argument errors', () => {
  const ll = () => {
    const { x, topkIdx } = inputs();
    return { x, topkIdx, maxTokensPerRank: 4, numExperts: 8 };
  };
  const cases: [string, () => Parameters<EpBuffer['lowLatencyDispatch']>[0], ErrorCode, ...string[]][] = [
    ['maxTokensPerRank differs', () => ({ ...ll(), maxTokensPerRank: 8 }), 'ERR_INVALID_ARG', "lowLatency.maxTokensPerRank = 4", 'got number 8'],
    ['numExperts differs', () => ({ ...ll(), numExperts: 4 }), 'ERR_INVALID_ARG', "numExperts = 8", 'got number 4'],
    ['numExperts missing', () => ({ ...ll(), numExperts: undefined as never }), 'ERR_INVALID_ARG', "numExperts = 8", 'got undefined'],
    ['useFp8 with H % 128 != 0', () => ({ ...ll(), ...inputs(4, 64) }), 'ERR_INVALID_ARG', 'useFp8 needs a row width H that is a multiple of 128', 'H = 64'],
    ['T exceeds maxTokensPerRank', () => ({ ...ll(), ...inputs(5) }), 'ERR_INVALID_ARG', 'T = 5 tokens exceeds maxTokensPerRank = 4'],
    ['x is fp8', () => ({ ...ll(), x: randomFp8(rng, 4, 256).x }), 'ERR_DTYPE', 'x: expected dtype bf16, got fp8e4m3'],
    ['topkIdx of another T', () => ({ ...ll(), topkIdx: inputs(3).topkIdx }), 'ERR_SHAPE', 'topkIdx: expected shape [4, 2]'],
    ['cumulativeRecvStats of the wrong shape', () => ({ ...ll(), cumulativeRecvStats: Tensor.zeros([2], 'i32') }), 'ERR_SHAPE', 'cumulativeRecvStats: expected shape [4] ([L])'],
    ['expert id out of range', () => ({ ...ll(), topkIdx: fromRouting([0, 9, 0, 0, 0, 0, 0, 0], new Array(8).fill(1), 4, 2).topkIdx }), 'ERR_INVALID_ARG', 'topkIdx[0, 1] = 9'],
  ];
  test.each(cases)('%s', async (_, make, code, ...fragments) => {
    await failsOnRank0('lowLatencyDispatch', (b, r) => b.lowLatencyDispatch(r === 0 ? make() : ll()), code, ...fragments);
  });

  test('low-latency combine checks y, topkIdx, out and the routing', async () => {
    const routing = inputs();
    const y = randomBf16(rng, [4, 8, 256]);
    const dispatch = () => onAllRanks(buffers, (b) => b.lowLatencyDispatch({ x: routing.x, topkIdx: routing.topkIdx, maxTokensPerRank: 4, numExperts: 8, useFp8: false }));
    const wrong = fromRouting([1, 0, 0, 0, 0, 0, 0, 0], new Array(8).fill(1), 4, 2).topkIdx; // token 0 did not go to expert 1
    const oneColumn = fromRouting([0, 0, 0, 0], [1, 1, 1, 1], 4, 1);
    const cases: [Partial<Parameters<EpBuffer['lowLatencyCombine']>[0]>, ErrorCode, ...string[]][] = [
      [{ y: randomBf16(rng, [4, 4, 256]) }, 'ERR_SHAPE', 'y: expected shape [4, 8, 256] ([L, R*M, H])'],
      [{ topkIdx: inputs(3).topkIdx }, 'ERR_SHAPE', "T (the handle's token count)"],
      [oneColumn, 'ERR_SHAPE', "k (the handle's top-k)"],
      [{ out: randomBf16(rng, [4, 128]) }, 'ERR_SHAPE', 'out: expected shape [4, 256]'],
      [{ stream: CAPTURING }, 'ERR_UNSUPPORTED', 'during a CUDA-graph capture pass out'],
      [{ zeroCopy: true } as never, 'ERR_INVALID_ARG', 'zeroCopy: no such option', 'reads y in place'],
      [{ topkIdx: wrong }, 'ERR_INVALID_ARG', 'topkIdx[0, 0] = 1', 'did not send token 0 to expert 1'],
    ];
    // Each failed combine is a combine on every rank, which ends both ranks' results: each case dispatches anew.
    for (const [change, code, ...fragments] of cases) {
      const results = await dispatch();
      const args = (r: number) => ({ y, topkIdx: routing.topkIdx, topkWeights: routing.topkWeights, handle: results[r]!.handle, ...(r === 0 ? change : {}) });
      await failsOnRank0('lowLatencyCombine', (b, r) => b.lowLatencyCombine(args(r)), code, ...fragments);
      expect(results.map((d) => d.handle.released)).toEqual([true, true]);
    }
    // A normal combine of a low-latency handle names no normal dispatch: rank 0 fails alone.
    const results = await dispatch();
    await expectWideepError(b0().combine({ x: y, handle: results[0]!.handle as never }), 'ERR_INVALID_ARG', 'a DispatchHandle');
    expect(results[0]!.handle.released).toBe(false);
    await onAllRanks(buffers, (b, r) => b.lowLatencyCombine({ y, topkIdx: routing.topkIdx, topkWeights: routing.topkWeights, handle: results[r]!.handle }));
    await ranksStillInStep();
  });

  test('a buffer without lowLatency refuses the low-latency methods', async () => {
    const plain = await simulatedBuffers(2, { hidden: 256, numExperts: 8, maxTokensPerRank: 8 });
    await expectWideepError(plain[0]!.lowLatencyDispatch(ll()), 'ERR_INVALID_ARG', 'created without options.lowLatency');
    await expectWideepError(plain[0]!.cleanLowLatencyBuffer(), 'ERR_INVALID_ARG', 'created without options.lowLatency');
    await closeAll(plain);
  });
});

describe('after close', () => {
  test('every method is ERR_CLOSED, close is idempotent', async () => {
    const bufs = await simulatedBuffers(2, OPTIONS);
    const results = await onAllRanks(bufs, (b) => b.dispatch(inputs()));
    await bufs[0]!.close();
    await bufs[0]!.close();
    await bufs[0]![Symbol.asyncDispose]();
    expect(bufs[0]!.closed).toBe(true);
    expect(results[0]!.handle.released).toBe(true);
    const b = bufs[0]!;
    await expectWideepError(b.dispatch(inputs()), 'ERR_CLOSED', 'dispatch: this EpBuffer is closed');
    await expectWideepError(b.combine({ x: results[0]!.recvX, handle: results[0]!.handle }), 'ERR_CLOSED', 'closed');
    await expectWideepError(() => b.getDispatchLayout(inputs().topkIdx), 'ERR_CLOSED', 'getDispatchLayout: this EpBuffer is closed');
    await expectWideepError(b.lowLatencyDispatch({ ...inputs(), maxTokensPerRank: 4, numExperts: 8 }), 'ERR_CLOSED', 'lowLatencyDispatch');
    await expectWideepError(b.cleanLowLatencyBuffer(), 'ERR_CLOSED', 'cleanLowLatencyBuffer');
    results[0]!.release(); // still idempotent
    expect(b.rank).toBe(0);
    await closeAll(bufs);
  });
});
