import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { EpBuffer } from '../../../src/ep/buffer.js';
import type { LowLatencyHandle } from '../../../src/ep/leases.js';
import type { ErrorCode } from '../../../src/errors.js';
import { closeAll, onAllRanks, simulatedBuffers } from '../../helpers/ep-sim.js';
import { expectWideepError } from '../../helpers/expect-error.js';
import { SeededRandom, fromRouting, randomBf16 } from '../../helpers/random.js';

const rng = new SeededRandom(3);
const inputs = () => ({ x: randomBf16(rng, [3, 128]), ...fromRouting([0, 5, 1, 2, 7, -1], [0.5, 0.5, 1, 1, 0.25, 0], 3, 2) });
const llArgs = () => ({ ...inputs(), maxTokensPerRank: 4, numExperts: 8, useFp8: false });

let buffers: EpBuffer[];
beforeEach(async () => {
  buffers = await simulatedBuffers(2, { hidden: 128, numExperts: 8, maxTokensPerRank: 4, numRecvSlots: 2, lowLatency: { maxTokensPerRank: 4 }, timeoutMs: 5000 });
});
afterEach(() => closeAll(buffers));

const dispatchAll = () => onAllRanks(buffers, (b) => b.dispatch(inputs()));
const b0 = () => buffers[0]!;

/**
 * Runs `call` on every rank, where it fails alike (each rank takes part in
 * the call, flagged, and gets its own error), and checks each error.
 */
async function failsOnEveryRank(call: (b: EpBuffer, r: number) => Promise<unknown>, code: ErrorCode, ...fragments: string[]): Promise<void> {
  for (const outcome of await Promise.allSettled(buffers.map((b, r) => call(b, r)))) {
    await expectWideepError(Promise.reject(outcome.status === 'rejected' ? outcome.reason : undefined), code, ...fragments);
  }
}

describe('normal-mode receive slots', () => {
  test('a third live result is ERR_BUSY; release frees a slot', async () => {
    const first = await dispatchAll();
    const second = await dispatchAll();
    await failsOnEveryRank((b) => b.dispatch(inputs()), 'ERR_BUSY', 'all 2 receive slots are leased', '2 dispatch results are alive', 'release()', 'numRecvSlots');
    first[0]!.release();
    first[0]!.release(); // idempotent
    first[1]!.handle.release();
    expect(first[0]!.handle.released).toBe(true);
    const third = await dispatchAll();
    for (const results of [second, third]) for (const r of results) r[Symbol.dispose]();
  });

  test('combine releases its handle, keepHandle keeps it, the released handle is ERR_CLOSED', async () => {
    const res = await dispatchAll();
    await onAllRanks(buffers, (b, r) => b.combine({ x: res[r]!.recvX, handle: res[r]!.handle, keepHandle: true }));
    expect(res[0]!.handle.released).toBe(false);
    await onAllRanks(buffers, (b, r) => b.combine({ x: res[r]!.recvX, handle: res[r]!.handle }));
    expect(res[0]!.handle.released).toBe(true);
    // A combine took the handle already, so the refusal is no call: rank 0 alone.
    await expectWideepError(b0().combine({ x: res[0]!.recvX, handle: res[0]!.handle }), 'ERR_CLOSED', 'released by combine()', 'keepHandle: true');
    res[0]!.handle.release(); // no-op
    // Both slots are free again.
    await dispatchAll();
    await dispatchAll();
  });

  test('an explicitly released handle says so', async () => {
    const res = await dispatchAll();
    res.forEach((d) => d.release());
    await failsOnEveryRank((b, r) => b.combine({ x: res[r]!.recvX, handle: res[r]!.handle }), 'ERR_CLOSED', 'released by release()');
  });

  test('a cached dispatch takes its own slot and shares the routing', async () => {
    const res = await dispatchAll();
    const cached = await onAllRanks(buffers, (b, r) => b.dispatch({ x: randomBf16(rng, [3, 128]), handle: res[r]!.handle }));
    expect(cached[0]!.handle.numRecvTokens).toBe(res[0]!.handle.numRecvTokens);
    await failsOnEveryRank((b) => b.dispatch(inputs()), 'ERR_BUSY', '2 dispatch results are alive');
    res.forEach((r) => r.release()); // the cached handle's routing outlives its source
    await onAllRanks(buffers, (b, r) => b.combine({ x: cached[r]!.recvX, handle: cached[r]!.handle }));
  });

  test('a failed collective gives its slot back', async () => {
    const failed = await Promise.allSettled(buffers.map((b, r) => b.dispatch({ ...inputs(), numWorstTokens: r === 0 ? 1 : 0 })));
    expect(failed.map((f) => f.status)).toEqual(['rejected', 'rejected']);
    await dispatchAll();
    await dispatchAll();
  });

  test('close releases every lease', async () => {
    const res = await dispatchAll();
    const ll = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    const hooked = await onAllRanks(buffers, (b) => b.lowLatencyDispatch({ ...llArgs(), returnRecvHook: true }));
    await closeAll(buffers);
    expect(res[0]!.handle.released).toBe(true);
    expect(ll[0]!.handle.released).toBe(true);
    await expectWideepError(hooked[0]!.hook!(), 'ERR_CLOSED', 'lowLatencyDispatch hook: this EpBuffer is closed');
    await expectWideepError(b0().combine({ x: res[0]!.recvX, handle: res[0]!.handle }), 'ERR_CLOSED', 'this EpBuffer is closed');
  });
});

