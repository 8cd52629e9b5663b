/**
 * Two-batch overlap (TBO): split a batch into two micro-batches, then
 * interleave their per-layer stages so that one micro-batch's dispatch or
 * combine is in flight while the other computes (docs/wide-ep.md).
 */
import { WideepError } from '../errors.js';
import { PARALLEL_DEFAULTS } from './options.js';

export type TboForwardMode = 'decode' | 'extend';

export interface TboSplitInput {
  forwardMode: TboForwardMode;
  /** Tokens each sequence runs this step, in batch order (1 per sequence in plain decode). */
  seqLens: readonly number[];
  /** `--tbo-token-distribution-threshold`, default 0.48. */
  threshold?: number;
}

/** One micro-batch. With a two-chunk split, one sequence is shared by both. */
export interface TboChild {
  /** Sequences `[seqStart, seqEnd)` of the batch. */
  seqStart: number;
  seqEnd: number;
  /** Tokens `[tokenStart, tokenEnd)` of the batch, in batch order. */
  tokenStart: number;
  tokenEnd: number;
  numTokens: number;
  /** Tokens of each of its sequences this step (the shared sequence counts only its own part). */
  seqLens: number[];
  /** Tokens of sequence `seqStart` that the other micro-batch runs first (its prefix); 0 unless split. */
  firstSeqOffset: number;
}

export interface TboSplit {
  forwardMode: TboForwardMode;
  /** Sequences before the split (with a two-chunk split, the index of the cut sequence). */
  splitSeqIndex: number;
  /** Tokens before the split. */
  splitTokenIndex: number;
  /** One sequence was cut in two at `total / 2` tokens. */
  twoChunk: boolean;
  children: [TboChild, TboChild];
  /** Both micro-batches have tokens; otherwise the step runs without TBO. */
  canRun: boolean;
}

/**
 * The sequence boundary that best balances token counts. It scans left to
 * right while |left − right| does not grow, so on a tie the later boundary
 * wins (SGLang's rule).
 */
export function splitIndexByHalfSum(lens: readonly number[]): number {
  const total = lens.reduce((a, b) => a + b, 0);
  let left = 0;
  let best = 0;
  let bestDiff = Infinity;
  for (let i = 1; i < lens.length; i++) {
    left += lens[i - 1]!;
    const diff = Math.abs(left - (total - left));
    if (diff > bestDiff) break;
    bestDiff = diff;
    best = i;
  }
  return best;
}

/**
 * Splits a batch for TBO.
 * - Decode: at half the sequences, `floor(n / 2)`.
 * - Extend: at the sequence boundary that best balances tokens; if the left
 *   side then holds less than `threshold × total` tokens or more than
 *   `(1 − threshold) × total`, cut the sequence that spans token
 *   `floor(total / 2)` in two there instead (the two-chunk split).
 */
export function splitTwoBatch(input: TboSplitInput): TboSplit {
  const { forwardMode, seqLens } = input;
  const threshold = input.threshold ?? PARALLEL_DEFAULTS.tboTokenDistributionThreshold;
  if (forwardMode !== 'decode' && forwardMode !== 'extend') {
    throw new WideepError('ERR_INVALID_ARG', `splitTwoBatch: forwardMode ${String(forwardMode)} must be decode or extend`);
  }
  if (!(threshold >= 0 && threshold <= 0.5)) {
    throw new WideepError('ERR_INVALID_ARG', `--tbo-token-distribution-threshold ${threshold}: must be in [0, 0.5]`);
  }
  seqLens.forEach((n, i) => {
    if (!Number.isInteger(n) || n < 1) throw new WideepError('ERR_INVALID_ARG', `splitTwoBatch: seqLens[${i}] is ${n}, expected an integer >= 1`);
  });
  const n = seqLens.length;
  const starts = [0];
  for (const len of seqLens) starts.push(starts[starts.length - 1]! + len);
  const total = starts[n]!;

  let seq = forwardMode === 'decode' ? Math.floor(n / 2) : splitIndexByHalfSum(seqLens);
  let token = starts[seq]!;
  let twoChunk = false;
  if (forwardMode === 'extend' && (token < threshold * total || token > (1 - threshold) * total)) {
    token = Math.floor(total / 2);
    // The sequence that holds token `token`; the cut is inside it unless it falls on a boundary.
    seq = starts.findIndex((s, i) => i < n && s <= token && token < starts[i + 1]!);
    if (seq < 0) seq = n;
    twoChunk = token > starts[seq]!;
    if (!twoChunk) token = starts[seq]!;
  }

  const offset = twoChunk ? token - starts[seq]! : 0;
  const a: TboChild = {
    seqStart: 0,
    seqEnd: twoChunk ? seq + 1 : seq,
    tokenStart: 0,
    tokenEnd: token,
    numTokens: token,
    seqLens: twoChunk ? [...seqLens.slice(0, seq), offset] : seqLens.slice(0, seq),
    firstSeqOffset: 0,
  };
  const b: TboChild = {
    seqStart: seq,
    seqEnd: n,
    tokenStart: token,
    tokenEnd: total,
    numTokens: total - token,
    seqLens: twoChunk ? [seqLens[seq]! - offset, ...seqLens.slice(seq + 1)] : seqLens.slice(seq),
    firstSeqOffset: offset,
  };
  return { forwardMode, splitSeqIndex: seq, splitTokenIndex: token, twoChunk, children: [a, b], canRun: a.numTokens > 0 && b.numTokens > 0 };
}

