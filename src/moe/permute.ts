/**
 * Between a normal-mode dispatch, whose rows come ordered by source rank, and
 * the grouped expert GEMMs, which want rows grouped by expert:
 * `permuteToExperts` copies every (row, local expert) pair into that expert's
 * slots of an [L, cap, H] tensor (the same layout a low-latency dispatch
 * produces), with per-expert counts on the device; `unpermuteFromExperts`
 * sums each row's weighted expert outputs back into one row per received
 * row, which is what the normal combine takes. Neither waits for the host.
 */
import { callNative } from '../cuda/call.js';
import type { Stream } from '../cuda/stream.js';
import { WideepError, assertInteger } from '../errors.js';
import { requireCuda } from '../native/index.js';
import { deviceTensor, expectAligned16, expectDType, expectShape, streamFor } from '../tensor/checks.js';
import { Tensor } from '../tensor/tensor.js';
import { batonFor, moeFields } from './fields.js';

export interface PermuteOptions {
  /** [N, H] bf16 or fp8e4m3 received rows. */
  x: Tensor;
  /** f32 [N, H/128] with fp8 rows. */
  xScales?: Tensor;
  /** i32 or i64 [N, k]: local expert ids, -1 where the slot is another rank's. */
  topkIdx: Tensor;
  /** Local experts L. */
  numExperts: number;
  /** Slots per expert; rows past it are dropped and `overflow` is set. */
  cap: number;
  stream?: Stream;
}

export interface PermuteResult {
  /** [L, cap, H] in x's dtype; rows past counts[e] are unwritten. */
  x: Tensor;
  /** f32 [L, H/128, cap] with fp8 rows: the block layout groupedLinear reads. */
  scales?: Tensor;
  /** i32 [L]: rows each expert received (may exceed cap: see overflow). */
  counts: Tensor;
  /** i32 [N, k]: slot of each (row, j) in its expert, -1 for none. */
  slotOf: Tensor;
  /** i32 [1]: 1 when some expert got more than cap rows. */
  overflow: Tensor;
}

/** Rows of an expert's slot are padded to this (cuBLASLt's fp8 scale groups also need 4). */
const SLOT_ROWS_ALIGN = 8;

/** The `cap` for permuteToExperts when the busiest local expert receives `mostRows` rows: at least one slot, aligned. */
export function slotCapacity(mostRows: number): number {
  return Math.ceil(Math.max(1, mostRows) / SLOT_ROWS_ALIGN) * SLOT_ROWS_ALIGN;
}

