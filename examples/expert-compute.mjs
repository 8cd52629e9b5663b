// The expert compute of one MoE layer on one GPU, DeepSeek-V3 style: the
// router picks 8 of 256 experts per token, the tokens are grouped by expert,
// the experts (gate+up GEMM, SwiGLU, down GEMM) run as grouped GEMMs, and the
// weighted outputs come back one row per token.
//
//   node examples/expert-compute.mjs            (from a clone, after npm install; 'wideep' resolves to dist/)
//
// Without a GPU it says so and exits 0: nothing here has a CPU fallback.
import {
  Stream,
  Tensor,
  capabilities,
  expertsForward,
  fillRandom,
  permuteToExperts,
  route,
  unpermuteFromExperts,
} from 'wideep';

const caps = capabilities();
if (!caps.cuda.available || !caps.cublasLt.found) {
  console.log(`skipped: this example needs a GPU and cuBLASLt (${caps.cuda.reason ?? caps.cublasLt.reason})`);
  process.exit(0);
}

const [T, H, I, E] = [512, 1024, 512, 64];
const config = { numRoutedExperts: E, topK: 8, numExpertGroups: 8, topkGroup: 4, routedScalingFactor: 2.5, scoringFunc: 'sigmoid', normTopkProb: true };
const stream = new Stream(0);
const on = { device: 'cuda:0', stream };
const random = (shape, dtype, seed, std) => fillRandom(Tensor.empty(shape, dtype, on), seed, { kind: 'normal', std }, stream);

const x = random([T, H], 'bf16', 1, 1);
const gateWeight = random([E, H], 'bf16', 2, 0.05);
const weights = { w13: random([E, 2 * I, H], 'bf16', 3, 0.03), w2: random([E, H, I], 'bf16', 4, 0.03) };

const t0 = performance.now();
const { topkIdx, topkWeights } = route({ x, gateWeight, config, stream }); // i32 / f32 [T, 8]
const grouped = permuteToExperts({ x, topkIdx, numExperts: E, cap: T, stream }); // [E, T, H] + counts
const y = expertsForward({ x: grouped.x, counts: grouped.counts, weights, stream }); // [E, T, H]
const out = unpermuteFromExperts({ y, slotOf: grouped.slotOf, topkIdx, weights: topkWeights, stream }); // [T, H]
await stream.synchronize();
const ms = performance.now() - t0;

const counts = (await grouped.counts.cpu({ stream })).toNumbers();
const first = (await out.cpu({ stream })).toFloat32().slice(0, 4);
console.log(`${T} tokens through ${E} experts in ${ms.toFixed(1)} ms (first call, including cuBLASLt planning)`);
console.log(`rows per expert: min ${Math.min(...counts)}, max ${Math.max(...counts)}, total ${counts.reduce((a, b) => a + b, 0)} (= ${T} x 8)`);
console.log(`out[0, 0:4] = ${Array.from(first, (v) => v.toFixed(4)).join(', ')}`);
