import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import type { EpBuffer } from '../../../src/ep/buffer.js';
import type { LowLatencyHandle } from '../../../src/ep/leases.js';
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

describe('normal-mode receive slots', () => {
  test('a third live result is ERR_BUSY; release frees a slot', async () => {
    const first = await dispatchAll();
    const second = await dispatchAll();
    await expectWideepError(b0().dispatch(inputs()), 'ERR_BUSY', 'all 2 receive slots are leased', '2 dispatch results are alive', 'release()', 'numRecvSlots');
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
    await expectWideepError(b0().combine({ x: res[0]!.recvX, handle: res[0]!.handle }), 'ERR_CLOSED', 'released by combine()', 'keepHandle: true');
    res[0]!.handle.release(); // no-op
    // Both slots are free again.
    await dispatchAll();
    await dispatchAll();
  });

  test('an explicitly released handle says so', async () => {
    const res = await dispatchAll();
    res[0]!.release();
    await expectWideepError(b0().combine({ x: res[0]!.recvX, handle: res[0]!.handle }), 'ERR_CLOSED', 'released by release()');
  });

  test('a cached dispatch takes its own slot and shares the routing', async () => {
    const res = await dispatchAll();
    const cached = await onAllRanks(buffers, (b, r) => b.dispatch({ x: randomBf16(rng, [3, 128]), handle: res[r]!.handle }));
    expect(cached[0]!.handle.numRecvTokens).toBe(res[0]!.handle.numRecvTokens);
    await expectWideepError(b0().dispatch(inputs()), 'ERR_BUSY', '2 dispatch results are alive');
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
  test('two results may be alive, a third is ERR_BUSY; combine and release free them', async () => {
    const a = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    const bb = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    await expectWideepError(b0().lowLatencyDispatch(llArgs()), 'ERR_BUSY', 'two low-latency results are alive');
    const refused = await Promise.allSettled(buffers.map((b) => b.cleanLowLatencyBuffer()));
    for (const outcome of refused) {
      await expectWideepError(Promise.reject((outcome as PromiseRejectedResult).reason), 'ERR_BUSY', 'alive on rank 0 (2), rank 1 (2)', 'every rank refused');
    }
    // Buffers alternate: with a (buffer 0) alive, freeing b (buffer 1) does not make room for the next turn (buffer 0).
    bb.forEach((r) => r.release());
    await expectWideepError(b0().lowLatencyDispatch(llArgs()), 'ERR_BUSY', 'buffer 0 still belongs to the result');
    const routing = inputs();
    await onAllRanks(buffers, (b, r) =>
      b.lowLatencyCombine({ y: randomBf16(rng, [4, 8, 128]), topkIdx: routing.topkIdx, topkWeights: routing.topkWeights, handle: a[r]!.handle }),
    );
    expect(a[0]!.handle.released).toBe(true);
    await expectWideepError(
      b0().lowLatencyCombine({ y: randomBf16(rng, [4, 8, 128]), topkIdx: routing.topkIdx, topkWeights: routing.topkWeights, handle: a[0]!.handle }),
      'ERR_CLOSED',
      'released by lowLatencyCombine()',
    );
    await onAllRanks(buffers, (b) => b.cleanLowLatencyBuffer());
    const c = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    const d = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    [...c, ...d].forEach((r) => r[Symbol.dispose]());
  });

  test('hooks run once; a hooked dispatch: combine before its hook is ERR_INVALID_ARG, release without it receives', async () => {
    const routing = inputs();
    const combineArgs = (handle: (typeof hooked)[number]['handle']) => ({
      y: randomBf16(rng, [4, 8, 128]),
      topkIdx: routing.topkIdx,
      topkWeights: routing.topkWeights,
      handle,
    });
    const hooked = await onAllRanks(buffers, (b) => b.lowLatencyDispatch({ ...llArgs(), returnRecvHook: true }));
    await expectWideepError(b0().lowLatencyCombine(combineArgs(hooked[0]!.handle)), 'ERR_INVALID_ARG', 'receive hook has not been called', 'await hook()');
    expect(hooked[0]!.handle.released).toBe(false);
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
    const combineArgs = (handle: LowLatencyHandle) => ({ y: randomBf16(rng, [4, 8, 128]), topkIdx: routing.topkIdx, topkWeights: routing.topkWeights, handle, returnRecvHook: true });
    const dispatched = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    const pending = onAllRanks(buffers, (b, r) => b.lowLatencyCombine(combineArgs(dispatched[r]!.handle)));
    // Also while the first combine is still in flight.
    await expectWideepError(b0().lowLatencyCombine(combineArgs(dispatched[0]!.handle)), 'ERR_INVALID_ARG', 'a combine has taken it already');
    const combined = await pending;
    expect(dispatched[0]!.handle.released).toBe(false);
    await expectWideepError(b0().lowLatencyCombine(combineArgs(dispatched[0]!.handle)), 'ERR_INVALID_ARG', 'a combine has taken it already');
    dispatched.forEach((r) => r.handle.release());
    await expectWideepError(combined[0]!.hook!(), 'ERR_INVALID_ARG', 'already called');
    const next = await onAllRanks(buffers, (b) => b.lowLatencyDispatch(llArgs()));
    const nextCombined = await onAllRanks(buffers, (b, r) => b.lowLatencyCombine({ ...combineArgs(next[r]!.handle), returnRecvHook: false }));
    expect(nextCombined).toHaveLength(buffers.length);
    expect(next[0]!.handle.released).toBe(true);
  });
});
