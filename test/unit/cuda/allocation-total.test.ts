import { afterAll, describe, expect, it } from 'vitest';

import { DeviceAllocation } from '../../../src/cuda/memory.js';
import { getNative, type CudaBinding } from '../../../src/native/index.js';

// The addon's CUDA binding, whose memGetInfo and DeviceMemory these tests
// replace with fakes (no GPU is touched), or undefined where the addon was
// built without CUDA.
const cuda = getNative()?.cuda as CudaBinding | undefined;

describe.skipIf(!cuda)('DeviceAllocation asks a device for its total memory once', () => {
  const saved = { memGetInfo: cuda?.memGetInfo, DeviceMemory: cuda?.DeviceMemory };
  afterAll(() => Object.assign(cuda!, saved));

  it('checks every allocation against the total, with one cudaMemGetInfo per device', () => {
    const asked: number[] = [];
    cuda!.memGetInfo = (device: number) => (asked.push(device), { free: 1 << 20, total: 1 << 30 });
    cuda!.DeviceMemory = class {
      readonly ptr = 0x1000n;
      close(): void {}
    } as unknown as CudaBinding['DeviceMemory'];
    const stream = (device: number) => ({ device, native: {} }) as never;
    for (let i = 0; i < 5; i++) new DeviceAllocation(1024, stream(7)).close();
    new DeviceAllocation(1024, stream(6)).close();
    expect(asked).toEqual([7, 6]);
    expect(() => new DeviceAllocation(2 ** 31, stream(7))).toThrowError(expect.objectContaining({ code: 'ERR_INVALID_ARG', message: expect.stringContaining('exceeds cuda:7') }));
    expect(asked).toEqual([7, 6]);
  });
});
