/**
 * The cpu backend's hierarchical normal mode (ranks over several nodes)
 * against its flat path, on fresh random inputs (the seed is printed on a
 * failure; WIDEEP_TEST_SEED replays one).
 *
 * Dispatch must match bit for bit. Combine may differ by the rounding of
 * each node's partial to bf16 before the network leg: |hier - flat| <=
 * 2^-6 * Σ|terms| per element, where the terms are the rows summed for that
 * element and the biases. Why that holds: flat = bf16(A), hier = bf16(B),
 * with A the float32 sum over ranks and B the float32 sum of the nodes'
 * bf16 partials. Each bf16 rounding is within 2^-8 relative; the partials'
 * roundings move B by at most 2^-8 * Σ|terms| (each partial is at most its
 * terms' magnitude), the two final roundings by 2^-8 * |A| and 2^-8 * |B|,
 * and the float32 sums (fewer than 70 terms) by less than 70 * 2^-24
 * relative each: together under 3.01 * 2^-8 < 2^-6 of Σ|terms|.
 */
import { describe, expect, test } from 'vitest';
import { EpBuffer } from '../../../src/ep/buffer.js';
import { computeDispatchLayout, readTopkIdx } from '../../../src/ep/dispatch-layout.js';
import { createSimulatedRanks, type CollectiveOptions, type CpuTransport } from '../../../src/ep/transport.js';
import type { CombineResult, DispatchResult, EpBufferOptions } from '../../../src/ep/types.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import { assertBitwiseEqual } from '../../helpers/assert.js';
import { makeRankInputs, type EpCase, type RankInputs } from '../../helpers/ep-inputs.js';
import { closeAll, onAllRanks } from '../../helpers/ep-sim.js';
import { SeededRandom, randomBf16 } from '../../helpers/random.js';

