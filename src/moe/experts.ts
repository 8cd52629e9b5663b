/**
 * The routed experts of one rank on the GPU: y[e] = down(swiglu(gateUp(x[e])))
 * for every local expert e, over the expert-major layout [E, M, H] that a
 * low-latency dispatch (recvX) or permuteToExperts produces. BF16 end to end,
 * or FP8 e4m3 with DeepSeek-V3's block scales: the dispatched fp8 rows and
 * their 1x128 scales feed the gate+up GEMM, SwiGLU re-quantises for the down
 * GEMM, weights carry 128x128 scales.
 *
 * Rows past an expert's count are computed by cuBLASLt's GEMMs too (they run
 * on the padded [E, M, H] without a host sync) and left unread: SwiGLU skips
 * them. The 'masked' strategy (fp8) computes only the counted rows and leaves
 * the others of `out` unwritten.
 */
import { groupedLinear, type GroupedGemmStrategy } from '../blas/gemm.js';
import type { Stream } from '../cuda/stream.js';
import { WideepError } from '../errors.js';
import { deviceTensor, expectDType, expectShape, streamFor } from '../tensor/checks.js';
import type { Tensor } from '../tensor/tensor.js';
import { swiglu } from './activation.js';

export interface ExpertWeightsOnDevice {
  /** [E, 2I, H]: gate rows then up rows of each expert (bf16, or fp8e4m3 with w13Scales). */
  w13: Tensor;
  /** f32 [E, 2I/128, H/128] with fp8 weights. */
  w13Scales?: Tensor;
  /** [E, H, I] (bf16, or fp8e4m3 with w2Scales). */
  w2: Tensor;
  /** f32 [E, H/128, I/128] with fp8 weights. */
  w2Scales?: Tensor;
}

export interface ExpertsScratch {
  h: Tensor;
  a: Tensor;
  aScales?: Tensor;
  /** fp8 x with 'rows' scales on cuBLASLt: f32 [E, H/128, M], where the first GEMM re-lays them out ('masked' reads them in place). */
  xScales?: Tensor;
}

export interface ExpertsForwardOptions {
  /** [E, M, H]: bf16, or fp8e4m3 with xScales (then the weights must be fp8 too). */
  x: Tensor;
  /** f32 [E, M, H/128] (the dispatch's layout) with fp8 x. */
  xScales?: Tensor;
  /** i32 [E]: valid rows per expert (a low-latency dispatch's recvCount, permuteToExperts' counts). */
  counts?: Tensor;
  weights: ExpertWeightsOnDevice;
  /** bf16 [E, M, H]; allocated when absent. */
  out?: Tensor;
  /** fp8 x: xScales as [E, M, H/128] ('rows', the low-latency dispatch's) or [E, H/128, M] ('blocks', permuteToExperts'). */
  xScalesLayout?: 'rows' | 'blocks';
  /**
   * Intermediates to use instead of allocating them: h bf16 [E, M, 2I] (gate
   * and up) and a [E, M, I] (SwiGLU: bf16, or fp8e4m3 with aScales f32
   * [E, I/128, M] for fp8 experts, and xScales for fp8 x with 'rows' scales
   * unless the strategy is 'masked').
   * A CUDA graph captured with them has no memory nodes, whose launch costs
   * host time, and reads no buffer a later call may replace.
   */
  scratch?: ExpertsScratch;
  stream?: Stream;
  /** groupedLinear's strategy for both GEMMs; 'masked' (fp8) computes only each expert's `counts` rows. */
  strategy?: GroupedGemmStrategy;
}

export function expertsForward(o: ExpertsForwardOptions): Tensor {
  const where = 'expertsForward';
  if (typeof o !== 'object' || o === null) throw new WideepError('ERR_INVALID_ARG', `${where}: expected an options object`);
  const x = deviceTensor(where, 'x', o.x);
  const w = o.weights;
  if (typeof w !== 'object' || w === null) throw new WideepError('ERR_INVALID_ARG', `${where}: weights: expected { w13, w2 }`);
  const fp8 = x.dtype === 'fp8e4m3';
  const w13 = deviceTensor(where, 'weights.w13', w.w13, x.deviceIndex);
  const w2 = deviceTensor(where, 'weights.w2', w.w2, x.deviceIndex);
  expectDType(where, 'weights.w13', w13, [x.dtype]);
  expectDType(where, 'weights.w2', w2, [x.dtype]);
  expectShape(where, 'x', x, ['E', 'M', 'H'], [null, null, null]);
  const [E, , H] = x.shape as [number, number, number];
  expectShape(where, 'weights.w13', w13, ['E', '2I', 'H'], [E, null, H]);
  const I = w13.shape[1]! / 2;
  expectShape(where, 'weights.w2', w2, ['E', 'H', 'I'], [E, H, I]);
  const sc = o.scratch;
  if (sc && fp8 !== (sc.aScales !== undefined)) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: scratch.aScales: ${fp8 ? 'fp8 experts need it (the SwiGLU output\'s scales)' : 'belongs to fp8 experts'}`);
  }
  const strategy = o.strategy;
  const masked = strategy === 'masked';
  if (masked && o.counts === undefined) throw new WideepError('ERR_INVALID_ARG', `${where}: the 'masked' strategy needs counts (the rows each expert received)`);
  const stream = streamFor(where, x.deviceIndex, o.stream);
  // cuBLASLt computes every row and reads no counts; the masked kernel reads them on the device.
  const counts = masked ? { counts: o.counts } : {};
  const xScalesScratch = masked ? undefined : sc?.xScales;
  const h = groupedLinear({ x, xScales: o.xScales, xScalesLayout: o.xScalesLayout, xScalesScratch, weight: w13, weightScales: w.w13Scales, out: sc?.h, stream, strategy, ...counts });
  const a = swiglu({ x: h, counts: o.counts, fp8, out: sc?.a, scales: sc?.aScales, stream });
  const y = groupedLinear({ x: a.out, xScales: a.scales, xScalesLayout: 'blocks', weight: w2, weightScales: w.w2Scales, out: o.out, stream, strategy, ...counts });
  if (!sc) for (const t of [h, a.out, a.scales]) t?.close(stream);
  return y;
}
