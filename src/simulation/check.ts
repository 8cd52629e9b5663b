/**
 * The whole check in one call: weights and batches from a seed, the pipeline
 * across simulated ranks, the dense reference, and the comparison. This is
 * what `wideep demo` runs.
 */
import { causalAttention, type AttentionFn } from './attention.js';
import { compareWithReference, DEFAULT_TOLERANCE, type Comparison } from './compare.js';
import { moeLayerConfig, type MoeLayerConfig } from './config.js';
import { runMoePipeline, type EplbOptions, type MoePipelineOptions, type MoePipelineResult } from './pipeline.js';
import { denseReference } from './reference.js';
import { generateMoeLayerWeights, type MoeLayerWeights } from './weights.js';
import { generateWorkload, numTokens, type StepKind } from './workload.js';

/** Prefill, decode, a mixed step (normal mode for everyone), then prefill and decode again after the EPLB rebalance. */
export const DEFAULT_STEPS: readonly StepKind[] = Object.freeze(['extend', 'decode', 'mixed', 'extend', 'decode']);

export interface MoeLayerCheckOptions {
  numRanks: number;
  ranksPerNode?: number;
  /** Default false. */
  tbo?: boolean;
  /** Default off. */
  eplb?: boolean | EplbOptions;
  /** Changes to `DEMO_MOE_CONFIG`. */
  model?: Partial<MoeLayerConfig>;
  /** Default `DEFAULT_STEPS`. */
  steps?: readonly StepKind[];
  /** Ranks without tokens in every step (default: the last rank). */
  idleRanks?: readonly number[];
  /** Seeds weights, batches and the dynamic replica choice (default 1). */
  seed?: number;
  /** Default `DEFAULT_TOLERANCE`. */
  tolerance?: number;
  deepepMode?: MoePipelineOptions['deepepMode'];
  numMaxDispatchTokensPerRank?: number;
  /** Replaces the attention stand-in in both the pipeline and the reference. */
  attention?: AttentionFn;
  /** Use these weights instead of generating them. */
  weights?: MoeLayerWeights;
  onProgress?: MoePipelineOptions['onProgress'];
}

export interface MoeLayerCheckResult {
  config: MoeLayerConfig;
  pipeline: MoePipelineResult;
  comparison: Comparison;
  /** Tokens over all steps and ranks. */
  totalTokens: number;
  timings: { pipelineMs: number; referenceMs: number };
}

export async function runMoeLayerCheck(options: MoeLayerCheckOptions): Promise<MoeLayerCheckResult> {
  const seed = options.seed ?? 1;
  const weights = options.weights ?? generateMoeLayerWeights(moeLayerConfig(options.model), seed);
  const config = weights.config;
  const workload = generateWorkload({
    numRanks: options.numRanks,
    hidden: config.hidden,
    steps: options.steps ?? DEFAULT_STEPS,
    idleRanks: options.idleRanks,
    seed: seed + 1,
  });
  const attention = options.attention ?? causalAttention(weights.attention);
  const t0 = performance.now();
  const pipeline = await runMoePipeline({
    weights,
    attention,
    workload,
    numRanks: options.numRanks,
    ranksPerNode: options.ranksPerNode,
    tbo: options.tbo,
    eplb: options.eplb,
    deepepMode: options.deepepMode,
    numMaxDispatchTokensPerRank: options.numMaxDispatchTokensPerRank,
    seed,
    onProgress: options.onProgress,
  });
  const t1 = performance.now();
  const reference = denseReference(weights, attention, workload);
  const t2 = performance.now();
  return {
    config,
    pipeline,
    comparison: compareWithReference(pipeline.outputs, reference, config.hidden, options.tolerance ?? DEFAULT_TOLERANCE),
    totalTokens: workload.flat().reduce((n, b) => n + numTokens(b), 0),
    timings: { pipelineMs: t1 - t0, referenceMs: t2 - t1 },
  };
}
