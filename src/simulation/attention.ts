/**
 * DP attention's compute: each rank runs attention on its own batch, with no
 * communication. The layer takes any `AttentionFn`; the built-in one is a
 * small single-head causal attention, a stand-in for MLA.
 */
import { WideepError } from '../errors.js';
import { matVec } from './math.js';
import type { AttentionWeights } from './weights.js';

/** What an attention call sees: this batch's new tokens, sequence after sequence, and each sequence's cached prefix. */
export interface AttentionBatch {
  hidden: number;
  /** `[T * H]`: the attention input (normed) of the new tokens, in batch order. */
  x: Float32Array;
  /** New tokens of each sequence, in batch order (they sum to T). */
  seqLens: readonly number[];
  /**
   * Per sequence, the attention inputs of its earlier tokens (`[P * H]`, P >= 0):
   * what a KV cache would hold. Token i of a sequence attends to the prefix and
   * to new tokens 0..i of that sequence.
   */
  prefixes: readonly Float32Array[];
}

/**
 * Returns the attention output `[T * H]` (without the residual). The output
 * of a token must depend only on its sequence's prefix and earlier tokens,
 * and be computed the same way whatever else is in the batch: two-batch
 * overlap splits batches (even inside a sequence), and the dense reference
 * runs whole batches, so both must get the same bits.
 */
export type AttentionFn = (batch: AttentionBatch) => Float32Array;

/** Throws unless `batch` is self-consistent. */
export function checkAttentionBatch(batch: AttentionBatch): number {
  const H = batch.hidden;
  const T = batch.seqLens.reduce((a, b) => a + b, 0);
  if (batch.x.length !== T * H) throw new WideepError('ERR_SHAPE', `attention: x holds ${batch.x.length} floats, expected ${T} tokens × ${H}`);
  if (batch.prefixes.length !== batch.seqLens.length) {
    throw new WideepError('ERR_SHAPE', `attention: ${batch.prefixes.length} prefixes for ${batch.seqLens.length} sequences`);
  }
  batch.prefixes.forEach((p, s) => {
    if (p.length % H !== 0) throw new WideepError('ERR_SHAPE', `attention: prefix ${s} holds ${p.length} floats, not whole rows of ${H}`);
  });
  return T;
}

/**
 * Single-head causal softmax attention: q, k, v projections of width d,
 * scores q·k/sqrt(d) over the prefix and the tokens up to and including
 * this one, then the output projection.
 */
export function causalAttention(w: AttentionWeights): AttentionFn {
  const { hidden: H, headDim: d } = w;
  const scale = 1 / Math.sqrt(d);
  return (batch) => {
    if (batch.hidden !== H) throw new WideepError('ERR_SHAPE', `attention: batch hidden ${batch.hidden}, weights hidden ${H}`);
    const T = checkAttentionBatch(batch);
    const out = new Float32Array(T * H);
    const q = new Float32Array(d);
    const o = new Float32Array(d);
    let token = 0;
    batch.seqLens.forEach((len, s) => {
      const prefix = batch.prefixes[s]!;
      const P = prefix.length / H;
      const n = P + len;
      const keys = new Float32Array(n * d);
      const values = new Float32Array(n * d);
      for (let j = 0; j < n; j++) {
        const [src, at] = j < P ? [prefix, j * H] : [batch.x, (token + j - P) * H];
        matVec(w.k, d, H, src, at, keys, j * d);
        matVec(w.v, d, H, src, at, values, j * d);
      }
      const p = new Float64Array(n);
      for (let i = 0; i < len; i++) {
        matVec(w.q, d, H, batch.x, (token + i) * H, q, 0);
        const visible = P + i + 1;
        let max = -Infinity;
        for (let j = 0; j < visible; j++) {
          let dot = 0;
          for (let c = 0; c < d; c++) dot += q[c]! * keys[j * d + c]!;
          p[j] = dot * scale;
          max = Math.max(max, p[j]!);
        }
        let sum = 0;
        for (let j = 0; j < visible; j++) sum += p[j] = Math.exp(p[j]! - max);
        for (let c = 0; c < d; c++) {
          let acc = 0;
          for (let j = 0; j < visible; j++) acc += p[j]! * values[j * d + c]!;
          o[c] = acc / sum;
        }
        matVec(w.o, H, d, o, 0, out, (token + i) * H);
      }
      token += len;
    });
    return out;
  };
}
