/**
 * GEMMs on cuBLASLt, in row-major terms: `linear` is y = x · wᵀ (the layout of
 * a PyTorch Linear weight [N, K]); `groupedLinear` runs one such product per
 * expert over the expert-major layout the EP buffer and `permuteToExperts`
 * produce, in BF16, or in FP8 e4m3 with DeepSeek-V3's block scales (1x128 on
 * activations, 128x128 on weights).
 *
 * cuBLAS is column-major: y = x · wᵀ is computed as yᵀ = w · xᵀ with A = w
 * (transposed), B = x, so every operand keeps its row-major memory.
 *
 * Every call only enqueues: no host sync, capturable in a CUDA graph once its
 * stream has a workspace (see context.ts).
 */
import { callNative } from '../cuda/call.js';
import type { Stream } from '../cuda/stream.js';
import { WideepError } from '../errors.js';
import { requireCuda } from '../native/index.js';
import { f32Bits } from '../tensor/convert.js';
import { itemSize } from '../tensor/dtype.js';
import { deviceTensor, expectAligned16, expectDType, expectShape, streamFor } from '../tensor/checks.js';
import { Tensor } from '../tensor/tensor.js';
import { blasHandle, blasScratch, blasWorkspace, matmulFields } from './context.js';
import { enqueueFp8MaskedGemm } from './masked-gemm.js';

/** cudaDataType_t codes (library_types.h). */
const CUDA_TYPE = { f32: 0n, bf16: 14n, fp8e4m3: 28n } as const;
/** cublasOperation_t. */
const OP_N = 0n;
const OP_T = 1n;
/** cublasLtMatmulMatrixScale_t. */
const SCALE_VEC128_32F = 4n;
const SCALE_BLK128X128_32F = 5n;

export const FP8_SCALE_BLOCK = 128;
/** cuBLASLt reads block scales in groups of four (16 bytes) along their contiguous dimension. */
const SCALE_GROUP = 4;

const ONE = BigInt(f32Bits(1));
const ZERO = BigInt(f32Bits(0));

interface Operands {
  device: number;
  stream: Stream;
  a: Tensor; // weights [batch, N, K]
  b: Tensor; // activations [batch, M, K]
  d: Tensor; // out [batch, M, N]
  c: Tensor | undefined; // added [batch, M, N]
  batch: number;
  m: number; // N in row-major terms
  n: number; // M
  k: number;
  aScale?: bigint;
  bScale?: bigint;
  /** Offsets between batch entries of the scales (loop strategy only). */
  aScaleStride?: number;
  bScaleStride?: number;
}

let baton: BigInt64Array | undefined;

function launch(o: Operands, loop: boolean): void {
  const f = matmulFields();
  baton ??= new BigInt64Array(f.length);
  const v = baton;
  const ws = blasWorkspace(o.stream);
  const perA = BigInt(o.m * o.k), perB = BigInt(o.n * o.k), perD = BigInt(o.m * o.n);
  // Bytes from one batch entry to the next (the loop strategy's pointer steps).
  const bytes = (t: Tensor, elems: bigint) => elems * BigInt(itemSize(t.dtype));
  const [stepA, stepB, stepD] = [bytes(o.a, perA), bytes(o.b, perB), bytes(o.d, perD)];
  v[f.workspace!] = ws.ptr;
  v[f.workspaceBytes!] = BigInt(ws.byteLength);
  v[f.m!] = BigInt(o.m);
  v[f.n!] = BigInt(o.n);
  v[f.k!] = BigInt(o.k);
  v[f.batch!] = loop ? 1n : BigInt(o.batch);
  v[f.lda!] = BigInt(o.k);
  v[f.ldb!] = BigInt(o.k);
  v[f.ldc!] = BigInt(o.m);
  v[f.ldd!] = BigInt(o.m);
  v[f.strideA!] = perA;
  v[f.strideB!] = perB;
  v[f.strideC!] = perD;
  v[f.strideD!] = perD;
  v[f.aType!] = CUDA_TYPE[o.a.dtype as 'bf16' | 'fp8e4m3'];
  v[f.bType!] = CUDA_TYPE[o.b.dtype as 'bf16' | 'fp8e4m3'];
  v[f.dType!] = CUDA_TYPE[o.d.dtype as 'bf16' | 'f32'];
  v[f.cType!] = v[f.dType!]!;
  v[f.transA!] = OP_T;
  v[f.transB!] = OP_N;
  v[f.aScaleMode!] = o.aScale ? SCALE_BLK128X128_32F : 0n;
  v[f.bScaleMode!] = o.bScale ? SCALE_VEC128_32F : 0n;
  v[f.alphaBits!] = ONE;
  v[f.betaBits!] = o.c ? ONE : ZERO;
  const handle = blasHandle(o.device);
  const native = o.stream.native;
  const steps = loop ? o.batch : 1;
  const [a0, b0, d0] = [o.a.ptr, o.b.ptr, o.d.ptr];
  const c0 = o.c?.ptr ?? d0;
  for (let e = 0; e < steps; e++) {
    const i = BigInt(e);
    v[f.a!] = a0 + i * stepA;
    v[f.b!] = b0 + i * stepB;
    v[f.d!] = d0 + i * stepD;
    v[f.c!] = c0 + i * stepD;
    v[f.aScale!] = o.aScale ? o.aScale + i * BigInt((o.aScaleStride ?? 0) * 4) : 0n;
    v[f.bScale!] = o.bScale ? o.bScale + i * BigInt((o.bScaleStride ?? 0) * 4) : 0n;
    callNative(() => handle.matmul(v, native));
  }
}

