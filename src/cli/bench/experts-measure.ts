/**
 * The GPU side of `wideep bench experts`: wideep's grouped GEMMs (both
 * strategies, BF16 and FP8), the dense GEMM of the same FLOPs, the router,
 * and the host time per enqueued op, on one GPU.
 */
import { groupedLinear, linear } from '../../blas/gemm.js';
import { Graph } from '../../cuda/graph.js';
import type { Stream } from '../../cuda/stream.js';
import { swiglu } from '../../moe/activation.js';
import { expertsForward } from '../../moe/experts.js';
import { routerTopk, type RoutingConfig } from '../../moe/router.js';
import { fillRandom, fillValue } from '../../tensor/fill.js';
import { Tensor } from '../../tensor/tensor.js';
import { decodeRowsPerExpert, gemmFlops, tflops, weightBytes, ROUTER_CASE, type GroupedCase } from './experts-cases.js';
import { GpuTimer } from './gpu-timer.js';
import { median, round } from './stats.js';

export interface Timing {
  us: number;
  tflops: number;
}

export interface GroupedResult extends GroupedCase {
  bf16: Timing;
  bf16Loop: Timing;
  /** Strided-batched fp8; absent where cuBLASLt has no such algorithm (fp8Batched says why). */
  fp8?: Timing;
  fp8Batched?: string;
  fp8Loop: Timing;
  /** wideep's masked fp8 kernel over the same rows (every count = M), one launch. */
  fp8Masked: Timing;
  /**
   * Decode cases with fewer rows in a decode step than M (256 experts: 4 of
   * 128): the masked kernel with every count at that, as a step gives it.
   */
  fp8MaskedStep?: Timing & { rows: number; weightGBps: number };
  /** linear() over [E*M, K] x [N, K]: the same FLOPs as one dense GEMM. */
  dense: Timing;
  /** Weight bytes read per second by the bf16 batched and the fastest fp8 runs (GB/s). */
  bf16WeightGBps: number;
  fp8WeightGBps: number;
}

export interface MeasureOptions {
  iters: number;
  warmup: number;
  stream: Stream;
}

function timing(us: number, flops: number): Timing {
  return { us: round(us, 1), tflops: round(tflops(flops, us), 1) };
}

async function medianUs(timer: GpuTimer, o: MeasureOptions, op: () => void): Promise<number> {
  const s = await timer.time({ iters: o.iters, warmup: o.warmup, op: async () => op() });
  return median(s.kernelUs);
}

function device(stream: Stream) {
  return { device: `cuda:${stream.device}` as const, stream };
}

/** The value, or why cuBLASLt refused the operation (CUBLAS_STATUS_NOT_SUPPORTED); other errors pass. */
async function valueOrRefusal(run: () => Promise<number>): Promise<number | { reason: string }> {
  try {
    return await run();
  } catch (e) {
    if ((e as { code?: string }).code !== 'CUBLAS_STATUS_NOT_SUPPORTED') throw e;
    return { reason: (e as Error).message };
  }
}

