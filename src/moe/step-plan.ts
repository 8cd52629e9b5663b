/**
 * One DP-attention step on the runtime, decided together: each rank says
 * what it runs (its tokens and forward mode), the ranks all-gather that over
 * a host transport, and the planner's planDpStep turns it into the same plan
 * on every rank — the dispatch mode (deepep-mode auto: normal when any rank
 * prefills), two-batch overlap, the idle ranks. forwardPlanned then runs the
 * layer as the plan says, so no rank can pick a mode its peers did not.
 */
import type { CpuTransport } from '../ep/transport.js';
import { WideepError } from '../errors.js';
import {
  STEP_METADATA_INTS,
  decodeStepMetadata,
  encodeStepMetadata,
  planDpStep,
  type DpStepPlan,
  type DpStepSettings,
  type StepMetadata,
} from '../planning/dp-step.js';
import { splitTwoBatch } from '../planning/tbo.js';
import type { Tensor } from '../tensor/tensor.js';
import type { MoeForwardOptions, MoeLayer } from './layer.js';

export type StepForwardMode = 'extend' | 'decode';

export interface StepInput {
  /** Tokens this rank runs; 0 makes it idle (it still joins every collective). */
  numTokens: number;
  /** extend: a prefill (possibly mixed with decode); decode: one token per sequence. */
  forwardMode: StepForwardMode;
  /** Tokens per sequence (sums to numTokens); default one per sequence. */
  seqLens?: readonly number[];
  /** This rank's batch fits its captured decode graph. */
  canCudaGraph?: boolean;
}

/** The metadata a rank contributes: its split for two-batch overlap worked out as the planner would. */
export function stepMetadata(s: StepInput): StepMetadata {
  const T = s.numTokens;
  if (!Number.isInteger(T) || T < 0) throw new WideepError('ERR_INVALID_ARG', `step: numTokens ${String(T)} must be an integer >= 0`);
  if (s.forwardMode !== 'extend' && s.forwardMode !== 'decode') {
    throw new WideepError('ERR_INVALID_ARG', `step: forwardMode ${String(s.forwardMode)} must be extend or decode`);
  }
  if (T === 0) return { numTokens: 0, canCudaGraph: s.canCudaGraph ?? false, forwardMode: 'idle', canTbo: false, tboMaxMicroBatchTokens: 0 };
  const seqLens = s.seqLens ?? Array.from({ length: T }, () => 1);
  if (seqLens.reduce((a, b) => a + b, 0) !== T) throw new WideepError('ERR_INVALID_ARG', `step: seqLens must sum to numTokens (${T})`);
  const split = splitTwoBatch({ forwardMode: s.forwardMode, seqLens });
  const [a, b] = split.children;
  return {
    numTokens: T,
    canCudaGraph: s.canCudaGraph ?? false,
    forwardMode: s.forwardMode,
    canTbo: split.canRun,
    tboMaxMicroBatchTokens: split.canRun ? Math.max(a.numTokens, b.numTokens) : 0,
  };
}

/** All-gathers every rank's step and plans it; a collective over `transport`. */
export async function agreeOnStep(transport: CpuTransport, settings: DpStepSettings, input: StepInput, timeoutMs?: number): Promise<DpStepPlan> {
  const mine = encodeStepMetadata(stepMetadata(input));
  const rows = await transport.allGather(new Uint8Array(mine.buffer), { timeoutMs });
  const all = new Int32Array(rows.length * STEP_METADATA_INTS);
  rows.forEach((bytes, r) => {
    if (bytes.byteLength !== mine.byteLength) {
      throw new WideepError('ERR_PROTOCOL', `step plan: rank ${r} sent ${bytes.byteLength} bytes of metadata, expected ${mine.byteLength}`);
    }
    all.set(new Int32Array(bytes.slice().buffer), r * STEP_METADATA_INTS);
  });
  return planDpStep(decodeStepMetadata(all), settings);
}

/**
 * The layer's forward as `plan` says (every rank passes its own plan from the
 * same agreeOnStep): low-latency or normal dispatch, and two-batch overlap.
 */
export function forwardPlanned(
  layer: MoeLayer,
  x: Tensor,
  plan: DpStepPlan,
  options: Omit<MoeForwardOptions, 'mode' | 'tbo'> & { seqLens?: readonly number[] } = {},
): Promise<Tensor> {
  if (plan.deepepMode === null) {
    throw new WideepError('ERR_UNSUPPORTED', 'forwardPlanned: the plan has no token moves (--moe-a2a-backend none): use gatheredMoe');
  }
  const { seqLens, ...rest } = options;
  const mode = plan.deepepMode === 'normal' ? 'normal' : 'low-latency';
  return layer.forward(x, { ...rest, mode, ...(plan.useTbo ? { tbo: seqLens ? { seqLens } : {} } : {}) });
}
