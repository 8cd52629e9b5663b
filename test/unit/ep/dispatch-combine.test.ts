import { describe, expect, test } from 'vitest';
import type { EpBuffer } from '../../../src/ep/buffer.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import { assertBitwiseEqual, assertCloseBf16 } from '../../helpers/assert.js';
import { makeRankInputs, type EpCase } from '../../helpers/ep-inputs.js';
import { oracleCombine, oracleDispatch, oracleLayout, type OracleReceived } from '../../helpers/ep-oracle.js';
import { closeAll, onAllRanks, simulatedBuffers } from '../../helpers/ep-sim.js';
import { SeededRandom, randomBf16, randomF32 } from '../../helpers/random.js';

interface Extra {
  expertAlignment?: number;
  /** Extra rows beyond the largest receive count: use numWorstTokens. */
  worstSlack?: number;
  biases?: 0 | 1 | 2;
}

const CASES: (EpCase & Extra)[] = [
  { R: 2, E: 2, H: 128, k: 1, tokens: [7, 1], kind: 'uniform', dtype: 'bf16', idxDtype: 'i32', seed: 1 },
  { R: 2, E: 64, H: 2048, k: 6, tokens: [128, 0], kind: 'zipf', dropProbability: 0.1, dtype: 'fp8e4m3', idxDtype: 'i64', seed: 2, expertAlignment: 4 },
  { R: 4, E: 288, H: 128, k: 8, tokens: [128, 7, 0, 1], kind: 'uniform', dropProbability: 0.2, dtype: 'bf16', idxDtype: 'i32', seed: 3, biases: 2, expertAlignment: 128 },
  { R: 4, E: 4, H: 128, k: 9, tokens: [7, 7, 1, 7], kind: 'duplicates', dtype: 'bf16', idxDtype: 'i64', seed: 4, biases: 1 },
  { R: 4, E: 64, H: 2048, k: 6, tokens: [1, 7, 7, 0], kind: 'zipf', dtype: 'fp8e4m3', idxDtype: 'i32', seed: 5, worstSlack: 5 },
  { R: 8, E: 64, H: 128, k: 8, tokens: [128, 7, 0, 1, 128, 7, 0, 1], kind: 'zipf', dropProbability: 0.05, dtype: 'fp8e4m3', idxDtype: 'i64', seed: 6, worstSlack: 3 },
  { R: 8, E: 288, H: 2048, k: 9, tokens: [7, 1, 0, 7, 1, 0, 7, 1], kind: 'uniform', dtype: 'bf16', idxDtype: 'i32', seed: 7, biases: 2 },
  { R: 8, E: 8, H: 128, k: 6, tokens: [7, 7, 7, 7, 7, 7, 7, 7], kind: 'uniform', dtype: 'bf16', idxDtype: 'i32', seed: 8, expertAlignment: 3 },
  { R: 2, E: 64, H: 128, k: 8, tokens: [0, 0], kind: 'uniform', dtype: 'bf16', idxDtype: 'i32', seed: 9, biases: 1 },
];