const SEED = Number(process.env.WIDEEP_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** Runs `check`, naming the seed in any failure. */
async function withSeed(seed: number, check: () => Promise<void>): Promise<void> {
  try {
    await check();
  } catch (e) {
    if (e instanceof Error) e.message = `[seed ${seed}: rerun with WIDEEP_TEST_SEED=${seed}] ${e.message}`;
    throw e;
  }
}

interface HierCase {
  R: number;
  nodes: number;
  dtype: 'bf16' | 'fp8e4m3';
  idxDtype: 'i32' | 'i64';
  kind: EpCase['kind'];
  worst: boolean;
  biases: 0 | 1 | 2;
}

const CASES: HierCase[] = [
  { R: 16, nodes: 2, dtype: 'bf16', idxDtype: 'i32', kind: 'uniform', worst: false, biases: 2 },
  { R: 16, nodes: 4, dtype: 'fp8e4m3', idxDtype: 'i64', kind: 'zipf', worst: true, biases: 0 },
  { R: 16, nodes: 8, dtype: 'bf16', idxDtype: 'i32', kind: 'duplicates', worst: false, biases: 1 },
  { R: 32, nodes: 2, dtype: 'fp8e4m3', idxDtype: 'i32', kind: 'uniform', worst: false, biases: 1 },
  { R: 32, nodes: 4, dtype: 'bf16', idxDtype: 'i64', kind: 'zipf', worst: false, biases: 2 },
  { R: 32, nodes: 8, dtype: 'bf16', idxDtype: 'i32', kind: 'uniform', worst: true, biases: 0 },
  { R: 64, nodes: 2, dtype: 'bf16', idxDtype: 'i32', kind: 'zipf', worst: false, biases: 0 },
  { R: 64, nodes: 4, dtype: 'bf16', idxDtype: 'i32', kind: 'uniform', worst: false, biases: 1 },
  { R: 64, nodes: 8, dtype: 'fp8e4m3', idxDtype: 'i64', kind: 'uniform', worst: false, biases: 2 },
];

const H = 128;
const K = 8;

function buffers(R: number, options: EpBufferOptions): Promise<EpBuffer[]> {
  return Promise.all(createSimulatedRanks(R).map((t) => EpBuffer.create(t, options)));
}

function dispatchAll(bufs: readonly EpBuffer[], inputs: readonly RankInputs[], worst: number): Promise<DispatchResult[]> {
  return onAllRanks(bufs, (b, r) => {
    const { x, xScales, topkIdx, topkWeights } = inputs[r]!;
    return b.dispatch({ x, xScales, topkIdx, topkWeights, numWorstTokens: worst });
  });
}

function expectSameDispatch(hier: DispatchResult, flat: DispatchResult, r: number): void {
  const what = (name: string) => `rank ${r} ${name}`;
  assertBitwiseEqual(hier.recvX, flat.recvX, what('recvX'));
  if (flat.recvXScales) assertBitwiseEqual(hier.recvXScales!, flat.recvXScales, what('recvXScales'));
  else expect(hier.recvXScales).toBeUndefined();
  if (flat.recvTopkIdx) {
    assertBitwiseEqual(hier.recvTopkIdx!, flat.recvTopkIdx, what('recvTopkIdx'));
    assertBitwiseEqual(hier.recvTopkWeights!, flat.recvTopkWeights!, what('recvTopkWeights'));
  }
  const meta = (d: DispatchResult) => [d.numRecvTokens, d.numRecvTokensPerExpert, d.handle.numTokens, d.handle.topk, d.handle.numRecvTokens, d.handle.numRows];
  expect(meta(hier), what('counts and handle')).toEqual(meta(flat));
}

/** Per element, 2^-6 of Σ|terms| (given as a flat combine of the terms' magnitudes, itself rounded down by at most 2^-8). */
function expectWithinNodeRounding(hier: Tensor, flat: Tensor, magnitudes: Tensor, r: number): void {
  const [h, f, m] = [hier.toFloat32(), flat.toFloat32(), magnitudes.toFloat32()];
  for (let i = 0; i < f.length; i++) {
    const bound = 2 ** -6 * m[i]! * (1 + 2 ** -7);
    if (!(Math.abs(h[i]! - f[i]!) <= bound)) throw new Error(`rank ${r} combinedX[${i}]: hierarchical ${h[i]}, flat ${f[i]}, beyond ${bound}`);
  }
}

function abs(t: Tensor): Tensor {
  return Tensor.from(Uint16Array.from(t.data as Uint16Array, (v) => v & 0x7fff), { shape: t.shape, dtype: 'bf16' });
}

describe('the hierarchical path matches the flat path', () => {
  test.each(CASES.map((c) => [`R=${c.R} in ${c.nodes} nodes, ${c.dtype} ${c.idxDtype} ${c.kind}${c.worst ? ' numWorstTokens' : ''} ${c.biases} bias`, c] as const))(
    '%s',
    async (_, c) => {
      const seed = SEED + c.R * 10 + c.nodes;
      await withSeed(seed, async () => {
        const rng = new SeededRandom(seed);
        const tokens = Array.from({ length: c.R }, () => rng.int(17));
        const E = c.R * 2;
        const inputs = makeRankInputs({ R: c.R, E, H, k: K, tokens, kind: c.kind, dtype: c.dtype, idxDtype: c.idxDtype, seed, dropProbability: 0.1 });
        const options = { hidden: H, numExperts: E, maxTokensPerRank: 16, maxTopk: K, numRecvSlots: 3 };
        const flat = await buffers(c.R, options);
        const hier = await buffers(c.R, { ...options, ranksPerNode: c.R / c.nodes });
        try {
          // The layout: per rank as before, and per node.
          for (let r = 0; r < c.R; r++) {
            const layout = hier[r]!.getDispatchLayout(inputs[r]!.topkIdx);
            const want = computeDispatchLayout(readTopkIdx(inputs[r]!.topkIdx), tokens[r]!, K, E, c.R, c.R / c.nodes);
            expect(layout.numTokensPerNode!.toNumbers()).toEqual([...want.numTokensPerNode]);
            assertBitwiseEqual(layout.numTokensPerRank, flat[r]!.getDispatchLayout(inputs[r]!.topkIdx).numTokensPerRank, 'numTokensPerRank');
          }
          const worst = c.worst ? 16 * c.R : 0;
          const [f, h] = [await dispatchAll(flat, inputs, worst), await dispatchAll(hier, inputs, worst)];
          h.forEach((d, r) => expectSameDispatch(d, f[r]!, r));

          // A cached dispatch of new rows moves them the same way.
          const again = inputs.map((input) => ({ ...input, x: c.dtype === 'bf16' ? randomBf16(rng, input.x.shape) : input.x }));
          const cached = async (bufs: EpBuffer[], first: DispatchResult[]) =>
            onAllRanks(bufs, (b, r) => b.dispatch({ x: again[r]!.x, xScales: again[r]!.xScales, handle: first[r]!.handle }));
          const [fc, hc] = [await cached(flat, f), await cached(hier, h)];
          hc.forEach((d, r) => expectSameDispatch(d, fc[r]!, r));
          [...fc, ...hc].forEach((d) => d.release());

          const rows = f.map((d) => randomBf16(rng, [d.handle.numRows, H]));
          const bias = inputs.map((input) => Array.from({ length: c.biases }, () => randomBf16(rng, [input.x.shape[0]!, H])));
          const combine = (bufs: EpBuffer[], ds: DispatchResult[], x: (r: number) => Tensor, keepHandle: boolean): Promise<CombineResult[]> =>
            onAllRanks(bufs, (b, r) => {
              const bs = bias[r]!.map((t) => (keepHandle ? abs(t) : t));
              return b.combine({ x: x(r), handle: ds[r]!.handle, topkWeights: ds[r]!.recvTopkWeights, bias: bs.length === 2 ? [bs[0]!, bs[1]!] : bs[0], keepHandle });
            });
          const magnitudes = await combine(flat, f, (r) => abs(rows[r]!), true);
          const [fx, hx] = [await combine(flat, f, (r) => rows[r]!, false), await combine(hier, h, (r) => rows[r]!, false)];
          hx.forEach((res, r) => {
            expectWithinNodeRounding(res.combinedX, fx[r]!.combinedX, magnitudes[r]!.combinedX, r);
            // Each weight column has one owner rank, so its sum is exact on both paths.
            assertBitwiseEqual(res.combinedTopkWeights!, fx[r]!.combinedTopkWeights!, `rank ${r} combinedTopkWeights`);
          });
        } finally {
          await closeAll([...flat, ...hier]);
        }
      });
    },
  );
});

/** Simulated ranks that log, per allToAll, which destinations got a non-empty message. */
function spiedRanks(R: number): { ranks: CpuTransport[]; sent: number[][][] } {
  const sent: number[][][] = Array.from({ length: R }, () => []);
  const ranks = createSimulatedRanks(R).map((t, r) => ({
    rank: t.rank,
    worldSize: t.worldSize,
    sharesMemory: t.sharesMemory,
    allToAll: (send: readonly Uint8Array[], o?: CollectiveOptions) => {
      sent[r]!.push(send.flatMap((b, dst) => (b.byteLength > 0 ? [dst] : [])));
      return t.allToAll(send, o);
    },
    allGather: (v: Uint8Array, o?: CollectiveOptions) => t.allGather(v, o),
    close: () => t.close(),
  }));
  return { ranks, sent };
}

describe('the hierarchical path moves rows only along its legs', () => {
  test('network leg to the same local index of each node, NVLink leg within the node, both ways', async () => {
    const [R, P] = [16, 4];
    const { ranks, sent } = spiedRanks(R);
    const bufs = await Promise.all(ranks.map((t) => EpBuffer.create(t, { hidden: H, numExperts: 64, maxTokensPerRank: 16, ranksPerNode: P })));
    const inputs = makeRankInputs({ R, E: 64, H, k: K, tokens: new Array(R).fill(16), kind: 'uniform', dtype: 'bf16', idxDtype: 'i32', seed: SEED });
    try {
      const ds = await dispatchAll(bufs, inputs, 0);
      await onAllRanks(bufs, (b, r) => b.combine({ x: ds[r]!.recvX, handle: ds[r]!.handle }));
      const node = (r: number) => Math.floor(r / P);
      sent.forEach((calls, r) => {
        // Dispatch: meta to all, network, NVLink; combine: meta to all, NVLink, network.
        expect(calls).toHaveLength(6);
        for (const leg of [1, 5]) expect(calls[leg]!.every((dst) => dst % P === r % P), `rank ${r} call ${leg}: ${calls[leg]}`).toBe(true);
        for (const leg of [2, 4]) expect(calls[leg]!.every((dst) => node(dst) === node(r)), `rank ${r} call ${leg}: ${calls[leg]}`).toBe(true);
        expect(calls[1]!.length, `rank ${r} reaches more than its own node`).toBeGreaterThan(1);
      });
    } finally {
      await closeAll(bufs);
    }
  });
});
