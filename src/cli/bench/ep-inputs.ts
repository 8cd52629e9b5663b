/**
 * Inputs of the EP benchmark, as docs/performance.md defines them: random BF16 tokens,
 * uniform top-k of abs(randn)+1 scores or a Zipf-skewed routing, and the FP8
 * cast of the tokens with one scale per 128 channels.
 */
import { quantizeBf16RowsFp8 } from '../../ep/fp8-quant.js';
import { SeededRandom, randomRouting } from '../../ep/random-routing.js';
import { f32ToBf16Bits } from '../../tensor/convert.js';
import { Tensor } from '../../tensor/tensor.js';

export type RoutingKind = 'uniform' | 'zipf';

export interface EpInputs {
  x: Tensor;
  xFp8: Tensor;
  xScales: Tensor;
  topkIdx: Tensor;
  topkWeights: Tensor;
  /** Host copy of topkIdx, [T*k]. */
  topkHost: Int32Array;
}

export function randomBf16(count: number, seed: number): Uint16Array {
  const rng = new SeededRandom(seed);
  const out = new Uint16Array(count);
  for (let i = 0; i < count; i++) out[i] = f32ToBf16Bits(rng.normal());
  return out;
}

export async function makeEpInputs(o: {
  tokens: number;
  hidden: number;
  topk: number;
  experts: number;
  routing: RoutingKind;
  seed: number;
  device: `cuda:${number}`;
  withFp8: boolean;
}): Promise<EpInputs> {
  const bits = randomBf16(o.tokens * o.hidden, o.seed);
  const r = randomRouting({ numTokens: o.tokens, numExperts: o.experts, topk: o.topk, kind: o.routing, seed: o.seed + 1 });
  const host = {
    x: Tensor.from(bits, { shape: [o.tokens, o.hidden], dtype: 'bf16' }),
    topkIdx: Tensor.from(r.topkIdx, { shape: [o.tokens, o.topk], dtype: 'i32' }),
    topkWeights: Tensor.from(r.topkWeights, { shape: [o.tokens, o.topk], dtype: 'f32' }),
  };
  const q = o.withFp8 ? quantizeBf16RowsFp8(bits, o.tokens, o.hidden, false) : undefined;
  const xFp8 = q ? Tensor.from(q.q, { shape: [o.tokens, o.hidden], dtype: 'fp8e4m3' }) : Tensor.empty([0], 'fp8e4m3');
  const xScales = q ? Tensor.from(q.scales, { shape: [o.tokens, o.hidden / 128], dtype: 'f32' }) : Tensor.empty([0], 'f32');
  return {
    x: await host.x.to(o.device),
    xFp8: await xFp8.to(o.device),
    xScales: await xScales.to(o.device),
    topkIdx: await host.topkIdx.to(o.device),
    topkWeights: await host.topkWeights.to(o.device),
    topkHost: r.topkIdx,
  };
}
