import { describe, expect, it } from 'vitest';

import { Tensor } from '../../../src/tensor/tensor.js';

describe('Tensor (host)', () => {
  it('wraps matching typed arrays without copying and converts numbers', () => {
    const a = new Float32Array([1, 2, 3, 4, 5, 6]);
    const t = Tensor.from(a, { shape: [2, 3] });
    expect(t.dtype).toBe('f32');
    expect(t.data).not.toBe(a);
    a[0] = 9;
    expect(t.toFloat32()[0]).toBe(9);
    const b = Tensor.fromNumbers([1.00390625, -2], [2], 'bf16');
    expect(Array.from(b.toFloat32())).toEqual([1, -2]);
  });

  it('makes views that share storage', () => {
    const t = Tensor.fromNumbers([0, 1, 2, 3, 4, 5], [3, 2], 'i32');
    expect(t.narrow(1, 2).toNumbers()).toEqual([2, 3, 4, 5]);
    expect(t.reshape([2, -1]).shape).toEqual([2, 3]);
    t.narrow(2, 1).fillBytes(0);
    expect(t.toNumbers()).toEqual([0, 1, 2, 3, 0, 0]);
  });

  it('refuses bad shapes, dtypes and use after close', () => {
    expect(() => Tensor.from(new Float32Array(5), { shape: [2, 3] })).toThrowError(expect.objectContaining({ code: 'ERR_SHAPE' }));
    expect(() => Tensor.from(new Int32Array(2), { dtype: 'bf16' })).toThrowError(expect.objectContaining({ code: 'ERR_DTYPE' }));
    expect(() => Tensor.empty([2, -1], 'f32')).toThrowError(expect.objectContaining({ code: 'ERR_INVALID_ARG' }));
    expect(() => Tensor.empty([2], 'f64' as never)).toThrowError(expect.objectContaining({ code: 'ERR_DTYPE' }));
    const t = Tensor.zeros([4], 'f32');
    t.close();
    t.close();
    expect(() => t.data).toThrowError(expect.objectContaining({ code: 'ERR_CLOSED' }));
    expect(() => t.reshape([2, 2])).toThrowError(expect.objectContaining({ code: 'ERR_CLOSED' }));
  });

  it('says why a device tensor is unavailable without a GPU', () => {
    let err: { code?: string } | undefined;
    let t: Tensor | undefined;
    try {
      t = Tensor.empty([4], 'f32', { device: 'cuda:0' });
    } catch (e) {
      err = e as { code?: string };
    }
    // With a GPU this succeeds; without one the error names the cause.
    if (t) expect(t.device).toBe('cuda:0');
    else expect(err?.code).toMatch(/ERR_NO_GPU|ERR_NO_ADDON/);
    t?.close();
  });
});
