/**
 * The layer's stages (`DECODE_STAGES` / `PREFILL_STAGES` from wideep/tbo.ts)
 * mapped to micro-batch operations, and the loop that runs a schedule: with
 * two-batch overlap the order `tboStageSchedule` gives, otherwise the stages
 * of the one micro-batch in turn. A stage that `starts` a communication ends
 * with its send; a stage that `finishes` one waits for it after the compute
 * that does not depend on it.
 */
import { WideepError } from '../errors.js';
import { tboStageSchedule, type TboForwardMode, type TboStageDef } from '../planning/tbo.js';
import type { RankContext } from './context.js';
import type { MicroBatch, OpName } from './microbatch.js';

/** Decode stages: attention prep | attention core + gate + top-k | dispatch send | shared expert + dispatch receive | experts + combine send | combine receive | output. */
export const DECODE_STAGE_OPS: Readonly<Record<string, readonly OpName[]>> = Object.freeze({
  'attn-prep': ['attnPrep'],
  'attn-core': ['attnCore', 'gate'],
  'dispatch-send': ['dispatchSend'],
  'dispatch-recv': ['sharedExpert', 'dispatchRecv'],
  experts: ['experts', 'combineSend'],
  'combine-recv': ['combineRecv'],
  output: ['output'],
});

/** Prefill stages: attention + gate + dispatch send | dispatch receive + experts + combine send | shared expert + combine receive + output. */
export const PREFILL_STAGE_OPS: Readonly<Record<string, readonly OpName[]>> = Object.freeze({
  'attn-dispatch-send': ['attnPrep', 'attnCore', 'gate', 'dispatchSend'],
  experts: ['dispatchRecv', 'experts', 'combineSend'],
  output: ['sharedExpert', 'combineRecv', 'output'],
});

/** The operations of `stage` in `forwardMode`'s stage list. */
export function stageOps(forwardMode: TboForwardMode, stage: TboStageDef): readonly OpName[] {
  const table = forwardMode === 'decode' ? DECODE_STAGE_OPS : PREFILL_STAGE_OPS;
  const ops = Object.hasOwn(table, stage.id) ? table[stage.id] : undefined;
  if (!ops) throw new WideepError('ERR_INVALID_ARG', `no operations for ${forwardMode} stage '${stage.id}' (${stage.label})`);
  return ops;
}

export interface ScheduledStage {
  /** 0 (micro-batch A) or 1 (B). */
  microBatch: number;
  stage: TboStageDef;
}

/** The stages of one layer: interleaved for two micro-batches with TBO, in turn for one without. */
export function layerSchedule(forwardMode: TboForwardMode, useTbo: boolean): ScheduledStage[] {
  const schedule = tboStageSchedule({ forwardMode, numLayers: 1 });
  if (!useTbo) return schedule.stagesPerLayer.map((stage) => ({ microBatch: 0, stage }));
  return schedule.steps.map((s) => ({ microBatch: s.microBatch === 'a' ? 0 : 1, stage: s.stage }));
}

/**
 * Runs `schedule` on this rank's micro-batches. `trace` receives
 * `"<a|b>:<stage id>"` for each stage as it starts.
 */
export async function runSchedule(
  ctx: RankContext,
  microBatches: readonly MicroBatch[],
  forwardMode: TboForwardMode,
  schedule: readonly ScheduledStage[],
  trace?: string[],
): Promise<void> {
  for (const { microBatch, stage } of schedule) {
    const mb = microBatches[microBatch];
    if (!mb) throw new WideepError('ERR_INVALID_ARG', `stage '${stage.id}' is scheduled for micro-batch ${microBatch}, but there are ${microBatches.length}`);
    trace?.push(`${microBatch === 0 ? 'a' : 'b'}:${stage.id}`);
    for (const op of stageOps(forwardMode, stage)) {
      const pending = mb.run(ctx, op);
      if (pending) await pending;
    }
  }
}
