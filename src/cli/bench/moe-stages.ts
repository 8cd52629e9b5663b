/**
 * A step's breakdown by stage from Timeline spans: the GPU time (or the
 * host's enqueue time) of each stage label summed over the step (the shared
 * expert, for one, runs in two parts), then the median of each label over
 * several runs.
 */
import type { TimelineSpan } from '../../cuda/timeline.js';
import { STAGES } from './moe-cases.js';
import { median, round } from './stats.js';

/** µs of GPU time per stage label, in STAGES order (labels the layer adds later come last). */
export type StageTimes = Record<string, number>;

export function stageTotals(spans: readonly TimelineSpan[], clock: 'gpu' | 'host' = 'gpu'): StageTimes {
  const sums = new Map<string, number>();
  for (const s of spans) sums.set(s.label, (sums.get(s.label) ?? 0) + (clock === 'gpu' ? s.endUs - s.startUs : s.hostUs));
  return Object.fromEntries(sums);
}

/** The median of each label over the runs; a label missing from a run counts as 0 there. */
export function medianStages(runs: readonly StageTimes[]): StageTimes {
  const labels = new Set(runs.flatMap((r) => Object.keys(r)));
  const order = (l: string) => {
    const i = (STAGES as readonly string[]).indexOf(l);
    return i < 0 ? STAGES.length : i;
  };
  const sorted = [...labels].sort((a, b) => order(a) - order(b));
  return Object.fromEntries(sorted.map((l) => [l, round(median(runs.map((r) => r[l] ?? 0)), 1)]));
}