export interface LinearOptions {
  /** [..., N]: written in place; allocated on the stream when absent. */
  out?: Tensor;
  /** Dtype of an allocated `out` (default bf16; f32 suits router logits). */
  outDType?: 'bf16' | 'f32';
  /** Same shape and dtype as out: out = x · wᵀ + add (may be `out` itself, to accumulate). */
  add?: Tensor;
  stream?: Stream;
}

function outputFor(where: string, given: Tensor | undefined, shape: number[], dtype: 'bf16' | 'f32', device: number, stream: Stream): Tensor {
  return given === undefined ? Tensor.empty(shape, dtype, { device: `cuda:${device}`, stream }) : checkedOutput(where, given, shape, device);
}

function checkedOutput(where: string, given: Tensor, shape: number[], device: number): Tensor {
  const out = deviceTensor(where, 'out', given, device);
  expectDType(where, 'out', out, ['bf16', 'f32']);
  if (out.numel !== shape.reduce((a, b) => a * b, 1) || out.shape.at(-1) !== shape.at(-1)) {
    throw new WideepError('ERR_SHAPE', `${where}: out: expected shape [${shape.join(', ')}], got [${out.shape.join(', ')}]`);
  }
  expectAligned16(where, 'out', out);
  return out;
}

function addendFor(where: string, add: Tensor | undefined, out: Tensor): Tensor | undefined {
  if (add === undefined) return undefined;
  const t = deviceTensor(where, 'add', add, out.deviceIndex);
  if (t.dtype !== out.dtype || t.numel !== out.numel) {
    throw new WideepError('ERR_SHAPE', `${where}: add: expected ${out.dtype}[${out.shape.join(', ')}], got ${t.dtype}[${t.shape.join(', ')}]`);
  }
  expectAligned16(where, 'add', t);
  return t;
}

/** y = x · wᵀ (+ add): x bf16 [..., K], weight bf16 [N, K], y [..., N] in bf16 or f32. */
export function linear(x: Tensor, weight: Tensor, options: LinearOptions = {}): Tensor {
  const where = 'linear';
  deviceTensor(where, 'x', x);
  const device = x.deviceIndex;
  deviceTensor(where, 'weight', weight, device);
  expectDType(where, 'x', x, ['bf16']);
  expectDType(where, 'weight', weight, ['bf16']);
  if (x.ndim < 1) throw new WideepError('ERR_SHAPE', `${where}: x: expected at least one dimension [..., K], got a scalar`);
  const K = x.shape.at(-1)!;
  expectShape(where, 'weight', weight, ['N', 'K'], [null, K]);
  const N = weight.shape[0]!;
  checkGemmWidths(where, K, N);
  expectAligned16(where, 'x', x);
  expectAligned16(where, 'weight', weight);
  const stream = streamFor(where, device, options.stream);
  const M = x.numel / K;
  const out = outputFor(where, options.out, [...x.shape.slice(0, -1), N], options.outDType ?? 'bf16', device, stream);
  const c = addendFor(where, options.add, out);
  if (M > 0 && N > 0) launch({ device, stream, a: weight, b: x, d: out, c, batch: 1, m: N, n: M, k: K }, false);
  return out;
}

function checkGemmWidths(where: string, K: number, N: number): void {
  // 16-byte rows for every operand and the output.
  if (K % 8 !== 0 || N % 8 !== 0) {
    throw new WideepError('ERR_SHAPE', `${where}: K and N must be multiples of 8 (16-byte rows), got K = ${K}, N = ${N}`);
  }
}

