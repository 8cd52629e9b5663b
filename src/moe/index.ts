/**
 * Expert compute on the GPU: the router (gate GEMM + fused top-k with
 * replica choice), the grouped expert GEMMs with SwiGLU, and the permutation
 * between a normal-mode dispatch and the expert-major layout.
 */
export { route, routerTopk, type ReplicaMap, type RouteOptions, type RoutingConfig, type TopkOptions, type TopkResult } from './router.js';
export { swiglu, type SwigluOptions, type SwigluResult } from './activation.js';
export { permuteToExperts, unpermuteFromExperts, type PermuteOptions, type PermuteResult, type UnpermuteOptions } from './permute.js';
export { expertsForward, type ExpertWeightsOnDevice, type ExpertsForwardOptions, type ExpertsScratch } from './experts.js';
export { quantizeRowsFp8, type QuantizeRowsOptions } from './quantize.js';
export { dequantizeWeightFp8, quantizeWeightFp8, type Fp8Matrix } from './fp8-weights.js';
export {
  MoeLayer,
  deviceWeightTensors,
  type ExpertDType,
  type ExpertGemm,
  type ExpertsFunction,
  type ForwardMode,
  type MoeForwardOptions,
  type MoeLayerDeviceWeights,
  type MoeLayerOptions,
  type RebalanceOptions,
} from './layer.js';
export { agreeOnStep, forwardPlanned, stepMetadata, type StepForwardMode, type StepInput } from './step-plan.js';
export { dpGather, dpScatter } from './attention-tp.js';
export { forwardDecoderLayer, moeTokenCount, type AttentionFunction, type DecoderStepOptions } from './decoder-step.js';
export { CommGroups, LAYER_GROUP_KINDS, splitColors } from './comm-groups.js';
export { gatheredMoe, type GatheredMoeOptions } from './gathered-moe.js';
export { loadLayerWeights, randomLayerWeights, type LayerWeightsOptions, type RandomLayerWeightsOptions } from './layer-weights.js';
export type { HostUploadOptions } from './host-upload.js';
export { DeviceEplb, type DeviceEplbOptions, type DeviceEplbReport, type RebalancingLayer } from './device-eplb.js';
export { DevicePlacement, type DevicePlacementOptions, type DispatchAlgorithm } from './placement.js';
export { moveExpertWeights, type WeightMoveOptions } from './weight-moves.js';
export { WideEp, wideEpLayout, moeLayerConfigOf, DEFAULT_PREFILL_TOKENS_PER_RANK, type CreateLayerOptions, type WideEpOptions } from './wide-ep.js';
