/**
 * The addon on a machine without a GPU: it loads, reports itself, probes
 * without throwing, and refuses bad arguments with errors instead of crashes.
 */
import { Worker } from 'node:worker_threads';

import { describe, expect, it } from 'vitest';

import { capabilities } from '../../src/capabilities.js';
import { computeCudaLayout } from '../../src/ep/cuda/buffer-layout.js';
import { getNative, nativeLoadReport, requireCuda } from '../../src/native/index.js';

const native = getNative();

describe('native addon', () => {
  it('loads and reports how it was built', () => {
    const report = nativeLoadReport();
    expect(report.loaded, JSON.stringify(report.attempts)).toBe(true);
    const info = native!.buildInfo();
    expect(typeof info.cuda).toBe('boolean');
    expect(info.napiVersion).toBeGreaterThanOrEqual(8);
    if (info.cuda) {
      expect(info.cudaArchs).toEqual(['sm_90a', 'compute_90']);
      expect(info.cudaRuntimeCompiled).toBeGreaterThanOrEqual(12000);
    }
  });

  it('capabilities() never throws and explains a missing GPU', () => {
    const caps = capabilities();
    expect(caps.addon.loaded).toBe(true);
    if (!caps.cuda.available) {
      expect(caps.cuda.reason).toMatch(/GPU|driver|CUDA/);
      expect(caps.gpus).toEqual([]);
    }
    expect(caps.nccl.found || typeof caps.nccl.reason === 'string').toBe(true);
  });

  describe.skipIf(!native?.cuda)('CUDA entry points', () => {
    const cuda = native!.cuda!;

    it('probe() returns an error record instead of throwing when there is no device', () => {
      const p = cuda.probe();
      expect(typeof p.runtimeVersion).toBe('number');
      if (p.deviceCount === 0) expect(p.error?.code).toMatch(/^CUDA_ERROR_/);
    });

    it('refuses wrong argument types with ERR_INVALID_ARG', () => {
      const abuse: (() => unknown)[] = [
        () => new cuda.Stream(-1 as number),
        () => new (cuda.Stream as unknown as new (a: unknown) => unknown)('zero'),
        () => new (cuda.Event as unknown as new (a: unknown) => unknown)({}),
        () => new (cuda.DeviceMemory as unknown as new (a: unknown, b: unknown) => unknown)(16, {}),
        () => cuda.memset(1n, 0, 4, {} as never),
        () => cuda.copyDeviceToDevice(1 as unknown as bigint, 2n, 4, {} as never),
        () => (cuda.ncclLoad as unknown as (a: unknown) => unknown)('libnccl.so.2'),
        () => new (cuda.EpBuffer as unknown as new (...a: unknown[]) => unknown)(0, 10, 1, 5, 2),
        () => (cuda.gatherRows as unknown as (...a: unknown[]) => unknown)(1n, 2n, 3n, 1, 15, 1, {}),
      ];
      for (const f of abuse) {
        let err: unknown;
        try {
          f();
        } catch (e) {
          err = e;
        }
        expect(err, f.toString()).toBeInstanceOf(Error);
        expect((err as { code?: string }).code, f.toString()).toMatch(/^ERR_INVALID_ARG$|^CUDA_ERROR_/);
      }
    });

    it('rejects forged receivers and direct construction of native-only classes', () => {
      const fake = Object.create((cuda.Stream as unknown as { prototype: object }).prototype) as { synchronize(): unknown };
      expect(() => fake.synchronize()).toThrow();
      expect(() => new (cuda as unknown as { Communicator: new () => unknown }).Communicator()).toThrowError(/Communicator.init/);
    });

    it('the cuda layout gives every config baton field a value (a missing one would stay 0)', () => {
      const names = Object.keys(cuda.EpBuffer.batonLayout().config).filter((k) => k !== 'length');
      const fields = computeCudaLayout({ worldSize: 4, hidden: 7168, numExperts: 256, maxTokensPerRank: 4096, maxTopk: 8, numRecvSlots: 2, lowLatency: { maxTokensPerRank: 128 } }).fields;
      expect(new Set([...Object.keys(fields), 'timeoutMs'])).toEqual(new Set(names));
    });

    it('baton layout names every field once', () => {
      const layout = cuda.EpBuffer.batonLayout();
      for (const kind of ['config', 'notify', 'dispatch', 'combine', 'lowLatency'] as const) {
        const m = layout[kind];
        const indices = Object.entries(m).filter(([k]) => k !== 'length').map(([, v]) => v);
        expect(new Set(indices).size).toBe(indices.length);
        expect(Math.max(...indices)).toBe(m.length - 1);
      }
    });
  });

  it('loads inside worker_threads and survives their exit', async () => {
    const code = `
      const { parentPort } = require('node:worker_threads');
      const b = require(${JSON.stringify(nativeLoadReport().path)});
      parentPort.postMessage(b.buildInfo().napiVersion);
    `;
    for (let i = 0; i < 3; i++) {
      const w = new Worker(code, { eval: true });
      const v = await new Promise((resolve, reject) => {
        w.once('message', resolve);
        w.once('error', reject);
      });
      expect(v).toBeGreaterThanOrEqual(8);
      await w.terminate();
    }
    expect(native!.buildInfo().napiVersion).toBeGreaterThanOrEqual(8);
  });

  it('requireCuda explains what is missing', () => {
    if (native?.cuda) {
      expect(requireCuda('x')).toBe(native.cuda);
    } else {
      expect(() => requireCuda('x')).toThrowError(expect.objectContaining({ code: 'ERR_NO_GPU' }));
    }
  });
});