function name(c: EpCase & Extra): string {
  const extras = [c.expertAlignment && `align ${c.expertAlignment}`, c.worstSlack !== undefined && 'numWorstTokens', c.biases && `${c.biases} bias`].filter(Boolean);
  return `R=${c.R} E=${c.E} H=${c.H} k=${c.k} T=[${c.tokens}] ${c.kind} ${c.dtype} ${c.idxDtype} ${extras.join(' ')}`;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Checks one rank's dispatch result against the oracle (rows beyond N must be zero/-1 padding). */
function checkDispatch(result: Awaited<ReturnType<EpBuffer['dispatch']>>, want: OracleReceived, c: EpCase & Extra, rows: number, cached: boolean): void {
  const N = want.rows.length;
  const itemBytes = c.dtype === 'bf16' ? 2 : 1;
  expect(result.recvX.shape).toEqual([rows, c.H]);
  expect(result.recvX.dtype).toBe(c.dtype);
  const padX = new Uint8Array(rows * c.H * itemBytes);
  padX.set(want.recvX);
  assertBitwiseEqual(result.recvX.data, padX, 'recvX');
  if (c.dtype === 'fp8e4m3') {
    expect(result.recvXScales!.shape).toEqual([rows, c.H / 128]);
    const padS = new Float32Array(rows * (c.H / 128));
    padS.set(want.recvXScales!);
    assertBitwiseEqual(result.recvXScales!.data, padS, 'recvXScales');
  } else {
    expect(result.recvXScales).toBeUndefined();
  }
  if (cached) {
    expect(result.recvTopkIdx).toBeUndefined();
    expect(result.recvTopkWeights).toBeUndefined();
  } else {
    expect(result.recvTopkIdx!.dtype).toBe(c.idxDtype);
    expect(result.recvTopkIdx!.shape).toEqual([rows, c.k]);
    const padIdx = new Array<number>(rows * c.k).fill(-1);
    want.recvTopkIdx.forEach((v, i) => (padIdx[i] = v));
    expect(result.recvTopkIdx!.toNumbers()).toEqual(padIdx);
    const padW = new Float32Array(rows * c.k);
    padW.set(want.recvTopkWeights);
    assertBitwiseEqual(result.recvTopkWeights!.data, padW, 'recvTopkWeights');
  }
  if (c.worstSlack !== undefined) {
    expect(result.numRecvTokens).toBe(-1);
    expect(result.numRecvTokensPerExpert).toEqual([]);
  } else {
    expect(result.numRecvTokens).toBe(N);
  }
}

describe('dispatch/combine match the oracle', () => {
  test.each(CASES.map((c) => [name(c), c] as const))('%s', async (_, c) => {
    const inputs = makeRankInputs(c);
    const maxT = Math.max(1, ...c.tokens);
    const buffers = await simulatedBuffers(c.R, { hidden: c.H, numExperts: c.E, maxTokensPerRank: maxT, numRecvSlots: 3 });
    try {
      const shape = { R: c.R, E: c.E, k: c.k, H: c.H, itemBytes: c.dtype === 'bf16' ? 2 : 1 };
      const want = oracleDispatch(inputs.map((i) => i.oracle), shape);
      const worst = c.worstSlack === undefined ? 0 : Math.max(...want.map((w) => w.rows.length)) + c.worstSlack;
      const align = c.expertAlignment ?? 1;
      const rowsOf = (r: number) => (worst > 0 ? worst : want[r]!.rows.length);

      // Layout.
      await onAllRanks(buffers, async (b, r) => {
        const layout = b.getDispatchLayout(inputs[r]!.topkIdx);
        const expected = oracleLayout(inputs[r]!.oracle, c.R, c.E, c.k);
        assertBitwiseEqual(layout.numTokensPerRank.data, expected.numTokensPerRank, 'numTokensPerRank');
        assertBitwiseEqual(layout.numTokensPerExpert.data, expected.numTokensPerExpert, 'numTokensPerExpert');
        assertBitwiseEqual(layout.isTokenInRank.data, expected.isTokenInRank, 'isTokenInRank');
        expect(layout.isTokenInRank.shape).toEqual([c.tokens[r], c.R]);
      });

      // Dispatch (with the layout passed back in, as DeepEP callers do).
      const results = await onAllRanks(buffers, (b, r) => {
        const { x, xScales, topkIdx, topkWeights } = inputs[r]!;
        return b.dispatch({ x, xScales, topkIdx, topkWeights, layout: b.getDispatchLayout(topkIdx), expertAlignment: align, numWorstTokens: worst });
      });
      results.forEach((res, r) => {
        checkDispatch(res, want[r]!, c, rowsOf(r), false);
        if (worst === 0) expect(res.numRecvTokensPerExpert).toEqual(want[r]!.numRecvTokensPerExpert.map((n) => alignUp(n, align)));
      });

      // Combine with fresh expert outputs (padding rows filled with garbage, which must be ignored).
      const rng = new SeededRandom(c.seed + 100);
      const xs = results.map((_, r) => randomBf16(rng, [rowsOf(r), c.H], 4));
      const weights = results.map((_, r) => randomF32(rng, [rowsOf(r), c.k]));
      const biases = c.tokens.map((T) => Array.from({ length: c.biases ?? 0 }, () => randomBf16(rng, [T, c.H])));
      const combined = await onAllRanks(buffers, (b, r) => {
        const bias = biases[r]!.length === 0 ? undefined : biases[r]!.length === 1 ? biases[r]![0] : ([biases[r]![0]!, biases[r]![1]!] as const);
        return b.combine({ x: xs[r]!, handle: results[r]!.handle, topkWeights: weights[r], bias, keepHandle: true });
      });
      const expected = oracleCombine(
        want,
        xs.map((x) => x.data as Uint16Array),
        c.H,
        c.tokens,
        { weights: weights.map((w) => w.data as Float32Array), k: c.k, bias: biases.map((list) => list.map((b) => b.data as Uint16Array)) },
      );
      combined.forEach((res, r) => {
        expect(res.combinedX.shape).toEqual([c.tokens[r], c.H]);
        assertBitwiseEqual(res.combinedX.data, expected.combinedX[r]!, `combinedX of rank ${r}`);
        assertBitwiseEqual(res.combinedTopkWeights!.data, expected.combinedTopkWeights![r]!, `combinedTopkWeights of rank ${r}`);
      });

      // Cached dispatch: new x, same routing; then combine its handle (releasing it) and release the first.
      const again = makeRankInputs({ ...c, seed: c.seed + 200 });
      const wantAgain = oracleDispatch(
        again.map((a, r) => ({ ...a.oracle, topkIdx: inputs[r]!.oracle.topkIdx, topkWeights: inputs[r]!.oracle.topkWeights })),
        shape,
      );
      const cached = await onAllRanks(buffers, (b, r) => b.dispatch({ x: again[r]!.x, xScales: again[r]!.xScales, handle: results[r]!.handle, expertAlignment: 2 }));
      cached.forEach((res, r) => {
        checkDispatch(res, wantAgain[r]!, c, rowsOf(r), true);
        if (worst === 0) expect(res.numRecvTokensPerExpert).toEqual(want[r]!.numRecvTokensPerExpert.map((n) => alignUp(n, 2)));
        expect(res.handle).not.toBe(results[r]!.handle);
      });
      // Into caller-owned outputs on odd ranks (poisoned first, so unwritten elements show),
      // and with a sending share set on some ranks: a tuning knob, the result is the same.
      const outs = c.tokens.map((T, r) => (r % 2 ? Tensor.empty([T, c.H], 'bf16').fillBytes(0xff) : undefined));
      const combinedAgain = await onAllRanks(buffers, (b, r) =>
        b.combine({ x: xs[r]!, handle: cached[r]!.handle, out: outs[r], numSms: 8, numSendSms: r % 3 ? r % 3 : undefined }),
      );
      combinedAgain.forEach((res, r) => {
        if (outs[r]) expect(res.combinedX).toBe(outs[r]);
        assertBitwiseEqual(res.combinedX.data, oracleCombine(want, xs.map((x) => x.data as Uint16Array), c.H, c.tokens).combinedX[r]!, 'cached combine');
        expect(res.combinedTopkWeights).toBeUndefined();
        expect(cached[r]!.handle.released).toBe(true);
        expect(results[r]!.handle.released).toBe(false);
        results[r]!.release();
      });
    } finally {
      await closeAll(buffers);
    }
  });
});

test('dispatch then combine of the received rows equals the dense formula', async () => {
  const c: EpCase = { R: 4, E: 64, H: 256, k: 6, tokens: [32, 0, 17, 5], kind: 'zipf', dtype: 'bf16', idxDtype: 'i32', seed: 11 };
  const inputs = makeRankInputs(c);
  const buffers = await simulatedBuffers(c.R, { hidden: c.H, numExperts: c.E, maxTokensPerRank: 32 });
  try {
    const out = await onAllRanks(buffers, async (b, r) => {
      const { x, topkIdx, topkWeights } = inputs[r]!;
      const d = await b.dispatch({ x, topkIdx, topkWeights });
      const bias = Tensor.fromNumbers(new Array(c.tokens[r]! * c.H).fill(0.5), [c.tokens[r]!, c.H], 'bf16');
      return (await b.combine({ x: d.recvX, handle: d.handle, bias })).combinedX;
    });
    out.forEach((combinedX, r) => {
      // combined[t] = (ranks that received t) * x[t] + 0.5
      const { oracle, x } = inputs[r]!;
      const xf = x.toFloat32();
      const expected = new Float64Array(xf.length);
      const magnitude = new Float64Array(xf.length);
      for (let t = 0; t < oracle.T; t++) {
        const ranks = new Set<number>();
        for (let j = 0; j < c.k; j++) if (oracle.topkIdx[t * c.k + j]! >= 0) ranks.add(Math.floor(oracle.topkIdx[t * c.k + j]! / (c.E / c.R)));
        for (let h = 0; h < c.H; h++) {
          expected[t * c.H + h] = ranks.size * xf[t * c.H + h]! + 0.5;
          magnitude[t * c.H + h] = ranks.size * Math.abs(xf[t * c.H + h]!) + 0.5;
        }
      }
      assertCloseBf16(combinedX, expected, magnitude, `rank ${r}`);
    });
  } finally {
    await closeAll(buffers);
  }
});
