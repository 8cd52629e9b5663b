/**
 * The layer and steps of `wideep demo` on the cuda backend, shared by the
 * command (which prints them) and the per-rank worker (which runs them). It is
 * the cpu demo's layer (DeepSeek-V3's routing at toy width) made wide enough
 * for the GPU kernels: SwiGLU works on whole 128-channel blocks.
 */
import { MODEL_PRESETS, type ModelConfig } from '../../planning/models.js';
import { DEMO_MOE_CONFIG, type MoeLayerConfig } from '../../simulation/config.js';

export const GPU_DEMO_CONFIG: Readonly<MoeLayerConfig> = Object.freeze({ ...DEMO_MOE_CONFIG, hidden: 256, moeIntermediate: 128 });

/** Prefill steps (normal dispatch) of up to this many tokens per rank; the last rank is idle in the second, as DP attention allows. */
export const PREFILL_STEPS = 2;
export const MAX_PREFILL_TOKENS = 256;
/** Decode: tokens per rank, and replays of the captured step (each on fresh tokens, each checked). */
export const DECODE_TOKENS = 32;
export const DECODE_REPLAYS = 4;

/** WideEp sizes the EP buffer from a model: DeepSeek-V3's, at the demo layer's widths. */
export function demoModel(c: MoeLayerConfig = GPU_DEMO_CONFIG): ModelConfig {
  return {
    ...MODEL_PRESETS['deepseek-v3']!,
    name: 'wideep demo layer',
    hiddenSize: c.hidden,
    moeIntermediateSize: c.moeIntermediate,
    numRoutedExperts: c.numRoutedExperts,
    numSharedExperts: c.numSharedExperts,
    topK: c.topK,
    numExpertGroups: c.numExpertGroups,
    topkGroup: c.topkGroup,
  };
}

/** The worker's settings, passed in WIDEEP_DEMO_SETTINGS. */
export interface DemoWorkerSettings {
  seed: number;
}

export const DEMO_SETTINGS_VAR = 'WIDEEP_DEMO_SETTINGS';

/** One step as a rank saw it. */
export interface DemoStepReport {
  kind: 'prefill' | 'decode';
  tokens: number;
  /** Wall time from enqueue to completion (eager steps), or of one graph replay. */
  ms: number;
  /** Host time to enqueue the step (a graph replay: one launch). */
  hostUs: number;
}

/** What each rank prints, one JSON line (wideep/testing's RankReport shape). */
export interface DemoRankReport {
  rank: number;
  device: number;
  /** Output elements compared with the host reference. */
  checks: number;
  failures: string[];
  tokens: number;
  /** Tokens left out of the comparison: their expert choice is within rounding of a tie. */
  nearTies: number;
  /** The largest |error| / tolerance over every compared element (< 1 passes). */
  worstRatio: number;
  steps: DemoStepReport[];
}
