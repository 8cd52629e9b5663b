/**
 * Batches for the simulated DP ranks: per step, each rank's own sequences
 * (prefill chunks or decode tokens), with different token counts per rank
 * and idle ranks that hold none.
 */
import { SeededRandom } from '../ep/random-routing.js';
import { WideepError, assertInteger } from '../errors.js';
import type { ForwardMode } from '../planning/dp-step.js';
import { roundRowsToBf16 } from './math.js';

/** One DP rank's batch in one step. */
export interface RankBatch {
  /** `idle` exactly when there are no tokens. */
  forwardMode: ForwardMode;
  /** New tokens of each sequence (1 each in decode). */
  seqLens: number[];
  /** `[T * H]`: the residual stream of the new tokens (bf16 values), in batch order. */
  x: Float32Array;
  /** Per sequence: the attention inputs of its cached earlier tokens, `[P * H]`. */
  prefixes: Float32Array[];
}

/** What the ranks run in a step: all prefill, all decode, or rank 0 prefilling while the others decode. */
export type StepKind = 'extend' | 'decode' | 'mixed';

export interface WorkloadOptions {
  numRanks: number;
  hidden: number;
  steps: readonly StepKind[];
  /** Ranks with no tokens in any step (default: the last rank). */
  idleRanks?: readonly number[];
  /** Most sequences a decoding rank runs (default 12). */
  maxDecodeSeqs?: number;
  /** Longest prefill chunk (default 12). */
  maxExtendLen?: number;
  seed: number;
}

export function numTokens(batch: RankBatch): number {
  return batch.seqLens.reduce((a, b) => a + b, 0);
}

export function idleBatch(): RankBatch {
  return { forwardMode: 'idle', seqLens: [], x: new Float32Array(0), prefixes: [] };
}

function rows(rng: SeededRandom, n: number, H: number): Float32Array {
  const out = new Float32Array(n * H);
  for (let i = 0; i < out.length; i++) out[i] = rng.normal();
  return roundRowsToBf16(out);
}

function extendBatch(rng: SeededRandom, H: number, maxLen: number): RankBatch {
  const numSeqs = 1 + rng.int(3);
  // Some chunks continue a sequence whose start is cached already (chunked prefill).
  const seqLens = Array.from({ length: numSeqs }, () => 2 + rng.int(maxLen - 1));
  const prefixes = seqLens.map(() => rows(rng, rng.uniform() < 0.3 ? 1 + rng.int(6) : 0, H));
  return { forwardMode: 'extend', seqLens, x: rows(rng, seqLens.reduce((a, b) => a + b, 0), H), prefixes };
}

function decodeBatch(rng: SeededRandom, H: number, maxSeqs: number): RankBatch {
  const numSeqs = 2 + rng.int(maxSeqs - 1);
  const seqLens = new Array<number>(numSeqs).fill(1);
  const prefixes = seqLens.map(() => rows(rng, 1 + rng.int(12), H));
  return { forwardMode: 'decode', seqLens, x: rows(rng, numSeqs, H), prefixes };
}

/** `steps[s][r]`: rank r's batch in step s; the same seed gives the same batches. */
export function generateWorkload(options: WorkloadOptions): RankBatch[][] {
  const R = assertInteger('workload numRanks', options.numRanks, 1);
  const H = assertInteger('workload hidden', options.hidden, 1);
  const maxSeqs = assertInteger('workload maxDecodeSeqs', options.maxDecodeSeqs ?? 12, 2);
  const maxLen = assertInteger('workload maxExtendLen', options.maxExtendLen ?? 12, 2);
  const idle = new Set(options.idleRanks ?? [R - 1]);
  for (const r of idle) assertInteger('workload idle rank', r, 0, R - 1);
  if (idle.size === R) throw new WideepError('ERR_INVALID_ARG', 'workload: every rank is idle; leave at least one rank with tokens');
  const rng = new SeededRandom(options.seed);
  return options.steps.map((kind) => {
    if (kind !== 'extend' && kind !== 'decode' && kind !== 'mixed') {
      throw new WideepError('ERR_INVALID_ARG', `workload step kind ${String(kind)}: expected extend, decode or mixed`);
    }
    return Array.from({ length: R }, (_, r) => {
      if (idle.has(r)) return idleBatch();
      const extend = kind === 'extend' || (kind === 'mixed' && r === 0);
      return extend ? extendBatch(rng, H, maxLen) : decodeBatch(rng, H, maxSeqs);
    });
  });
}

/** Rows `[start, end)` of a batch's new tokens. */
export function tokenRows(batch: RankBatch, H: number, start: number, end: number): Float32Array {
  return batch.x.subarray(start * H, end * H);
}
