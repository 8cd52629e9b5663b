/**
 * The foundation on a real GPU: capabilities, memory round trips and
 * lifetime, stream/event timing, and NCCL found by the library's own search.
 */
import { randomBytes } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { capabilities } from '../../src/capabilities.js';
import { loadNccl } from '../../src/comm/nccl-library.js';
import { memGetInfo, trimMemoryPool } from '../../src/cuda/device.js';
import { DeviceAllocation } from '../../src/cuda/memory.js';
import { Stream } from '../../src/cuda/stream.js';
import { Tensor } from '../../src/tensor/tensor.js';
import { gpus, skipReason } from './gpu-env.js';

describe.skipIf(gpus < 1)(`GPU foundation (${skipReason(1)})`, () => {
  it('reports every GPU, the peer matrix and NCCL', () => {
    const caps = capabilities();
    expect(caps.cuda.available).toBe(true);
    expect(caps.gpus).toHaveLength(gpus);
    for (const g of caps.gpus) {
      expect(g.smCount).toBeGreaterThan(0);
      expect(g.memoryBytes).toBeGreaterThan(0);
      expect(g.supported).toBe(true);
    }
    expect(caps.peerAccess).toHaveLength(gpus);
    expect(caps.nccl.found).toBe(true);
    expect(caps.nccl.version).toMatch(/^2\.\d+\.\d+$/);
    console.log(JSON.stringify({ gpus: caps.gpus.map((g) => `${g.name} cc${g.computeCapability}`), nccl: caps.nccl }));
  });

  it('finds NCCL with no environment variables set', () => {
    expect(process.env.WIDEEP_NCCL_LIBRARY).toBeUndefined();
    const nccl = loadNccl();
    expect(nccl.path).toMatch(/libnccl\.so/);
    expect(nccl.version).toBeGreaterThanOrEqual(22800);
  });

  it('round-trips random bytes host -> device -> device -> host', async () => {
    const stream = new Stream(0);
    for (const bytes of [1, 4096, 1 << 20, (64 << 20) + 16]) {
      const src = Tensor.from(new Uint8Array(randomBytes(bytes)), { dtype: 'u8' });
      const dev = await src.to('cuda:0', { stream });
      const dev2 = Tensor.empty([bytes], 'u8', { device: 'cuda:0', stream }).fillBytes(0xab, stream);
      await dev2.copyFrom(dev, { stream });
      const back = Tensor.empty([bytes], 'u8').fillBytes(0xcd);
      await back.copyFrom(dev2, { stream });
      expect(Buffer.from(back.data as Uint8Array).equals(Buffer.from(src.data as Uint8Array))).toBe(true);
      dev.close();
      dev2.close();
    }
    stream.close();
  });

  it('keeps cudaMemGetInfo level over 1000 allocate/free cycles', async () => {
    const stream = new Stream(0);
    const cycle = () => {
      const a = new DeviceAllocation(32 << 20, stream);
      a.close();
    };
    cycle();
    await stream.synchronize();
    const before = memGetInfo(0).free;
    for (let i = 0; i < 1000; i++) cycle();
    await stream.synchronize();
    const after = memGetInfo(0).free;
    expect(Math.abs(after - before)).toBeLessThanOrEqual(2 << 20);
    trimMemoryPool(0);
    stream.close();
  });

  it('refuses use after close and absurd sizes without crashing', async () => {
    const stream = new Stream(0);
    const t = Tensor.empty([16], 'f32', { device: 'cuda:0', stream });
    t.close();
    t.close();
    expect(() => t.ptr).toThrowError(expect.objectContaining({ code: 'ERR_CLOSED' }));
    await expect(t.cpu()).rejects.toMatchObject({ code: 'ERR_CLOSED' });
    expect(() => new DeviceAllocation(2 ** 50, stream)).toThrowError(expect.objectContaining({ code: expect.stringMatching(/ERR_INVALID_ARG|CUDA_ERROR_OUT_OF_MEMORY/) }));
    const huge = memGetInfo(0).total - 1024;
    try {
      new DeviceAllocation(huge, stream).close();
    } catch (e) {
      expect((e as { code: string }).code).toBe('CUDA_ERROR_OUT_OF_MEMORY');
    }
    stream.close();
    expect(() => stream.record()).toThrowError(expect.objectContaining({ code: 'ERR_CLOSED' }));
    const s2 = new Stream(0);
    const ok = Tensor.zeros([4], 'f32', { device: 'cuda:0', stream: s2 });
    expect(Array.from((await ok.cpu({ stream: s2 })).toFloat32())).toEqual([0, 0, 0, 0]);
    s2.close();
  });

  it('times a large copy with events, waiting off the event loop', async () => {
    const stream = new Stream(0);
    const bytes = 1 << 30;
    const a = Tensor.empty([bytes], 'u8', { device: 'cuda:0', stream }).fillBytes(1, stream);
    const b = Tensor.empty([bytes], 'u8', { device: 'cuda:0', stream });
    const start = stream.record({ timing: true });
    for (let i = 0; i < 10; i++) await b.copyFrom(a, { stream });
    const end = stream.record({ timing: true });
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    await end.done();
    clearInterval(timer);
    const ms = start.elapsedMs(end);
    const tbps = (2 * 10 * bytes) / (ms / 1e3) / 1e12;
    console.log(JSON.stringify({ copyMs: ms, readWriteTBps: tbps }));
    expect(ms).toBeGreaterThan(0);
    expect(tbps).toBeGreaterThan(0.5);
    expect(tbps).toBeLessThan(6);
    expect(end.query()).toBe(true);
    a.close();
    b.close();
    stream.close();
  });
});
