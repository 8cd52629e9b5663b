// What the GPU MoE layer workers share: a small DeepSeek-style layer
// (grouped sigmoid routing with bias, SwiGLU experts, a shared expert), its
// weights (the same on every rank, from a seed rank 0 picks), the check
// against wideep/testing's host layer, and the report each worker prints as
// one JSON line.
import { generateMoeLayerWeights, moeLayerConfig } from '../../../dist/simulation/index.js';
import { roundRowsToBf16 } from '../../../dist/simulation/math.js';
import { SeededRandom, moeLayerReference } from '../../../dist/testing/index.js';

export const config = moeLayerConfig({ hidden: 256, moeIntermediate: 128, numRoutedExperts: 16, numSharedExperts: 1, topK: 4, numExpertGroups: 4, topkGroup: 2 });
/** The same layer wide enough for fp8 experts (cuBLASLt's block-scaled GEMMs need K in whole 512s). */
export const fp8Config = moeLayerConfig({ ...config, hidden: 512, moeIntermediate: 512 });
export const { hidden: H, topK: k, numRoutedExperts: E } = config;
export const report = { rank: -1, checks: 0, failures: [], nearTies: 0, tokens: 0, replays: 0, moves: 0 };
export const fail = (msg) => report.failures.length < 20 && report.failures.push(msg);

/**
 * Agrees on a seed through the store and builds the layer's weights (bf16
 * values, which the host reference reads too). `blockMagnitudes`: each
 * 128x128 block of every routed expert scaled by its own 2^k, k in -3..3
 * (exact in bf16), so that fp8 block scales differ from block to block and a
 * scale read from the wrong block, or left behind by a weight move, shows.
 */
export async function sharedWeights(pg, key, layerConfig = config, { blockMagnitudes = false } = {}) {
  report.rank = pg.rank;
  if (pg.rank === 0) await pg.store.set(key, String(Date.now() % 1_000_000_007));
  const seed = Number(new TextDecoder().decode(await pg.store.get(key)));
  const weights = generateMoeLayerWeights(layerConfig, seed);
  if (blockMagnitudes) {
    const rng = new SeededRandom(seed + 1);
    const scaleBlocks = (m, rows, cols) => {
      for (let bi = 0; bi < rows / 128; bi++) {
        for (let bj = 0; bj < cols / 128; bj++) {
          const f = 2 ** (rng.int(7) - 3);
          for (let r = bi * 128; r < bi * 128 + 128; r++) for (let c = bj * 128; c < bj * 128 + 128; c++) m[r * cols + c] *= f;
        }
      }
    };
    for (const e of weights.experts) {
      scaleBlocks(e.packed.subarray(0, 2 * e.intermediate * e.hidden), 2 * e.intermediate, e.hidden);
      scaleBlocks(e.down, e.hidden, e.intermediate);
    }
  }
  return { seed, weights };
}

/**
 * The decoder-step tests' attention stand-in, exact in bf16: a = 2 · x with
 * its channels reversed, as one GEMM (a = x · Wᵀ). `member` of `parts`
 * (an attention-TP group) computes only its share of the output channels,
 * zeros elsewhere, so the parts sum to the whole. Returns W's bf16 bits [H, H].
 */
export function standInAttentionWeight(width, member = 0, parts = 1) {
  const w = new Uint16Array(width * width);
  const per = width / parts;
  for (let i = member * per; i < (member + 1) * per; i++) w[i * width + (width - 1 - i)] = 0x4000; // bf16 2.0
  return w;
}

/** What standInAttentionWeight's GEMM gives for x [T, width] (float32 values). */
export function standInAttention(xf, T, width) {
  const out = new Float32Array(T * width);
  for (let t = 0; t < T; t++) for (let i = 0; i < width; i++) out[t * width + i] = 2 * xf[t * width + width - 1 - i];
  return out;
}

export function randomTokens(rng, T, width = H) {
  const xf = roundRowsToBf16(Float32Array.from({ length: T * width }, () => rng.normal()));
  return { xf, bits: new Uint16Array(new Uint32Array(xf.buffer).map((u) => u >>> 16)) };
}

/**
 * Compares a [T, H] output with the host layer (routed experts, plus the
 * shared expert unless `withShared` is false), leaving out and counting the
 * tokens whose top-k is within rounding of a tie (the GPU's float32 logits
 * may order them otherwise); returns the logical experts chosen per checked token.
 * `expertDType`: the GPU layer's routed experts (the reference casts as they do).
 */
export function check(weights, label, xf, T, got, { withShared = true, expertDType = 'bf16' } = {}) {
  const ref = moeLayerReference(withShared ? weights : { ...weights, shared: undefined }, xf, T, { expertDType });
  const { hidden: H, topK: k } = weights.config;
  const chosen = [];
  for (let t = 0; t < T; t++) {
    report.tokens++;
    if (ref.nearTie[t]) {
      report.nearTies++;
      continue;
    }
    chosen.push(Array.from(ref.topkIdx.subarray(t * k, (t + 1) * k)));
    for (let i = t * H; i < (t + 1) * H; i++) {
      report.checks++;
      // fp8: the reference makes the GPU's casts, so what is left is rounding: at most about 2^-7.7 of the
      // terms (2^-9.2 emulated per expert, then two bf16 roundings); leaving the fp8 casts out fails at 2^-6.
      const tol = 2 ** (expertDType === 'fp8e4m3' ? -6 : -5) * ref.scale[i] + 1e-3;
      if (!(Math.abs(got[i] - ref.out[i]) <= tol)) fail(`${label} token ${t} channel ${i - t * H}: got ${got[i]}, expected ${ref.out[i]} ± ${tol}`);
    }
  }
  return chosen;
}
