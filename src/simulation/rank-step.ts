/**
 * One step of one DP rank: agree with the other ranks on the step
 * (all-gathered metadata → `planDpStep`: DeepEP mode, two-batch overlap),
 * split the batch for TBO, run the layer's stages, and join the output.
 * An idle rank runs the same collectives on empty micro-batches.
 */
import { countPhysical } from '../planning/eplb-recorder.js';
import { decodeStepMetadata, encodeStepMetadata, planDpStep, type DpStepPlan, type DpStepSettings, type StepMetadata } from '../planning/dp-step.js';
import { splitTwoBatch, type TboChild, type TboForwardMode, type TboSplit } from '../planning/tbo.js';
import type { RankContext } from './context.js';
import { attentionInput } from './layer.js';
import { concatF32 } from './math.js';
import { MicroBatch, type MicroBatchInput } from './microbatch.js';
import { layerSchedule, runSchedule } from './stages.js';
import { numTokens, type RankBatch } from './workload.js';

export interface RankStepResult {
  /** `[T * H]` layer output of this rank's tokens, in batch order. */
  out: Float32Array;
  /** The step as every rank agreed on it. */
  plan: DpStepPlan;
  /** Tokens of each micro-batch this rank ran (one entry without TBO). */
  microBatchTokens: number[];
  /** Rows this rank received in its dispatches, and sent back in its combines. */
  dispatchRows: number;
  combineRows: number;
  /** `[numPhysical]`: how often this rank's tokens chose each physical slot. */
  physicalCounts: Float64Array;
  /** Stages in the order this rank ran them (`"a:attn-prep"`, …). */
  trace: string[];
}

/** The micro-batch of `child`: its tokens, and for a cut sequence, the other part's tokens as cached prefix. */
export function microBatchInput(ctx: RankContext, batch: RankBatch, child: TboChild): MicroBatchInput {
  const H = ctx.weights.config.hidden;
  const prefixes = batch.prefixes.slice(child.seqStart, child.seqEnd);
  if (child.firstSeqOffset > 0) {
    // The first micro-batch ran this sequence's first tokens; here they are cache (their attention inputs).
    const earlier = batch.x.subarray((child.tokenStart - child.firstSeqOffset) * H, child.tokenStart * H);
    prefixes[0] = concatF32([prefixes[0]!, attentionInput(ctx.weights, earlier)]);
  }
  return { x: batch.x.subarray(child.tokenStart * H, child.tokenEnd * H), seqLens: [...child.seqLens], prefixes };
}

async function gatherMetadata(ctx: RankContext, mine: StepMetadata): Promise<StepMetadata[]> {
  const encoded = encodeStepMetadata(mine);
  const all = await ctx.control.allGather(new Uint8Array(encoded.buffer), { timeoutMs: ctx.timeoutMs });
  return decodeStepMetadata(concatInt32(all));
}

function concatInt32(parts: readonly Uint8Array[]): Int32Array {
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.byteLength;
  }
  return new Int32Array(bytes.buffer);
}

export interface RankStepOptions {
  settings: DpStepSettings;
  tboThreshold: number;
}

/** Collective: every rank calls it for the same step. */
export async function runRankStep(ctx: RankContext, batch: RankBatch, options: RankStepOptions): Promise<RankStepResult> {
  const H = ctx.weights.config.hidden;
  const T = numTokens(batch);
  let split: TboSplit | undefined;
  if (options.settings.enableTwoBatchOverlap && batch.forwardMode !== 'idle') {
    split = splitTwoBatch({ forwardMode: batch.forwardMode, seqLens: batch.seqLens, threshold: options.tboThreshold });
  }
  const canTbo = split?.canRun ?? false;
  const gathered = await gatherMetadata(ctx, {
    numTokens: T,
    canCudaGraph: false,
    forwardMode: batch.forwardMode,
    canTbo,
    tboMaxMicroBatchTokens: canTbo ? Math.max(split!.children[0].numTokens, split!.children[1].numTokens) : 0,
  });
  const plan = planDpStep(gathered, options.settings);
  const mode = plan.deepepMode ?? 'normal';
  const forwardMode: TboForwardMode = plan.anyExtend ? 'extend' : 'decode';

  let inputs: MicroBatchInput[];
  if (!plan.useTbo) inputs = [{ x: batch.x, seqLens: batch.seqLens, prefixes: batch.prefixes }];
  else if (T === 0) inputs = [0, 1].map(() => ({ x: new Float32Array(0), seqLens: [], prefixes: [] }));
  else inputs = split!.children.map((child) => microBatchInput(ctx, batch, child));
  const microBatches = inputs.map((input, i) => new MicroBatch(i, input, H, mode));

  const trace: string[] = [];
  await runSchedule(ctx, microBatches, forwardMode, layerSchedule(forwardMode, plan.useTbo), trace);
  ctx.eplb?.recorder.endPass();

  const physicalCounts = new Float64Array(ctx.numPhysical);
  for (const mb of microBatches) countPhysical(mb.topkIdx!, ctx.numPhysical, physicalCounts);
  return {
    out: concatF32(microBatches.map((mb) => mb.out!)),
    plan,
    microBatchTokens: microBatches.map((mb) => mb.numTokens),
    dispatchRows: microBatches.reduce((n, mb) => n + mb.dispatchRows, 0),
    combineRows: microBatches.reduce((n, mb) => n + mb.combineRows, 0),
    physicalCounts,
    trace,
  };
}
