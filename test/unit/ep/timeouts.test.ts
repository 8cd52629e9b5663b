/**
 * timeoutMs is at most 2^31 - 1 ms, the longest delay a Node.js timer keeps:
 * a longer one used to be accepted and then fire after 1 ms, a spurious
 * ERR_TIMEOUT. Now it is refused with ERR_INVALID_ARG naming the limit.
 */
import { describe, expect, test } from 'vitest';
import { EpBuffer } from '../../../src/ep/buffer.js';
import { MAX_TIMEOUT_MS, StoreTransport, createSimulatedRanks } from '../../../src/ep/transport.js';
import type { KeyValueStore } from '../../../src/runtime/types.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const bytes = (...v: number[]) => Uint8Array.from(v);

describe('timeoutMs above 2^31 - 1', () => {
  test('EpBuffer.create refuses it on every rank, naming the limit', async () => {
    const ranks = createSimulatedRanks(2);
    const res = await Promise.allSettled(ranks.map((t) => EpBuffer.create(t, { hidden: 128, numExperts: 2, maxTokensPerRank: 1, timeoutMs: 2 ** 31 })));
    for (const r of res) {
      await expectWideepError(Promise.reject(r.status === 'rejected' ? r.reason : undefined), 'ERR_INVALID_ARG', 'timeoutMs', `at most ${MAX_TIMEOUT_MS} ms`, '2147483648');
    }
  });

  test('a collective of simulated ranks or of a StoreTransport refuses it', async () => {
    const [t0] = createSimulatedRanks(2);
    await expectWideepError(t0!.allGather(bytes(1), { timeoutMs: 2 ** 31 }), 'ERR_INVALID_ARG', 'allGather: options.timeoutMs', `at most ${MAX_TIMEOUT_MS} ms`);
    const store = new StoreTransport({ get: () => Promise.reject(new Error('unused')) } as unknown as KeyValueStore, 0, 2, 'p');
    await expectWideepError(store.allToAll([bytes(1), bytes(2)], { timeoutMs: 1e12 }), 'ERR_INVALID_ARG', 'allToAll: options.timeoutMs', `at most ${MAX_TIMEOUT_MS} ms`);
  });

  test('the longest one holds: a peer 50 ms late is no ERR_TIMEOUT', async () => {
    const [t0, t1] = createSimulatedRanks(2);
    const early = t0!.allGather(bytes(0), { timeoutMs: MAX_TIMEOUT_MS });
    await new Promise((r) => setTimeout(r, 50));
    const late = t1!.allGather(bytes(1), { timeoutMs: MAX_TIMEOUT_MS });
    expect((await early).map((b) => [...b])).toEqual([[0], [1]]);
    expect((await late).map((b) => [...b])).toEqual([[0], [1]]);
  });
});
