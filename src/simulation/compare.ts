/**
 * Pipeline output against the dense reference.
 *
 * The error of a token is max_i |out_i - ref_i| / max_i |moe_i|: the largest
 * absolute difference in its row, relative to the largest element of the
 * reference's MoE output (routed + shared) for that token. The MoE part is
 * the scale that matters: the residual h is computed identically on both
 * sides, so it only adds float32 noise, and dividing by the whole output
 * would hide MoE errors behind it.
 *
 * Why DEFAULT_TOLERANCE = 2e-2. Both sides feed the experts the same bf16
 * MoE input and pick the same experts (the gate is a pure function of that
 * input), so the only differences are roundings after the experts. bf16
 * keeps 8 significant bits: rounding to nearest is off by at most
 * u = 2^-8 ≈ 3.9e-3 of the value. The pipeline rounds
 * - in normal mode, each expert rank's partial sum (its local experts'
 *   weighted outputs) and then the combined sum (docs/architecture.md, "Normal combine");
 * - in low-latency mode, each expert's output row and then the weighted sum.
 * So |error_i| <= u * (sum over parts of |part_i| + |sum_i|) plus float32
 * noise, where there are at most top-k parts. Parts of opposite sign can make
 * the sum of their magnitudes exceed the row's maximum, so the bound is a few
 * u. Measured over 96 runs (4, 8 and 16 ranks, TBO and EPLB on and off, top-4
 * and top-8 layers, 12 seeds) the largest error was 7.1e-3 (1.8u), the median
 * 4.9e-3. 2e-2 (about 5u) leaves room for that, and still sits far below real
 * faults: one expert that outputs zeros (or a slot holding another expert's
 * weights) moves the tokens routed to it by a whole weighted expert output,
 * measured at 0.20 to 0.60 of the row's maximum (10 to 30 times the
 * tolerance; see the negative tests).
 */
import type { ReferenceOutput } from './reference.js';

export const DEFAULT_TOLERANCE = 2e-2;

export interface Comparison {
  /** Largest |out - ref| over every element of every step and rank. */
  maxAbsError: number;
  /** Largest per-token error relative to the reference MoE row's maximum (see above). */
  maxRelError: number;
  tolerance: number;
  pass: boolean;
  /** Tokens compared. */
  tokens: number;
  /** Where maxRelError was reached. */
  worst: { step: number; rank: number; token: number } | null;
  /** Why the comparison failed outright (shape mismatch, NaN), if it did. */
  problem?: string;
}

/** Compares `[step][rank]` outputs `[T * H]` with the reference. */
export function compareWithReference(
  actual: readonly (readonly Float32Array[])[],
  reference: readonly (readonly ReferenceOutput[])[],
  hidden: number,
  tolerance = DEFAULT_TOLERANCE,
): Comparison {
  const result: Comparison = { maxAbsError: 0, maxRelError: 0, tolerance, pass: true, tokens: 0, worst: null };
  const fail = (problem: string): Comparison => ({ ...result, pass: false, problem });
  if (actual.length !== reference.length) return fail(`${actual.length} steps of output, ${reference.length} in the reference`);
  for (let s = 0; s < actual.length; s++) {
    const ranks = actual[s]!;
    if (ranks.length !== reference[s]!.length) return fail(`step ${s}: ${ranks.length} ranks of output, ${reference[s]!.length} in the reference`);
    for (let r = 0; r < ranks.length; r++) {
      const out = ranks[r]!;
      const ref = reference[s]![r]!;
      if (out.length !== ref.out.length) return fail(`step ${s} rank ${r}: ${out.length / hidden} output rows, ${ref.out.length / hidden} in the reference`);
      for (let t = 0; t < out.length / hidden; t++) {
        let abs = 0;
        let scale = 0;
        for (let i = t * hidden; i < (t + 1) * hidden; i++) {
          const d = Math.abs(out[i]! - ref.out[i]!);
          if (Number.isNaN(d)) return fail(`step ${s} rank ${r} token ${t}: NaN in the output (or the reference)`);
          abs = Math.max(abs, d);
          scale = Math.max(scale, Math.abs(ref.moe[i]!));
        }
        const rel = abs / Math.max(scale, Number.MIN_VALUE);
        result.tokens++;
        result.maxAbsError = Math.max(result.maxAbsError, abs);
        if (result.worst === null || rel > result.maxRelError) {
          result.maxRelError = rel;
          result.worst = { step: s, rank: r, token: t };
        }
      }
    }
  }
  result.pass = result.maxRelError <= tolerance;
  return result;
}
