/**
 * The host-side agreement of the cuda backend across nodes
 * (src/ep/cuda/node/verdict.ts, node-group.ts), over a real TCP store: a
 * failure on any rank reaches every rank in its two steps, calls out of
 * step are refused, a dead rank times out every survivor, and a node's
 * barrier waits for that node's ranks only.
 */
import { describe, expect, test } from 'vitest';

import type { EpCall } from '../../../src/ep/calls.js';
import { localFailureNumber } from '../../../src/ep/calls.js';
import { nodeGroup } from '../../../src/ep/cuda/node/node-group.js';
import { Verdicts, type Failed, type VerdictKind } from '../../../src/ep/cuda/node/verdict.js';
import type { EpConfig } from '../../../src/ep/types.js';
import { WideepError } from '../../../src/errors.js';
import { loopbackStoreGroups } from '../../helpers/ep-store.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const R = 4;
const P = 2;

function config(rank: number, timeoutMs = 2_000): EpConfig {
  return {
    rank,
    worldSize: R,
    backend: 'cuda',
    hidden: 128,
    numExperts: 8,
    numLocalExperts: 2,
    maxTokensPerRank: 8,
    maxTopk: 4,
    numRecvSlots: 2,
    lowLatency: undefined,
    timeoutMs,
    device: 0,
    ranksPerNode: P,
  };
}

const call = (number: number, kind: VerdictKind = 'dispatch'): EpCall => ({ kind, buffer: 0, number, started: true });

/** Both steps on every rank; `failed[r]` is rank r's own failure. */
async function agreeAll(verdicts: Verdicts[], calls: EpCall[], failed: (Failed | undefined)[], kind: VerdictKind = 'dispatch') {
  return Promise.allSettled(
    verdicts.map(async (v, r) => {
      const rail = await v.rail(kind, kind, calls[r]!, failed[r]);
      return v.node(kind, kind, calls[r]!, failed[r] ?? rail, [r * 10, r * 10 + 1], () => new WideepError('ERR_INVALID_ARG', `rank ${r}'s own error`));
    }),
  );
}

async function withVerdicts(run: (verdicts: Verdicts[]) => Promise<void>, timeoutMs?: number): Promise<void> {
  const { groups, close } = await loopbackStoreGroups(R);
  const verdicts = groups.map((g, r) => new Verdicts(g.store, config(r, timeoutMs), 'test/verdicts'));
  try {
    await run(verdicts);
  } finally {
    await Promise.all(verdicts.map((v) => v.close()));
    await close();
  }
}

describe('verdicts across nodes', () => {
  test('agreeing ranks get their node peers\' words', async () => {
    await withVerdicts(async (verdicts) => {
      const res = await agreeAll(verdicts, [1, 1, 1, 1].map((n) => call(n)), []);
      res.forEach((s, r) => {
        expect(s.status).toBe('fulfilled');
        const first = Math.floor(r / P) * P;
        expect((s as PromiseFulfilledResult<Int32Array[]>).value.map((w) => Array.from(w))).toEqual([0, 1].map((j) => [(first + j) * 10, (first + j) * 10 + 1]));
      });
    });
  });

  test.each([0, 1, 2, 3])('a failure on rank %i reaches every rank', async (bad) => {
    await withVerdicts(async (verdicts) => {
      const failed: (Failed | undefined)[] = [];
      failed[bad] = { rank: bad, failure: localFailureNumber(new WideepError('ERR_SHAPE', 'x')) };
      const res = await agreeAll(verdicts, [2, 2, 2, 2].map((n) => call(n, 'combine')), failed, 'combine');
      for (const [r, s] of res.entries()) {
        const reason = (s as PromiseRejectedResult).reason;
        if (r === bad) await expectWideepError(Promise.reject(reason), 'ERR_INVALID_ARG', `rank ${r}'s own error`);
        else await expectWideepError(Promise.reject(reason), 'ERR_PEER', `rank ${bad} failed this combine (ERR_SHAPE)`);
      }
    });
  });

  test('a rank in another call is refused with ERR_PROTOCOL', async () => {
    await withVerdicts(async (verdicts) => {
      const res = await agreeAll(verdicts, [3, 3, 3, 4].map((n) => call(n)), []);
      // Rank 3 meets rank 1 on the rail and rank 2 in its node; rank 1 tells rank 0.
      for (const r of [1, 2, 3]) await expectWideepError(Promise.reject((res[r] as PromiseRejectedResult).reason), 'ERR_PROTOCOL', 'out of step');
      await expectWideepError(Promise.reject((res[0] as PromiseRejectedResult).reason), 'ERR_PEER', 'rank 1 failed this dispatch (ERR_PROTOCOL)');
    });
  });

  test('a rank that never comes times out every survivor', async () => {
    await withVerdicts(async (verdicts) => {
      const t0 = Date.now();
      const res = await agreeAll(verdicts.slice(0, 3), [5, 5, 5].map((n) => call(n)), []);
      for (const s of res) await expectWideepError(Promise.reject((s as PromiseRejectedResult).reason), 'ERR_TIMEOUT');
      expect(Date.now() - t0).toBeLessThan(5_000);
    }, 500);
  });
});

describe("a node's group", () => {
  test('ranks, and a barrier of the node alone', async () => {
    const { groups, close } = await loopbackStoreGroups(R);
    try {
      const nodes = groups.map((g, r) => nodeGroup(g, config(r), 'test/nodes'));
      expect(nodes.map((g) => [g.rank, g.worldSize])).toEqual([[0, 2], [1, 2], [0, 2], [1, 2]]);
      // Node 0 passes its barrier twice without node 1.
      for (let gen = 0; gen < 2; gen++) await Promise.all(nodes.slice(0, 2).map((g) => g.store.barrier('b', { timeoutMs: 2_000 })));
      // Node 1's rank 2 alone does not pass.
      await expectWideepError(nodes[2]!.store.barrier('b', { timeoutMs: 300 }), 'ERR_TIMEOUT');
      // Keys of one node are not the other's.
      await nodes[0]!.store.set('k', 'node0');
      await nodes[2]!.store.set('k', 'node1');
      expect(new TextDecoder().decode(await nodes[1]!.store.get('k'))).toBe('node0');
      expect(new TextDecoder().decode(await nodes[3]!.store.get('k'))).toBe('node1');
    } finally {
      await close();
    }
  });
});
