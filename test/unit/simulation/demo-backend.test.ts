import { describe, expect, it } from 'vitest';

import { demoBackend, type DemoCapabilities } from '../../../src/cli/demo/backend.js';
import { cudaRankPlacement } from '../../../src/cli/rank-placement.js';

const gpu = { index: 0, name: 'NVIDIA H200', computeCapability: '9.0', memoryBytes: 1, smCount: 132, pciBusId: '0', l2CacheBytes: 1, supported: true };
const blas = { found: true, version: '12.9.1', tried: [] };
const twoGpus = { cuda: { available: true, deviceCount: 2 }, gpus: [gpu, { ...gpu, index: 1 }], cublasLt: blas } as DemoCapabilities;
const noGpu = { cuda: { available: false, deviceCount: 0, reason: 'no CUDA GPU is visible (check nvidia-smi)' }, gpus: [], cublasLt: { found: false, reason: 'x', tried: [] } } as DemoCapabilities;

describe('demoBackend', () => {
  it('says why the cpu backend without a GPU, as before', () => {
    expect(demoBackend(noGpu)).toEqual({ backend: 'cpu', gpus: 0, reason: 'no GPU: no CUDA GPU is visible (check nvidia-smi)' });
  });

  it('chooses cuda with supported GPUs and cuBLASLt, and says so', () => {
    const b = demoBackend(twoGpus);
    expect(b).toMatchObject({ backend: 'cuda', gpus: 2 });
    expect(b.reason).toBe('2 GPUs (NVIDIA H200) and cuBLASLt 12.9.1: one process per rank through wideep launch (--backend cpu simulates the ranks instead)');
  });

  it('stays on cpu, saying why, without cuBLASLt or with a GPU this build has no kernels for', () => {
    const noBlas = demoBackend({ ...twoGpus, cublasLt: { found: false, reason: 'libcublasLt.so.13 not found', tried: [] } });
    expect(noBlas).toMatchObject({ backend: 'cpu', gpus: 2, reason: 'no cuBLASLt for the expert GEMMs: libcublasLt.so.13 not found' });
    const old = demoBackend({ ...twoGpus, gpus: [{ ...gpu, name: 'Tesla V100', computeCapability: '7.0', supported: false }] });
    expect(old.backend).toBe('cpu');
    expect(old.reason).toMatch(/^GPU 0 \(Tesla V100, compute capability 7\.0\) is not one this build has kernels for/);
  });

  it('--backend cpu forces cpu; --backend cuda without a GPU is an error saying why', () => {
    expect(demoBackend(twoGpus, 'cpu')).toMatchObject({ backend: 'cpu', gpus: 2, reason: expect.stringMatching(/^--backend cpu: /) });
    expect(demoBackend(twoGpus, 'cuda').reason).toMatch(/^--backend cuda: 2 GPUs/);
    expect(() => demoBackend(noGpu, 'cuda')).toThrow(expect.objectContaining({ code: 'ERR_NO_GPU', message: '--backend cuda: no GPU: no CUDA GPU is visible (check nvidia-smi)' }));
  });
});

describe('cudaRankPlacement', () => {
  const caps = { gpus: twoGpus.gpus, peerAccess: [[true, true], [true, true]] };

  it('gives each rank its own GPU', () => {
    expect(cudaRankPlacement(caps, 2, false)).toEqual({ env: {}, where: '2 ranks, one GPU each' });
  });

  it('refuses more ranks than GPUs, naming both ways out, unless asked to share GPU 0', () => {
    expect(() => cudaRankPlacement(caps, 4, false, ', --backend cpu simulates them')).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG', message: '--ranks 4: the cuda backend runs one rank per GPU and 2 are visible; --share-gpu puts every rank on GPU 0, --backend cpu simulates them' }),
    );
    expect(cudaRankPlacement(caps, 4, true)).toEqual({ env: { WIDEEP_DEVICE: '0' }, where: '4 ranks sharing GPU 0' });
  });

  it('refuses GPUs without peer access between them', () => {
    expect(() => cudaRankPlacement({ ...caps, peerAccess: [[true, false], [false, true]] }, 2, false)).toThrow(/GPU 0 cannot map GPU 1's memory/);
  });
});
