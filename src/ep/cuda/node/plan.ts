/**
 * Host-side arithmetic of the hierarchical normal mode on cuda: the network
 * records' layout, the header each rank sends its same-index peers, and the
 * block reorder between the intranode dispatch's row order and the flat
 * path's (docs/architecture.md "EP across nodes"). Pure functions: unit
 * tested in test/unit/ep/node-plan.test.ts.
 */
import { alignUp } from '../../dispatch-layout.js';

/** What one token's record carries over the network (native/ep/node_leg.h). */
export interface RecordLayout {
  readonly rowBytes: number;
  readonly scalesPerRow: number;
  /** 0: no ids or weights (a cached dispatch). */
  readonly topk: number;
  /** The row, its f32 scales, k i32 ids and k f32 weights, padded to 16 bytes. */
  readonly bytes: number;
}

export function recordLayout(rowBytes: number, scalesPerRow: number, topk: number): RecordLayout {
  return { rowBytes, scalesPerRow, topk, bytes: alignUp(rowBytes + 4 * scalesPerRow + 8 * topk, 16) };
}

/**
 * A header row, one per destination node: [tokens sent to the node, tokens
 * sent to each of its P ranks, top-k ids out of range, local failure].
 */
export const header = {
  width: (P: number) => P + 3,
  nodeTokens: 0,
  rankTokens: (j: number) => 1 + j,
  badIds: (P: number) => P + 1,
  failure: (P: number) => P + 2,
} as const;

/** [0, c0, c0 + c1, ...]: where each count's rows start, the total last. */
export function starts(counts: ArrayLike<number>): number[] {
  const out = [0];
  for (let i = 0; i < counts.length; i++) out.push(out[i]! + counts[i]!);
  return out;
}

/** A run of rows that moves as one: `rows` rows from row `from` to row `to`. */
export interface Block {
  readonly from: number;
  readonly to: number;
  readonly rows: number;
}

/**
 * Receiver j of a node of P ranks among N nodes. `tables[i]` is forwarder
 * i's [N][P] counts: rows from source rank (a, i) to local rank j at
 * [a * P + j]. The intranode dispatch lays the rows out by forwarder i, then
 * source node a (each forwarder's tokens are grouped by source node); the
 * flat path by source rank a * P + i. The blocks move rows from the first
 * order to the second; swap `from` and `to` to go back.
 */
export function reorderBlocks(tables: readonly ArrayLike<number>[], j: number, N: number, P: number): Block[] {
  const count = (i: number, a: number) => tables[i]![a * P + j]!;
  const flat = starts(Array.from({ length: N * P }, (_, s) => count(s % P, Math.floor(s / P))));
  const blocks: Block[] = [];
  let from = 0;
  for (let i = 0; i < P; i++) {
    for (let a = 0; a < N; a++) {
      const rows = count(i, a);
      if (rows > 0) blocks.push({ from, to: flat[a * P + i]!, rows });
      from += rows;
    }
  }
  return blocks;
}

/** Rows this receiver gets from each source rank, in the flat order. */
export function recvCountsOf(tables: readonly ArrayLike<number>[], j: number, N: number, P: number): Int32Array {
  return Int32Array.from({ length: N * P }, (_, s) => tables[s % P]![Math.floor(s / P) * P + j]!);
}
