/**
 * Low-latency dispatch and combine on the cpu. Dispatch sends each token once
 * per owning rank with a flag per local expert it selects; the owner gives it
 * one slot in each of those experts, in source-rank then token order. Combine
 * returns each expert's slots to their sources, which weight and sum them.
 */
import { WideepError } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import type {
  BackendLowLatencyCombineArgs,
  BackendLowLatencyCombineResult,
  BackendLowLatencyDispatchArgs,
  BackendLowLatencyDispatchResult,
  LowLatencyRouting,
} from '../backend.js';
import { FP8_BLOCK, quantizeBf16RowsFp8 } from '../fp8-quant.js';
import { expertOwner, isRepeat, readTopkIdx } from '../layout.js';
import type { CpuTransport } from '../transport.js';
import type { EpConfig } from '../types.js';
import { addScaledBf16, roundToBf16 } from './kernels.js';
import {
  Collective,
  OP,
  allocMessage,
  bytesOf,
  checkAgreement,
  checkSections,
  firstProblem,
  float32View,
  int32View,
  rowIndex,
  rowsFor,
  uint16View,
} from './wire.js';

export interface CpuLowLatencyRouting extends LowLatencyRouting {
  /** This rank's topkIdx of the dispatch (a copy), [T * k]. */
  readonly topkIdx: Int32Array;
  readonly topk: number;
  /** As owner: [L, R, 2] (begin, count) of each source rank's slots. */
  readonly layoutRange: Int32Array;
}

const resolved = async (): Promise<void> => {};

// ---- dispatch -----------------------------------------------------------------

// Meta header: [op, H, useFp8, tokens for this owner, T]; then the token indices,
// a flag per (token, local expert), and the fp8 scales.
const DISPATCH_AGREED = [
  [1, 'the row width H of x'],
  [2, 'useFp8', (v: number) => String(v === 1)],
] as const;

interface DispatchShape {
  T: number;
  H: number;
  k: number;
  topkIdx: Int32Array;
  rows: Uint8Array;
  rowBytes: number;
  scalesPerRow: number;
}

export function cpuLowLatencyDispatch(
  transport: CpuTransport,
  config: EpConfig,
  args: BackendLowLatencyDispatchArgs,
): Promise<BackendLowLatencyDispatchResult<CpuLowLatencyRouting>> {
  const { worldSize: R, numLocalExperts: L, numExperts: E } = config;
  const [T, H] = args.x.shape as [number, number];
  const k = args.topkIdx.shape[1]!;
  const topkIdx = readTopkIdx(args.topkIdx).slice();
  const bits = args.x.data as Uint16Array;
  // The cast happens on the sender, once per token, as in DeepEP.
  const quantized = args.useFp8 ? quantizeBf16RowsFp8(bits, T, H, args.roundScale) : undefined;
  const shape: DispatchShape = { T, H, k, topkIdx, rows: quantized ? quantized.q : bytesOf(bits), rowBytes: quantized ? H : 2 * H, scalesPerRow: quantized ? H / FP8_BLOCK : 0 };

  const selects = new Uint8Array(T * E); // duplicates in a row collapse here
  for (let i = 0; i < T * k; i++) if (topkIdx[i]! >= 0) selects[Math.floor(i / k) * E + topkIdx[i]!] = 1;
  const tokensFor = Array.from({ length: R }, (_, owner) => {
    const tokens: number[] = [];
    for (let t = 0; t < T; t++) if (selects.subarray(t * E + owner * L, t * E + owner * L + L).includes(1)) tokens.push(t);
    return tokens;
  });
  const meta = tokensFor.map((tokens, owner) => {
    const n = tokens.length;
    const spr = shape.scalesPerRow;
    const { bytes, sections } = allocMessage([20, 4 * n, n * L, 4 * n * spr]);
    int32View(sections[0]!).set([OP.lowLatencyDispatch, H, args.useFp8 ? 1 : 0, n, T]);
    int32View(sections[1]!).set(tokens);
    const scales = float32View(sections[3]!);
    tokens.forEach((t, i) => {
      sections[2]!.set(selects.subarray(t * E + owner * L, t * E + owner * L + L), i * L);
      if (quantized) scales.set(quantized.scales.subarray(t * spr, (t + 1) * spr), i * spr);
    });
    return bytes;
  });
  const collective = new Collective('lowLatencyDispatch', transport, config.timeoutMs, meta);
  return finishDispatch(collective, config, args, shape, tokensFor);
}

