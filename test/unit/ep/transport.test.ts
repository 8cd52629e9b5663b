import { describe, expect, test } from 'vitest';
import { WideepError } from '../../../src/errors.js';
import type { KeyValueStore, ProcessGroup, StoreValue } from '../../../src/runtime/types.js';
import { EpBuffer } from '../../../src/ep/buffer.js';
import { StoreTransport, createSimulatedRanks } from '../../../src/ep/transport.js';
import { assertBitwiseEqual } from '../../helpers/assert.js';
import { makeRankInputs } from '../../helpers/ep-inputs.js';
import { processGroup } from '../../helpers/ep-store.js';
import { closeAll, onAllRanks, simulatedBuffers } from '../../helpers/ep-sim.js';
import { expectWideepError } from '../../helpers/expect-error.js';
import { SeededRandom, randomBf16 } from '../../helpers/random.js';

/**
 * An in-memory KeyValueStore shared by all ranks. Values come back at an odd
 * byte offset, as slices of a network buffer might, to exercise realignment.
 */
class MemoryStore implements KeyValueStore {
  readonly data = new Map<string, Uint8Array>();
  readonly #waiters = new Map<string, (() => void)[]>();

  async set(key: string, value: StoreValue): Promise<void> {
    this.data.set(key, typeof value === 'string' ? new TextEncoder().encode(value) : value.slice());
    for (const wake of this.#waiters.get(key) ?? []) wake();
    this.#waiters.delete(key);
  }

  async get(key: string, options: { timeoutMs?: number } = {}): Promise<Uint8Array> {
    await this.wait([key], options);
    const v = this.data.get(key)!;
    const shifted = new Uint8Array(v.length + 1);
    shifted.set(v, 1);
    return shifted.subarray(1);
  }

  async wait(keys: readonly string[], options: { timeoutMs?: number } = {}): Promise<void> {
    for (const key of keys) {
      if (this.data.has(key)) continue;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new WideepError('ERR_TIMEOUT', `store: key ${key} not set within ${options.timeoutMs} ms`)), options.timeoutMs ?? 30_000);
        const list = this.#waiters.get(key) ?? [];
        list.push(() => {
          clearTimeout(timer);
          resolve();
        });
        this.#waiters.set(key, list);
      });
    }
  }

  async add(key: string, delta: number): Promise<number> {
    const n = Number(new TextDecoder().decode(this.data.get(key) ?? new TextEncoder().encode('0'))) + delta;
    await this.set(key, String(n));
    return n;
  }

  async compareSet(key: string, expected: StoreValue | null, desired: StoreValue): Promise<Uint8Array> {
    const enc = (v: StoreValue) => (typeof v === 'string' ? new TextEncoder().encode(v) : v);
    const cur = this.data.get(key);
    const matches = expected === null ? cur === undefined : cur !== undefined && Buffer.from(cur).equals(Buffer.from(enc(expected)));
    if (matches) await this.set(key, desired);
    return this.data.get(key) ?? new Uint8Array();
  }

  async delete(key: string): Promise<boolean> {
    return this.data.delete(key);
  }

  async barrier(): Promise<void> {
    throw new WideepError('ERR_UNSUPPORTED', 'not needed here');
  }

  async close(): Promise<void> {}
}

function groups(store: KeyValueStore, worldSize: number, device?: number): ProcessGroup[] {
  return Array.from({ length: worldSize }, (_, rank) => processGroup(store, rank, worldSize, device));
}

const bytes = (...v: number[]) => Uint8Array.from(v);

