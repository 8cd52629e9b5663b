/**
 * The expert-compute entry points of the addon without a GPU: cuBLASLt's
 * loader reports every candidate it tried, and every launch refuses a bad
 * baton, a bad range or a missing stream with an error, never a crash.
 */
import { describe, expect, it } from 'vitest';

import { fromNative } from '../../src/errors.js';
import { getNative } from '../../src/native/index.js';

const cuda = getNative()?.cuda;

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return fromNative(e).code;
  }
  return 'no error';
}

describe.skipIf(!cuda)('expert-compute entry points (addon built with CUDA)', () => {
  it('blasLoad records each candidate that failed and why', () => {
    const r = cuda!.blasLoad(['/nonexistent/libcublasLt.so.13', '/etc/hostname']);
    if (r.loaded) return expect(r.version).toBeGreaterThanOrEqual(120900); // a machine with cuBLAS loaded it earlier
    expect(r.attempts.map((a) => a.path)).toEqual(['/nonexistent/libcublasLt.so.13', '/etc/hostname']);
    for (const a of r.attempts) expect(a.error.length).toBeGreaterThan(0);
  });

  it('blasLoad refuses anything but an array of strings', () => {
    expect(codeOf(() => cuda!.blasLoad('libcublasLt.so' as unknown as string[]))).toBe('ERR_INVALID_ARG');
    expect(codeOf(() => cuda!.blasLoad([3 as unknown as string]))).toBe('ERR_INVALID_ARG');
  });

  it('exposes the baton layouts, one slot per named field', () => {
    const m = cuda!.BlasHandle.fields();
    expect(m.length).toBe(30);
    expect([m.a, m.b, m.d, m.alphaBits]).toEqual([0, 1, 3, 28]);
    const f = cuda!.moeFields();
    expect(f.topk.length).toBe(19);
    expect(f.maxTopkExperts).toBe(1024);
    for (const map of [f.topk, f.swiglu, f.permute, f.unpermute]) {
      const slots = Object.entries(map).filter(([k]) => k !== 'length').map(([, v]) => v).sort((a, b) => a - b);
      expect(slots).toEqual([...Array(map.length).keys()]);
    }
  });

  it('every launch refuses a baton of the wrong size or type', () => {
    for (const name of ['routerTopk', 'swiglu', 'permute', 'unpermute'] as const) {
      expect(codeOf(() => cuda![name](new BigInt64Array(2), undefined as never)), name).toBe('ERR_INVALID_ARG');
      expect(codeOf(() => cuda![name](new Float64Array(40) as unknown as BigInt64Array, undefined as never)), name).toBe('ERR_INVALID_ARG');
    }
  });

  it('routerTopk refuses expert, group and k counts outside the kernel tables before touching a stream', () => {
    const f = cuda!.moeFields().topk;
    const b = new BigInt64Array(f.length);
    const set = (E: number, G: number, TG: number, k: number) => {
      b[f.numExperts!] = BigInt(E);
      b[f.numGroups!] = BigInt(G);
      b[f.topkGroup!] = BigInt(TG);
      b[f.topk!] = BigInt(k);
    };
    for (const [E, G, TG, k] of [
      [0, 1, 1, 1],
      [2048, 8, 4, 8],
      [256, 7, 4, 8],
      [256, 8, 9, 8],
      [256, 8, 4, 33],
      [256, 128, 4, 8],
    ] as const) {
      set(E, G, TG, k);
      expect(codeOf(() => cuda!.routerTopk(b, undefined as never)), `E=${E} G=${G} TG=${TG} k=${k}`).toBe('ERR_INVALID_ARG');
    }
  });

  it('fills and the scale transpose refuse non-pointers and out-of-range sizes', () => {
    expect(codeOf(() => cuda!.fillValue(1 as unknown as bigint, 4, 0, 1, undefined as never))).toBe('ERR_INVALID_ARG');
    expect(codeOf(() => cuda!.fillValue(0n, -1, 0, 1, undefined as never))).toBe('ERR_INVALID_ARG');
    expect(codeOf(() => cuda!.fillValue(0n, 4, 9, 1, undefined as never))).toBe('ERR_INVALID_ARG');
    expect(codeOf(() => cuda!.fillRandom(0n, 4, 0, 2, 1, 0, 1, undefined as never))).toBe('ERR_INVALID_ARG');
    expect(codeOf(() => cuda!.transposeScales(0n, 0n, 1, 8, 2, 4, undefined as never))).toBe('ERR_INVALID_ARG');
  });

  it('a BlasHandle needs cuBLASLt loaded first', (ctx) => {
    if (cuda!.blasLoad([]).loaded) ctx.skip(); // this process found cuBLASLt: nothing to refuse
    expect(codeOf(() => new cuda!.BlasHandle(0))).toBe('ERR_BLAS_NOT_FOUND');
  });
});
