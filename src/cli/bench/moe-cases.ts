/**
 * What `wideep bench moe` measures: one DeepSeek-V3 MoE layer (hidden 7168,
 * moe intermediate 2048, 256 routed experts, top-8 of 8 groups keeping 4,
 * one shared expert) at one rank or with its experts spread over N ranks, a
 * prefill step and a decode step, and the goals each ratio is held to. Pure:
 * unit tests cover it without a GPU.
 */
import { parseArgs } from 'node:util';

import { WideepError, assertInteger } from '../../errors.js';
import type { ExpertDType, ExpertGemm } from '../../moe/layer.js';
import { moeLayerConfig, type MoeLayerConfig } from '../../simulation/config.js';
import { DEEPSEEK_HIDDEN, DEEPSEEK_INTER } from './experts-cases.js';

export const DEEPSEEK_EXPERTS = 256;

export interface MoeBenchOptions {
  json: boolean;
  out: string | undefined;
  timelineSvg: string | undefined;
  iters: number;
  warmup: number;
  torch: boolean;
  /** Routed experts (DeepSeek-V3: 256); fewer for a smaller, faster run. */
  experts: number;
  prefillTokens: number;
  decodeTokens: number;
  /** EP ranks, one process each (1: the layer alone, beside PyTorch). */
  ranks: number;
  /** Every rank on GPU 0 (time-sliced: the logic across processes, no measure of overlap). */
  shareGpu: boolean;
  /** The routed experts' weights (and the tokens dispatched to them); the goals compare with PyTorch's bf16 layer. */
  expertDType: ExpertDType;
  /** How fp8 experts run their GEMMs (cuBLASLt per expert, or wideep's masked kernel). */
  expertGemm: ExpertGemm;
}

/** The shape a run measured, as the report states it. */
export interface MoeShape {
  model: 'DeepSeek-V3';
  /** True when --experts cut the routed experts below DeepSeek-V3's 256. */
  reduced: boolean;
  hidden: number;
  moeIntermediate: number;
  experts: number;
  sharedExperts: number;
  topk: number;
  groups: number;
  topkGroup: number;
  routedScalingFactor: number;
  /** Std of the random gate's selection bias; 0: the load is as even as random gate weights make it. */
  routerBiasStd: number;
  prefillTokens: number;
  decodeTokens: number;
  /** The routed experts' dtype (fp8e4m3: 128x128 block scales, tokens cast per 128 channels); gate and shared expert are bf16. */
  dtype: ExpertDType;
  /** The fp8 experts' GEMMs: 'cublaslt' (one launch per expert) or 'masked' (wideep's kernel, one launch). */
  expertGemm: ExpertGemm;
  /** Tokens above are per rank; each rank holds experts / ranks of them. */
  ranks: number;
  sharedGpu: boolean;
}

/** Ranks a run may spread the layer over: one GPU's NVLink domain. */
const MAX_RANKS = 8;

/** The low-latency buffer's limit on tokens per rank. */
const MAX_DECODE_TOKENS = 1024;

