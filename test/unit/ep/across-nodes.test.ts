/**
 * EP buffers over several nodes: the ranksPerNode option, a dead rank on
 * another node (cpu backend), and which cuda path serves which ranks.
 */
import { describe, expect, test } from 'vitest';
import { EpBuffer } from '../../../src/ep/buffer.js';
import { cudaPath, cudaRefusal } from '../../../src/ep/span.js';
import { createSimulatedRanks, type CollectiveOptions, type CpuTransport } from '../../../src/ep/transport.js';
import type { EpBufferOptions } from '../../../src/ep/types.js';
import type { ProcessGroup } from '../../../src/runtime/types.js';
import { makeRankInputs } from '../../helpers/ep-inputs.js';
import { closeAll } from '../../helpers/ep-sim.js';
import { loopbackStoreGroups } from '../../helpers/ep-store.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const OPTIONS: EpBufferOptions = { hidden: 128, numExperts: 32, maxTokensPerRank: 8, timeoutMs: 400 };

function inputs(R: number) {
  return makeRankInputs({ R, E: 32, H: 128, k: 4, tokens: new Array(R).fill(8), kind: 'uniform', dtype: 'bf16', idxDtype: 'i32', seed: 1 });
}

/** Each rank's outcome of its dispatch, and how long it took. */
async function dispatchExcept(bufs: readonly EpBuffer[], dead: number): Promise<{ settled: PromiseSettledResult<unknown>[]; ms: number }> {
  const ins = inputs(bufs.length);
  const start = performance.now();
  const settled = await Promise.allSettled(
    bufs.flatMap((b, r) => (r === dead ? [] : [b.dispatch({ x: ins[r]!.x, topkIdx: ins[r]!.topkIdx, topkWeights: ins[r]!.topkWeights })])),
  );
  return { settled, ms: performance.now() - start };
}

async function expectAllTimedOut(settled: PromiseSettledResult<unknown>[], dead: number): Promise<void> {
  for (const s of settled) {
    expect(s.status).toBe('rejected');
    await expectWideepError(Promise.reject((s as PromiseRejectedResult).reason), 'ERR_TIMEOUT', `rank ${dead}`);
  }
}

describe('ranksPerNode', () => {
  test('must divide the world size', async () => {
    const t = createSimulatedRanks(16)[0]!;
    await expectWideepError(EpBuffer.create(t, { ...OPTIONS, ranksPerNode: 3 }), 'ERR_INVALID_ARG', 'ranksPerNode: expected a divisor of the world size 16', 'got 3');
    await expectWideepError(EpBuffer.create(t, { ...OPTIONS, ranksPerNode: 32 }), 'ERR_INVALID_ARG', 'ranksPerNode');
  });

  test('every rank refuses ranks that disagree on it', async () => {
    const res = await Promise.allSettled(createSimulatedRanks(4).map((t, r) => EpBuffer.create(t, { ...OPTIONS, ranksPerNode: r === 3 ? 4 : 2 })));
    for (const s of res) await expectWideepError(Promise.reject((s as PromiseRejectedResult).reason), 'ERR_INVALID_ARG', 'option ranksPerNode differs');
  });

  test("defaults to one node, or a process group's equal nodes", async () => {
    const bufs = await Promise.all(createSimulatedRanks(4).map((t) => EpBuffer.create(t, OPTIONS)));
    expect(bufs[0]!.config.ranksPerNode).toBe(4);
    await closeAll(bufs);
    const { groups, close } = await loopbackStoreGroups(4);
    try {
      const twoNodes = groups.map((g) => ({ ...g, localWorldSize: 2, localRank: g.rank % 2, nodeRank: Math.floor(g.rank / 2), nnodes: 2 }));
      const over = await Promise.all(twoNodes.map((g) => EpBuffer.create(g, OPTIONS)));
      expect(over.map((b) => b.config.ranksPerNode)).toEqual([2, 2, 2, 2]);
      await closeAll(over);
    } finally {
      await close();
    }
  });
});

