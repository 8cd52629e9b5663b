// Inputs whose values say where they came from, for the reliability workers:
// every token selects one local expert of every rank (k = worldSize, weight
// 1), and every element of token t's row on rank r holds one small integer of
// (r, t, tag). A row that reached the wrong place, or came from another call,
// shows its value; sums of a token's rows over ranks stay exact in bf16
// (power-of-two rank counts times integers below 256).
import { Tensor } from '../../../dist/index.js';

/** Local experts per rank. */
export const LOCAL_EXPERTS = 2;

/** The value of token t's row on rank r for a call tagged `tag`: an integer in [1, 255]. */
export function rowValue(tag, r, t) {
  return 1 + ((tag * 31 + r * 8 + t) % 255);
}

/** bf16 [T, H] rows of rank r for `tag`. */
export function encodedRows(tag, r, T, H) {
  return Tensor.fromNumbers(Array.from({ length: T * H }, (_, j) => rowValue(tag, r, Math.floor(j / H))), [T, H], 'bf16');
}

/** Token t selects local expert t % LOCAL_EXPERTS of every rank, weight 1 each: [T, R] host tensors. */
export function everyRankRouting(T, R) {
  const ids = Array.from({ length: T * R }, (_, j) => (j % R) * LOCAL_EXPERTS + (Math.floor(j / R) % LOCAL_EXPERTS));
  return {
    topkIdx: Tensor.fromNumbers(ids, [T, R], 'i32'),
    topkWeights: Tensor.fromNumbers(new Array(T * R).fill(1), [T, R], 'f32'),
  };
}

/**
 * The rows (host bf16, last dim the row) whose elements are not all
 * `want(row)`, described; rows where `want` is undefined are not looked at.
 */
export function wrongRows(label, t, want) {
  const v = t.toFloat32();
  const width = t.shape.at(-1);
  const out = [];
  for (let row = 0; row * width < v.length && out.length < 5; row++) {
    const w = want(row);
    if (w === undefined) continue;
    const j = v.subarray(row * width, (row + 1) * width).findIndex((x) => x !== w);
    if (j >= 0) out.push(`${label} row ${row}: element ${j} is ${v[row * width + j]}, expected ${w}`);
  }
  return out;
}

/** A normal dispatch's row `row` on every rank: rows come by source rank, then token (every token goes everywhere). */
export const normalRowValue = (tag, T) => (row) => rowValue(tag, Math.floor(row / T), row % T);

/**
 * A low-latency dispatch's slot `row` of recvX [L, R*M, H]: local expert j
 * holds each source's tokens naming it (t % L == j) in source, then token
 * order; unused slots are not looked at.
 */
export function lowLatencyRowValue(tag, T, R, M) {
  return (row) => {
    const j = Math.floor(row / (R * M));
    const tokens = Array.from({ length: T }, (_, t) => t).filter((t) => t % LOCAL_EXPERTS === j);
    const slot = row % (R * M);
    const source = Math.floor(slot / tokens.length);
    return source < R ? rowValue(tag, source, tokens[slot % tokens.length]) : undefined;
  };
}

/** What a combine of those rows gives token t of rank r: the sum over the R ranks that received it. */
export const combinedValue = (tag, r, R) => (t) => R * rowValue(tag, r, t);
