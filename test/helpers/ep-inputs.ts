/** Seeded per-rank inputs for EP tests, with their oracle view. */
import { randomRouting } from '../../src/ep/random-routing.js';
import type { Tensor } from '../../src/tensor/tensor.js';
import type { OracleInput } from './ep-oracle.js';
import { SeededRandom, fromRouting, randomBf16, randomFp8 } from './random.js';

export interface EpCase {
  R: number;
  E: number;
  H: number;
  k: number;
  /** Tokens per rank. */
  tokens: readonly number[];
  /** duplicates: every slot uniform in [-1, E), so repeats and -1 are common (works for k > E). */
  kind: 'uniform' | 'zipf' | 'duplicates';
  dropProbability?: number;
  dtype: 'bf16' | 'fp8e4m3';
  idxDtype: 'i32' | 'i64';
  seed: number;
}

export interface RankInputs {
  x: Tensor;
  xScales: Tensor | undefined;
  topkIdx: Tensor;
  topkWeights: Tensor;
  oracle: OracleInput;
}

function bytesOf(t: Tensor): Uint8Array {
  const d = t.data;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

export function makeRankInputs(c: EpCase): RankInputs[] {
  const rng = new SeededRandom(c.seed);
  return c.tokens.map((T, r) => {
    let idx: Int32Array;
    let w: Float32Array;
    if (c.kind === 'duplicates') {
      idx = Int32Array.from({ length: T * c.k }, () => rng.int(c.E + 1) - 1);
      w = Float32Array.from({ length: T * c.k }, () => rng.uniform());
    } else {
      const routing = randomRouting({ numTokens: T, numExperts: c.E, topk: c.k, kind: c.kind, dropProbability: c.dropProbability ?? 0, seed: c.seed * 1000 + r });
      idx = routing.topkIdx;
      w = routing.topkWeights;
    }
    const { topkIdx, topkWeights } = fromRouting(idx, w, T, c.k, c.idxDtype);
    const { x, xScales } = c.dtype === 'bf16' ? { x: randomBf16(rng, [T, c.H]), xScales: undefined } : randomFp8(rng, T, c.H);
    const oracle: OracleInput = { x: bytesOf(x), xScales: xScales?.data as Float32Array | undefined, topkIdx: idx, topkWeights: w, T };
    return { x, xScales, topkIdx, topkWeights, oracle };
  });
}
