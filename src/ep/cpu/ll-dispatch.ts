/**
 * Low-latency dispatch on the cpu: each token goes once to each rank that owns
 * one of its experts, with a flag per local expert it selects; the owner gives
 * it one slot in each of those experts, in source-rank then token order. The
 * fp8 cast happens on the sender, once per token, as in DeepEP.
 */
import { WideepError } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import type { BackendLowLatencyDispatchArgs, BackendLowLatencyDispatchResult, LowLatencyRouting } from '../backend.js';
import type { EpCall } from '../calls.js';
import { FP8_BLOCK, quantizeBf16RowsFp8 } from '../fp8-quant.js';
import { readTopkIdx } from '../dispatch-layout.js';
import type { CpuTransport } from '../transport.js';
import type { EpConfig } from '../types.js';
import {
  CALL_WORDS,
  Collective,
  allocMessage,
  bytesOf,
  callWords,
  checkAgreement,
  checkCall,
  checkSections,
  firstProblem,
  float32View,
  int32View,
  rowIndex,
  rowsFor,
} from './wire.js';

export interface CpuLowLatencyRouting extends LowLatencyRouting {
  /** This rank's topkIdx of the dispatch (a copy), [T * k]. */
  readonly topkIdx: Int32Array;
  /** As owner: [L, R, 2] (begin, count) of each source rank's slots. */
  readonly layoutRange: Int32Array;
}

/** The receive hook of the cpu backend: everything has arrived when the call resolves. */
export const resolvedHook = async (): Promise<void> => {};

// Meta header: [call words, H, useFp8, tokens for this owner, T, k]; then the
// token indices, a flag per (token, local expert), and the fp8 scales. The cuda
// kernels read every source's top-k with the receiver's k: ranks must agree.
const [WIDTH, FP8, SENT, TOKENS, TOPK] = [0, 1, 2, 3, 4].map((i) => CALL_WORDS + i) as [number, number, number, number, number];
const AGREED = [
  [WIDTH, 'the row width H of x'],
  [FP8, 'useFp8', (v: number) => String(v === 1)],
  [TOPK, 'the top-k width k'],
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
  call: EpCall,
): Promise<BackendLowLatencyDispatchResult<CpuLowLatencyRouting>> {
  const { worldSize: R, numLocalExperts: L, numExperts: E } = config;
  const [T, H] = args.x.shape as [number, number];
  const k = args.topkIdx.shape[1]!;
  const topkIdx = readTopkIdx(args.topkIdx).slice();
  const bits = args.x.data as Uint16Array;
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
    const { bytes, sections } = allocMessage([4 * (CALL_WORDS + 5), 4 * n, n * L, 4 * n * spr]);
    int32View(sections[0]!).set([...callWords('lowLatencyDispatch', call), H, args.useFp8 ? 1 : 0, n, T, k]);
    int32View(sections[1]!).set(tokens);
    const scales = float32View(sections[3]!);
    tokens.forEach((t, i) => {
      sections[2]!.set(selects.subarray(t * E + owner * L, t * E + owner * L + L), i * L);
      if (quantized) scales.set(quantized.scales.subarray(t * spr, (t + 1) * spr), i * spr);
    });
    return bytes;
  });
  const collective = new Collective('lowLatencyDispatch', transport, config.timeoutMs, meta, call);
  return finishDispatch(collective, config, args, shape, tokensFor, call);
}

async function finishDispatch(
  collective: Collective,
  config: EpConfig,
  args: BackendLowLatencyDispatchArgs,
  shape: DispatchShape,
  tokensFor: number[][],
  call: EpCall,
): Promise<BackendLowLatencyDispatchResult<CpuLowLatencyRouting>> {
  const where = 'lowLatencyDispatch';
  const { worldSize: R, numLocalExperts: L } = config;
  const { H, rowBytes, scalesPerRow } = shape;
  const slots = R * config.lowLatency!.maxTokensPerRank;
  const meta = await collective.meta();
  const headers = meta.map((sections) => int32View(sections[0]!));
  checkCall(where, 'lowLatencyDispatch', call, headers);
  checkAgreement(where, headers, AGREED);
  const problem = firstProblem(headers, (h, src) => checkSections(where, src, meta[src]!, [4 * h[SENT]!, h[SENT]! * L, 4 * h[SENT]! * scalesPerRow]));
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
      const expected = (collective.shared ? headers[src]![TOKENS]! : tokens.length) * rowBytes;
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
    if (args.returnRecvHook) result.hook = resolvedHook;
    return result;
  });
}