export interface GroupedLinearOptions {
  /** [E, M, K]: bf16, or fp8e4m3 with xScales. cuBLASLt computes rows past an expert's count too; 'masked' skips them. */
  x: Tensor;
  /** [E, N, K]: bf16, or fp8e4m3 with weightScales. */
  weight: Tensor;
  /** fp8: f32 scales of x, one per 128 channels: [E, M, K/128] ('rows', as dispatch makes them) or [E, K/128, M] ('blocks'). */
  xScales?: Tensor;
  xScalesLayout?: 'rows' | 'blocks';
  /**
   * fp8 with 'rows' scales: f32 [E, K/128, M] to re-lay them out in, instead
   * of the stream's shared scratch, which a later, larger call may replace: a
   * CUDA graph that replays this call must hold its own.
   */
  xScalesScratch?: Tensor;
  /** fp8: f32 [E, N/128, K/128], one per 128x128 block of the weight. */
  weightScales?: Tensor;
  /** bf16 [E, M, N]; allocated when absent. */
  out?: Tensor;
  stream?: Stream;
  /**
   * 'batched': one strided-batched cuBLASLt launch for every expert (the
   * default for bf16); 'loop': one launch per expert (the default for fp8:
   * cuBLASLt 13.0 on H100 has no strided-batched algorithm with block scales,
   * CUBLAS_STATUS_NOT_SUPPORTED, seen 2026-12-07); 'masked' (fp8 only, needs
   * `counts`): one launch of wideep's own kernel for every expert, computing
   * only each expert's first counts[e] rows and leaving the rest of `out`
   * unwritten.
   */
  strategy?: GroupedGemmStrategy;
  /** i32 [E]: valid rows per expert, read on the device ('masked' only). */
  counts?: Tensor;
}

export type GroupedGemmStrategy = 'batched' | 'loop' | 'masked';
const STRATEGIES: readonly GroupedGemmStrategy[] = ['batched', 'loop', 'masked'];

/** out[e] = x[e] · weight[e]ᵀ for every expert e. */
export function groupedLinear(o: GroupedLinearOptions): Tensor {
  const where = 'groupedLinear';
  if (typeof o !== 'object' || o === null) throw new WideepError('ERR_INVALID_ARG', `${where}: expected an options object`);
  const x = deviceTensor(where, 'x', o.x);
  const device = x.deviceIndex;
  const weight = deviceTensor(where, 'weight', o.weight, device);
  expectDType(where, 'x', x, ['bf16', 'fp8e4m3']);
  expectDType(where, 'weight', weight, [x.dtype]);
  expectShape(where, 'x', x, ['E', 'M', 'K'], [null, null, null]);
  const [E, M, K] = x.shape as [number, number, number];
  expectShape(where, 'weight', weight, ['E', 'N', 'K'], [E, null, K]);
  const N = weight.shape[1]!;
  checkGemmWidths(where, K, N);
  expectAligned16(where, 'x', x);
  expectAligned16(where, 'weight', weight);
  const strategy = o.strategy ?? (x.dtype === 'fp8e4m3' ? 'loop' : 'batched');
  if (!STRATEGIES.includes(strategy)) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: strategy: expected one of ${STRATEGIES.map((s) => `'${s}'`).join(', ')}, got ${String(strategy)}`);
  }
  if (strategy === 'masked') return maskedFp8(where, o, { E, M, N, K, device }, x, weight);
  if (o.counts !== undefined) throw new WideepError('ERR_INVALID_ARG', `${where}: counts belong to the 'masked' strategy; cuBLASLt computes every row`);
  const stream = streamFor(where, device, o.stream);
  const out = outputFor(where, o.out, [E, M, N], 'bf16', device, stream);
  expectDType(where, 'out', out, ['bf16']);
  const ops: Operands = { device, stream, a: weight, b: x, d: out, c: undefined, batch: E, m: N, n: M, k: K };
  if (x.dtype === 'fp8e4m3') Object.assign(ops, fp8Scales(where, o, { E, M, N, K, device, stream }));
  else if (o.xScales !== undefined || o.weightScales !== undefined) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: xScales and weightScales belong to fp8 inputs; x is ${x.dtype}`);
  }
  if (E > 0 && M > 0 && N > 0) launch(ops, strategy === 'loop');
  return out;
}

interface Dims {
  E: number;
  M: number;
  N: number;
  K: number;
  device: number;
  stream: Stream;
}

