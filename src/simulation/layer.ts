/**
 * The dense parts of the layer, identical on every DP rank and in the
 * reference: attention with its residual, and the MoE input.
 *
 *   h      = x + attention(rmsnorm(x))
 *   moeIn  = bf16(rmsnorm(h))            (what dispatch moves)
 *   out    = h + routed(moeIn) + shared(moeIn)
 */
import type { AttentionFn } from './attention.js';
import { addRows, rmsNormRows, roundRowsToBf16 } from './math.js';
import type { MoeLayerWeights } from './weights.js';

/** The attention input of rows `x` (also what a KV cache keeps for them). */
export function attentionInput(weights: MoeLayerWeights, x: Float32Array): Float32Array {
  return rmsNormRows(x, weights.config.hidden, weights.attentionNorm);
}

/** `h = x + attention(attnIn)`, where `attnIn = attentionInput(x)`. */
export function attentionResidual(
  weights: MoeLayerWeights,
  attention: AttentionFn,
  x: Float32Array,
  attnIn: Float32Array,
  seqLens: readonly number[],
  prefixes: readonly Float32Array[],
): Float32Array {
  const a = attention({ hidden: weights.config.hidden, x: attnIn, seqLens, prefixes });
  return addRows(x, a);
}

/** The MoE input: RMSNorm of h, rounded to bf16 (the activations the experts and the gate see). */
export function moeInput(weights: MoeLayerWeights, h: Float32Array): Float32Array {
  return roundRowsToBf16(rmsNormRows(h, weights.config.hidden, weights.moeNorm));
}
