/**
 * `wideep bench moe --ranks N`: the layer's experts spread over N ranks, one
 * process each through the launcher (a GPU each, or all on GPU 0 with
 * --share-gpu), and their results folded into one: the median over ranks of
 * each rank's medians, and rank 0's two-batch-overlap timeline.
 */
import { fileURLToPath } from 'node:url';

import { WideepError } from '../../errors.js';
import { runOnRanks, type RankReport } from '../../testing/ranks.js';
import type { MoeShape } from './moe-cases.js';
import type { LayerResult, Timing } from './moe-measure.js';
import { medianStages } from './moe-stages.js';
import { median, round } from './stats.js';

export const MOE_BENCH_VAR = 'WIDEEP_BENCH_MOE';

export interface MoeWorkerSettings {
  shape: MoeShape;
  iters: number;
  warmup: number;
}

export interface MoeRankReport extends RankReport {
  layer: LayerResult;
}

/** Runs the worker on every rank; ERR_PEER with the job's log when a rank failed or did not report. */
export async function measureOnRanks(settings: MoeWorkerSettings, env: Record<string, string>, echo: (text: string) => void): Promise<LayerResult> {
  const worker = fileURLToPath(new URL('./moe-worker.js', import.meta.url));
  const R = settings.shape.ranks;
  const { ok, reports, log } = await runOnRanks(worker, R, { ...env, [MOE_BENCH_VAR]: JSON.stringify(settings) }, { echo });
  const layers = (reports as MoeRankReport[]).sort((a, b) => a.rank - b.rank);
  if (!ok || layers.length !== R) {
    throw new WideepError('ERR_PEER', `bench moe: ${layers.length} of ${R} ranks reported${ok ? '' : ', and a rank failed'}; the workers' output:\n${log.slice(-4000)}`);
  }
  return foldRanks(layers.map((r) => r.layer));
}

/** One result from every rank's: the median over ranks of each timing and stage, rank 0's timeline. */
export function foldRanks(ranks: readonly LayerResult[]): LayerResult {
  const timing = (pick: (r: LayerResult) => Timing): Timing => {
    const all = ranks.map(pick);
    const medianOf = (key: 'hostUs' | 'hostBackToBackUs') => {
      const v = all.map((t) => t[key]).filter((u): u is number => u !== undefined);
      return v.length === all.length ? { [key]: round(median(v), 2) } : {};
    };
    return { gpuUs: round(median(all.map((t) => t.gpuUs)), 1), ...medianOf('hostUs'), ...medianOf('hostBackToBackUs') };
  };
  return {
    prefill: {
      step: timing((r) => r.prefill.step),
      tbo: timing((r) => r.prefill.tbo),
      stages: medianStages(ranks.map((r) => r.prefill.stages)),
      tboSpans: ranks[0]!.prefill.tboSpans,
    },
    decode: {
      eager: timing((r) => r.decode.eager),
      tbo: timing((r) => r.decode.tbo),
      graph: timing((r) => r.decode.graph),
      stages: medianStages(ranks.map((r) => r.decode.stages)),
      hostStages: medianStages(ranks.map((r) => r.decode.hostStages)),
    },
  };
}
