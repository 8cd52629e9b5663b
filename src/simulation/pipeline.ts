/**
 * The MoE layer pipeline across simulated ranks on the cpu backend: DP
 * attention on each rank's own batch, tokens to the experts and back through
 * `EpBuffer` (normal or low-latency mode per step), two-batch overlap and
 * EPLB (load recording, rebalance with redundant experts, weight moves).
 */
import { EpBuffer } from '../ep/buffer.js';
import { createSimulatedRanks, type CpuTransport } from '../ep/transport.js';
import { WideepError, assertInteger } from '../errors.js';
import { ParallelConfig } from '../planning/config.js';
import type { ForwardMode } from '../planning/dp-step.js';
import { stepSettingsOf } from '../planning/dp-step.js';
import { balancedness, gpuLoadsOf } from '../planning/eplb-recorder.js';
import { ExpertLocationMap } from '../planning/expert-location.js';
import type { DeepepMode, ResolvedDeepepMode } from '../planning/options.js';
import { causalAttention, type AttentionFn } from './attention.js';
import type { RankContext } from './context.js';
import { RankEplb, RankExperts, type ReplicaChoiceKind } from './placement.js';
import { runRankStep, type RankStepResult } from './rank-step.js';
import { rebalanceRank, type RebalanceOutcome } from './rebalance.js';
import type { MoeLayerWeights } from './weights.js';
import { numTokens, type RankBatch } from './workload.js';

export interface EplbOptions {
  /** Extra physical slots (`--ep-num-redundant-experts`); default: one per rank. */
  redundantExperts?: number;
  /** How a rank picks among an expert's replicas (default static). */
  replicaChoice?: ReplicaChoiceKind;
  /** Rebalance after this many steps (default: half the steps, at least 1). */
  rebalanceAfterSteps?: number;
}

export interface MoePipelineOptions {
  weights: MoeLayerWeights;
  /** Default: `causalAttention(weights.attention)`. */
  attention?: AttentionFn;
  /** `[step][rank]` batches; every step has `numRanks` of them. */
  workload: readonly (readonly RankBatch[])[];
  numRanks: number;
  /** Ranks per simulated node (default min(numRanks, 8)); EPLB and the static replica choice prefer the same node. */
  ranksPerNode?: number;
  /** Two-batch overlap (default false). */
  tbo?: boolean;
  /** EPLB (default off). */
  eplb?: boolean | EplbOptions;
  /** `--deepep-mode` (default auto: normal when some rank prefills, low_latency otherwise). */
  deepepMode?: DeepepMode;
  /** Low-latency receive slots per rank (default 128, SGLang's). */
  numMaxDispatchTokensPerRank?: number;
  /** Seeds the dynamic replica choice. */
  seed?: number;
  /** Bound on every collective wait, in ms (default 30000). */
  timeoutMs?: number;
  onProgress?: (event: PipelineEvent) => void;
}

export interface StepReport {
  step: number;
  forwardModes: ForwardMode[];
  tokensPerRank: number[];
  idleRanks: number[];
  deepepMode: ResolvedDeepepMode;
  useTbo: boolean;
  /** Per rank, tokens of each micro-batch. */
  microBatchTokens: number[][];
  /** Rows received by all ranks' dispatches (normal: token-rank pairs; low-latency: token-expert slots), and their bf16 bytes. */
  dispatchRows: number;
  dispatchBytes: number;
  /** Rows sent back by all ranks' combines, and their bf16 bytes. */
  combineRows: number;
  combineBytes: number;
  /** Expert placement in use: `identity` without EPLB, `initial` before the rebalance, `rebalanced` after. */
  placement: 'identity' | 'initial' | 'rebalanced';
  /** Mean / max of the per-rank expert loads of this step. */
  balancedness: number;
  /** Stage order of rank 0 (with TBO: the interleaving of micro-batches a and b). */
  stageTrace: string[];
}

export interface EplbReport {
  replicaChoice: ReplicaChoiceKind;
  redundantExperts: number;
  numPhysical: number;
  rebalancedAfterStep: number;
  policy: 'hierarchical' | 'global';
  /** Loads recorded before the rebalance, under the initial placement. */
  balancednessBefore: number;
  /** Those loads under the new placement (each expert's load split evenly over its replicas). */
  balancednessPredicted: number;
  /** Measured over the steps after the rebalance; null when none ran. */
  balancednessAfter: number | null;
  moves: RebalanceOutcome['moves'];
  /** Logical experts with more than one replica after the rebalance. */
  replicatedExperts: number;
  phy2log: number[];
}

export type PipelineEvent =
  | {
      type: 'setup';
      numRanks: number;
      ranksPerNode: number;
      numRoutedExperts: number;
      numPhysical: number;
      expertsPerRank: number;
      tbo: boolean;
      eplb: { replicaChoice: ReplicaChoiceKind; redundantExperts: number; rebalanceAfterSteps: number } | null;
      steps: number;
      deepepMode: DeepepMode;
      numMaxDispatchTokensPerRank: number;
    }
  | { type: 'step'; report: StepReport }
  | { type: 'rebalance'; report: EplbReport };

