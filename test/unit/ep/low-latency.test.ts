import { describe, expect, test } from 'vitest';
import { dequantizeFp8, quantizeBf16RowsFp8 } from '../../../src/ep/fp8-quant.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import { f32ToBf16Bits } from '../../../src/tensor/convert.js';
import { assertBitwiseEqual, assertCloseBf16 } from '../../helpers/assert.js';
import { makeRankInputs, type EpCase } from '../../helpers/ep-inputs.js';
import { oracleLowLatencyCombine, oracleLowLatencyDispatch } from '../../helpers/ep-oracle.js';
import { closeAll, onAllRanks, simulatedBuffers } from '../../helpers/ep-sim.js';
import { SeededRandom, randomBf16 } from '../../helpers/random.js';

interface LlCase extends Omit<EpCase, 'dtype'> {
  M: number;
  useFp8: boolean;
  roundScale: boolean;
}

const CASES: LlCase[] = [
  { R: 2, E: 2, H: 128, k: 1, tokens: [7, 1], M: 8, kind: 'uniform', idxDtype: 'i32', useFp8: true, roundScale: false, seed: 21 },
  { R: 2, E: 64, H: 2048, k: 6, tokens: [128, 0], M: 128, kind: 'zipf', dropProbability: 0.1, idxDtype: 'i64', useFp8: true, roundScale: true, seed: 22 },
  { R: 4, E: 288, H: 128, k: 8, tokens: [128, 7, 0, 1], M: 128, kind: 'uniform', dropProbability: 0.2, idxDtype: 'i32', useFp8: false, roundScale: false, seed: 23 },
  { R: 4, E: 4, H: 256, k: 9, tokens: [7, 7, 1, 7], M: 7, kind: 'duplicates', idxDtype: 'i64', useFp8: true, roundScale: true, seed: 24 },
  { R: 8, E: 64, H: 128, k: 8, tokens: [128, 7, 0, 1, 128, 7, 0, 1], M: 128, kind: 'zipf', idxDtype: 'i32', useFp8: true, roundScale: false, seed: 25 },
  { R: 8, E: 288, H: 2048, k: 9, tokens: [7, 1, 0, 7, 1, 0, 7, 1], M: 7, kind: 'uniform', idxDtype: 'i64', useFp8: false, roundScale: false, seed: 26 },
  { R: 8, E: 8, H: 384, k: 6, tokens: [1, 1, 1, 1, 0, 0, 0, 0], M: 1, kind: 'uniform', idxDtype: 'i32', useFp8: true, roundScale: true, seed: 27 },
];

function name(c: LlCase): string {
  return `R=${c.R} E=${c.E} H=${c.H} k=${c.k} T=[${c.tokens}] M=${c.M} ${c.kind} ${c.idxDtype} ${c.useFp8 ? 'fp8' : 'bf16'}${c.roundScale ? ' roundScale' : ''}`;
}

describe('low-latency dispatch/combine match the oracle', () => {
  test.each(CASES.map((c) => [name(c), c] as const))('%s', async (_, c) => {
    const inputs = makeRankInputs({ ...c, dtype: 'bf16' });
    const L = c.E / c.R;
    const RM = c.R * c.M;
    const buffers = await simulatedBuffers(c.R, { hidden: 2048, numExperts: c.E, maxTokensPerRank: 1, lowLatency: { maxTokensPerRank: c.M } });
    try {
      const stats = c.tokens.map(() => Tensor.fromNumbers(new Array(L).fill(5), [L], 'i32'));
      const results = await onAllRanks(buffers, (b, r) =>
        b.lowLatencyDispatch({
          x: inputs[r]!.x,
          topkIdx: inputs[r]!.topkIdx,
          maxTokensPerRank: c.M,
          numExperts: c.E,
          useFp8: c.useFp8,
          roundScale: c.roundScale,
          returnRecvHook: r % 2 === 0,
          cumulativeRecvStats: stats[r],
        }),
      );
      const want = oracleLowLatencyDispatch(
        inputs.map((i) => i.oracle),
        { R: c.R, E: c.E, k: c.k, H: c.H, M: c.M, useFp8: c.useFp8, roundScale: c.roundScale },
      );
      for (const [r, res] of results.entries()) {
        if (r % 2 === 0) await res.hook!();
        else expect(res.hook).toBeUndefined();
        expect(res.recvX.shape).toEqual([L, RM, c.H]);
        expect(res.recvX.dtype).toBe(c.useFp8 ? 'fp8e4m3' : 'bf16');
        assertBitwiseEqual(res.recvX.data, want[r]!.recvX, `recvX of rank ${r}`);
        if (c.useFp8) {
          expect(res.recvXScales!.shape).toEqual([L, RM, c.H / 128]);
          assertBitwiseEqual(res.recvXScales!.data, want[r]!.recvXScales!, `recvXScales of rank ${r}`);
        } else {
          expect(res.recvXScales).toBeUndefined();
        }
        assertBitwiseEqual(res.recvCount.data, want[r]!.recvCount, 'recvCount');
        assertBitwiseEqual(res.handle.srcInfo.data, want[r]!.srcInfo, 'srcInfo');
        assertBitwiseEqual(res.handle.layoutRange.data, want[r]!.layoutRange, 'layoutRange');
        expect(res.handle.layoutRange.shape).toEqual([L, c.R, 2]);
        expect(stats[r]!.toNumbers()).toEqual(Array.from(want[r]!.recvCount, (n) => n + 5));
      }

      // Combine random expert outputs, with some of the dispatch's experts dropped (-1) and new weights.
      const rng = new SeededRandom(c.seed + 100);
      const ys = results.map(() => randomBf16(rng, [L, RM, c.H], 3));
      const combineRouting = inputs.map(({ oracle }) => ({
        T: oracle.T,
        topkIdx: oracle.topkIdx.map((e) => (rng.uniform() < 0.1 ? -1 : e)),
        topkWeights: Float32Array.from(oracle.topkWeights, () => rng.uniform() * 2 - 1),
      }));
      const outs = c.tokens.map((T, r) => (r === 1 ? Tensor.empty([T, c.H], 'bf16').fillBytes(0xff) : undefined));
      const combined = await onAllRanks(buffers, (b, r) =>
        b.lowLatencyCombine({
          y: ys[r]!,
          topkIdx: Tensor.fromNumbers(combineRouting[r]!.topkIdx, [c.tokens[r]!, c.k], c.idxDtype),
          topkWeights: Tensor.from(combineRouting[r]!.topkWeights, { shape: [c.tokens[r]!, c.k], dtype: 'f32' }),
          handle: results[r]!.handle,
          out: outs[r],
          returnRecvHook: true,
        }),
      );
      const expected = oracleLowLatencyCombine(want, ys.map((y) => y.data as Uint16Array), combineRouting, c);
      for (const [r, res] of combined.entries()) {
        await res.hook!();
        if (outs[r]) expect(res.combinedX).toBe(outs[r]);
        expect(res.combinedX.shape).toEqual([c.tokens[r], c.H]);
        assertBitwiseEqual(res.combinedX.data, expected[r]!, `combinedX of rank ${r}`);
        expect(results[r]!.handle.released).toBe(true);
      }
    } finally {
      await closeAll(buffers);
    }
  });
});

