/**
 * The orchestration layer of WideEP (docs/wide-ep.md): configuration,
 * models, expert sharding, EPLB, the DP-attention step, two-batch overlap and
 * the deployment planner. Pure TypeScript; nothing here touches a GPU.
 */
export {
  DEEPEP_MODES,
  MAX_DISPATCH_TOKENS_PER_RANK,
  MOE_A2A_BACKENDS,
  OPTION_SPECS,
  PARALLEL_DEFAULTS,
  type DeepepMode,
  type MoeA2aBackend,
  type ParallelOptions,
  type ResolvedDeepepMode,
  type ResolvedParallelOptions,
} from './options.js';
export { ParallelConfig, type ConfigOverride } from './config.js';
export { parseSglangArgs, sglangArgOptions, type ParsedSglangArgs } from './sglang-args.js';
export { type GroupKind, type ProcessGroups, type RankInfo } from './groups.js';
export {
  MODEL_PRESETS,
  findModelPreset,
  kvElementsPerTokenPerLayer,
  modelWeights,
  numMoeLayers,
  type GqaAttention,
  type MlaAttention,
  type ModelConfig,
  type ModelDtypes,
  type ModelWeights,
} from './models.js';
export { fromHuggingFaceConfig, loadModelConfig, normalizeModelConfig, resolveModel } from './model-file.js';
export {
  balancedPacking,
  eplbPolicy,
  rebalanceExperts,
  replicateExperts,
  type EplbParams,
  type EplbPolicy,
  type EplbResult,
} from './eplb.js';
export { ExpertLocationMap, seededRandom, type ExpertLocationShape, type ReplicaChoice } from './expert-location.js';
export {
  EplbRecorder,
  balancedness,
  countPhysical,
  gpuLoadsOf,
  slotLoadsFromLogical,
  type EplbRecorderOptions,
} from './eplb-recorder.js';
export { planRebalanceMoves, rebalanceOpsForRank, type RebalanceMove, type RebalanceMoveKind, type RebalancePlan } from './rebalance-moves.js';
export {
  STEP_METADATA_INTS,
  decodeStepMetadata,
  encodeStepMetadata,
  padTokenCount,
  padTopkIds,
  planDpStep,
  resolveDeepepMode,
  stepSettingsOf,
  type DpStepPlan,
  type DpStepSettings,
  type ForwardMode,
  type StepMetadata,
} from './dp-step.js';
export {
  DECODE_STAGES,
  PREFILL_STAGES,
  TBO_STAGE_DELAY,
  interleaveStages,
  splitIndexByHalfSum,
  splitTwoBatch,
  tboStageSchedule,
  type TboChild,
  type TboSchedule,
  type TboSplit,
  type TboStageDef,
  type TboStep,
} from './tbo.js';
export {
  combineRowBytes,
  dispatchRowBytes,
  layerTraffic,
  noneBackendTraffic,
  rankHitProbability,
  type LayerTraffic,
  type LinkBytes,
  type TrafficInput,
} from './comm-cost.js';
export { DEFAULT_GPU, GPU_PRESETS, type HardwareSpec } from './hardware.js';
export { planDeployment, type DeploymentPlan, type PlanInput, type TrafficScenario } from './planner.js';
export { epCallsOf, type EpCalls, type EpPath } from './ep-path.js';
