/**
 * The host-side plan of the cuda backend across nodes (src/ep/cuda/node/plan.ts):
 * record layout, and the block reorder between the intranode dispatch's row
 * order and the flat order, checked against row labels moved one by one.
 */
import { describe, expect, test } from 'vitest';

import { recordLayout, recvCountsOf, reorderBlocks, starts } from '../../../src/ep/cuda/node/plan.js';
import { SeededRandom } from '../../../src/ep/random-routing.js';

describe('records', () => {
  test.each([
    [14336, 0, 8, 14400],
    [7168, 56, 8, 7168 + 224 + 64],
    [7168, 56, 0, 7168 + 224],
    [256, 2, 1, 272],
  ])('rowBytes %i, %i scales, k %i: %i bytes', (rowBytes, scales, k, bytes) => {
    const r = recordLayout(rowBytes, scales, k);
    expect(r.bytes).toBe(bytes);
    expect(r.bytes % 16).toBe(0);
    expect(r.bytes).toBeGreaterThanOrEqual(rowBytes + 4 * scales + 8 * k);
  });

  test('starts', () => {
    expect(starts([3, 0, 2])).toEqual([0, 3, 3, 5]);
    expect(starts([])).toEqual([0]);
  });
});

describe('the block reorder', () => {
  // Labels are "source rank:row". The intranode order: forwarder i, then source node a.
  function intranodeOrder(tables: Int32Array[], j: number, N: number, P: number): string[] {
    const out: string[] = [];
    for (let i = 0; i < P; i++) for (let a = 0; a < N; a++) for (let q = 0; q < tables[i]![a * P + j]!; q++) out.push(`${a * P + i}:${q}`);
    return out;
  }
  function flatOrder(tables: Int32Array[], j: number, N: number, P: number): string[] {
    const out: string[] = [];
    for (let s = 0; s < N * P; s++) for (let q = 0; q < tables[s % P]![Math.floor(s / P) * P + j]!; q++) out.push(`${s}:${q}`);
    return out;
  }

  const seed = Date.now() % 1_000_003;
  test.each([
    [1, 2],
    [2, 2],
    [4, 8],
    [8, 4],
    [2, 1],
  ])(`N = %i nodes of P = %i (seed ${seed})`, (N, P) => {
    const rng = new SeededRandom(seed + N * 31 + P);
    const tables = Array.from({ length: P }, () => Int32Array.from({ length: N * P }, () => (rng.int(4) === 0 ? 0 : rng.int(9))));
    for (let j = 0; j < P; j++) {
      const from = intranodeOrder(tables, j, N, P);
      const want = flatOrder(tables, j, N, P);
      const blocks = reorderBlocks(tables, j, N, P);
      const got = new Array<string>(from.length).fill('unwritten');
      for (const b of blocks) for (let r = 0; r < b.rows; r++) got[b.to + r] = from[b.from + r]!;
      expect(got).toEqual(want);
      // And back.
      const again = new Array<string>(from.length).fill('unwritten');
      for (const b of blocks) for (let r = 0; r < b.rows; r++) again[b.from + r] = got[b.to + r]!;
      expect(again).toEqual(from);
      expect(Array.from(recvCountsOf(tables, j, N, P))).toEqual(Array.from({ length: N * P }, (_, s) => want.filter((l) => l.startsWith(`${s}:`)).length));
    }
  });
});
