/**
 * quantizeRowsFp8 casts bf16 rows [T, H] to fp8 e4m3 [T, H] with one f32
 * scale per row and 128-channel block ([T, H/128]), on the device: the `x` and
 * `xScales` a normal-mode fp8 dispatch takes. The numerics are those of
 * src/ep/fp8-quant.ts (quantizeBf16RowsFp8), which it matches bit for bit.
 */
import { callNative } from '../cuda/call.js';
import type { Stream } from '../cuda/stream.js';
import { WideepError, invalidArg } from '../errors.js';
import { requireCuda } from '../native/index.js';
import { deviceTensor, expectAligned16, expectDType, expectShape, streamFor } from '../tensor/checks.js';
import { Tensor } from '../tensor/tensor.js';
import { batonFor, moeFields } from './fields.js';

export interface QuantizeRowsOptions {
  /** bf16 [T, H], H a multiple of 128. */
  x: Tensor;
  /** Round scales up to powers of two (UE8M0-representable). Default false. */
  roundScale?: boolean;
  /** fp8e4m3 [T, H]; allocated on the stream when absent. */
  out?: Tensor;
  /** f32 [T, H/128]; allocated on the stream when absent. */
  scales?: Tensor;
  stream?: Stream;
}

/** Enqueues the cast on the stream (no host sync; no allocation when out and scales are given). */
export function quantizeRowsFp8(o: QuantizeRowsOptions): { out: Tensor; scales: Tensor } {
  const where = 'quantizeRowsFp8';
  if (typeof o !== 'object' || o === null) throw new WideepError('ERR_INVALID_ARG', `${where}: expected an options object`);
  const x = deviceTensor(where, 'x', o.x);
  const device = x.deviceIndex;
  expectDType(where, 'x', x, ['bf16']);
  if (x.ndim !== 2) throw new WideepError('ERR_SHAPE', `${where}: x: expected [T, H], got [${x.shape.join(', ')}]`);
  const [T, H] = x.shape as [number, number];
  if (H % 128 !== 0 || H === 0) throw new WideepError('ERR_SHAPE', `${where}: x: the row width H must be a positive multiple of 128 (whole 128-channel blocks), got ${H}`);
  expectAligned16(where, 'x', x);
  if (o.roundScale !== undefined && typeof o.roundScale !== 'boolean') throw invalidArg(`${where}: roundScale`, 'a boolean', o.roundScale);
  const outShape = [T, H];
  const scaleShape = [T, H / 128];
  // Given outputs are checked before the stream, so a bad call fails the same way with or without a GPU.
  const given = (name: 'out' | 'scales', t: Tensor, dtype: 'fp8e4m3' | 'f32', shape: number[], labels: string[]): Tensor => {
    const v = deviceTensor(where, name, t, device);
    expectDType(where, name, v, [dtype]);
    expectShape(where, name, v, labels, shape);
    expectAligned16(where, name, v);
    return v;
  };
  let out = o.out !== undefined ? given('out', o.out, 'fp8e4m3', outShape, ['T', 'H']) : undefined;
  let scales = o.scales !== undefined ? given('scales', o.scales, 'f32', scaleShape, ['T', 'H/128']) : undefined;
  const stream = streamFor(where, device, o.stream);
  const cuda = requireCuda(where);
  out ??= Tensor.empty(outShape, 'fp8e4m3', { device: `cuda:${device}`, stream });
  scales ??= Tensor.empty(scaleShape, 'f32', { device: `cuda:${device}`, stream });
  const f = moeFields().quantizeRows;
  const b = batonFor('quantizeRows');
  b[f.x!] = x.ptr;
  b[f.out!] = out.ptr;
  b[f.scales!] = scales.ptr;
  b[f.rows!] = BigInt(T);
  b[f.hidden!] = BigInt(H);
  b[f.roundScale!] = o.roundScale ? 1n : 0n;
  callNative(() => cuda.quantizeRows(b, stream.native));
  return { out, scales };
}
