/**
 * Host-side routing arithmetic shared by validation, the cpu backend and
 * tests: who owns an expert, and which ranks a token goes to.
 */
import type { Tensor } from '../tensor/tensor.js';

/** The rank that holds expert `e` (experts are split into equal contiguous ranges). */
export function expertOwner(expert: number, numLocalExperts: number): number {
  return Math.floor(expert / numLocalExperts);
}

/** topkIdx of a host tensor as Int32Array (no copy for i32; values already validated to fit). */
export function readTopkIdx(topkIdx: Tensor): Int32Array {
  const data = topkIdx.data;
  if (data instanceof Int32Array) return data;
  return Int32Array.from(data as BigInt64Array, (v) => Number(v));
}

/** True when row `t` lists `e` in a column before `col` (duplicates count once). */
export function isRepeat(topkIdx: Int32Array, t: number, k: number, col: number, e: number): boolean {
  for (let j = 0; j < col; j++) if (topkIdx[t * k + j] === e) return true;
  return false;
}

export interface HostLayout {
  numTokensPerRank: Int32Array;
  /** [R / ranksPerNode]: tokens sent to each node, once per node. */
  numTokensPerNode: Int32Array;
  numTokensPerExpert: Int32Array;
  /** [T * R], 0/1. */
  isTokenInRank: Uint8Array;
}

/** Nodes are runs of `ranksPerNode` consecutive ranks (default: the world is one node). */
export function computeDispatchLayout(topkIdx: Int32Array, T: number, k: number, numExperts: number, worldSize: number, ranksPerNode = worldSize): HostLayout {
  const L = numExperts / worldSize;
  const numTokensPerRank = new Int32Array(worldSize);
  const numTokensPerNode = new Int32Array(worldSize / ranksPerNode);
  const numTokensPerExpert = new Int32Array(numExperts);
  const isTokenInRank = new Uint8Array(T * worldSize);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const e = topkIdx[t * k + j]!;
      if (e < 0 || isRepeat(topkIdx, t, k, j, e)) continue;
      numTokensPerExpert[e]!++;
      const r = expertOwner(e, L);
      if (isTokenInRank[t * worldSize + r] === 0) {
        isTokenInRank[t * worldSize + r] = 1;
        numTokensPerRank[r]!++;
      }
    }
    for (let n = 0; n < numTokensPerNode.length; n++) {
      if (isTokenInRank.subarray(t * worldSize + n * ranksPerNode, t * worldSize + (n + 1) * ranksPerNode).includes(1)) numTokensPerNode[n]!++;
    }
  }
  return { numTokensPerRank, numTokensPerNode, numTokensPerExpert, isTokenInRank };
}

/** For each rank, the ascending indices of the tokens sent to it. */
export function tokensPerDestination(isTokenInRank: Uint8Array, T: number, worldSize: number): Int32Array[] {
  const counts = new Int32Array(worldSize);
  for (let i = 0; i < T * worldSize; i++) counts[i % worldSize]! += isTokenInRank[i]!;
  const lists = Array.from(counts, (n) => new Int32Array(n));
  const fill = new Int32Array(worldSize);
  for (let t = 0; t < T; t++) {
    for (let r = 0; r < worldSize; r++) if (isTokenInRank[t * worldSize + r]) lists[r]![fill[r]!++] = t;
  }
  return lists;
}

/** Rounds `n` up to a multiple of `alignment`. */
export function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}
