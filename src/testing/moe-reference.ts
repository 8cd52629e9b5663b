/**
 * The MoE layer (gate, routed SwiGLU experts, shared expert) on the host in
 * double, for checking a GPU layer built from the same bf16 weights
 * (`MoeLayer.fromHost`). The GPU's float32 router logits may order two
 * nearly equal scores the other way, so tokens whose expert or group choice
 * is within `tieMargin` of a tie are flagged rather than compared.
 *
 * With `expertDType: 'fp8e4m3'` the routed experts compute as an fp8 GPU
 * layer does: 128x128-block fp8 weights, token rows cast to fp8 per 128
 * channels before they are dispatched, the gate/up outputs rounded to bf16 and
 * the SwiGLU output cast to fp8 per 128 channels before the down projection.
 */
import { FP8_BLOCK, dequantizeFp8, quantizeRowFp8 } from '../ep/fp8-quant.js';
import { fp8RoutedExperts } from '../moe/fp8-weights.js';
import type { MoeLayerWeights } from '../simulation/weights.js';
import { bf16BitsToF32, f32ToBf16Bits } from '../tensor/convert.js';

export interface MoeReference {
  /** [T * H]: the MoE output (routed + shared). */
  out: Float64Array;
  /** [T * H]: the sum of the magnitudes of every product added up: a rounding scale for each element. */
  scale: Float64Array;
  /** [T]: 1 where the token's top-k is within tieMargin of a tie. */
  nearTie: Uint8Array;
  /** [T * k]: the chosen logical experts. */
  topkIdx: Int32Array;
}

/** Default margin under which a choice counts as a tie: far above float32 logit error at these sizes. */
export const TIE_MARGIN = 1e-3;

export interface MoeReferenceOptions {
  /** Default TIE_MARGIN. */
  tieMargin?: number;
  /** The routed experts' precision on the GPU (default bf16). */
  expertDType?: 'bf16' | 'fp8e4m3';
}

/** The layer for `T` tokens of `x` [T * H] (bf16 values); a number for `options` is the tie margin. */
export function moeLayerReference(weights: MoeLayerWeights, x: ArrayLike<number>, T: number, options: MoeReferenceOptions | number = {}): MoeReference {
  if (typeof options === 'number') options = { tieMargin: options };
  const c = weights.config;
  const [H, E, k] = [c.hidden, c.numRoutedExperts, c.topK];
  const tieMargin = options.tieMargin ?? TIE_MARGIN;
  const fp8 = options.expertDType === 'fp8e4m3';
  const routed = fp8 ? fp8RoutedExperts(weights).experts : weights.experts;
  const routedX = fp8 ? fp8Rows(x, T, H) : x;
  const r: MoeReference = { out: new Float64Array(T * H), scale: new Float64Array(T * H), nearTie: new Uint8Array(T), topkIdx: new Int32Array(T * k) };
  for (let t = 0; t < T; t++) {
    const at = t * H;
    const scores = new Float64Array(E);
    for (let e = 0; e < E; e++) {
      let s = 0;
      for (let h = 0; h < H; h++) s += weights.gate[e * H + h]! * x[at + h]!;
      scores[e] = s;
    }
    scoreInPlace(scores, c.scoringFunc);
    const { chosen, margin } = groupedChoice(scores, weights.gateBias, c);
    if (margin < tieMargin) r.nearTie[t] = 1;
    r.topkIdx.set(chosen, t * k);
    const sum = chosen.reduce((s, e) => s + scores[e]!, 0);
    const norm = c.normTopkProb ? 1 / (sum + 1e-20) : 1;
    for (const e of chosen) addExpert(routed[e]!, routedX, at, scores[e]! * norm * c.routedScalingFactor, r, fp8);
    if (weights.shared) addExpert(weights.shared, x, at, 1, r, false);
  }
  return r;
}