/** A communication that a stage starts or finishes. */
export type TboComm = 'dispatch' | 'combine';

export interface TboStageDef {
  id: string;
  /** What runs in the stage. */
  label: string;
  /** Communication issued at the end of this stage, left in flight across the yield. */
  starts?: TboComm;
  /** Communication whose receive completes in this stage. */
  finishes?: TboComm;
}

/** Decode stages of one layer, split at the yield points. */
export const DECODE_STAGES: readonly TboStageDef[] = Object.freeze([
  { id: 'attn-prep', label: 'attention prep' },
  { id: 'attn-core', label: 'attention core + gate + top-k' },
  { id: 'dispatch-send', label: 'dispatch send', starts: 'dispatch' },
  { id: 'dispatch-recv', label: 'shared expert + dispatch receive', finishes: 'dispatch' },
  { id: 'experts', label: 'experts + combine send', starts: 'combine' },
  { id: 'combine-recv', label: 'combine receive', finishes: 'combine' },
  { id: 'output', label: 'output' },
]);

/**
 * Prefill stages of one layer (SGLang's prefill operation list): attention
 * through dispatch send; dispatch receive, experts and combine send; the shared
 * expert, combine receive and output.
 */
export const PREFILL_STAGES: readonly TboStageDef[] = Object.freeze([
  { id: 'attn-dispatch-send', label: 'attention + gate + top-k + dispatch send', starts: 'dispatch' },
  { id: 'experts', label: 'dispatch receive + experts + combine send', finishes: 'dispatch', starts: 'combine' },
  { id: 'output', label: 'shared expert + combine receive + output', finishes: 'combine' },
]);

/** How many stages micro-batch B starts behind A: two in decode, none in prefill. */
export const TBO_STAGE_DELAY: Readonly<Record<TboForwardMode, number>> = { decode: 2, extend: 0 };

export type MicroBatch = 'a' | 'b';

/**
 * The order in which two micro-batches of `numStages` stages each run when B
 * starts `delay` stages behind A: A runs `delay` stages alone, then they
 * alternate A, B, and B finishes its last `delay` stages alone.
 */
export function interleaveStages(numStages: number, delay: number): Array<{ microBatch: MicroBatch; stage: number }> {
  if (!Number.isInteger(numStages) || numStages < 0 || !Number.isInteger(delay) || delay < 0 || delay > numStages) {
    throw new WideepError('ERR_INVALID_ARG', `interleaveStages: delay ${delay} must be an integer in [0, ${numStages}]`);
  }
  const out: Array<{ microBatch: MicroBatch; stage: number }> = [];
  for (let i = 0; i < delay; i++) out.push({ microBatch: 'a', stage: i });
  for (let i = delay; i < numStages; i++) {
    out.push({ microBatch: 'a', stage: i });
    out.push({ microBatch: 'b', stage: i - delay });
  }
  for (let i = numStages - delay; i < numStages; i++) out.push({ microBatch: 'b', stage: i });
  return out;
}

export interface TboStep {
  microBatch: MicroBatch;
  layer: number;
  stage: TboStageDef;
}

export interface TboSchedule {
  forwardMode: TboForwardMode;
  delay: number;
  stagesPerLayer: readonly TboStageDef[];
  /** Every stage of both micro-batches over all layers, in execution order. */
  steps: TboStep[];
}

/**
 * The stage schedule of `numLayers` MoE layers. Stages of consecutive layers
 * chain, so B's lag carries across layer boundaries (as in SGLang, where the
 * operations of all layers form one list).
 */
export function tboStageSchedule(opts: { forwardMode: TboForwardMode; numLayers?: number }): TboSchedule {
  const numLayers = opts.numLayers ?? 1;
  if (!Number.isInteger(numLayers) || numLayers < 1) {
    throw new WideepError('ERR_INVALID_ARG', `tboStageSchedule: numLayers ${numLayers} must be an integer >= 1`);
  }
  if (opts.forwardMode !== 'decode' && opts.forwardMode !== 'extend') {
    throw new WideepError('ERR_INVALID_ARG', `tboStageSchedule: forwardMode ${String(opts.forwardMode)} must be decode or extend`);
  }
  const stagesPerLayer = opts.forwardMode === 'decode' ? DECODE_STAGES : PREFILL_STAGES;
  const delay = TBO_STAGE_DELAY[opts.forwardMode];
  const per = stagesPerLayer.length;
  const steps = interleaveStages(per * numLayers, delay).map(({ microBatch, stage }) => ({
    microBatch,
    layer: Math.floor(stage / per),
    stage: stagesPerLayer[stage % per]!,
  }));
  return { forwardMode: opts.forwardMode, delay, stagesPerLayer, steps };
}
