/**
 * The dense reference: one process, every rank's tokens, the logical experts
 * applied directly (no EP, no bf16 rounding after the MoE input). The same
 * attention, gate and expert functions as the pipeline.
 */
import type { AttentionFn } from './attention.js';
import { ExpertScratch, expertForward, expertRows } from './experts.js';
import { gateForward } from './gate.js';
import { attentionInput, attentionResidual, moeInput } from './layer.js';
import { addRows } from './math.js';
import type { MoeLayerWeights } from './weights.js';
import { numTokens, type RankBatch } from './workload.js';

export interface ReferenceOutput {
  /** `[T * H]`: the layer output `h + moe`. */
  out: Float32Array;
  /** `[T * H]`: the MoE part alone (routed + shared), the scale errors are measured against. */
  moe: Float32Array;
  /** `[T * k]` logical experts chosen per token. */
  topkIdx: Int32Array;
}

/** The layer on one DP rank's batch, densely. */
export function denseMoeLayer(weights: MoeLayerWeights, attention: AttentionFn, batch: RankBatch): ReferenceOutput {
  const c = weights.config;
  const H = c.hidden;
  const k = c.topK;
  const T = numTokens(batch);
  const h = attentionResidual(weights, attention, batch.x, attentionInput(weights, batch.x), batch.seqLens, batch.prefixes);
  const x = moeInput(weights, h);
  const gate = gateForward(weights, x, T);
  const routed = new Float32Array(T * H);
  const y = new Float32Array(H);
  const scratch = new ExpertScratch(c.moeIntermediate);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const e = gate.topkIdx[t * k + j]!;
      if (e < 0) continue;
      expertForward(weights.experts[e]!, x, t * H, y, 0, scratch);
      const w = gate.topkWeights[t * k + j]!;
      for (let i = 0; i < H; i++) routed[t * H + i]! += w * y[i]!;
    }
  }
  const moe = addRows(routed, expertRows(weights.shared, x, H));
  return { out: addRows(h, moe), moe, topkIdx: gate.topkIdx };
}

/** `[step][rank]` reference outputs of a whole workload. */
export function denseReference(weights: MoeLayerWeights, attention: AttentionFn, workload: readonly (readonly RankBatch[])[]): ReferenceOutput[][] {
  return workload.map((ranks) => ranks.map((batch) => denseMoeLayer(weights, attention, batch)));
}