describe('low-latency buffers', () => {
  const y = () => randomBf16(rng, [4, 8, 128]);

  test('two results may be alive; a third dispatch is ERR_BUSY and still takes its turn, ending the result there', async () => {
    const routing = inputs();
    const combine = (b: EpBuffer, handle: LowLatencyHandle) => b.lowLatencyCombine({ y: y(), topkIdx: routing.topkIdx, topkWeights: routing.topkWeights, handle });
    const a = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs())); // buffer 0
    const bb = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs())); // buffer 1
    await failsOnEveryRank((b) => b.lowLatencyDispatch(llArgs()), 'ERR_BUSY', 'two low-latency results are alive');
    // The failed call took buffer 0's turn (on cuda the peers' rows of it land there): a's results ended.
    expect(a.map((d) => d.handle.released)).toEqual([true, true]);
    await failsOnEveryRank((b, r) => combine(b, a[r]!.handle), 'ERR_CLOSED', 'a lowLatencyDispatch that failed on this rank took its buffer');
    await failsOnEveryRank((b) => b.cleanLowLatencyBuffer(), 'ERR_BUSY', 'alive on rank 0 (1), rank 1 (1)', 'every rank refused');
    await onAllRanks(buffers, (b, r) => combine(b, bb[r]!.handle));
    expect(bb[0]!.handle.released).toBe(true);
    await failsOnEveryRank((b, r) => combine(b, bb[r]!.handle), 'ERR_CLOSED', 'released by lowLatencyCombine()');
    // Buffers alternate: with c (buffer 1) alive, freeing d (buffer 0) does not make room for the next turn (buffer 1).
    const c = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    const d = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    d.forEach((r) => r.release());
    await failsOnEveryRank((b) => b.lowLatencyDispatch(llArgs()), 'ERR_BUSY', 'buffer 1 still belongs to the result');
    expect(c.map((r) => r.handle.released)).toEqual([true, true]);
    await onAllRanks(buffers, (b) => b.cleanLowLatencyBuffer());
    const e = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    const f = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    [...e, ...f].forEach((r) => r[Symbol.dispose]());
  });

  test('hooks run once; a hooked dispatch: combine before its hook is ERR_INVALID_ARG, release without it receives', async () => {
    const routing = inputs();
    const combineArgs = (handle: LowLatencyHandle) => ({ y: y(), topkIdx: routing.topkIdx, topkWeights: routing.topkWeights, handle });
    const early = await onAllRanks(buffers, (b) => b.lowLatencyDispatch({ ...llArgs(), returnRecvHook: true }));
    await failsOnEveryRank((b, r) => b.lowLatencyCombine(combineArgs(early[r]!.handle)), 'ERR_INVALID_ARG', 'receive hook has not been called', 'await hook()');
    // That combine was a call on every rank: it ended the results, their receives running first.
    expect(early.map((d) => d.handle.released)).toEqual([true, true]);
    await expectWideepError(early[0]!.hook!(), 'ERR_INVALID_ARG', 'already called');
    const hooked = await onAllRanks(buffers, (b) => b.lowLatencyDispatch({ ...llArgs(), returnRecvHook: true }));
    await Promise.all(hooked.map((r) => r.hook!()));
    await expectWideepError(hooked[0]!.hook!(), 'ERR_INVALID_ARG', 'already called');
    const combined = await onAllRanks(buffers, (b, r) => b.lowLatencyCombine({ ...combineArgs(hooked[r]!.handle), returnRecvHook: true }));
    await Promise.all(combined.map((r) => r.hook!()));
    await expectWideepError(combined[0]!.hook!(), 'ERR_INVALID_ARG', 'already called');
    // Released without its hook: the receive runs first, and the buffers go on in turn.
    const unreceived = await onAllRanks(buffers, (b) => b.lowLatencyDispatch({ ...llArgs(), returnRecvHook: true }));
    unreceived.forEach((r) => r.release());
    await expectWideepError(unreceived[0]!.hook!(), 'ERR_INVALID_ARG', 'already called');
    const next = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    next.forEach((r) => r.release());
  });

  test('a hooked combine: the handle is not combined twice, and releasing it without the hook receives', async () => {
    const routing = inputs();
    const combineArgs = (handle: LowLatencyHandle) => ({ y: y(), topkIdx: routing.topkIdx, topkWeights: routing.topkWeights, handle, returnRecvHook: true });
    const dispatched = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    const pending = onAllRanks(buffers, (b, r) => b.lowLatencyCombine(combineArgs(dispatched[r]!.handle)));
    // Also while the first combine is still in flight. The combine of that dispatch is taken, so the refusal is no call.
    await expectWideepError(b0().lowLatencyCombine(combineArgs(dispatched[0]!.handle)), 'ERR_INVALID_ARG', 'a combine has taken it already');
    const combined = await pending;
    expect(dispatched[0]!.handle.released).toBe(false);
    await expectWideepError(b0().lowLatencyCombine(combineArgs(dispatched[0]!.handle)), 'ERR_INVALID_ARG', 'a combine has taken it already');
    dispatched.forEach((r) => r.handle.release());
    await expectWideepError(combined[0]!.hook!(), 'ERR_INVALID_ARG', 'already called');
    const next = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    await onAllRanks(buffers, (b, r) => b.lowLatencyCombine({ ...combineArgs(next[r]!.handle), returnRecvHook: false }));
    expect(next[0]!.handle.released).toBe(true);
  });
});
