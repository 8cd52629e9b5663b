/**
 * The MoE gate, DeepSeek-V3 style: scores from the router logits (sigmoid or
 * softmax); a selection score that adds the per-expert bias; each group
 * scored by the sum of its two best selection scores; the best `topkGroup`
 * groups kept; the best `topK` experts among them chosen; their (unbiased)
 * scores normalised to sum 1 and multiplied by the routed scaling factor.
 *
 * Ties go to the lower index everywhere, so the choice is a pure function of
 * the input row: the pipeline and the dense reference pick the same experts.
 */
import type { MoeLayerConfig } from './config.js';
import { matVec, sigmoid } from './math.js';
import type { MoeLayerWeights } from './weights.js';

export interface GateOutput {
  /** `[T * k]` logical expert ids, best first. */
  topkIdx: Int32Array;
  /** `[T * k]` routed weights of those experts. */
  topkWeights: Float32Array;
}

/** Indices of the `n` largest values of `v[0..len)` (ties: lower index first), best first. */
function topIndices(v: Float64Array, len: number, n: number, allowed?: (i: number) => boolean): number[] {
  const chosen: number[] = [];
  const taken = new Uint8Array(len);
  for (let r = 0; r < n; r++) {
    let best = -1;
    for (let i = 0; i < len; i++) {
      if (taken[i] || (allowed && !allowed(i))) continue;
      if (best < 0 || v[i]! > v[best]!) best = i;
    }
    if (best < 0) break;
    taken[best] = 1;
    chosen.push(best);
  }
  return chosen;
}

/**
 * Grouped top-k of one token from its router `logits[E]` (read at `at`);
 * writes k ids and weights at `out*[t * k]`.
 */
export function groupedTopk(config: MoeLayerConfig, gateBias: Float32Array, logits: Float32Array, at: number, t: number, out: GateOutput): void {
  const E = config.numRoutedExperts;
  const G = config.numExpertGroups;
  const k = config.topK;
  const per = E / G;
  const scores = new Float64Array(E);
  if (config.scoringFunc === 'sigmoid') {
    for (let e = 0; e < E; e++) scores[e] = sigmoid(logits[at + e]!);
  } else {
    let max = -Infinity;
    for (let e = 0; e < E; e++) max = Math.max(max, logits[at + e]!);
    let sum = 0;
    for (let e = 0; e < E; e++) sum += scores[e] = Math.exp(logits[at + e]! - max);
    for (let e = 0; e < E; e++) scores[e]! /= sum;
  }
  const choice = new Float64Array(E);
  for (let e = 0; e < E; e++) choice[e] = scores[e]! + gateBias[e]!;

  // Group score: the sum of the two best selection scores in the group (the one, for groups of one).
  const groupScore = new Float64Array(G);
  const inGroup = new Float64Array(per);
  for (let g = 0; g < G; g++) {
    inGroup.set(choice.subarray(g * per, (g + 1) * per));
    groupScore[g] = topIndices(inGroup, per, Math.min(2, per)).reduce((s, i) => s + inGroup[i]!, 0);
  }
  const keptGroups = new Uint8Array(G);
  for (const g of topIndices(groupScore, G, config.topkGroup)) keptGroups[g] = 1;
  const experts = topIndices(choice, E, k, (e) => keptGroups[Math.floor(e / per)] === 1);

  let sum = 0;
  for (const e of experts) sum += scores[e]!;
  const norm = config.normTopkProb ? 1 / (sum + 1e-20) : 1;
  experts.forEach((e, j) => {
    out.topkIdx[t * k + j] = e;
    out.topkWeights[t * k + j] = scores[e]! * norm * config.routedScalingFactor;
  });
}

/** The gate over `T` rows of `x[T * H]` (the MoE input). */
export function gateForward(weights: MoeLayerWeights, x: Float32Array, T: number): GateOutput {
  const c = weights.config;
  const E = c.numRoutedExperts;
  const H = c.hidden;
  const out: GateOutput = { topkIdx: new Int32Array(T * c.topK), topkWeights: new Float32Array(T * c.topK) };
  const logits = new Float32Array(E);
  for (let t = 0; t < T; t++) {
    matVec(weights.gate, E, H, x, t * H, logits, 0);
    groupedTopk(c, weights.gateBias, logits, 0, t, out);
  }
  return out;
}
