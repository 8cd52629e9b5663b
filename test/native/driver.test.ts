/**
 * A machine with the CUDA addon but no NVIDIA driver (no libcuda.so.1): GPU
 * calls say the driver library is missing, where the CUDA runtime says its
 * "driver version is insufficient". Skips where a driver is installed.
 */
import { createRequire } from 'node:module';

import { describe, expect, it } from 'vitest';

import { Stream } from '../../src/cuda/stream.js';
import { getNative, nativeLoadReport, type NativeBinding } from '../../src/native/index.js';

const path = nativeLoadReport().path;
// The addon's own exports, as the loader found them, before its diagnosis.
const raw = path ? (createRequire(import.meta.url)(path) as NativeBinding) : undefined;
const noDriver = raw?.cuda?.probe().driverVersion === 0;

describe.skipIf(!noDriver)('without an NVIDIA driver', () => {
  it('the CUDA runtime alone calls it an insufficient driver', () => {
    expect(raw!.cuda!.probe().error?.code).toBe('CUDA_ERROR_INSUFFICIENT_DRIVER');
  });

  it("the loader's probe names the missing driver library", () => {
    expect(getNative()!.cuda!.probe().error?.message).toMatch(/no NVIDIA driver is installed \(libcuda\.so\.1 was not found\)/);
  });

  it('a GPU call says so, with ERR_NO_GPU', () => {
    expect(() => new Stream(0)).toThrowError(
      expect.objectContaining({ code: 'ERR_NO_GPU', message: expect.stringMatching(/libcuda\.so\.1 was not found/) }),
    );
  });
});
