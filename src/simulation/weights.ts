/**
 * The layer's weights, generated from a seed: normal draws times a
 * fan-in-scaled std, rounded to bf16 values (as a bf16 checkpoint would hold),
 * kept as float32 for the arithmetic.
 */
import { SeededRandom } from '../ep/random-routing.js';
import { WideepError } from '../errors.js';
import { validateMoeLayerConfig, type MoeLayerConfig } from './config.js';
import { roundRowsToBf16 } from './math.js';

/**
 * One SwiGLU expert, `down(silu(gate(x)) * up(x))`, packed in one array so it
 * moves as one message: gate `[I, H]`, up `[I, H]`, down `[H, I]`, views into `packed`.
 */
export interface ExpertWeights {
  readonly hidden: number;
  readonly intermediate: number;
  readonly packed: Float32Array;
  readonly gate: Float32Array;
  readonly up: Float32Array;
  readonly down: Float32Array;
}

/** The single-head attention stand-in: q, k, v `[d, H]`, o `[H, d]`. */
export interface AttentionWeights {
  readonly hidden: number;
  readonly headDim: number;
  readonly q: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
  readonly o: Float32Array;
}

export interface MoeLayerWeights {
  readonly config: MoeLayerConfig;
  /** RMSNorm weight before attention, `[H]`. */
  readonly attentionNorm: Float32Array;
  readonly attention: AttentionWeights;
  /** RMSNorm weight before the MoE, `[H]`. */
  readonly moeNorm: Float32Array;
  /** Router `[E, H]`. */
  readonly gate: Float32Array;
  /** Selection bias of each routed expert, `[E]` (`e_score_correction_bias`): it picks experts, it does not weight them. */
  readonly gateBias: Float32Array;
  /** By logical expert id. */
  readonly experts: readonly ExpertWeights[];
  /** The shared experts as one SwiGLU of width `numSharedExperts × I`; null without shared experts. */
  readonly shared: ExpertWeights | null;
}

/** An expert over `packed` (a fresh zeroed array by default). */
export function expertWeights(hidden: number, intermediate: number, packed = new Float32Array(3 * hidden * intermediate)): ExpertWeights {
  const n = hidden * intermediate;
  if (packed.length !== 3 * n) {
    throw new WideepError('ERR_SHAPE', `expert weights: expected ${3 * n} floats for H = ${hidden}, I = ${intermediate}, got ${packed.length}`);
  }
  return {
    hidden,
    intermediate,
    packed,
    gate: packed.subarray(0, n),
    up: packed.subarray(n, 2 * n),
    down: packed.subarray(2 * n, 3 * n),
  };
}

/** A deep copy. */
export function cloneExpert(w: ExpertWeights): ExpertWeights {
  return expertWeights(w.hidden, w.intermediate, w.packed.slice());
}

function normal(rng: SeededRandom, n: number, std: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
  return roundRowsToBf16(out);
}

function randomExpert(rng: SeededRandom, H: number, I: number): ExpertWeights {
  const w = expertWeights(H, I);
  w.gate.set(normal(rng, H * I, 1 / Math.sqrt(H)));
  w.up.set(normal(rng, H * I, 1 / Math.sqrt(H)));
  w.down.set(normal(rng, H * I, 1 / Math.sqrt(I)));
  return w;
}

function nearOne(rng: SeededRandom, n: number): Float32Array {
  const out = normal(rng, n, 0.1);
  for (let i = 0; i < n; i++) out[i] = 1 + out[i]!;
  return roundRowsToBf16(out);
}

/** Every weight of the layer, the same for the same config and seed. */
export function generateMoeLayerWeights(config: MoeLayerConfig, seed: number): MoeLayerWeights {
  const c = validateMoeLayerConfig(config);
  const rng = new SeededRandom(seed);
  const H = c.hidden;
  const d = c.attentionHeadDim;
  const E = c.numRoutedExperts;
  return {
    config: { ...c },
    attentionNorm: nearOne(rng, H),
    attention: {
      hidden: H,
      headDim: d,
      q: normal(rng, d * H, 1 / Math.sqrt(H)),
      k: normal(rng, d * H, 1 / Math.sqrt(H)),
      v: normal(rng, d * H, 1 / Math.sqrt(H)),
      o: normal(rng, H * d, 1 / Math.sqrt(d)),
    },
    moeNorm: nearOne(rng, H),
    gate: normal(rng, E * H, 1 / Math.sqrt(H)),
    gateBias: normal(rng, E, c.routerBiasStd),
    experts: Array.from({ length: E }, () => randomExpert(rng, H, c.moeIntermediate)),
    shared: c.numSharedExperts > 0 ? randomExpert(rng, H, c.numSharedExperts * c.moeIntermediate) : null,
  };
}

/**
 * A copy of `weights` in which `logical` expert's down projection is zero (its
 * output vanishes): a fault for proving that a comparison catches a dropped expert.
 */
export function withZeroedExpert(weights: MoeLayerWeights, logical: number): MoeLayerWeights {
  const experts = weights.experts.map((w, e) => {
    if (e !== logical) return w;
    const copy = cloneExpert(w);
    copy.down.fill(0);
    return copy;
  });
  return { ...weights, experts };
}
