/**
 * SwiGLU between the expert projections, h = silu(gate) * up, with the gate
 * and up halves side by side in each row ([..., 2I], as one fused gate+up
 * GEMM writes them). Output bf16, or fp8 e4m3 with one scale per 128
 * channels (the input of an fp8 down projection).
 */
import { callNative } from '../cuda/call.js';
import type { Stream } from '../cuda/stream.js';
import { WideepError } from '../errors.js';
import { requireCuda } from '../native/index.js';
import { deviceTensor, expectAligned16, expectDType, expectShape, streamFor } from '../tensor/checks.js';
import { Tensor } from '../tensor/tensor.js';
import { batonFor, moeFields } from './fields.js';

export interface SwigluOptions {
  /** bf16 [E, M, 2I] (or [M, 2I]): gate half then up half of each row. */
  x: Tensor;
  /** i32 [E]: valid rows per expert; rows past it are left unwritten. All rows when absent. */
  counts?: Tensor;
  /** Write fp8 e4m3 with per-128-channel scales instead of bf16. */
  fp8?: boolean;
  /** fp8: round scales up to powers of two (UE8M0-representable). */
  roundScale?: boolean;
  /** fp8: scales as [E, M, I/128] ('rows') or [E, I/128, M] ('blocks', what groupedLinear reads directly; default). */
  scalesLayout?: 'rows' | 'blocks';
  out?: Tensor;
  scales?: Tensor;
  stream?: Stream;
}

export interface SwigluResult {
  out: Tensor;
  /** fp8 only. */
  scales?: Tensor;
}

export function swiglu(o: SwigluOptions): SwigluResult {
  const where = 'swiglu';
  if (typeof o !== 'object' || o === null) throw new WideepError('ERR_INVALID_ARG', `${where}: expected an options object`);
  const x = deviceTensor(where, 'x', o.x);
  const device = x.deviceIndex;
  expectDType(where, 'x', x, ['bf16']);
  if (x.ndim !== 2 && x.ndim !== 3) throw new WideepError('ERR_SHAPE', `${where}: x: expected [E, M, 2I] or [M, 2I], got [${x.shape.join(', ')}]`);
  const [E, M, twoI] = (x.ndim === 3 ? x.shape : [1, ...x.shape]) as [number, number, number];
  if (twoI % 256 !== 0) throw new WideepError('ERR_SHAPE', `${where}: x: the row width 2I must be a multiple of 256 (I in whole 128-channel blocks), got ${twoI}`);
  expectAligned16(where, 'x', x);
  const I = twoI / 2;
  const stream = streamFor(where, device, o.stream);
  const lead = x.shape.slice(0, -1);
  const fp8 = o.fp8 === true;
  const layout = o.scalesLayout ?? 'blocks';
  if (layout !== 'rows' && layout !== 'blocks') throw new WideepError('ERR_INVALID_ARG', `${where}: scalesLayout: expected 'rows' or 'blocks', got ${String(layout)}`);
  const outShape = [...lead, I];
  const out = o.out ? deviceTensor(where, 'out', o.out, device) : Tensor.empty(outShape, fp8 ? 'fp8e4m3' : 'bf16', { device: `cuda:${device}`, stream });
  expectDType(where, 'out', out, [fp8 ? 'fp8e4m3' : 'bf16']);
  expectShape(where, 'out', out, outShape.map(String), outShape);
  expectAligned16(where, 'out', out);
  const f = moeFields().swiglu;
  const b = batonFor('swiglu');
  let scales: Tensor | undefined;
  if (fp8) {
    const scaleShape = layout === 'blocks' ? [...lead.slice(0, -1), I / 128, M] : [...lead, I / 128];
    scales = o.scales ? deviceTensor(where, 'scales', o.scales, device) : Tensor.empty(scaleShape, 'f32', { device: `cuda:${device}`, stream });
    expectDType(where, 'scales', scales, ['f32']);
    expectShape(where, 'scales', scales, scaleShape.map(String), scaleShape);
    b[f.scales!] = scales.ptr;
  } else if (o.scales !== undefined) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: scales belong to fp8 output; pass fp8: true`);
  }
  if (o.counts !== undefined) {
    const counts = deviceTensor(where, 'counts', o.counts, device);
    expectDType(where, 'counts', counts, ['i32']);
    expectShape(where, 'counts', counts, ['E'], [E]);
    b[f.counts!] = counts.ptr;
  }
  b[f.x!] = x.ptr;
  b[f.out!] = out.ptr;
  b[f.batch!] = BigInt(E);
  b[f.rows!] = BigInt(M);
  b[f.inter!] = BigInt(I);
  b[f.fp8!] = fp8 ? 1n : 0n;
  b[f.roundScale!] = o.roundScale ? 1n : 0n;
  b[f.kMajorScales!] = layout === 'blocks' ? 1n : 0n;
  const cuda = requireCuda(where);
  callNative(() => cuda.swiglu(b, stream.native));
  return { out, scales };
}