export async function measureGrouped(c: GroupedCase, o: MeasureOptions, timer: GpuTimer): Promise<GroupedResult> {
  const { stream } = o;
  const on = device(stream);
  const flops = gemmFlops(c);
  // One fill per expert: a whole prefill weight ([256, 4096, 7168]) has more elements than one fill can draw.
  const normal = (t: Tensor, seed: number, std: number) => {
    for (let e = 0; e < t.shape[0]!; e++) fillRandom(t.narrow(e, 1), seed * 1024 + e, { kind: 'normal', std }, stream);
    return t;
  };
  const uniform = (t: Tensor, seed: number) => fillRandom(t, seed, { kind: 'uniform', low: 0.5, high: 1 }, stream);
  const owned: Tensor[] = [];
  const alloc = (shape: number[], dtype: Tensor['dtype']) => (owned.push(Tensor.empty(shape, dtype, on)), owned.at(-1)!);
  try {
    const x = normal(alloc([c.E, c.M, c.K], 'bf16'), 1, 1);
    const w = normal(alloc([c.E, c.N, c.K], 'bf16'), 2, 0.05);
    const out = alloc([c.E, c.M, c.N], 'bf16');
    const bf16 = await medianUs(timer, o, () => groupedLinear({ x, weight: w, out, stream }));
    const bf16Loop = await medianUs(timer, o, () => groupedLinear({ x, weight: w, out, stream, strategy: 'loop' }));
    const dense = await medianUs(timer, o, () => linear(x.reshape([c.E * c.M, c.K]), w.narrow(0, 1).reshape([c.N, c.K]), { out: out.reshape([c.E * c.M, c.N]), stream }));
    owned.splice(0).forEach((t) => t.close(stream));
    const x8 = normal(alloc([c.E, c.M, c.K], 'fp8e4m3'), 3, 1);
    const xs = uniform(alloc([c.E, c.K / 128, c.M], 'f32'), 4);
    const w8 = normal(alloc([c.E, c.N, c.K], 'fp8e4m3'), 5, 1);
    const ws = uniform(alloc([c.E, c.N / 128, c.K / 128], 'f32'), 6);
    const out8 = alloc([c.E, c.M, c.N], 'bf16');
    const fp8Args = { x: x8, xScales: xs, xScalesLayout: 'blocks' as const, weight: w8, weightScales: ws, out: out8, stream };
    const fp8 = await valueOrRefusal(() => medianUs(timer, o, () => groupedLinear({ ...fp8Args, strategy: 'batched' })));
    const fp8Loop = await medianUs(timer, o, () => groupedLinear({ ...fp8Args, strategy: 'loop' }));
    const counts = fillValue(alloc([c.E], 'i32'), c.M, stream);
    const fp8Masked = await medianUs(timer, o, () => groupedLinear({ ...fp8Args, strategy: 'masked', counts }));
    const fp8Best = Math.min(fp8Loop, fp8Masked, typeof fp8 === 'number' ? fp8 : Infinity);
    const stepRows = c.phase === 'decode' ? decodeRowsPerExpert(c) : c.M;
    let fp8MaskedStep: GroupedResult['fp8MaskedStep'];
    if (stepRows < c.M) {
      fillValue(counts, stepRows, stream);
      const us = await medianUs(timer, o, () => groupedLinear({ ...fp8Args, strategy: 'masked', counts }));
      fp8MaskedStep = { ...timing(us, gemmFlops({ ...c, M: stepRows })), rows: stepRows, weightGBps: round(weightBytes(c, true) / us / 1e3, 0) };
    }
    return {
      ...c,
      bf16: timing(bf16, flops),
      bf16Loop: timing(bf16Loop, flops),
      ...(typeof fp8 === 'number' ? { fp8: timing(fp8, flops) } : { fp8Batched: fp8.reason }),
      fp8Loop: timing(fp8Loop, flops),
      fp8Masked: timing(fp8Masked, flops),
      ...(fp8MaskedStep ? { fp8MaskedStep } : {}),
      dense: timing(dense, flops),
      bf16WeightGBps: round(weightBytes(c, false) / bf16 / 1e3, 0),
      fp8WeightGBps: round(weightBytes(c, true) / fp8Best / 1e3, 0),
    };
  } finally {
    owned.forEach((t) => t.close(stream));
  }
}

export const DEEPSEEK_ROUTING: RoutingConfig = {
  numRoutedExperts: ROUTER_CASE.experts,
  topK: ROUTER_CASE.topk,
  numExpertGroups: ROUTER_CASE.groups,
  topkGroup: ROUTER_CASE.topkGroup,
  routedScalingFactor: 2.5,
  scoringFunc: 'sigmoid',
  normTopkProb: true,
};

export interface RouterResult {
  topkUs: number;
  gateGemm: Timing;
}

