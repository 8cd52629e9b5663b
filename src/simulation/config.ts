/**
 * The shape of one DeepSeek-style MoE layer (attention stand-in + gate +
 * routed experts + shared experts), small enough for the cpu backend.
 */
import { WideepError, assertInteger } from '../errors.js';

export type ScoringFunc = 'sigmoid' | 'softmax';

export interface MoeLayerConfig {
  /** Width of the residual stream (a multiple of 8, as dispatch rows need). */
  hidden: number;
  /** Intermediate size of one routed or shared expert. */
  moeIntermediate: number;
  numRoutedExperts: number;
  /** Shared experts, applied to every token (they act as one expert of `numSharedExperts × moeIntermediate`). */
  numSharedExperts: number;
  /** Routed experts per token. */
  topK: number;
  /** Expert groups of the gate (`n_group`); 1 for none. */
  numExpertGroups: number;
  /** Groups a token may pick from (`topk_group`). */
  topkGroup: number;
  /** Multiplies the routed weights after normalisation (`routed_scaling_factor`; 2.5 in DeepSeek-V3). */
  routedScalingFactor: number;
  /** How gate logits become scores: sigmoid (DeepSeek-V3) or softmax (DeepSeek-V2). */
  scoringFunc: ScoringFunc;
  /** Normalise the chosen weights to sum 1 before scaling (`norm_topk_prob`). */
  normTopkProb: boolean;
  /** Head width of the single-head attention stand-in. */
  attentionHeadDim: number;
  /**
   * Std of the gate's selection bias (`e_score_correction_bias`); a larger
   * value makes some experts hot, which gives EPLB something to balance.
   */
  routerBiasStd: number;
}

/** The demo's layer: DeepSeek-V3's routing ratios (8 groups, 4 kept, top-8, one shared expert, ×2.5) at toy width. */
export const DEMO_MOE_CONFIG: Readonly<MoeLayerConfig> = Object.freeze({
  hidden: 128,
  moeIntermediate: 64,
  numRoutedExperts: 64,
  numSharedExperts: 1,
  topK: 8,
  numExpertGroups: 8,
  topkGroup: 4,
  routedScalingFactor: 2.5,
  scoringFunc: 'sigmoid',
  normTopkProb: true,
  attentionHeadDim: 32,
  routerBiasStd: 0.2,
});

/** A smaller layer for tests: 32 experts in 4 groups, top-4 of 2 groups. */
export const SMALL_MOE_CONFIG: Readonly<MoeLayerConfig> = Object.freeze({
  hidden: 128,
  moeIntermediate: 32,
  numRoutedExperts: 32,
  numSharedExperts: 1,
  topK: 4,
  numExpertGroups: 4,
  topkGroup: 2,
  routedScalingFactor: 2.5,
  scoringFunc: 'sigmoid',
  normTopkProb: true,
  attentionHeadDim: 16,
  routerBiasStd: 0.1,
});

/** `DEMO_MOE_CONFIG` with `overrides`, checked. */
export function moeLayerConfig(overrides: Partial<MoeLayerConfig> = {}): MoeLayerConfig {
  return validateMoeLayerConfig({ ...DEMO_MOE_CONFIG, ...overrides });
}

/** Throws ERR_INVALID_ARG naming the first field that is out of range. */
export function validateMoeLayerConfig(c: MoeLayerConfig): MoeLayerConfig {
  const where = 'MoE layer config';
  const bad = (msg: string): WideepError => new WideepError('ERR_INVALID_ARG', `${where}: ${msg}`);
  assertInteger(`${where}: hidden`, c.hidden, 8);
  if (c.hidden % 8 !== 0) throw bad(`hidden ${c.hidden} must be a multiple of 8`);
  assertInteger(`${where}: moeIntermediate`, c.moeIntermediate, 1);
  const E = assertInteger(`${where}: numRoutedExperts`, c.numRoutedExperts, 1);
  assertInteger(`${where}: numSharedExperts`, c.numSharedExperts, 0);
  const G = assertInteger(`${where}: numExpertGroups`, c.numExpertGroups, 1);
  if (E % G !== 0) throw bad(`numExpertGroups ${G} must divide numRoutedExperts ${E}`);
  const kg = assertInteger(`${where}: topkGroup`, c.topkGroup, 1, G);
  assertInteger(`${where}: topK`, c.topK, 1, kg * (E / G));
  assertInteger(`${where}: attentionHeadDim`, c.attentionHeadDim, 1);
  if (!(Number.isFinite(c.routedScalingFactor) && c.routedScalingFactor > 0)) {
    throw bad(`routedScalingFactor ${c.routedScalingFactor} must be a finite number > 0`);
  }
  if (c.scoringFunc !== 'sigmoid' && c.scoringFunc !== 'softmax') throw bad(`scoringFunc ${String(c.scoringFunc)} must be sigmoid or softmax`);
  if (typeof c.normTopkProb !== 'boolean') throw bad(`normTopkProb must be a boolean`);
  if (!(Number.isFinite(c.routerBiasStd) && c.routerBiasStd >= 0)) throw bad(`routerBiasStd ${c.routerBiasStd} must be a finite number >= 0`);
  return c;
}
