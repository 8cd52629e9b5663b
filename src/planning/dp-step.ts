/**
 * One DP-attention step, as every rank sees it (docs/wide-ep.md, "DP
 * attention, step by step"). Each rank encodes a few integers, the ranks
 * all-gather them, and `planDpStep` turns the gathered rows into the same
 * decision on every rank: the DeepEP mode (`auto` resolved), whether to
 * replay a CUDA graph, whether to run two-batch overlap, the idle ranks, and
 * the padded token counts.
 */
import { WideepError } from '../errors.js';
import type { ParallelConfig } from './config.js';
import type { DeepepMode, MoeA2aBackend, ResolvedDeepepMode } from './options.js';

/** What a rank runs this step. `extend` is a prefill (possibly mixed with decode). */
export type ForwardMode = 'idle' | 'decode' | 'extend';

const FORWARD_MODES: readonly ForwardMode[] = ['idle', 'decode', 'extend'];

/** The per-rank facts all-gathered each step. */
export interface StepMetadata {
  /** Tokens this rank runs (0 for an idle rank). */
  numTokens: number;
  /** The rank's batch fits one of its captured CUDA graphs. */
  canCudaGraph: boolean;
  forwardMode: ForwardMode;
  /** The rank's batch splits into two non-empty micro-batches (`splitTwoBatch(...).canRun`). */
  canTbo: boolean;
  /** Tokens of the larger of its two micro-batches; 0 when it has no split. */
  tboMaxMicroBatchTokens: number;
}

/** Integers per rank in the all-gathered buffer. */
export const STEP_METADATA_INTS = 5;

/** The settings a step depends on; `stepSettingsOf(config)` builds them. */
export interface DpStepSettings {
  attnTpSize: number;
  moeA2aBackend: MoeA2aBackend;
  deepepMode: DeepepMode;
  enableTwoBatchOverlap: boolean;
  numMaxDispatchTokensPerRank: number;
}

export function stepSettingsOf(config: ParallelConfig): DpStepSettings {
  const o = config.options;
  return {
    attnTpSize: config.attnTpSize,
    moeA2aBackend: o.moeA2aBackend,
    deepepMode: o.deepepMode,
    enableTwoBatchOverlap: o.enableTwoBatchOverlap,
    numMaxDispatchTokensPerRank: o.numMaxDispatchTokensPerRank,
  };
}

export interface DpStepPlan {
  /** Tokens per DP rank, as gathered. */
  numTokens: number[];
  /** Tokens per DP rank, padded to a multiple of attn_tp. */
  paddedNumTokens: number[];
  /** Ranks with no tokens; they still run an idle forward to join the collectives. */
  idleRanks: number[];
  totalTokens: number;
  maxPaddedTokens: number;
  /** Some rank has a prefill. */
  anyExtend: boolean;
  /** The dispatch mode of this step; null with `--moe-a2a-backend none`. */
  deepepMode: ResolvedDeepepMode | null;
  /** Every rank can replay a CUDA graph, no rank prefills, and the mode is capturable. */
  useCudaGraph: boolean;
  /** TBO is on, every non-idle rank can split, and they all run the same forward mode. */
  useTbo: boolean;
}

/**
 * `auto` → `normal` when any DP rank has a prefill in this step, else
 * `low_latency`. Every rank agrees because the flag is all-gathered.
 */
export function resolveDeepepMode(mode: DeepepMode, anyExtend: boolean | readonly StepMetadata[]): ResolvedDeepepMode {
  if (mode !== 'auto') return mode;
  const extend = typeof anyExtend === 'boolean' ? anyExtend : anyExtend.some((m) => m.forwardMode === 'extend');
  return extend ? 'normal' : 'low_latency';
}

/** `n` rounded up to a multiple of `attnTpSize`. */
export function padTokenCount(n: number, attnTpSize: number): number {
  return Math.ceil(n / attnTpSize) * attnTpSize;
}

/** `topkIds` (`[tokens * k]`) extended to `paddedTokens` rows with -1, so padded tokens are never sent. */
export function padTopkIds(topkIds: Int32Array, k: number, paddedTokens: number): Int32Array {
  if (topkIds.length % k !== 0 || topkIds.length / k > paddedTokens) {
    throw new WideepError('ERR_INVALID_ARG', `padTopkIds: ${topkIds.length} ids are not whole rows of ${k} that fit in ${paddedTokens} tokens`);
  }
  const out = new Int32Array(paddedTokens * k).fill(-1);
  out.set(topkIds);
  return out;
}