export async function measureRouter(o: MeasureOptions, timer: GpuTimer): Promise<RouterResult> {
  const { stream } = o;
  const on = device(stream);
  const { tokens: T, experts: E, hidden: H } = ROUTER_CASE;
  const logits = fillRandom(Tensor.empty([T, E], 'f32', on), 7, { kind: 'normal' }, stream);
  const bias = fillRandom(Tensor.empty([E], 'f32', on), 8, { kind: 'normal', std: 0.1 }, stream);
  const idx = Tensor.empty([T, ROUTER_CASE.topk], 'i32', on);
  const wts = Tensor.empty([T, ROUTER_CASE.topk], 'f32', on);
  const x = fillRandom(Tensor.empty([T, H], 'bf16', on), 9, { kind: 'normal' }, stream);
  const gate = fillRandom(Tensor.empty([E, H], 'bf16', on), 10, { kind: 'normal', std: 0.05 }, stream);
  try {
    const topkUs = await medianUs(timer, o, () => routerTopk({ logits, bias, config: DEEPSEEK_ROUTING, topkIdx: idx, topkWeights: wts, stream }));
    const gemmUs = await medianUs(timer, o, () => linear(x, gate, { out: logits, stream }));
    return { topkUs: round(topkUs, 2), gateGemm: timing(gemmUs, 2 * T * E * H) };
  } finally {
    for (const t of [logits, bias, idx, wts, x, gate]) t.close(stream);
  }
}

export interface HostResult {
  /** JS wall time per enqueued call, medians over batches of back-to-back calls (µs). */
  linearUs: number;
  groupedLinearUs: number;
  routerTopkUs: number;
  swigluUs: number;
  /** Host time of one graph launch replaying router + experts (µs); zero per op inside it. */
  graphLaunchUs: number;
  opsInGraph: number;
}

/** Small shapes: the GPU keeps up, so the wall time is the host's own. */
export async function measureHost(stream: Stream): Promise<HostResult> {
  const on = device(stream);
  const [E, M, H, I, T] = [8, 16, 512, 256, 64];
  const t = (shape: number[], dtype: Tensor['dtype'], seed: number) => fillRandom(Tensor.empty(shape, dtype, on), seed, { kind: 'normal', std: 0.1 }, stream);
  const x = t([E, M, H], 'bf16', 1);
  const w13 = t([E, 2 * I, H], 'bf16', 2);
  const w2 = t([E, H, I], 'bf16', 3);
  const h = t([E, M, 2 * I], 'bf16', 4);
  const act = Tensor.empty([E, M, I], 'bf16', on);
  const y = Tensor.empty([E, M, H], 'bf16', on);
  const logits = t([T, 256], 'f32', 5);
  const idx = Tensor.empty([T, 8], 'i32', on);
  const wts = Tensor.empty([T, 8], 'f32', on);
  const dense = Tensor.empty([E * M, 2 * I], 'bf16', on);
  const perCall = async (fn: () => void): Promise<number> => {
    const batches: number[] = [];
    for (let b = 0; b < 12; b++) {
      const n = 100;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) fn();
      batches.push(((performance.now() - t0) * 1e3) / n);
      await stream.synchronize();
    }
    return round(median(batches.slice(2)), 2);
  };
  try {
    const linearUs = await perCall(() => linear(x.reshape([E * M, H]), w13.narrow(0, 1).reshape([2 * I, H]), { out: dense, stream }));
    const groupedLinearUs = await perCall(() => groupedLinear({ x, weight: w13, out: h, stream }));
    const routerTopkUs = await perCall(() => routerTopk({ logits, config: DEEPSEEK_ROUTING, topkIdx: idx, topkWeights: wts, stream }));
    const swigluUs = await perCall(() => swiglu({ x: h, out: act, stream }));
    const step = () => {
      routerTopk({ logits, config: DEEPSEEK_ROUTING, topkIdx: idx, topkWeights: wts, stream });
      expertsForward({ x, weights: { w13, w2 }, out: y, stream });
    };
    step();
    const graph = await Graph.capture(stream, step);
    const graphLaunchUs = await perCall(() => graph.launch(stream));
    graph.close();
    return { linearUs, groupedLinearUs, routerTopkUs, swigluUs, graphLaunchUs, opsInGraph: 4 };
  } finally {
    for (const v of [x, w13, w2, h, act, y, logits, idx, wts, dense]) v.close(stream);
  }
}
