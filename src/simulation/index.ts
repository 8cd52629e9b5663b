/**
 * The MoE layer pipeline on the cpu backend: a DeepSeek-style layer (grouped
 * top-k gate, SwiGLU routed experts, shared expert) across simulated ranks
 * with DP attention, EP dispatch/combine, two-batch overlap and EPLB, checked
 * against a dense single-process reference.
 */
export { DEMO_MOE_CONFIG, SMALL_MOE_CONFIG, moeLayerConfig, validateMoeLayerConfig, type MoeLayerConfig, type ScoringFunc } from './config.js';
export {
  cloneExpert,
  expertWeights,
  generateMoeLayerWeights,
  withZeroedExpert,
  type AttentionWeights,
  type ExpertWeights,
  type MoeLayerWeights,
} from './weights.js';
export { gateForward, groupedTopk, type GateOutput } from './gate.js';
export { ExpertScratch, expertForward, expertRows } from './experts.js';
export { causalAttention, checkAttentionBatch, type AttentionBatch, type AttentionFn } from './attention.js';
export { attentionInput, attentionResidual, moeInput } from './layer.js';
export { generateWorkload, idleBatch, numTokens, type RankBatch, type StepKind, type WorkloadOptions } from './workload.js';
export { denseMoeLayer, denseReference, type ReferenceOutput } from './reference.js';
export { DEFAULT_TOLERANCE, compareWithReference, type Comparison } from './compare.js';
export { LAYER, RankEplb, RankExperts, type ReplicaChoiceKind } from './placement.js';
export { allReduceSum, moveExpertWeights, rebalanceRank, type RebalanceOutcome } from './rebalance.js';
export type { RankContext } from './context.js';
export { MicroBatch, type MicroBatchInput, type OpName } from './microbatch.js';
export { DECODE_STAGE_OPS, PREFILL_STAGE_OPS, layerSchedule, runSchedule, stageOps, type ScheduledStage } from './stages.js';
export { microBatchInput, runRankStep, type RankStepOptions, type RankStepResult } from './rank-step.js';
export {
  runMoePipeline,
  type EplbOptions,
  type EplbReport,
  type MoePipelineOptions,
  type MoePipelineResult,
  type PipelineEvent,
  type StepReport,
} from './pipeline.js';
export { DEFAULT_STEPS, runMoeLayerCheck, type MoeLayerCheckOptions, type MoeLayerCheckResult } from './check.js';