describe('StoreTransport', () => {
  test('allToAll and allGather deliver by rank and leave the store empty', async () => {
    const store = new MemoryStore();
    const ts = [0, 1, 2].map((r) => new StoreTransport(store, r, 3, 'test'));
    const a2a = await Promise.all(ts.map((t, src) => t.allToAll([0, 1, 2].map((dst) => bytes(src, dst, 7)))));
    a2a.forEach((received, dst) => received.forEach((b, src) => expect([...b]).toEqual([src, dst, 7])));
    const gathered = await Promise.all(ts.map((t) => t.allGather(bytes(t.rank * 10))));
    for (const g of gathered) expect(g.map((b) => [...b])).toEqual([[0], [10], [20]]);
    expect(store.data.size).toBe(0);
    await ts[0]!.close();
    await expectWideepError(ts[0]!.allGather(bytes(1)), 'ERR_CLOSED', 'closed');
  });

  test('uses the documented keys', async () => {
    const store = new MemoryStore();
    const t1 = new StoreTransport(store, 1, 2, 'pfx');
    const pending = t1.allToAll([bytes(1), bytes(2)]);
    await store.wait(['pfx/0/1->0']);
    expect([...store.data.keys()]).toEqual(['pfx/0/1->0']);
    await store.set('pfx/0/0->1', bytes(9));
    expect((await pending).map((b) => [...b])).toEqual([[9], [2]]);
    expect(store.data.has('pfx/0/0->1')).toBe(false);
  });

  test('a silent peer is ERR_TIMEOUT naming it', async () => {
    const t0 = new StoreTransport(new MemoryStore(), 0, 2, 'p');
    await expectWideepError(t0.allGather(bytes(1), { timeoutMs: 50 }), 'ERR_TIMEOUT', 'rank 1 sent nothing within 50 ms', 'p/0/1->0');
  });

  test('rejects bad arguments', async () => {
    const t = new StoreTransport(new MemoryStore(), 0, 2, 'p');
    await expectWideepError(t.allToAll([bytes(1)]), 'ERR_INVALID_ARG', 'an array of 2 Uint8Arrays');
    expect(() => new StoreTransport(new MemoryStore(), 2, 2, 'p')).toThrow(/rank/);
  });
});

describe('simulated ranks', () => {
  test('a rank that never arrives is ERR_TIMEOUT naming it', async () => {
    const ranks = createSimulatedRanks(3);
    const started = Date.now();
    const res = await Promise.allSettled([ranks[0]!.allGather(bytes(0), { timeoutMs: 80 }), ranks[2]!.allGather(bytes(2), { timeoutMs: 5000 })]);
    expect(Date.now() - started).toBeLessThan(2000);
    for (const r of res) await expectWideepError(Promise.reject((r as PromiseRejectedResult).reason), 'ERR_TIMEOUT', 'rank 1 did not arrive within 80 ms');
    await expectWideepError(ranks[1]!.allGather(bytes(1)), 'ERR_TIMEOUT', 'rank 1 did not arrive'); // the late one learns too
  });

  test('a buffer waits at most its timeoutMs', async () => {
    const buffers = await simulatedBuffers(2, { hidden: 128, numExperts: 2, maxTokensPerRank: 4, timeoutMs: 100 });
    const [input] = makeRankInputs({ R: 2, E: 2, H: 128, k: 1, tokens: [4, 4], kind: 'uniform', dtype: 'bf16', idxDtype: 'i32', seed: 1 });
    await expectWideepError(buffers[0]!.dispatch(input!), 'ERR_TIMEOUT', 'rank 1 did not arrive within 100 ms');
    await closeAll(buffers);
  });

  test('mismatched collectives are ERR_PROTOCOL; closed ranks are ERR_CLOSED and ERR_PEER', async () => {
    const ranks = createSimulatedRanks(2);
    const res = await Promise.allSettled([ranks[0]!.allGather(bytes(0)), ranks[1]!.allToAll([bytes(1), bytes(1)])]);
    for (const r of res) await expectWideepError(Promise.reject((r as PromiseRejectedResult).reason), 'ERR_PROTOCOL', 'same order');
    const waiting = ranks[0]!.allGather(bytes(0));
    await ranks[1]!.close();
    await expectWideepError(waiting, 'ERR_PEER', 'rank 1 closed its transport');
    await expectWideepError(ranks[1]!.allGather(bytes(1)), 'ERR_CLOSED', 'simulated rank 1 is closed');
    await expectWideepError(ranks[0]!.allGather(bytes(0)), 'ERR_PEER', 'rank 1 closed');
    await expectWideepError(ranks[0]!.allToAll([bytes(0)] as never), 'ERR_INVALID_ARG', 'an array of 2 Uint8Arrays');
  });
});

