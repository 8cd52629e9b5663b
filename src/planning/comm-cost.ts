/**
 * Dispatch and combine traffic of one MoE layer, and a time estimate from
 * link bandwidths. The model, per rank and per layer:
 *
 *   m     = E / N                      logical experts per EP rank (N ranks)
 *   pHit  = 1 − C(E − m, k) / C(E, k)  chance that a token reaches a given rank:
 *                                       its k distinct experts are uniform over E
 *                                       and must avoid that rank's m experts to miss it
 *   D     = N × pHit                   expected distinct destination ranks per token
 *   rows  = T × pHit per destination   T tokens per rank; each (token, rank) pair
 *                                       is sent once, however many of its experts are there
 *   split: self = 1 rank, NVLink = (n − 1) ranks, RDMA = (N − n) ranks,
 *          with n the EP ranks on one node
 *   bytes = rows × bytesPerRow, where a dispatch row is FP8 plus one float32
 *           scale per 128 channels (hidden + 4 × ceil(hidden / 128)) and a
 *           combine row is BF16 (2 × hidden)
 *   time  = max(NVLink bytes / NVLink bandwidth, RDMA bytes / RDMA bandwidth):
 *           the two links run at once; self rows move no data over a link.
 *
 * Uniform routing ignores group-limited routing and redundant replicas, so it
 * is the balanced case; EPLB exists to bring real traffic close to it.
 */
import { WideepError } from '../errors.js';

/** FP8 dispatch carries one float32 scale per this many channels. */
export const FP8_SCALE_BLOCK = 128;
const FP8_BYTES = 1;
const FP32_BYTES = 4;
const BF16_BYTES = 2;

/** Bytes of one dispatched row: FP8 values plus float32 per-128-channel scales. */
export function dispatchRowBytes(hidden: number): number {
  return hidden * FP8_BYTES + Math.ceil(hidden / FP8_SCALE_BLOCK) * FP32_BYTES;
}

/** Bytes of one combined row: BF16. */
export function combineRowBytes(hidden: number): number {
  return hidden * BF16_BYTES;
}

/** P(a rank holding `m` of `E` experts receives a token that picks `k` distinct experts uniformly). */
export function rankHitProbability(E: number, m: number, k: number): number {
  // C(E − m, k) / C(E, k) = Π_{i<k} (E − m − i) / (E − i)
  let miss = 1;
  for (let i = 0; i < k; i++) miss *= Math.max(0, E - m - i) / (E - i);
  return 1 - miss;
}

/** What every traffic estimate needs. */
export interface LinkInput {
  /** Tokens each rank holds in this layer. */
  tokensPerRank: number;
  hidden: number;
  /** Ranks taking part. */
  numRanks: number;
  /** Of those, ranks that share a node (NVLink); the rest are over RDMA. */
  ranksPerNode: number;
  /** GB/s (1e9 bytes per second) per GPU per direction. */
  nvlinkGBps: number;
  rdmaGBps: number;
}

export interface TrafficInput extends LinkInput {
  numExperts: number;
  topK: number;
}

export interface LinkBytes {
  /** Rows a rank sends to itself (no link). */
  selfBytes: number;
  nvlinkBytes: number;
  rdmaBytes: number;
  totalBytes: number;
  /** Estimated seconds × 1e6. */
  timeUs: number;
}

export interface LayerTraffic {
  /** Expected distinct destination ranks per token. */
  destinationsPerToken: number;
  /** Expected rows sent per rank (over all destinations, self included). */
  rowsPerRank: number;
  dispatch: LinkBytes;
  combine: LinkBytes;
}

function checkInput(t: LinkInput): void {
  for (const [k, v] of Object.entries(t)) {
    const min = k === 'tokensPerRank' ? 0 : 1;
    const ok = k.endsWith('GBps') ? typeof v === 'number' && v > 0 : Number.isInteger(v) && v >= min;
    if (!ok) throw new WideepError('ERR_INVALID_ARG', `traffic ${k} ${String(v)}: must be ${k.endsWith('GBps') ? 'a number > 0' : `an integer >= ${min}`}`);
  }
}

function linkBytes(rowsSelf: number, rowsNvl: number, rowsRdma: number, rowBytes: number, t: LinkInput): LinkBytes {
  const selfBytes = rowsSelf * rowBytes;
  const nvlinkBytes = rowsNvl * rowBytes;
  const rdmaBytes = rowsRdma * rowBytes;
  const seconds = Math.max(nvlinkBytes / (t.nvlinkGBps * 1e9), rdmaBytes / (t.rdmaGBps * 1e9));
  return { selfBytes, nvlinkBytes, rdmaBytes, totalBytes: selfBytes + nvlinkBytes + rdmaBytes, timeUs: seconds * 1e6 };
}

/** Expected dispatch and combine bytes and time of one MoE layer, per rank (see the file comment). */
export function layerTraffic(t: TrafficInput): LayerTraffic {
  checkInput(t);
  if (t.numExperts % t.numRanks !== 0) {
    throw new WideepError('ERR_INVALID_ARG', `traffic: ${t.numExperts} experts do not split evenly over ${t.numRanks} ranks`);
  }
  if (t.topK > t.numExperts) throw new WideepError('ERR_INVALID_ARG', `traffic: topK ${t.topK} exceeds ${t.numExperts} experts`);
  const n = Math.min(t.ranksPerNode, t.numRanks);
  const pHit = rankHitProbability(t.numExperts, t.numExperts / t.numRanks, t.topK);
  const rowsSelf = t.tokensPerRank * pHit;
  const rowsNvl = t.tokensPerRank * pHit * (n - 1);
  const rowsRdma = t.tokensPerRank * pHit * (t.numRanks - n);
  return {
    destinationsPerToken: t.numRanks * pHit,
    rowsPerRank: rowsSelf + rowsNvl + rowsRdma,
    dispatch: linkBytes(rowsSelf, rowsNvl, rowsRdma, dispatchRowBytes(t.hidden), t),
    combine: linkBytes(rowsSelf, rowsNvl, rowsRdma, combineRowBytes(t.hidden), t),
  };
}

/**
 * The `none` backend instead: no dispatch; every rank runs its experts on all
 * tokens of the group, then the partial outputs are summed. Per rank, in BF16:
 * - tokens owned per rank (DP attention): all-gather the N ranks' hidden
 *   states, then reduce-scatter the outputs, (N − 1) × T rows each way;
 * - tokens replicated (attention TP): one all-reduce of T rows, which moves
 *   (N − 1) / N × T rows in each of its reduce-scatter and all-gather halves.
 * A ring is as slow as its slowest hop: RDMA once the group spans nodes,
 * NVLink otherwise.
 */
export function noneBackendTraffic(
  t: LinkInput,
  replicatedTokens: boolean,
): { reduceScatterBytes: number; allGatherBytes: number; timeUs: number } {
  checkInput(t);
  const N = t.numRanks;
  const rows = replicatedTokens ? ((N - 1) / N) * t.tokensPerRank : (N - 1) * t.tokensPerRank;
  const bytes = rows * combineRowBytes(t.hidden);
  const gbps = t.ranksPerNode < N ? t.rdmaGBps : t.nvlinkGBps;
  return { reduceScatterBytes: bytes, allGatherBytes: bytes, timeUs: ((2 * bytes) / (gbps * 1e9)) * 1e6 };
}