export function parseMoeArgs(argv: string[]): MoeBenchOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      json: { type: 'boolean', default: false },
      out: { type: 'string' },
      'timeline-svg': { type: 'string' },
      iters: { type: 'string', default: '20' },
      warmup: { type: 'string', default: '5' },
      'no-torch': { type: 'boolean', default: false },
      experts: { type: 'string', default: String(DEEPSEEK_EXPERTS) },
      'prefill-tokens': { type: 'string', default: '4096' },
      'decode-tokens': { type: 'string', default: '128' },
      ranks: { type: 'string', default: '1' },
      'share-gpu': { type: 'boolean', default: false },
      'expert-dtype': { type: 'string', default: 'bf16' },
      'expert-gemm': { type: 'string', default: 'cublaslt' },
    },
  });
  const experts = assertInteger('--experts', Number(values.experts), 16, DEEPSEEK_EXPERTS);
  if (experts % 8 !== 0) throw new WideepError('ERR_INVALID_ARG', `--experts: expected a multiple of 8 (DeepSeek-V3's 8 expert groups), got ${experts}`);
  const ranks = assertInteger('--ranks', Number(values.ranks), 1, MAX_RANKS);
  if (experts % ranks !== 0) throw new WideepError('ERR_INVALID_ARG', `--ranks: the ${experts} experts must split evenly over the ranks, got ${ranks}`);
  const expertDType = expertDTypeArg(values['expert-dtype']!);
  const expertGemm = values['expert-gemm'];
  if (expertGemm !== 'cublaslt' && expertGemm !== 'masked') throw new WideepError('ERR_INVALID_ARG', `--expert-gemm: expected cublaslt or masked, got ${expertGemm}`);
  if (expertGemm === 'masked' && expertDType !== 'fp8e4m3') throw new WideepError('ERR_INVALID_ARG', '--expert-gemm masked runs fp8 experts: add --expert-dtype fp8');
  return {
    json: values.json!,
    out: values.out,
    timelineSvg: values['timeline-svg'],
    iters: assertInteger('--iters', Number(values.iters), 1, 10_000),
    warmup: assertInteger('--warmup', Number(values.warmup), 0, 10_000),
    torch: !values['no-torch'],
    experts,
    prefillTokens: assertInteger('--prefill-tokens', Number(values['prefill-tokens']), 1, 16_384),
    decodeTokens: assertInteger('--decode-tokens', Number(values['decode-tokens']), 1, MAX_DECODE_TOKENS),
    ranks,
    shareGpu: values['share-gpu']!,
    expertDType,
    expertGemm,
  };
}

function expertDTypeArg(v: string): ExpertDType {
  if (v === 'bf16') return 'bf16';
  if (v === 'fp8') return 'fp8e4m3';
  throw new WideepError('ERR_INVALID_ARG', `--expert-dtype: expected bf16 or fp8, got ${v}`);
}

export function moeShape(o: Pick<MoeBenchOptions, 'experts' | 'prefillTokens' | 'decodeTokens'> & Partial<Pick<MoeBenchOptions, 'ranks' | 'shareGpu' | 'expertDType' | 'expertGemm'>>): MoeShape {
  return {
    model: 'DeepSeek-V3',
    reduced: o.experts < DEEPSEEK_EXPERTS,
    hidden: DEEPSEEK_HIDDEN,
    moeIntermediate: DEEPSEEK_INTER,
    experts: o.experts,
    sharedExperts: 1,
    topk: 8,
    groups: 8,
    topkGroup: 4,
    routedScalingFactor: 2.5,
    routerBiasStd: 0,
    prefillTokens: o.prefillTokens,
    decodeTokens: o.decodeTokens,
    dtype: o.expertDType ?? 'bf16',
    expertGemm: o.expertGemm ?? 'cublaslt',
    ranks: o.ranks ?? 1,
    sharedGpu: (o.ranks ?? 1) > 1 && (o.shareGpu ?? false),
  };
}

/** The layer config of a shape (checked: the experts must split into the groups and cover the top-k). */
export function layerConfig(s: MoeShape): MoeLayerConfig {
  return moeLayerConfig({
    hidden: s.hidden,
    moeIntermediate: s.moeIntermediate,
    numRoutedExperts: s.experts,
    numSharedExperts: s.sharedExperts,
    topK: s.topk,
    numExpertGroups: s.groups,
    topkGroup: s.topkGroup,
    routedScalingFactor: s.routedScalingFactor,
    scoringFunc: 'sigmoid',
    normTopkProb: true,
    routerBiasStd: s.routerBiasStd,
  });
}

/** The speed goals: the layer at one rank beside PyTorch in the same run, and two-batch overlap on several GPUs. */
export const MOE_GOALS = {
  /** PyTorch's prefill step time over ours (no TBO): at least. */
  prefillVsTorch: 1.3,
  /** PyTorch's eager decode step over ours replayed as a CUDA graph: at least. */
  decodeGraphVsTorch: 2,
  /** Host time per graph replay (µs): at most. */
  hostUsPerReplay: 10,
  /** Step time without two-batch overlap over the time with it: at least. */
  tboSpeedup: 1.2,
  /** The overlap goal counts from this many ranks, each on a GPU of its own. */
  tboMinGpus: 4,
} as const;

/** The stages a Timeline records in a forward, in the order the table shows them. */
export const STAGES = ['router', 'shared', 'dispatch', 'dispatch-recv', 'experts', 'combine', 'combine-recv'] as const;