describe('EpBuffer over a ProcessGroup', () => {
  test('the cpu backend over the group store gives the same results as simulated ranks', async () => {
    const c = { R: 3, E: 6, H: 256, k: 2, tokens: [5, 0, 3], kind: 'uniform', dtype: 'fp8e4m3', idxDtype: 'i32', seed: 41 } as const;
    const inputs = makeRankInputs(c);
    const bf16 = makeRankInputs({ ...c, dtype: 'bf16' });
    const options = { hidden: 256, numExperts: 6, maxTokensPerRank: 5, lowLatency: { maxTokensPerRank: 5 }, timeoutMs: 5000 };
    const store = new MemoryStore();
    const viaStore = await Promise.all(groups(store, 3).map((g) => EpBuffer.create(g, options)));
    const simulated = await simulatedBuffers(3, options);
    expect(viaStore.map((b) => b.backend)).toEqual(['cpu', 'cpu', 'cpu']);
    // Rows travel packed over the store and as views between simulated ranks; the results must not differ.
    const run = async (buffers: EpBuffer[]) => {
      const rng = new SeededRandom(5);
      const d = await onAllRanks(buffers, (b, r) => b.dispatch(inputs[r]!));
      const c = await onAllRanks(buffers, (b, r) => b.combine({ x: randomBf16(rng, [d[r]!.numRecvTokens, 256]), handle: d[r]!.handle, topkWeights: d[r]!.recvTopkWeights }));
      const ll = await onAllRanks(buffers, (b, r) => b.lowLatencyDispatch({ x: bf16[r]!.x, topkIdx: bf16[r]!.topkIdx, maxTokensPerRank: 5, numExperts: 6 }));
      const llc = await onAllRanks(buffers, (b, r) =>
        b.lowLatencyCombine({ y: randomBf16(rng, [2, 15, 256]), topkIdx: bf16[r]!.topkIdx, topkWeights: bf16[r]!.topkWeights, handle: ll[r]!.handle }),
      );
      return d.map((res, r) => ({ ...res, ...c[r]!, llX: ll[r]!.recvX, llScales: ll[r]!.recvXScales, llCombined: llc[r]!.combinedX }));
    };
    const a = await run(viaStore);
    const b = await run(simulated);
    a.forEach((res, r) => {
      for (const key of ['recvX', 'recvXScales', 'recvTopkIdx', 'recvTopkWeights', 'combinedX', 'combinedTopkWeights', 'llX', 'llScales', 'llCombined'] as const) {
        assertBitwiseEqual(res[key]!, b[r]![key]!, `${key} of rank ${r}`);
      }
    });
    await closeAll(viaStore);
    await closeAll(simulated);
    expect(store.data.size).toBe(0);
  });

  test('a group with a GPU defaults to the cuda backend', async () => {
    const store = new MemoryStore();
    const outcome = await EpBuffer.create(groups(store, 1, 0)[0]!, { hidden: 128, numExperts: 1, maxTokensPerRank: 1 }).catch((e: unknown) => e);
    // Without the cuda backend this is ERR_UNSUPPORTED; with it, a buffer on a GPU machine or a CUDA error elsewhere.
    if (outcome instanceof EpBuffer) {
      expect(outcome.backend).toBe('cuda');
      await outcome.close();
    } else {
      expect(outcome).toBeInstanceOf(WideepError);
      if ((outcome as WideepError).code === 'ERR_UNSUPPORTED') expect((outcome as WideepError).message).toContain('the cuda backend is not built into this version');
    }
    const cpu = await EpBuffer.create(groups(store, 1, 0)[0]!, { backend: 'cpu', hidden: 128, numExperts: 1, maxTokensPerRank: 1 });
    expect(cpu.backend).toBe('cpu');
    await cpu.close();
  });

  test('the cuda backend needs a ProcessGroup', async () => {
    await expectWideepError(
      EpBuffer.create(createSimulatedRanks(1)[0]!, { backend: 'cuda', hidden: 128, numExperts: 1, maxTokensPerRank: 1 }),
      'ERR_INVALID_ARG',
      'the cuda backend needs a ProcessGroup',
    );
  });
});
