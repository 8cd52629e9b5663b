/**
 * quantizeRowsFp8 checks its arguments before anything reaches the addon:
 * typed errors naming the argument for host tensors, wrong dtypes, shapes,
 * devices and alignments, and bad options. Device tensors here are views of
 * fake device storage (an address and a size; nothing touches a GPU), as in
 * test/unit/ep/validate-launch.test.ts; test/gpu/expert-compute.test.ts runs the kernel.
 */
import { describe, it } from 'vitest';

import type { DeviceStorage } from '../../../src/cuda/memory.js';
import { quantizeRowsFp8 } from '../../../src/moe/quantize.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const storage = (device = 0, closed = false): DeviceStorage => ({ device, ptr: 0x10000n, byteLength: 1 << 20, closed, close: () => {} });
const dev = (shape: number[], dtype: Tensor['dtype'], byteOffset = 0, s = storage()) => Tensor.fromDeviceStorage(s, dtype, shape, byteOffset, false);
const [T, H] = [4, 256];
const x = dev([T, H], 'bf16');

describe('quantizeRowsFp8: argument checks before launch', () => {
  it('refuses options that are not objects and inputs that are not device tensors', async () => {
    await expectWideepError(() => quantizeRowsFp8(null as never), 'ERR_INVALID_ARG', 'quantizeRowsFp8: expected an options object');
    await expectWideepError(() => quantizeRowsFp8({ x: Tensor.empty([T, H], 'bf16') }), 'ERR_INVALID_ARG', 'quantizeRowsFp8: x', 'host tensor', ".to('cuda:N')");
    await expectWideepError(() => quantizeRowsFp8({ x: [1, 2] as never }), 'ERR_INVALID_ARG', 'quantizeRowsFp8: x', 'a Tensor');
    await expectWideepError(() => quantizeRowsFp8({ x: dev([T, H], 'bf16', 0, storage(0, true)) }), 'ERR_CLOSED', 'quantizeRowsFp8: x is closed');
  });

  it('x: bf16 [T, H] with H a positive multiple of 128, on a 16-byte boundary', async () => {
    await expectWideepError(() => quantizeRowsFp8({ x: dev([T, H], 'f32') }), 'ERR_DTYPE', 'quantizeRowsFp8: x', 'bf16', 'f32');
    await expectWideepError(() => quantizeRowsFp8({ x: dev([2, T, H], 'bf16') }), 'ERR_SHAPE', 'quantizeRowsFp8: x', '[T, H]', '[2, 4, 256]');
    await expectWideepError(() => quantizeRowsFp8({ x: dev([T, 192], 'bf16') }), 'ERR_SHAPE', 'multiple of 128', '192');
    await expectWideepError(() => quantizeRowsFp8({ x: dev([T, 0], 'bf16') }), 'ERR_SHAPE', 'multiple of 128', '0');
    await expectWideepError(() => quantizeRowsFp8({ x: dev([T, H], 'bf16', 8) }), 'ERR_INVALID_ARG', 'quantizeRowsFp8: x', '16-byte boundary', '8 bytes past');
  });

  it('out and scales: dtype, shape, device and alignment of the outputs given', async () => {
    const out = dev([T, H], 'fp8e4m3', 4096);
    const scales = dev([T, H / 128], 'f32', 8192);
    await expectWideepError(() => quantizeRowsFp8({ x, out: dev([T, H], 'bf16', 4096), scales }), 'ERR_DTYPE', 'quantizeRowsFp8: out', 'fp8e4m3');
    await expectWideepError(() => quantizeRowsFp8({ x, out: dev([T + 1, H], 'fp8e4m3', 4096), scales }), 'ERR_SHAPE', 'quantizeRowsFp8: out', 'T=4', '[5, 256]');
    await expectWideepError(() => quantizeRowsFp8({ x, out: dev([T, H], 'fp8e4m3', 4096, storage(1)), scales }), 'ERR_INVALID_ARG', 'quantizeRowsFp8: out', 'cuda:0', 'cuda:1');
    await expectWideepError(() => quantizeRowsFp8({ x, out: Tensor.empty([T, H], 'fp8e4m3'), scales }), 'ERR_INVALID_ARG', 'quantizeRowsFp8: out', 'host tensor');
    await expectWideepError(() => quantizeRowsFp8({ x, out: dev([T, H], 'fp8e4m3', 4100), scales }), 'ERR_INVALID_ARG', 'quantizeRowsFp8: out', '16-byte boundary');
    await expectWideepError(() => quantizeRowsFp8({ x, out, scales: dev([T, H / 128], 'bf16', 8192) }), 'ERR_DTYPE', 'quantizeRowsFp8: scales', 'f32');
    await expectWideepError(() => quantizeRowsFp8({ x, out, scales: dev([H / 128, T], 'f32', 8192) }), 'ERR_SHAPE', 'quantizeRowsFp8: scales', 'H/128=2', '[2, 4]');
    await expectWideepError(() => quantizeRowsFp8({ x, out, scales: dev([T, H / 128], 'f32', 8196) }), 'ERR_INVALID_ARG', 'quantizeRowsFp8: scales', '16-byte boundary', '4 bytes past');
    // Scales alone are checked too, whether or not out is given.
    await expectWideepError(() => quantizeRowsFp8({ x, scales: dev([T], 'f32', 8192) }), 'ERR_SHAPE', 'quantizeRowsFp8: scales');
  });

  it('roundScale must be a boolean and stream a Stream', async () => {
    await expectWideepError(() => quantizeRowsFp8({ x, roundScale: 1 as never }), 'ERR_INVALID_ARG', 'quantizeRowsFp8: roundScale', 'a boolean');
    await expectWideepError(() => quantizeRowsFp8({ x, stream: {} as never }), 'ERR_INVALID_ARG', 'quantizeRowsFp8: stream', 'a Stream');
  });
});