export interface MoePipelineResult {
  /** `[step][rank]` layer outputs `[T * H]`. */
  outputs: Float32Array[][];
  steps: StepReport[];
  eplb: EplbReport | null;
  parallel: ParallelConfig;
  numPhysical: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

/**
 * Runs `fn` on every rank concurrently. If one rank fails, every transport
 * is closed so the others stop at once (ERR_PEER) instead of waiting for a
 * timeout, and the first failure is rethrown.
 */
async function onAllRanks<T>(n: number, fn: (rank: number) => Promise<T>, abort: () => Promise<void>): Promise<T[]> {
  let first: { error: unknown } | undefined;
  const settled = await Promise.allSettled(
    Array.from({ length: n }, async (_, r) => {
      try {
        return await fn(r);
      } catch (e) {
        if (!first) {
          first = { error: e };
          await abort();
        }
        throw e;
      }
    }),
  );
  if (first) throw first.error;
  return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
}

function eplbOptionsOf(eplb: MoePipelineOptions['eplb'], numRanks: number, steps: number): Required<EplbOptions> | null {
  if (eplb === undefined || eplb === false) return null;
  const o: EplbOptions = eplb === true ? {} : eplb;
  const choice = o.replicaChoice ?? 'static';
  if (choice !== 'static' && choice !== 'dynamic') throw new WideepError('ERR_INVALID_ARG', `eplb.replicaChoice ${String(choice)}: expected static or dynamic`);
  return {
    redundantExperts: assertInteger('eplb.redundantExperts', o.redundantExperts ?? numRanks, 0),
    replicaChoice: choice,
    rebalanceAfterSteps: assertInteger('eplb.rebalanceAfterSteps', o.rebalanceAfterSteps ?? Math.max(1, Math.floor(steps / 2)), 1, steps),
  };
}

function checkWorkload(workload: MoePipelineOptions['workload'], numRanks: number, hidden: number): void {
  if (workload.length === 0) throw new WideepError('ERR_INVALID_ARG', 'pipeline: workload must hold at least one step');
  workload.forEach((ranks, s) => {
    if (ranks.length !== numRanks) throw new WideepError('ERR_INVALID_ARG', `pipeline: step ${s} has ${ranks.length} rank batches, expected ${numRanks}`);
    ranks.forEach((b, r) => {
      const T = numTokens(b);
      if (b.x.length !== T * hidden) throw new WideepError('ERR_SHAPE', `pipeline: step ${s} rank ${r}: x holds ${b.x.length} floats, expected ${T} tokens × ${hidden}`);
      if ((T === 0) !== (b.forwardMode === 'idle')) {
        throw new WideepError('ERR_INVALID_ARG', `pipeline: step ${s} rank ${r}: forwardMode ${b.forwardMode} with ${T} tokens (idle exactly when there are no tokens)`);
      }
    });
  });
}

export async function runMoePipeline(options: MoePipelineOptions): Promise<MoePipelineResult> {
  const { weights, workload } = options;
  const c = weights.config;
  const R = assertInteger('pipeline: numRanks', options.numRanks, 1);
  const ranksPerNode = assertInteger('pipeline: ranksPerNode', options.ranksPerNode ?? Math.min(R, 8), 1, R);
  if (R % ranksPerNode !== 0) throw new WideepError('ERR_INVALID_ARG', `pipeline: ranksPerNode ${ranksPerNode} must divide numRanks ${R}`);
  checkWorkload(workload, R, c.hidden);
  const eplb = eplbOptionsOf(options.eplb, R, workload.length);
  const tbo = options.tbo ?? false;
  const timeoutMs = assertInteger('pipeline: timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 1);
  const parallel = ParallelConfig.fromOptions({
    tp: R,
    dpSize: R,
    enableDpAttention: R > 1,
    epSize: R,
    moeA2aBackend: 'deepep',
    deepepMode: options.deepepMode ?? 'auto',
    enableTwoBatchOverlap: tbo,
    enableEplb: eplb !== null,
    epNumRedundantExperts: eplb?.redundantExperts ?? 0,
    numMaxDispatchTokensPerRank: options.numMaxDispatchTokensPerRank ?? 128,
    gpusPerNode: ranksPerNode,
  });
  const settings = stepSettingsOf(parallel);
  const E = c.numRoutedExperts;
  const P = parallel.numPhysicalExperts(E);
  const attention = options.attention ?? causalAttention(weights.attention);
  const seed = options.seed ?? 0;
  const progress = options.onProgress ?? (() => {});
  const shape = { numLayers: 1, numLogical: E, numPhysical: P, numRanks: R, ranksPerNode };

  const control = createSimulatedRanks(R);
  const epA = createSimulatedRanks(R);
  const epB = createSimulatedRanks(R);
  const transports: CpuTransport[] = [...control, ...epA, ...epB];
  const abort = async (): Promise<void> => {
    await Promise.all(transports.map((t) => t.close()));
  };
  const maxTokens = Math.max(1, ...workload.flatMap((ranks) => ranks.map(numTokens)));
  const bufferOptions = {
    backend: 'cpu' as const,
    hidden: c.hidden,
    numExperts: P,
    maxTokensPerRank: maxTokens,
    maxTopk: c.topK,
    lowLatency: { maxTokensPerRank: settings.numMaxDispatchTokensPerRank },
    timeoutMs,
  };
  const buffers = await onAllRanks(R, (r) => Promise.all([EpBuffer.create(epA[r]!, bufferOptions), EpBuffer.create(epB[r]!, bufferOptions)]), abort);

  try {
    const contexts: RankContext[] = buffers.map((pair, r) => {
      // Slot p of the initial placement holds logical p mod E (SGLang's), which is the identity without redundant slots.
      const map = ExpertLocationMap.trivial(shape);
      return {
        rank: r,
        numRanks: R,
        weights,
        attention,
        experts: RankExperts.load(weights, map, r),
        eplb: eplb ? new RankEplb(map, r, eplb.replicaChoice, seed, workload.length) : null,
        buffers: pair,
        control: control[r]!,
        numPhysical: P,
        lowLatencyTokens: settings.numMaxDispatchTokensPerRank,
        timeoutMs,
      };
    });
    progress({
      type: 'setup',
      numRanks: R,
      ranksPerNode,
      numRoutedExperts: E,
      numPhysical: P,
      expertsPerRank: P / R,
      tbo,
      eplb,
      steps: workload.length,
      deepepMode: parallel.options.deepepMode,
      numMaxDispatchTokensPerRank: settings.numMaxDispatchTokensPerRank,
    });

    const outputs: Float32Array[][] = [];
    const steps: StepReport[] = [];
    let eplbReport: EplbReport | null = null;
    const afterLoads = new Float64Array(P);
    for (let s = 0; s < workload.length; s++) {
      const results = await onAllRanks(R, (r) => runRankStep(contexts[r]!, workload[s]![r]!, { settings, tboThreshold: parallel.options.tboTokenDistributionThreshold }), abort);
      const report = stepReport(s, results, workload[s]!, c.hidden, R, eplb === null ? 'identity' : eplbReport ? 'rebalanced' : 'initial');
      if (eplbReport) for (const r of results) r.physicalCounts.forEach((n, p) => (afterLoads[p]! += n));
      outputs.push(results.map((r) => r.out));
      steps.push(report);
      progress({ type: 'step', report });

      if (eplb && s + 1 === eplb.rebalanceAfterSteps) {
        const outcomes = await onAllRanks(R, (r) => rebalanceRank(control[r]!, contexts[r]!.eplb!, contexts[r]!.experts, { numGroups: c.numExpertGroups, ranksPerNode, timeoutMs }), abort);
        const o = outcomes[0]!;
        if (outcomes.some((x) => x.phy2log.join() !== o.phy2log.join())) {
          throw new WideepError('ERR_PROTOCOL', 'EPLB: ranks computed different placements from the same all-reduced loads');
        }
        eplbReport = {
          replicaChoice: eplb.replicaChoice,
          redundantExperts: eplb.redundantExperts,
          numPhysical: P,
          rebalancedAfterStep: s,
          policy: o.policy,
          balancednessBefore: o.balancednessBefore,
          balancednessPredicted: o.balancednessPredicted,
          balancednessAfter: null,
          moves: o.moves,
          replicatedExperts: o.logcnt.filter((n) => n > 1).length,
          phy2log: o.phy2log,
        };
        progress({ type: 'rebalance', report: eplbReport });
      }
    }
    if (eplbReport && eplbReport.rebalancedAfterStep < workload.length - 1) eplbReport.balancednessAfter = balancedness(gpuLoadsOf(afterLoads, R));
    return { outputs, steps, eplb: eplbReport, parallel, numPhysical: P };
  } finally {
    await Promise.all(buffers.flat().map((b) => b.close()));
    await abort();
  }
}

function stepReport(
  step: number,
  results: readonly RankStepResult[],
  batches: readonly RankBatch[],
  hidden: number,
  R: number,
  placement: StepReport['placement'],
): StepReport {
  const plan = results[0]!.plan;
  const loads = new Float64Array(results[0]!.physicalCounts.length);
  for (const r of results) r.physicalCounts.forEach((n, p) => (loads[p]! += n));
  const dispatchRows = results.reduce((n, r) => n + r.dispatchRows, 0);
  const combineRows = results.reduce((n, r) => n + r.combineRows, 0);
  return {
    step,
    forwardModes: batches.map((b) => b.forwardMode),
    tokensPerRank: plan.numTokens,
    idleRanks: plan.idleRanks,
    deepepMode: plan.deepepMode ?? 'normal',
    useTbo: plan.useTbo,
    microBatchTokens: results.map((r) => r.microBatchTokens),
    dispatchRows,
    dispatchBytes: dispatchRows * hidden * 2,
    combineRows,
    combineBytes: combineRows * hidden * 2,
    placement,
    balancedness: balancedness(gpuLoadsOf(loads, R)),
    stageTrace: results[0]!.trace,
  };
}