async function finishDispatch(
  collective: Collective,
  config: EpConfig,
  args: BackendLowLatencyDispatchArgs,
  shape: DispatchShape,
  tokensFor: number[][],
): Promise<BackendLowLatencyDispatchResult<CpuLowLatencyRouting>> {
  const where = 'lowLatencyDispatch';
  const { worldSize: R, numLocalExperts: L } = config;
  const { H, rowBytes, scalesPerRow } = shape;
  const slots = R * config.lowLatency!.maxTokensPerRank;
  const meta = await collective.meta();
  const headers = meta.map((sections) => int32View(sections[0]!));
  checkAgreement(where, 'lowLatencyDispatch', headers, DISPATCH_AGREED);
  const problem = firstProblem(headers, (h, src) => checkSections(where, src, meta[src]!, [4 * h[3]!, h[3]! * L, 4 * h[3]! * scalesPerRow]));
  const send = problem ?? tokensFor.map((tokens) => rowsFor(shape.rows, tokens, rowBytes, collective.shared));

  return collective.bulk(send, (bulk) => {
    const recvX = Tensor.empty([L, slots, H], args.useFp8 ? 'fp8e4m3' : 'bf16');
    const out = bytesOf(recvX.data);
    const recvXScales = args.useFp8 ? Tensor.empty([L, slots, scalesPerRow], 'f32') : undefined;
    const outScales = recvXScales?.data as Float32Array | undefined;
    const srcInfo = new Int32Array(L * slots).fill(-1);
    const layoutRange = new Int32Array(L * R * 2);
    const recvCount = new Int32Array(L);
    meta.forEach((sections, src) => {
      const tokens = int32View(sections[1]!);
      const flags = sections[2]!;
      const scales = float32View(sections[3]!);
      const expected = (collective.shared ? headers[src]![4]! : tokens.length) * rowBytes;
      if (bulk[src]!.byteLength !== expected) {
        throw new WideepError('ERR_PROTOCOL', `${where}: rank ${src} sent ${bulk[src]!.byteLength} bytes of rows, expected ${expected}`);
      }
      for (let j = 0; j < L; j++) layoutRange[(j * R + src) * 2] = recvCount[j]!;
      tokens.forEach((t, i) => {
        const row = rowIndex(collective.shared, i, t);
        for (let j = 0; j < L; j++) {
          if (!flags[i * L + j]) continue;
          const slot = j * slots + recvCount[j]!++;
          srcInfo[slot] = t;
          out.set(bulk[src]!.subarray(row * rowBytes, (row + 1) * rowBytes), slot * rowBytes);
          if (outScales) outScales.set(scales.subarray(i * scalesPerRow, (i + 1) * scalesPerRow), slot * scalesPerRow);
        }
      });
      for (let j = 0; j < L; j++) layoutRange[(j * R + src) * 2 + 1] = recvCount[j]! - layoutRange[(j * R + src) * 2]!;
    });

    const stats = args.cumulativeRecvStats?.data as Int32Array | undefined;
    if (stats) recvCount.forEach((n, j) => (stats[j] = (stats[j]! + n) | 0));
    const result: BackendLowLatencyDispatchResult<CpuLowLatencyRouting> = {
      recvX,
      recvXScales,
      recvCount: Tensor.from(recvCount, { shape: [L], dtype: 'i32' }),
      srcInfo: Tensor.from(srcInfo, { shape: [L, slots], dtype: 'i32' }),
      layoutRange: Tensor.from(layoutRange.slice(), { shape: [L, R, 2], dtype: 'i32' }),
      routing: { numTokens: shape.T, topkIdx: shape.topkIdx, topk: shape.k, layoutRange },
    };
    if (args.returnRecvHook) result.hook = resolved;
    return result;
  });
}

// ---- combine ------------------------------------------------------------------

// Meta header: [op, H]; then, per local expert, where this source's slots begin and how many there are.
const COMBINE_AGREED = [[1, 'the row width H of y']] as const;

/** Column of the dispatch's row t that holds expert e (its first occurrence), or -1. */
function dispatchColumn(routing: CpuLowLatencyRouting, t: number, e: number): number {
  const k = routing.topk;
  for (let c = 0; c < k; c++) if (routing.topkIdx[t * k + c] === e) return c;
  return -1;
}

/**
 * For each (token, dispatch column), the token's place among this rank's
 * tokens that selected that expert (ascending), and how many selected each.
 */
function placesInExperts(routing: CpuLowLatencyRouting, E: number): { place: Int32Array; count: Int32Array } {
  const { topkIdx, topk: k, numTokens: T } = routing;
  const place = new Int32Array(T * k).fill(-1);
  const count = new Int32Array(E);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < k; c++) {
      const e = topkIdx[t * k + c]!;
      if (e >= 0 && !isRepeat(topkIdx, t, k, c, e)) place[t * k + c] = count[e]!++;
    }
  }
  return { place, count };
}

