/**
 * Elementwise closeness with the worst element reported, for tests under any
 * runner: |got - expected| <= atol + rtol * scale, where scale is the
 * expected value's magnitude or a caller's per-element scale (e.g. the sum
 * of the magnitudes that were added up, which bounds rounding better than a
 * result that cancelled out). NaN or infinity in `got` never passes.
 */
import { WideepError } from '../errors.js';

export interface CloseOptions {
  atol: number;
  rtol: number;
  /** Per-element magnitude rtol applies to (default |expected[i]|). */
  scale?: ArrayLike<number>;
  /** Elements to compare (default all); e.g. leaves out tokens whose reference is ambiguous. */
  include?: (index: number) => boolean;
}

export interface CloseMismatch {
  index: number;
  got: number;
  expected: number;
  tolerance: number;
}

export interface CloseReport {
  pass: boolean;
  /** Elements compared. */
  checked: number;
  /** Elements out of tolerance. */
  mismatches: number;
  /** The element furthest out of (or, when all pass, closest to) its tolerance; undefined when none was compared. */
  worst?: CloseMismatch;
}

export function compareClose(got: ArrayLike<number>, expected: ArrayLike<number>, o: CloseOptions): CloseReport {
  if (got.length !== expected.length) {
    throw new WideepError('ERR_SHAPE', `compareClose: ${got.length} values, expected ${expected.length}`);
  }
  if (o.scale && o.scale.length !== expected.length) {
    throw new WideepError('ERR_SHAPE', `compareClose: scale has ${o.scale.length} values, expected ${expected.length}`);
  }
  let checked = 0;
  let mismatches = 0;
  let worst: CloseMismatch | undefined;
  let worstRatio = -1;
  for (let i = 0; i < expected.length; i++) {
    if (o.include && !o.include(i)) continue;
    checked++;
    const e = expected[i]!;
    const tolerance = o.atol + o.rtol * Math.abs(o.scale ? o.scale[i]! : e);
    const err = Math.abs(got[i]! - e);
    // NaN compares false: a poisoned element fails and counts as infinitely far.
    if (!(err <= tolerance)) mismatches++;
    const ratio = err === 0 ? 0 : Number.isNaN(err) ? Infinity : err / tolerance;
    if (ratio > worstRatio) {
      worstRatio = ratio;
      worst = { index: i, got: got[i]!, expected: e, tolerance };
    }
  }
  return { pass: mismatches === 0, checked, mismatches, worst };
}

/** One line for a report: `label: 3 of 4096 out of tolerance; worst [2, 17]: got NaN, expected 0.125 ± 0.004` (row and column when `rowLength` is given). */
export function describeClose(label: string, r: CloseReport, rowLength?: number): string {
  const head = r.pass ? `${label}: ${r.checked} within tolerance` : `${label}: ${r.mismatches} of ${r.checked} out of tolerance`;
  const w = r.worst;
  if (!w) return head;
  const at = rowLength ? `[${Math.floor(w.index / rowLength)}, ${w.index % rowLength}]` : `[${w.index}]`;
  const n = (v: number) => (Number.isFinite(v) ? v.toPrecision(4) : String(v));
  return `${head}; worst ${at}: got ${n(w.got)}, expected ${n(w.expected)} ± ${n(w.tolerance)}`;
}
