/**
 * Filling tensors on the device without a host round trip: a constant, or
 * reproducible random values (uniform or normal) from a seed. Element i of a
 * uniform fill is a + (b - a) * u(seed, i) in float32, the same on host and
 * device; normal fills use Box-Muller and may differ in the last bits.
 */
import { callNative } from '../cuda/call.js';
import type { Stream } from '../cuda/stream.js';
import { WideepError, assertInteger } from '../errors.js';
import { requireCuda } from '../native/index.js';
import { deviceTensor, expectFinite, streamFor } from './checks.js';
import { counterUniform24 } from './counter-hash.js';
import { f32ToBf16Bits, f32ToF16Bits, f32ToFp8E4m3Bits } from './convert.js';
import type { DType } from './dtype.js';
import { Tensor, type Device } from './tensor.js';

/** native/tensor/tensor_fill.h FillType. */
const FILL_TYPE: Partial<Record<DType, number>> = { f32: 0, bf16: 1, f16: 2, fp8e4m3: 3, i32: 4 };

export type RandomDistribution = { kind: 'uniform'; low?: number; high?: number } | { kind: 'normal'; mean?: number; std?: number };

function fillType(where: string, t: Tensor, allowInt: boolean): number {
  const code = FILL_TYPE[t.dtype];
  if (code === undefined || (!allowInt && t.dtype === 'i32')) {
    throw new WideepError('ERR_DTYPE', `${where}: cannot fill a ${t.dtype} tensor (bf16, f16, f32, fp8e4m3${allowInt ? ' or i32' : ''})`);
  }
  return code;
}

/** Sets every element of a device tensor to `value` (stream-ordered). */
export function fillValue(t: Tensor, value: number, stream?: Stream): Tensor {
  const where = 'fillValue';
  deviceTensor(where, 'tensor', t);
  const type = fillType(where, t, true);
  expectFinite(where, 'value', value);
  const s = streamFor(where, t.deviceIndex, stream);
  const cuda = requireCuda(where);
  callNative(() => cuda.fillValue(t.ptr, t.numel, type, value, s.native));
  return t;
}

/** Elements one random fill can draw: the counter hash indexes them with 32 bits. */
const MAX_RANDOM_FILL = 2 ** 32;

/** Overwrites a device tensor with seeded random values (stream-ordered). */
export function fillRandom(t: Tensor, seed: number, dist: RandomDistribution = { kind: 'normal' }, stream?: Stream): Tensor {
  const where = 'fillRandom';
  deviceTensor(where, 'tensor', t);
  const type = fillType(where, t, false);
  assertInteger(`${where}: seed`, seed, 0, 0xffffffff);
  if (t.numel > MAX_RANDOM_FILL) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `${where}: tensor has ${t.numel} elements; element i draws from (seed, i) with a 32-bit i, so at most 2^32: fill slices (tensor.narrow) with seeds of their own`,
    );
  }
  const [kind, a, b] = distributionParams(where, dist);
  const s = streamFor(where, t.deviceIndex, stream);
  const cuda = requireCuda(where);
  callNative(() => cuda.fillRandom(t.ptr, t.numel, type, kind, seed, a, b, s.native));
  return t;
}

function distributionParams(where: string, dist: RandomDistribution): [number, number, number] {
  if (dist?.kind === 'uniform') {
    return [0, expectFinite(where, 'low', dist.low ?? 0), expectFinite(where, 'high', dist.high ?? 1)];
  }
  if (dist?.kind === 'normal') return [1, expectFinite(where, 'mean', dist.mean ?? 0), expectFinite(where, 'std', dist.std ?? 1)];
  throw new WideepError('ERR_INVALID_ARG', `${where}: distribution: expected { kind: 'uniform' | 'normal' }, got ${JSON.stringify(dist)}`);
}

/** A new tensor of seeded random values, on the device (filled there) or on the host (the same uniform values). */
export function randomTensor(
  shape: readonly number[],
  dtype: DType,
  options: { device?: Device; seed: number; distribution?: RandomDistribution; stream?: Stream },
): Tensor {
  const dist = options.distribution ?? { kind: 'normal' };
  if (options.device !== undefined && options.device !== 'cpu') {
    const t = Tensor.empty(shape, dtype, { device: options.device, stream: options.stream });
    return fillRandom(t, options.seed, dist, options.stream);
  }
  const where = 'randomTensor';
  const t = Tensor.empty(shape, dtype);
  fillType(where, t, false);
  assertInteger(`${where}: seed`, options.seed, 0, 0xffffffff);
  const [kind, a, b] = distributionParams(where, dist);
  const encode = HOST_ENCODE[dtype]!;
  const out = t.data as Float32Array | Uint16Array | Uint8Array;
  for (let i = 0; i < t.numel; i++) {
    const v =
      kind === 0
        ? Math.fround(a + Math.fround(Math.fround(b - a) * counterUniform24(options.seed, i)))
        : a + b * Math.sqrt(-2 * Math.log(1 - counterUniform24(options.seed, 2 * i))) * Math.cos(2 * Math.PI * counterUniform24(options.seed, 2 * i + 1));
    out[i] = encode(v);
  }
  return t;
}

const HOST_ENCODE: Partial<Record<DType, (v: number) => number>> = {
  f32: (v) => v,
  bf16: f32ToBf16Bits,
  f16: f32ToF16Bits,
  fp8e4m3: f32ToFp8E4m3Bits,
};