describe('a dead rank on another node (cpu backend)', () => {
  test('one that never calls: every survivor gets ERR_TIMEOUT naming it, within its timeout', async () => {
    const bufs = await Promise.all(createSimulatedRanks(16).map((t) => EpBuffer.create(t, { ...OPTIONS, ranksPerNode: 8 })));
    const { settled, ms } = await dispatchExcept(bufs, 11);
    await expectAllTimedOut(settled, 11);
    expect(ms).toBeLessThan(400 + 1500);
    await closeAll(bufs);
  });

  test('one that dies after the meta step: the network leg times out on every survivor', async () => {
    const dead = 12;
    const ranks = createSimulatedRanks(16).map((t): CpuTransport => {
      if (t.rank !== dead) return t;
      let exchanges = 0;
      // Its first exchange is create's, its second the dispatch's meta step; then it is gone.
      const allToAll = (send: readonly Uint8Array[], o?: CollectiveOptions) => (++exchanges <= 1 ? t.allToAll(send, o) : new Promise<Uint8Array[]>(() => {}));
      return { rank: t.rank, worldSize: t.worldSize, sharesMemory: true, allToAll, allGather: (v, o) => t.allGather(v, o), close: () => t.close() };
    });
    const bufs = await Promise.all(ranks.map((t) => EpBuffer.create(t, { ...OPTIONS, ranksPerNode: 4 })));
    const ins = inputs(16);
    const start = performance.now();
    const calls = bufs.map((b, r) => b.dispatch({ x: ins[r]!.x, topkIdx: ins[r]!.topkIdx, topkWeights: ins[r]!.topkWeights }));
    const settled = await Promise.allSettled(calls.filter((_, r) => r !== dead)); // the dead rank's call never ends
    await expectAllTimedOut(settled, dead);
    expect(performance.now() - start).toBeLessThan(2 * 400 + 1500);
    await Promise.all(bufs.filter((_, r) => r !== dead).map((b) => b.close()));
  });

  test('over a TCP store, ranks in two nodes of a process group', async () => {
    const { groups, close } = await loopbackStoreGroups(4);
    try {
      const twoNodes = groups.map((g) => ({ ...g, localWorldSize: 2, nnodes: 2 }));
      const bufs = await Promise.all(twoNodes.map((g) => EpBuffer.create(g, OPTIONS)));
      const { settled } = await dispatchExcept(bufs, 3);
      await expectAllTimedOut(settled, 3);
      await closeAll(bufs.slice(0, 3));
    } finally {
      await close();
    }
  });
});

describe('the cuda backend across nodes', () => {
  const one = { host: 'a', nnodes: 1 };
  test.each([
    [{ worldSize: 16, ranksPerNode: 8 }, [...new Array(8).fill(one), ...new Array(8).fill({ host: 'b', nnodes: 2 })], 'across nodes'],
    [{ worldSize: 4, ranksPerNode: 4 }, new Array(4).fill(one), 'one node'],
    [{ worldSize: 2, ranksPerNode: 1 }, [one, one], 'across nodes'],
  ])('%o: %s', (config, placements, path) => {
    expect(cudaPath({ ...config, lowLatency: undefined }, placements)).toBe(path);
  });

  test.each([
    [{ worldSize: 4, ranksPerNode: 4 }, [one, one, one, { host: 'a', nnodes: 2 }], 'the process group spans 2 nodes, but ranksPerNode 4 makes one node of all 4 ranks'],
    [{ worldSize: 2, ranksPerNode: 2 }, [one, { host: 'b', nnodes: 1 }], 'the ranks run on 2 hosts (a, b), which CUDA IPC cannot join'],
    [{ worldSize: 4, ranksPerNode: 2 }, [one, one, one, { host: 'b', nnodes: 1 }], "node 1's ranks (2..3) run on 2 hosts (a, b)"],
  ])('%o on %o is refused: %s', (config, placements, why) => {
    expect(cudaRefusal({ ...config, lowLatency: undefined }, placements)).toContain(why);
  });

  test.each([
    ['low-latency mode across nodes', { lowLatency: { maxTokensPerRank: 8 } }, "low-latency mode across nodes needs NCCL's device API", 'GIN', '2.28.7', 'it is not built'],
    ['one node by ranksPerNode, two by the group', { ranksPerNode: 2 }, 'the process group spans 2 nodes'],
  ] as [string, Partial<EpBufferOptions>, ...string[]][])('EpBuffer.create refuses on every rank, before any kernel (%s)', async (_, extra, ...fragments) => {
    const { groups, close } = await loopbackStoreGroups(2);
    try {
      // Two one-GPU nodes: no GPU is touched, the refusal comes from what the ranks exchanged.
      const nodes: ProcessGroup[] = groups.map((g) => ({ ...g, localRank: 0, localWorldSize: 1, nodeRank: g.rank, nnodes: 2, device: 0 }));
      const res = await Promise.allSettled(nodes.map((g) => EpBuffer.create(g, { ...OPTIONS, backend: 'cuda', ...extra })));
      for (const s of res) {
        await expectWideepError(Promise.reject((s as PromiseRejectedResult).reason), 'ERR_UNSUPPORTED', 'EpBuffer.create (cuda)', ...fragments);
      }
    } finally {
      await close();
    }
  });
});