function maskedFp8(where: string, o: GroupedLinearOptions, d: Omit<Dims, 'stream'>, x: Tensor, weight: Tensor): Tensor {
  if (x.dtype !== 'fp8e4m3') throw new WideepError('ERR_INVALID_ARG', `${where}: the 'masked' strategy takes fp8 experts; x is ${x.dtype}`);
  if (d.K === 0 || d.K % FP8_SCALE_BLOCK !== 0 || d.N % FP8_SCALE_BLOCK !== 0) {
    throw new WideepError('ERR_SHAPE', `${where}: the 'masked' strategy needs K (at least one) and N in whole ${FP8_SCALE_BLOCK}-wide scale blocks, got K = ${d.K}, N = ${d.N}`);
  }
  const counts = deviceTensor(where, 'counts', o.counts, d.device);
  expectDType(where, 'counts', counts, ['i32']);
  expectShape(where, 'counts', counts, ['E'], [d.E]);
  // Given tensors are checked before the stream, so a bad call fails the same way with or without a GPU.
  const shape = [d.E, d.M, d.N];
  const given = o.out === undefined ? undefined : checkedOutput(where, o.out, shape, d.device);
  if (given) expectDType(where, 'out', given, ['bf16']);
  const { weightScales, xScales, layout } = checkFp8Scales(where, o, d);
  const stream = streamFor(where, d.device, o.stream);
  const out = given ?? Tensor.empty(shape, 'bf16', { device: `cuda:${d.device}`, stream });
  const kb = d.K / FP8_SCALE_BLOCK;
  const xScaleStrides = layout === 'rows' ? { batch: d.M * kb, row: kb, block: 1 } : { batch: kb * d.M, row: 1, block: d.M };
  if (d.E > 0 && d.M > 0 && d.N > 0) enqueueFp8MaskedGemm(where, { x, xScales, xScaleStrides, weight, weightScales, counts, out, ...d, stream });
  return out;
}

/** The fp8 scales a grouped GEMM reads, checked against its dimensions. */
interface Fp8ScaleOperands {
  weightScales: Tensor;
  xScales: Tensor;
  layout: 'rows' | 'blocks';
}

function checkFp8Scales(where: string, o: Pick<GroupedLinearOptions, 'xScales' | 'xScalesLayout' | 'weightScales'>, d: Omit<Dims, 'stream'>): Fp8ScaleOperands {
  const kb = d.K / FP8_SCALE_BLOCK;
  const ws = deviceTensor(where, 'weightScales', o.weightScales, d.device);
  expectDType(where, 'weightScales', ws, ['f32']);
  expectShape(where, 'weightScales', ws, ['E', 'N/128', 'K/128'], [d.E, d.N / FP8_SCALE_BLOCK, kb]);
  const xs = deviceTensor(where, 'xScales', o.xScales, d.device);
  expectDType(where, 'xScales', xs, ['f32']);
  const layout = o.xScalesLayout ?? 'rows';
  if (layout === 'blocks') expectShape(where, 'xScales', xs, ['E', 'K/128', 'M'], [d.E, kb, d.M]);
  else if (layout === 'rows') expectShape(where, 'xScales', xs, ['E', 'M', 'K/128'], [d.E, d.M, kb]);
  else throw new WideepError('ERR_INVALID_ARG', `${where}: xScalesLayout: expected 'rows' or 'blocks', got ${String(layout)}`);
  return { weightScales: ws, xScales: xs, layout };
}

function fp8Scales(where: string, o: GroupedLinearOptions, d: Dims): Pick<Operands, 'aScale' | 'bScale' | 'aScaleStride' | 'bScaleStride'> {
  const kb = d.K / FP8_SCALE_BLOCK;
  if (!Number.isInteger(kb) || kb % SCALE_GROUP !== 0 || d.N % FP8_SCALE_BLOCK !== 0) {
    throw new WideepError(
      'ERR_SHAPE',
      `${where}: fp8 needs K a multiple of ${FP8_SCALE_BLOCK * SCALE_GROUP} and N a multiple of ${FP8_SCALE_BLOCK} (cuBLASLt's block scales), got K = ${d.K}, N = ${d.N}`,
    );
  }
  if (d.M % SCALE_GROUP !== 0) {
    throw new WideepError('ERR_SHAPE', `${where}: fp8 needs M (rows per expert) a multiple of ${SCALE_GROUP}, got M = ${d.M}`);
  }
  const { weightScales: ws, xScales: xs, layout } = checkFp8Scales(where, o, d);
  expectAligned16(where, 'weightScales', ws);
  const strides = { aScaleStride: (d.N / FP8_SCALE_BLOCK) * kb, bScaleStride: kb * d.M };
  if (layout === 'blocks') {
    expectAligned16(where, 'xScales', xs);
    return { aScale: ws.ptr, bScale: xs.ptr, ...strides };
  }
  // cuBLASLt wants the rows' scales contiguous per 128-channel block: re-lay them out.
  const given = o.xScalesScratch;
  if (given !== undefined) {
    expectDType(where, 'xScalesScratch', deviceTensor(where, 'xScalesScratch', given, d.device), ['f32']);
    expectShape(where, 'xScalesScratch', given, ['E', 'K/128', 'M'], [d.E, kb, d.M]);
  }
  const scratch = given ?? blasScratch(d.stream, d.E * kb * d.M * 4);
  const cuda = requireCuda(where);
  callNative(() => cuda.transposeScales(xs.ptr, scratch.ptr, d.E, d.M, kb, d.M, d.stream.native));
  return { aScale: ws.ptr, bScale: scratch.ptr, ...strides };
}
