/**
 * Seeded routing generators for tests and benchmarks: the same seed gives the
 * same routing on every machine (a self-contained xoshiro128** PRNG, no
 * Math.random).
 */
import { WideepError, assertInteger, invalidArg } from '../errors.js';

/** xoshiro128** seeded through splitmix32, with uniform and normal draws. */
export class SeededRandom {
  readonly #s = new Uint32Array(4);
  #spareNormal: number | undefined;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw invalidArg('seed', 'a safe integer', seed);
    let x = (seed ^ Math.floor(seed / 2 ** 32)) | 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) | 0;
      let z = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.#s[i] = z ^ (z >>> 16);
    }
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextUint32() / 2 ** 32;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** Standard normal (Box-Muller; the second value of each pair is kept for the next call). */
  normal(): number {
    if (this.#spareNormal !== undefined) {
      const v = this.#spareNormal;
      this.#spareNormal = undefined;
      return v;
    }
    const r = Math.sqrt(-2 * Math.log(1 - this.uniform())); // 1 - u is in (0, 1]
    const theta = 2 * Math.PI * this.uniform();
    this.#spareNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** Shuffles `items` in place (Fisher-Yates). */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return items;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

export interface RandomRoutingOptions {
  numTokens: number;
  numExperts: number;
  /** Experts per token (distinct, so <= numExperts). */
  topk: number;
  /** uniform: every expert equally likely. zipf: popularity ∝ 1/(rank+1)^s over a seeded permutation. */
  kind: 'uniform' | 'zipf';
  zipfExponent?: number;
  /** Each slot independently becomes -1 (weight 0) with this probability. */
  dropProbability?: number;
  seed: number;
}

export interface Routing {
  /** [T * k], row-major; -1 = dropped. */
  topkIdx: Int32Array;
  /** [T * k]: softmax of the chosen experts' scores. */
  topkWeights: Float32Array;
}

/**
 * Random top-k routing. Scores are |randn| + 1; uniform picks the k best of
 * all experts, zipf samples k experts without replacement by popularity and
 * draws their scores. Slots are ordered by score, highest first.
 */
export function randomRouting(options: RandomRoutingOptions): Routing {
  const T = assertInteger('randomRouting: numTokens', options.numTokens, 0);
  const E = assertInteger('randomRouting: numExperts', options.numExperts, 1);
  const k = assertInteger('randomRouting: topk', options.topk, 1, E);
  const s = options.zipfExponent ?? 1.2;
  const drop = options.dropProbability ?? 0;
  if (options.kind !== 'uniform' && options.kind !== 'zipf') throw invalidArg('randomRouting: kind', "'uniform' or 'zipf'", options.kind);
  if (!(Number.isFinite(s) && s >= 0)) throw invalidArg('randomRouting: zipfExponent', 'a finite number >= 0', s);
  if (!(drop >= 0 && drop <= 1)) throw invalidArg('randomRouting: dropProbability', 'a number in [0, 1]', drop);
  const rng = new SeededRandom(options.seed);

  const popularity = new Float64Array(E);
  if (options.kind === 'zipf') {
    const order = rng.shuffle(Array.from({ length: E }, (_, i) => i));
    order.forEach((e, rank) => (popularity[e] = 1 / (rank + 1) ** s));
  }
  const topkIdx = new Int32Array(T * k);
  const topkWeights = new Float32Array(T * k);
  const scores = new Float64Array(E);
  for (let t = 0; t < T; t++) {
    const chosen = options.kind === 'uniform' ? pickUniform(rng, scores, k) : pickZipf(rng, popularity, k);
    const max = Math.max(...chosen.map((c) => c.score));
    const sum = chosen.reduce((a, c) => a + Math.exp(c.score - max), 0);
    chosen.forEach((c, j) => {
      topkIdx[t * k + j] = c.expert;
      topkWeights[t * k + j] = Math.exp(c.score - max) / sum;
    });
  }
  if (drop > 0) {
    for (let i = 0; i < T * k; i++) {
      if (rng.uniform() < drop) {
        topkIdx[i] = -1;
        topkWeights[i] = 0;
      }
    }
  }
  return { topkIdx, topkWeights };
}

interface Choice {
  expert: number;
  score: number;
}

const byScore = (a: Choice, b: Choice) => b.score - a.score || a.expert - b.expert;

/** The k highest of E fresh scores (ties: lower expert id). */
function pickUniform(rng: SeededRandom, scores: Float64Array, k: number): Choice[] {
  for (let e = 0; e < scores.length; e++) scores[e] = Math.abs(rng.normal()) + 1;
  const best: Choice[] = [];
  for (let e = 0; e < scores.length; e++) {
    const c = { expert: e, score: scores[e]! };
    if (best.length < k) best.push(c);
    else if (byScore(c, best[k - 1]!) < 0) best[k - 1] = c;
    else continue;
    best.sort(byScore);
  }
  return best;
}

/** k distinct experts drawn with probability ∝ popularity, each with a fresh score. */
function pickZipf(rng: SeededRandom, popularity: Float64Array, k: number): Choice[] {
  const left = Float64Array.from(popularity);
  const chosen: Choice[] = [];
  for (let j = 0; j < k; j++) {
    const total = left.reduce((a, b) => a + b, 0);
    let r = rng.uniform() * total;
    let e = left.findIndex((p) => p > 0 && (r -= p) < 0);
    for (let i = left.length - 1; e < 0 && i >= 0; i--) if (left[i]! > 0) e = i; // rounding at the very end
    if (e < 0) throw new WideepError('ERR_INVALID_ARG', 'randomRouting: ran out of experts to sample');
    left[e] = 0;
    chosen.push({ expert: e, score: Math.abs(rng.normal()) + 1 });
  }
  return chosen.sort(byScore);
}