export function cpuLowLatencyCombine(
  transport: CpuTransport,
  config: EpConfig,
  args: BackendLowLatencyCombineArgs<CpuLowLatencyRouting>,
): Promise<BackendLowLatencyCombineResult> {
  const where = 'lowLatencyCombine';
  const { worldSize: R, numLocalExperts: L } = config;
  const { routing } = args;
  const H = args.y.shape[2]!;
  const slots = args.y.shape[1]!;
  const topkIdx = readTopkIdx(args.topkIdx);
  const k = args.topkIdx.shape[1]!;
  // The combine may drop experts (-1) but not name one the dispatch did not send the token to.
  for (let i = 0; i < topkIdx.length; i++) {
    const e = topkIdx[i]!;
    const t = Math.floor(i / k);
    if (e >= 0 && dispatchColumn(routing, t, e) < 0) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `${where}: topkIdx[${t}, ${i % k}] = ${e}, but the handle's lowLatencyDispatch did not send token ${t} to expert ${e}; pass the topkIdx of that dispatch`,
      );
    }
  }
  const range = (j: number, src: number) => [routing.layoutRange[(j * R + src) * 2]!, routing.layoutRange[(j * R + src) * 2 + 1]!] as const;
  const meta = Array.from({ length: R }, (_, src) => {
    const { bytes, sections } = allocMessage([8, 4 * L, 4 * L]);
    int32View(sections[0]!).set([OP.lowLatencyCombine, H]);
    for (let j = 0; j < L; j++) [int32View(sections[1]!)[j], int32View(sections[2]!)[j]] = range(j, src);
    return bytes;
  });
  const collective = new Collective(where, transport, config.timeoutMs, meta);
  const yBytes = bytesOf(args.y.data);
  const rowsTo = (src: number) => {
    const rows: number[] = [];
    for (let j = 0; j < L; j++) for (let [begin, count] = range(j, src); count > 0; begin++, count--) rows.push(j * slots + begin);
    return rows;
  };
  const bulk = (shared: boolean) => Array.from({ length: R }, (_, src) => (shared ? yBytes : rowsFor(yBytes, rowsTo(src), 2 * H, false)));
  return finishCombine(collective, config, args, topkIdx, H, bulk);
}

async function finishCombine(
  collective: Collective,
  config: EpConfig,
  args: BackendLowLatencyCombineArgs<CpuLowLatencyRouting>,
  topkIdx: Int32Array,
  H: number,
  bulkFor: (shared: boolean) => Uint8Array[],
): Promise<BackendLowLatencyCombineResult> {
  const where = 'lowLatencyCombine';
  const { routing } = args;
  const { numLocalExperts: L, numExperts: E } = config;
  const slots = args.y.shape[1]!;
  const meta = await collective.meta();
  checkAgreement(where, 'lowLatencyCombine', meta.map((sections) => int32View(sections[0]!)), COMBINE_AGREED);
  const { place, count } = placesInExperts(routing, E);
  // Where expert j of `owner` keeps this rank's rows in owner's bulk message.
  const base = meta.map((sections) => {
    const begins = int32View(sections[1]!);
    const counts = int32View(sections[2]!);
    let packed = 0;
    return Array.from({ length: L }, (_, j) => {
      const at = collective.shared ? j * slots + begins[j]! : packed;
      packed += counts[j]!;
      return at;
    });
  });
  const problem = firstProblem(meta, (sections, owner) => {
    checkSections(where, owner, sections, [4 * L, 4 * L]);
    const counts = int32View(sections[2]!);
    for (let j = 0; j < L; j++) {
      if (counts[j] !== count[owner * L + j]) {
        throw new WideepError(
          'ERR_PROTOCOL',
          `${where}: rank ${owner} returns ${counts[j]} rows of expert ${owner * L + j}, but this rank's dispatch sent it ${count[owner * L + j]}; ` +
            'all ranks must pass handles of the same dispatch',
        );
      }
    }
  });

  return collective.bulk(problem ?? bulkFor(collective.shared), (bulk) => {
    const received = bulk.map((b, owner) => {
      const expected = (collective.shared ? L * slots : count.subarray(owner * L, owner * L + L).reduce((a, b) => a + b, 0)) * 2 * H;
      if (b.byteLength !== expected) throw new WideepError('ERR_PROTOCOL', `${where}: rank ${owner} sent ${b.byteLength} bytes of rows, expected ${expected}`);
      return uint16View(b);
    });
    const T = routing.numTokens;
    const k = args.topkIdx.shape[1]!;
    const weights = args.topkWeights.data as Float32Array;
    const combinedX = args.out ?? Tensor.empty([T, H], 'bf16');
    const out = combinedX.data as Uint16Array;
    const acc = new Float32Array(H);
    for (let t = 0; t < T; t++) {
      acc.fill(0);
      for (let j = 0; j < k; j++) {
        const e = topkIdx[t * k + j]!;
        if (e < 0) continue;
        const owner = expertOwner(e, L);
        const row = base[owner]![e - owner * L]! + place[t * routing.topk + dispatchColumn(routing, t, e)]!;
        addScaledBf16(acc, 0, weights[t * k + j]!, received[owner]!, row * H, H);
      }
      roundToBf16(acc, out, t * H);
    }
    const result: BackendLowLatencyCombineResult = { combinedX };
    if (args.returnRecvHook) result.hook = resolved;
    return result;
  });
}