test.each([true, false])('low-latency combine of scaled expert outputs equals the dense formula (useFp8 %s)', async (useFp8) => {
  const c = { R: 4, E: 32, H: 256, k: 6, M: 16 };
  const L = c.E / c.R;
  const inputs = makeRankInputs({ ...c, tokens: [16, 3, 0, 9], kind: 'zipf', dtype: 'bf16', idxDtype: 'i32', seed: 31 });
  const buffers = await simulatedBuffers(c.R, { hidden: c.H, numExperts: c.E, maxTokensPerRank: 16, lowLatency: { maxTokensPerRank: c.M } });
  const scaleOf = (e: number) => 0.25 + e / 16; // expert e multiplies its input by this
  try {
    const combined = await onAllRanks(buffers, async (b, r) => {
      const d = await b.lowLatencyDispatch({ x: inputs[r]!.x, topkIdx: inputs[r]!.topkIdx, maxTokensPerRank: c.M, numExperts: c.E, useFp8 });
      // Run the "experts": y = bf16(scale_e * dequantised input), slot by slot.
      const values = useFp8
        ? dequantizeFp8(d.recvX.data as Uint8Array, d.recvXScales!.data as Float32Array, L * c.R * c.M, c.H)
        : d.recvX.toFloat32();
      const y = Tensor.fromNumbers(
        Array.from(values, (v, i) => v * scaleOf(r * L + Math.floor(i / (c.R * c.M * c.H)))),
        [L, c.R * c.M, c.H],
        'bf16',
      );
      return (await b.lowLatencyCombine({ y, topkIdx: inputs[r]!.topkIdx, topkWeights: inputs[r]!.topkWeights, handle: d.handle })).combinedX;
    });
    combined.forEach((out, r) => {
      // Dense: out[t] = sum_k w[t,k] * scale_e * x[t] (x as the receiver saw it: fp8-dequantised or bf16).
      const { oracle, x } = inputs[r]!;
      const xf = x.toFloat32();
      const seen = useFp8 ? fp8RoundTrip(xf, oracle.T, c.H) : xf;
      const expected = new Float64Array(oracle.T * c.H);
      const magnitude = new Float64Array(oracle.T * c.H);
      for (let t = 0; t < oracle.T; t++) {
        for (let j = 0; j < c.k; j++) {
          const e = oracle.topkIdx[t * c.k + j]!;
          if (e < 0) continue;
          const w = oracle.topkWeights[t * c.k + j]! * scaleOf(e);
          for (let h = 0; h < c.H; h++) {
            expected[t * c.H + h] += w * seen[t * c.H + h]!;
            magnitude[t * c.H + h] += Math.abs(w * seen[t * c.H + h]!);
          }
        }
      }
      assertCloseBf16(out, expected, magnitude, `rank ${r}`);
    });
  } finally {
    await closeAll(buffers);
  }
});

/** x after the fp8 cast and back, per row and 128-channel block. */
function fp8RoundTrip(x: Float32Array, T: number, H: number): Float32Array {
  const bits = Uint16Array.from(x, (v) => f32ToBf16Bits(v));
  const { q, scales } = quantizeBf16RowsFp8(bits, T, H, false);
  return dequantizeFp8(q, scales, T, H);
}