export function permuteToExperts(o: PermuteOptions): PermuteResult {
  const where = 'permuteToExperts';
  if (typeof o !== 'object' || o === null) throw new WideepError('ERR_INVALID_ARG', `${where}: expected an options object`);
  const x = deviceTensor(where, 'x', o.x);
  const device = x.deviceIndex;
  expectDType(where, 'x', x, ['bf16', 'fp8e4m3']);
  expectShape(where, 'x', x, ['N', 'H'], [null, null]);
  const [N, H] = x.shape as [number, number];
  const rowBytes = x.byteLength / Math.max(1, x.numel) * H;
  if (rowBytes % 16 !== 0) throw new WideepError('ERR_SHAPE', `${where}: x: rows must be a multiple of 16 bytes, got ${rowBytes}`);
  expectAligned16(where, 'x', x);
  const topkIdx = deviceTensor(where, 'topkIdx', o.topkIdx, device);
  expectDType(where, 'topkIdx', topkIdx, ['i32', 'i64']);
  expectShape(where, 'topkIdx', topkIdx, ['N', 'k'], [N, null]);
  const k = topkIdx.shape[1]!;
  const L = assertInteger(`${where}: numExperts`, o.numExperts, 1);
  const cap = assertInteger(`${where}: cap`, o.cap, 1);
  const stream = streamFor(where, device, o.stream);
  const alloc = (shape: number[], dtype: 'bf16' | 'fp8e4m3' | 'f32' | 'i32') => Tensor.empty(shape, dtype, { device: `cuda:${device}`, stream });
  const out = alloc([L, cap, H], x.dtype as 'bf16' | 'fp8e4m3');
  const counts = alloc([L], 'i32');
  const slotOf = alloc([N, k], 'i32');
  const overflow = alloc([1], 'i32');
  const f = moeFields().permute;
  const b = batonFor('permute');
  let scales: Tensor | undefined;
  if (x.dtype === 'fp8e4m3') {
    if (H % 128 !== 0) throw new WideepError('ERR_SHAPE', `${where}: fp8 rows need H a multiple of 128, got ${H}`);
    const xs = deviceTensor(where, 'xScales', o.xScales, device);
    expectDType(where, 'xScales', xs, ['f32']);
    expectShape(where, 'xScales', xs, ['N', 'H/128'], [N, H / 128]);
    scales = alloc([L, H / 128, cap], 'f32');
    b[f.xScales!] = xs.ptr;
    b[f.outScales!] = scales.ptr;
    b[f.scaleBlocks!] = BigInt(H / 128);
  } else if (o.xScales !== undefined) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: xScales belong to fp8 rows; x is ${x.dtype}`);
  }
  b[f.x!] = x.ptr;
  b[f.topkIdx!] = topkIdx.ptr;
  b[f.idx64!] = topkIdx.dtype === 'i64' ? 1n : 0n;
  b[f.out!] = out.ptr;
  b[f.counts!] = counts.ptr;
  b[f.slotOf!] = slotOf.ptr;
  b[f.overflow!] = overflow.ptr;
  b[f.numRows!] = BigInt(N);
  b[f.topk!] = BigInt(k);
  b[f.numExperts!] = BigInt(L);
  b[f.cap!] = BigInt(cap);
  b[f.rowBytes!] = BigInt(rowBytes);
  const cuda = requireCuda(where);
  callNative(() => cuda.permute(b, stream.native));
  return { x: out, scales, counts, slotOf, overflow };
}

export interface UnpermuteOptions {
  /** bf16 [L, cap, H]: the experts' outputs in permuteToExperts' slots. */
  y: Tensor;
  /** permuteToExperts' slotOf and the topkIdx it was given. */
  slotOf: Tensor;
  topkIdx: Tensor;
  /** f32 [N, k]. */
  weights: Tensor;
  /** bf16 [N, H]; allocated when absent. */
  out?: Tensor;
  stream?: Stream;
}

/** out[r] = bf16(sum over j, in order, of weights[r, j] * y[expert of (r, j)][slot]). */
export function unpermuteFromExperts(o: UnpermuteOptions): Tensor {
  const where = 'unpermuteFromExperts';
  if (typeof o !== 'object' || o === null) throw new WideepError('ERR_INVALID_ARG', `${where}: expected an options object`);
  const y = deviceTensor(where, 'y', o.y);
  const device = y.deviceIndex;
  expectDType(where, 'y', y, ['bf16']);
  expectShape(where, 'y', y, ['L', 'cap', 'H'], [null, null, null]);
  const [, cap, H] = y.shape as [number, number, number];
  if (H % 8 !== 0) throw new WideepError('ERR_SHAPE', `${where}: y: H must be a multiple of 8, got ${H}`);
  expectAligned16(where, 'y', y);
  const slotOf = deviceTensor(where, 'slotOf', o.slotOf, device);
  expectDType(where, 'slotOf', slotOf, ['i32']);
  expectShape(where, 'slotOf', slotOf, ['N', 'k'], [null, null]);
  const [N, k] = slotOf.shape as [number, number];
  const topkIdx = deviceTensor(where, 'topkIdx', o.topkIdx, device);
  expectDType(where, 'topkIdx', topkIdx, ['i32', 'i64']);
  expectShape(where, 'topkIdx', topkIdx, ['N', 'k'], [N, k]);
  const weights = deviceTensor(where, 'weights', o.weights, device);
  expectDType(where, 'weights', weights, ['f32']);
  expectShape(where, 'weights', weights, ['N', 'k'], [N, k]);
  const stream = streamFor(where, device, o.stream);
  const out = o.out ? deviceTensor(where, 'out', o.out, device) : Tensor.empty([N, H], 'bf16', { device: `cuda:${device}`, stream });
  expectDType(where, 'out', out, ['bf16']);
  expectShape(where, 'out', out, ['N', 'H'], [N, H]);
  expectAligned16(where, 'out', out);
  const f = moeFields().unpermute;
  const b = batonFor('unpermute');
  b[f.y!] = y.ptr;
  b[f.slotOf!] = slotOf.ptr;
  b[f.topkIdx!] = topkIdx.ptr;
  b[f.idx64!] = topkIdx.dtype === 'i64' ? 1n : 0n;
  b[f.weights!] = weights.ptr;
  b[f.out!] = out.ptr;
  b[f.numRows!] = BigInt(N);
  b[f.topk!] = BigInt(k);
  b[f.cap!] = BigInt(cap);
  b[f.hidden!] = BigInt(H);
  const cuda = requireCuda(where);
  callNative(() => cuda.unpermute(b, stream.native));
  return out;
}