function scoreInPlace(v: Float64Array, fn: 'sigmoid' | 'softmax'): void {
  if (fn === 'sigmoid') {
    for (let i = 0; i < v.length; i++) v[i] = 1 / (1 + Math.exp(-v[i]!));
    return;
  }
  const max = Math.max(...v);
  let sum = 0;
  for (let i = 0; i < v.length; i++) sum += v[i] = Math.exp(v[i]! - max);
  for (let i = 0; i < v.length; i++) v[i]! /= sum;
}

/** DeepSeek's group-limited top-k on scores + bias, and how far the choice is from flipping (group or expert boundary). */
function groupedChoice(scores: Float64Array, bias: Float32Array, c: MoeLayerWeights['config']): { chosen: number[]; margin: number } {
  const E = scores.length;
  const G = c.numExpertGroups;
  const per = E / G;
  const choice = Array.from(scores, (s, e) => s + bias[e]!);
  const desc = (ids: number[], v: (i: number) => number) => ids.sort((a, b) => v(b) - v(a) || a - b);
  const groupScore = Array.from({ length: G }, (_, g) => {
    const best = desc([...Array(per).keys()].map((i) => g * per + i), (e) => choice[e]!);
    return best.slice(0, Math.min(2, per)).reduce((s, e) => s + choice[e]!, 0);
  });
  const groups = desc([...Array(G).keys()], (g) => groupScore[g]!);
  const kept = new Set(groups.slice(0, c.topkGroup));
  const candidates = desc([...Array(E).keys()].filter((e) => kept.has(Math.floor(e / per))), (e) => choice[e]!);
  const gap = (order: number[], v: (i: number) => number, n: number) => (order.length > n ? v(order[n - 1]!) - v(order[n]!) : Infinity);
  const margin = Math.min(gap(groups, (g) => groupScore[g]!, c.topkGroup), gap(candidates, (e) => choice[e]!, c.topK));
  return { chosen: candidates.slice(0, c.topK), margin };
}

/** x [T, H] cast to fp8 per 128 channels and back (the GPU's cast, bit for bit). */
function fp8Rows(x: ArrayLike<number>, T: number, H: number): Float32Array {
  const q = new Uint8Array(T * H);
  const scales = new Float32Array((T * H) / FP8_BLOCK);
  for (let t = 0; t < T; t++) quantizeRowFp8(Float32Array.from({ length: H }, (_, h) => x[t * H + h]!), q, t * H, scales, (t * H) / FP8_BLOCK, false);
  return dequantizeFp8(q, scales, T, H);
}

const bf16 = (v: number) => bf16BitsToF32(f32ToBf16Bits(v));

/** r.out[at..] += w * expert(x[at..]), and its magnitude into r.scale; `fp8`: the activation as the fp8 down projection reads it. */
function addExpert(ew: MoeLayerWeights['experts'][number], x: ArrayLike<number>, at: number, w: number, r: MoeReference, fp8: boolean): void {
  const { hidden: H, intermediate: I } = ew;
  let act: Float64Array | Float32Array = new Float64Array(I);
  for (let i = 0; i < I; i++) {
    let g = 0;
    let u = 0;
    for (let h = 0; h < H; h++) {
      g += ew.gate[i * H + h]! * x[at + h]!;
      u += ew.up[i * H + h]! * x[at + h]!;
    }
    if (fp8) [g, u] = [bf16(g), bf16(u)];
    act[i] = (g / (1 + Math.exp(-g))) * u;
  }
  if (fp8) act = fp8Rows(act, 1, I);
  // The scale sums the magnitudes of the down projection's terms, not of its
  // result: a GPU rounds h and the activation to bf16, and where the terms
  // cancel their rounding error stays (seen on an H100: |y| alone was too tight).
  for (let h = 0; h < H; h++) {
    let y = 0;
    let terms = 0;
    for (let i = 0; i < I; i++) {
      y += ew.down[h * I + i]! * act[i]!;
      terms += Math.abs(ew.down[h * I + i]! * act[i]!);
    }
    r.out[at + h]! += w * y;
    r.scale[at + h]! += Math.abs(w) * terms;
  }
}
