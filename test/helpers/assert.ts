/**
 * Assertions for comparing EP outputs: bit-exact where the spec fixes the
 * arithmetic, within a bf16 tolerance where it does not.
 */
import { AssertionError } from 'node:assert';
import { Tensor } from '../../src/tensor/tensor.js';

type Data = Tensor | ArrayBufferView;

function bytes(v: Data): Uint8Array {
  const d = v instanceof Tensor ? v.data : v;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

function describe(v: Data): string {
  return v instanceof Tensor ? `${v.dtype}[${v.shape.join(', ')}]` : `${v.constructor.name}(${v.byteLength} bytes)`;
}

/** Same dtype and shape (for tensors) and the same bytes; reports the first differing element. */
export function assertBitwiseEqual(actual: Data, expected: Data, what = 'tensor'): void {
  if (actual instanceof Tensor && expected instanceof Tensor) {
    if (actual.dtype !== expected.dtype || actual.shape.join() !== expected.shape.join()) {
      throw new AssertionError({ message: `${what}: expected ${describe(expected)}, got ${describe(actual)}`, actual: describe(actual), expected: describe(expected) });
    }
  }
  const a = bytes(actual);
  const e = bytes(expected);
  if (a.length !== e.length) {
    throw new AssertionError({ message: `${what}: expected ${e.length} bytes (${describe(expected)}), got ${a.length} (${describe(actual)})` });
  }
  const view = (v: Data) => (v instanceof Tensor ? v.data : v) as ArrayBufferView & { BYTES_PER_ELEMENT?: number; [i: number]: unknown };
  const sameKind = view(actual).constructor === view(expected).constructor;
  const item = sameKind ? (view(actual).BYTES_PER_ELEMENT ?? 1) : 1;
  let first = -1;
  let count = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (first >= 0) {
    const el = Math.floor(first / item);
    const show = (v: Data) => (sameKind ? String(view(v)[el]) : `byte 0x${bytes(v)[first]!.toString(16)}`);
    throw new AssertionError({
      message: `${what}: ${count} byte(s) differ; first at element ${el}: got ${show(actual)}, expected ${show(expected)}`,
    });
  }
}

/**
 * Each element of a bf16 tensor is within 2^-7 * magnitudes[i] + 1e-6 of
 * expected[i], where magnitudes[i] is the sum of |terms| that made it.
 */
export function assertCloseBf16(actual: Tensor, expected: ArrayLike<number>, magnitudes: ArrayLike<number>, what = 'tensor'): void {
  if (actual.dtype !== 'bf16') throw new AssertionError({ message: `${what}: expected a bf16 tensor, got ${actual.dtype}` });
  const a = actual.toFloat32();
  if (a.length !== expected.length || a.length !== magnitudes.length) {
    throw new AssertionError({ message: `${what}: expected ${expected.length} elements (magnitudes ${magnitudes.length}), got ${a.length}` });
  }
  let bad = 0;
  let first = '';
  for (let i = 0; i < a.length; i++) {
    const tol = 2 ** -7 * magnitudes[i]! + 1e-6;
    if (!(Math.abs(a[i]! - expected[i]!) <= tol)) {
      if (bad++ === 0) first = `element ${i}: got ${a[i]}, expected ${expected[i]} ± ${tol}`;
    }
  }
  if (bad > 0) throw new AssertionError({ message: `${what}: ${bad} element(s) out of tolerance; first at ${first}` });
}