function checkMetadata(m: StepMetadata, rank: number): void {
  const bad = (what: string): WideepError => new WideepError('ERR_INVALID_ARG', `DP rank ${rank}: ${what}`);
  if (!Number.isInteger(m.numTokens) || m.numTokens < 0) throw bad(`numTokens ${m.numTokens} must be an integer >= 0`);
  if (!FORWARD_MODES.includes(m.forwardMode)) throw bad(`forwardMode ${String(m.forwardMode)} must be one of ${FORWARD_MODES.join(', ')}`);
  if ((m.numTokens === 0) !== (m.forwardMode === 'idle')) {
    throw bad(`forwardMode ${m.forwardMode} with ${m.numTokens} tokens (idle exactly when there are no tokens)`);
  }
  if (!Number.isInteger(m.tboMaxMicroBatchTokens) || m.tboMaxMicroBatchTokens < 0 || m.tboMaxMicroBatchTokens > m.numTokens) {
    throw bad(`tboMaxMicroBatchTokens ${m.tboMaxMicroBatchTokens} must be in [0, numTokens ${m.numTokens}]`);
  }
}

/** Packs one rank's metadata into `STEP_METADATA_INTS` integers for the all-gather. */
export function encodeStepMetadata(m: StepMetadata): Int32Array {
  checkMetadata(m, 0);
  return Int32Array.of(m.numTokens, m.canCudaGraph ? 1 : 0, FORWARD_MODES.indexOf(m.forwardMode), m.canTbo ? 1 : 0, m.tboMaxMicroBatchTokens);
}

/** Unpacks the all-gathered buffer (`STEP_METADATA_INTS` integers per rank, in rank order). */
export function decodeStepMetadata(gathered: Int32Array): StepMetadata[] {
  if (gathered.length % STEP_METADATA_INTS !== 0) {
    throw new WideepError('ERR_INVALID_ARG', `step metadata: ${gathered.length} integers is not a multiple of ${STEP_METADATA_INTS}`);
  }
  const out: StepMetadata[] = [];
  for (let i = 0; i < gathered.length; i += STEP_METADATA_INTS) {
    out.push({
      numTokens: gathered[i]!,
      canCudaGraph: gathered[i + 1] !== 0,
      forwardMode: FORWARD_MODES[gathered[i + 2]!] ?? (String(gathered[i + 2]) as ForwardMode),
      canTbo: gathered[i + 3] !== 0,
      tboMaxMicroBatchTokens: gathered[i + 4]!,
    });
  }
  return out;
}

/**
 * The step every rank runs, from the gathered metadata. Throws when a
 * low-latency dispatch would receive more tokens from one rank than
 * `numMaxDispatchTokensPerRank` slots.
 */
export function planDpStep(gathered: readonly StepMetadata[], s: DpStepSettings): DpStepPlan {
  if (gathered.length === 0) throw new WideepError('ERR_INVALID_ARG', 'planDpStep: no DP ranks');
  gathered.forEach(checkMetadata);
  const numTokens = gathered.map((m) => m.numTokens);
  const paddedNumTokens = numTokens.map((n) => padTokenCount(n, s.attnTpSize));
  const idleRanks = gathered.flatMap((m, r) => (m.forwardMode === 'idle' ? [r] : []));
  const anyExtend = gathered.some((m) => m.forwardMode === 'extend');
  const deepepMode = s.moeA2aBackend === 'none' ? null : resolveDeepepMode(s.deepepMode, anyExtend);

  const busy = gathered.filter((m) => m.forwardMode !== 'idle');
  const oneMode = busy.every((m) => m.forwardMode === busy[0]?.forwardMode);
  const useTbo = s.enableTwoBatchOverlap && busy.length > 0 && oneMode && busy.every((m) => m.canTbo);
  const useCudaGraph = !anyExtend && deepepMode !== 'normal' && gathered.every((m) => m.canCudaGraph);

  if (deepepMode === 'low_latency') {
    gathered.forEach((m, r) => {
      const tokens = useTbo && m.tboMaxMicroBatchTokens > 0 ? m.tboMaxMicroBatchTokens : paddedNumTokens[r]!;
      if (tokens > s.numMaxDispatchTokensPerRank) {
        throw new WideepError(
          'ERR_INVALID_ARG',
          `DP rank ${r}: ${useTbo ? 'a micro-batch of ' : ''}${tokens} tokens exceeds --num-max-dispatch-tokens-per-rank ${s.numMaxDispatchTokensPerRank} in low_latency mode`,
        );
      }
    });
  }
  return {
    numTokens,
    paddedNumTokens,
    idleRanks,
    totalTokens: numTokens.reduce((a, b) => a + b, 0),
    maxPaddedTokens: Math.max(...paddedNumTokens),
    anyExtend,
    deepepMode,
    useCudaGraph,
    useTbo,
  };
}
