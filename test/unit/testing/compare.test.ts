import { describe, expect, it } from 'vitest';

import { Tensor } from '../../../src/tensor/tensor.js';
import { compareClose, describeClose } from '../../../src/testing/compare.js';
import { poison } from '../../../src/testing/poison.js';

describe('wideep/testing: compareClose', () => {
  it('passes values within atol + rtol * |expected| and reports the closest call', () => {
    const r = compareClose([1.01, 2, -3.05], [1, 2, -3], { atol: 0, rtol: 0.02 });
    expect(r).toMatchObject({ pass: true, checked: 3, mismatches: 0 });
    expect(r.worst).toMatchObject({ index: 2, expected: -3 });
    expect(describeClose('y', r)).toBe('y: 3 within tolerance; worst [2]: got -3.050, expected -3.000 ± 0.06000');
  });

  it('counts every element out of tolerance and names the worst by row and column', () => {
    const r = compareClose([0, 1, 5, 2], [0, 1.5, 2, 2], { atol: 0.1, rtol: 0 });
    expect(r).toMatchObject({ pass: false, checked: 4, mismatches: 2, worst: { index: 2, got: 5, expected: 2 } });
    expect(describeClose('out', r, 2)).toBe('out: 2 of 4 out of tolerance; worst [1, 0]: got 5.000, expected 2.000 ± 0.1000');
  });

  it('fails a NaN (a poisoned element never written) and ranks it worst', () => {
    const r = compareClose([100, Number.NaN], [0, 0], { atol: 1, rtol: 0 });
    expect(r.mismatches).toBe(2);
    expect(r.worst?.index).toBe(1);
  });

  it('applies rtol to a given scale, and compares only included elements', () => {
    const scale = [10, 10];
    expect(compareClose([0.5, 0], [0, 0], { atol: 0, rtol: 0.1, scale }).pass).toBe(true);
    expect(compareClose([0.5, 0], [0, 0], { atol: 0, rtol: 0.1 }).pass).toBe(false);
    const r = compareClose([9, 1], [0, 1], { atol: 0.01, rtol: 0, include: (i) => i === 1 });
    expect(r).toMatchObject({ pass: true, checked: 1 });
  });

  it('refuses arrays of different lengths', () => {
    expect(() => compareClose([1], [1, 2], { atol: 0, rtol: 0 })).toThrow(/compareClose: 1 values, expected 2/);
  });
});

describe('wideep/testing: poison', () => {
  it('turns every float element into NaN and every integer into -1', () => {
    const [f, b, i] = poison([Tensor.from(new Float32Array([1, 2])), Tensor.fromNumbers([1, 2], [2], 'bf16'), Tensor.from(new Int32Array([7]))]);
    expect(Array.from(f!.toFloat32()).every(Number.isNaN)).toBe(true);
    expect(Array.from(b!.toFloat32()).every(Number.isNaN)).toBe(true);
    expect(i!.toNumbers()).toEqual([-1]);
  });
});
