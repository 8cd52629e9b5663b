/** The loader's diagnosis of the failures users actually meet. */
import { describe, expect, it } from 'vitest';

import { explainCudaError, formatCudaVersion, formatNcclVersion } from '../../src/capabilities.js';
import { diagnoseLoadError, diagnoseProbe, type NativeProbe } from '../../src/native/index.js';

describe('loader diagnosis', () => {
  it.each([
    ["/lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.38' not found", /glibc 2\.38/],
    ["/usr/lib/libstdc++.so.6: version `GLIBCXX_3.4.32' not found", /libstdc\+\+ with GLIBCXX_3\.4\.32/],
    ['No native build was found for platform=linux arch=x64', /no compiled addon/],
    ['libfoo.so.1: cannot open shared object file: No such file or directory', /libfoo\.so\.1|another platform/],
    ['invalid ELF header', /another platform/],
  ])('%s', (message, cause) => {
    const d = diagnoseLoadError(message);
    expect(d.cause).toMatch(cause);
    expect(d.fix).toMatch(/npm rebuild wideep|install/);
  });

  it('explains CUDA probe failures', () => {
    expect(explainCudaError({ driverVersion: 0, error: { code: 'CUDA_ERROR_INSUFFICIENT_DRIVER', message: '', status: 35 } }, 13000)).toMatch(/no NVIDIA driver/);
    expect(explainCudaError({ driverVersion: 12040, error: { code: 'CUDA_ERROR_INSUFFICIENT_DRIVER', message: '', status: 35 } }, 13000)).toMatch(/supports CUDA 12\.4, older than the CUDA 13\.0 runtime/);
    expect(explainCudaError({ driverVersion: 13000, error: { code: 'CUDA_ERROR_NO_DEVICE', message: '', status: 100 } }, 13000)).toMatch(/no CUDA GPU is visible/);
  });

  it('tells a missing driver library from an old driver in the probe', () => {
    const probe = (driverVersion: number, code: string): NativeProbe => ({
      driverVersion,
      runtimeVersion: 13000,
      deviceCount: 0,
      error: { code, message: 'CUDA driver version is insufficient for CUDA runtime version', status: 35 },
      devices: [],
      peerAccess: [],
    });
    expect(diagnoseProbe(probe(0, 'CUDA_ERROR_INSUFFICIENT_DRIVER')).error).toMatchObject({
      code: 'CUDA_ERROR_INSUFFICIENT_DRIVER',
      message: 'no NVIDIA driver is installed (libcuda.so.1 was not found)',
    });
    expect(diagnoseProbe(probe(12040, 'CUDA_ERROR_INSUFFICIENT_DRIVER')).error?.message).toMatch(/insufficient/);
    expect(diagnoseProbe(probe(13000, 'CUDA_ERROR_NO_DEVICE')).error?.code).toBe('CUDA_ERROR_NO_DEVICE');
  });

  it('formats versions', () => {
    expect(formatCudaVersion(13000)).toBe('13.0');
    expect(formatCudaVersion(12080)).toBe('12.8');
    expect(formatNcclVersion(22809)).toBe('2.28.9');
    expect(formatNcclVersion(2708)).toBe('2.7.8');
  });
});
