/** What the `bench ep` command asks of its workers, and what they hand back. */
import type { RoutingKind } from './ep-inputs.js';
import type { Samples } from './gpu-timer.js';

export type EpBenchMode = 'normal' | 'low-latency';

export interface EpBenchConfig {
  mode: EpBenchMode;
  tokens: number;
  hidden: number;
  topk: number;
  experts: number;
  routings: RoutingKind[];
  numSms: number[];
  /** Of each SM budget, the SMs the combine sends with, one combine measurement each (undefined: the library's default share). */
  sendSms?: number[];
  iters: number;
  warmup: number;
  graphReplays: number;
  baseline: boolean;
  seed: number;
  /** Where rank 0 writes the gathered results. */
  out: string;
}

export interface EpRankRow {
  routing: RoutingKind;
  /** Absent for rows that take no SM budget (the NCCL baseline, low-latency mode). */
  numSms?: number;
  /** The combine's sending SMs, where the config sets them. */
  sendSms?: number;
  op: string;
  bytes: number;
  samples: Samples;
}

export interface EpRankResult {
  rank: number;
  device: number;
  rows: EpRankRow[];
}

/** The environment variable carrying the config to the workers. */
export const EP_BENCH_CONFIG_VAR = 'WIDEEP_BENCH_EP_CONFIG';
