/** Small statistics for benchmarks: medians of samples and of per-rank medians. */

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Rounds for display and JSON (keeps files readable and diffable). */
export function round(v: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** GB/s from bytes and microseconds. */
export function gbps(bytes: number, us: number): number {
  return us > 0 ? bytes / us / 1e3 : NaN;
}
