/**
 * groupedLinear's 'masked' strategy (wideep's fp8 kernel over each expert's
 * counted rows) checks its arguments before anything reaches the addon:
 * typed errors for bf16 inputs, widths not in whole scale blocks, missing or
 * misshaped counts and scales, and counts given to cuBLASLt's strategies.
 * Device tensors here are views of fake device storage (nothing touches a
 * GPU); test/gpu/expert-compute.test.ts runs the kernel.
 */
import { describe, it } from 'vitest';

import { groupedLinear, type GroupedLinearOptions } from '../../../src/blas/gemm.js';
import type { DeviceStorage } from '../../../src/cuda/memory.js';
import { expertsForward } from '../../../src/moe/experts.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const storage: DeviceStorage = { device: 0, ptr: 0x10000n, byteLength: 1 << 30, closed: false, close: () => {} };
const dev = (shape: number[], dtype: Tensor['dtype']) => Tensor.fromDeviceStorage(storage, dtype, shape, 0, false);
const [E, M, K, N] = [3, 8, 384, 256];

function masked(over: Partial<GroupedLinearOptions> = {}): GroupedLinearOptions {
  return {
    x: dev([E, M, K], 'fp8e4m3'),
    xScales: dev([E, M, K / 128], 'f32'),
    weight: dev([E, N, K], 'fp8e4m3'),
    weightScales: dev([E, N / 128, K / 128], 'f32'),
    counts: dev([E], 'i32'),
    strategy: 'masked',
    ...over,
  };
}

describe("groupedLinear 'masked': argument checks before launch", () => {
  it('takes fp8 experts only, in whole 128-wide scale blocks', async () => {
    await expectWideepError(
      () => groupedLinear(masked({ x: dev([E, M, K], 'bf16'), weight: dev([E, N, K], 'bf16'), xScales: undefined, weightScales: undefined })),
      'ERR_INVALID_ARG',
      "'masked' strategy takes fp8 experts",
      'bf16',
    );
    await expectWideepError(
      () => groupedLinear(masked({ x: dev([E, M, 264], 'fp8e4m3'), weight: dev([E, N, 264], 'fp8e4m3') })),
      'ERR_SHAPE',
      'whole 128-wide scale blocks',
      'K = 264',
    );
    await expectWideepError(() => groupedLinear(masked({ weight: dev([E, 200, K], 'fp8e4m3') })), 'ERR_SHAPE', 'whole 128-wide scale blocks', 'N = 200');
  });

  it('needs i32 counts, one per expert, and says counts belong to it alone', async () => {
    await expectWideepError(() => groupedLinear(masked({ counts: undefined })), 'ERR_INVALID_ARG', 'groupedLinear: counts');
    await expectWideepError(() => groupedLinear(masked({ counts: dev([E], 'f32') })), 'ERR_DTYPE', 'groupedLinear: counts', 'i32');
    await expectWideepError(() => groupedLinear(masked({ counts: dev([E + 1], 'i32') })), 'ERR_SHAPE', 'groupedLinear: counts', `E=${E}`);
    await expectWideepError(() => groupedLinear(masked({ strategy: 'loop' })), 'ERR_INVALID_ARG', "counts belong to the 'masked' strategy");
    await expectWideepError(() => groupedLinear(masked({ strategy: 'grouped' as never })), 'ERR_INVALID_ARG', "'batched', 'loop', 'masked'", 'grouped');
  });

  it('checks the scales in either layout, and the output given', async () => {
    await expectWideepError(() => groupedLinear(masked({ weightScales: undefined })), 'ERR_INVALID_ARG', 'groupedLinear: weightScales');
    await expectWideepError(() => groupedLinear(masked({ weightScales: dev([E, N / 128, 2], 'f32') })), 'ERR_SHAPE', 'groupedLinear: weightScales');
    await expectWideepError(() => groupedLinear(masked({ xScales: dev([E, K / 128, M], 'f32') })), 'ERR_SHAPE', 'groupedLinear: xScales', 'K/128');
    await expectWideepError(() => groupedLinear(masked({ xScalesLayout: 'blocks' })), 'ERR_SHAPE', 'groupedLinear: xScales');
    await expectWideepError(() => groupedLinear(masked({ xScalesLayout: 'columns' as never })), 'ERR_INVALID_ARG', "'rows' or 'blocks'");
    await expectWideepError(() => groupedLinear(masked({ out: dev([E, M, N + 8], 'bf16') })), 'ERR_SHAPE', 'groupedLinear: out');
    await expectWideepError(() => groupedLinear(masked({ out: dev([E, M, N], 'f32') })), 'ERR_DTYPE', 'groupedLinear: out', 'bf16');
  });

  it('expertsForward with the masked strategy needs the counts', async () => {
    const weights = { w13: dev([E, 256, K], 'fp8e4m3'), w2: dev([E, K, 128], 'fp8e4m3'), w13Scales: dev([E, 2, 3], 'f32'), w2Scales: dev([E, 3, 1], 'f32') };
    await expectWideepError(
      () => expertsForward({ x: dev([E, M, K], 'fp8e4m3'), xScales: dev([E, M, 3], 'f32'), weights, strategy: 'masked' }),
      'ERR_INVALID_ARG',
      "'masked' strategy needs counts",
    );
  });
});
