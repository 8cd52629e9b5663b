/**
 * Normal-mode dispatch on the cpu: each (token, destination rank) pair is sent
 * once, and each rank lays its received rows out by source rank, then source
 * token index. The meta message to a rank carries the sender's full send
 * counts, so every rank learns every rank's row count and all agree on a
 * numWorstTokens overflow before any row moves.
 */
import { WideepError } from '../../errors.js';
import { DTYPE_CODE, itemSize } from '../../tensor/dtype.js';
import { Tensor } from '../../tensor/tensor.js';
import type { BackendDispatchArgs, BackendDispatchResult, DispatchRouting } from '../backend.js';
import type { EpCall } from '../calls.js';
import { FP8_BLOCK } from '../fp8-quant.js';
import { computeDispatchLayout, expertOwner, isRepeat, readTopkIdx, tokensPerDestination } from '../dispatch-layout.js';
import type { CpuTransport } from '../transport.js';
import type { EpConfig } from '../types.js';
import type { NodeRouting } from './node-dispatch.js';
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
  rowsFor,
  type AgreedField,
} from './wire.js';

export interface CpuRouting extends DispatchRouting {
  /** Per destination rank: the ascending indices of the tokens sent there. */
  readonly sendTokens: readonly Int32Array[];
  /** Per source rank: the rows received from it (contiguous, in rank order). */
  readonly recvCounts: Int32Array;
  /** Present when the call crossed nodes (src/ep/cpu/node-dispatch.ts). */
  readonly nodes?: NodeRouting;
}

// Meta header: [call words, dtype, H, k, numWorstTokens, T, rows to rank 0, ..., rows to rank R-1];
// then the token indices, scales, and (unless cached) local topkIdx and weights of the rows.
export const [DTYPE, WIDTH, TOPK, WORST, TOKENS, FIXED] = [0, 1, 2, 3, 4, 5].map((i) => CALL_WORDS + i) as [number, number, number, number, number, number];
const DTYPE_NAMES = Object.fromEntries(Object.entries(DTYPE_CODE).map(([name, code]) => [code, name])) as Record<number, string>;
const AGREED: readonly AgreedField[] = [
  [DTYPE, 'the dtype of x', (v) => DTYPE_NAMES[v] ?? String(v)],
  [WIDTH, 'the row width H of x'],
  [TOPK, 'the number of top-k columns k'],
];

export interface Shape {
  T: number;
  H: number;
  k: number;
  rowBytes: number;
  scalesPerRow: number;
}

/** Sends the meta messages at call time; the returned promise does the rest. */
export function cpuDispatch(transport: CpuTransport, config: EpConfig, args: BackendDispatchArgs<CpuRouting>, call: EpCall): Promise<BackendDispatchResult<CpuRouting>> {
  const { worldSize: R, numLocalExperts: L } = config;
  const { cached } = args;
  const shape = dispatchShape(args);
  const { T, k, scalesPerRow } = shape;
  const topk = cached ? undefined : readTopkIdx(args.topkIdx!);
  const sendTokens = cached ? cached.sendTokens : tokensPerDestination(computeDispatchLayout(topk!, T, k, config.numExperts, R).isTokenInRank, T, R);

  const xScales = args.xScales?.data as Float32Array | undefined;
  const weights = args.topkWeights?.data as Float32Array | undefined;
  const meta = sendTokens.map((tokens, dst) => {
    const n = tokens.length;
    const { bytes, sections } = allocMessage([4 * (FIXED + R), 4 * n, 4 * n * scalesPerRow, ...(topk ? [4 * n * k, 4 * n * k] : [])]);
    int32View(sections[0]!).set(dispatchHeader(args, shape, sendTokens, call));
    int32View(sections[1]!).set(tokens);
    const scales = float32View(sections[2]!);
    tokens.forEach((t, i) => {
      if (xScales) scales.set(xScales.subarray(t * scalesPerRow, (t + 1) * scalesPerRow), i * scalesPerRow);
      if (!topk) return;
      // Local expert ids of the destination, -1 (and weight 0) for other ranks' experts.
      const idx = int32View(sections[3]!);
      const w = float32View(sections[4]!);
      for (let j = 0; j < k; j++) {
        const e = topk[t * k + j]!;
        const local = e >= 0 && expertOwner(e, L) === dst;
        idx[i * k + j] = local ? e - dst * L : -1;
        w[i * k + j] = local ? weights![t * k + j]! : 0;
      }
    });
    return bytes;
  });
  const collective = new Collective('dispatch', transport, config.timeoutMs, meta, call);
  return finishDispatch(collective, config, args, shape, sendTokens, call);
}

export function dispatchShape(args: BackendDispatchArgs<CpuRouting>): Shape {
  const [T, H] = args.x.shape as [number, number];
  const k = args.cached ? args.cached.topk : args.topkIdx!.shape[1]!;
  return { T, H, k, rowBytes: H * itemSize(args.x.dtype), scalesPerRow: args.xScales ? H / FP8_BLOCK : 0 };
}

/** The meta header both paths send every rank: [call words, dtype, H, k, numWorstTokens, T, rows to each rank]. */
export function dispatchHeader(args: BackendDispatchArgs<CpuRouting>, shape: Shape, sendTokens: readonly Int32Array[], call: EpCall): number[] {
  const { cached, x } = args;
  const op = cached ? 'cachedDispatch' : 'dispatch';
  return [...callWords(op, call), DTYPE_CODE[x.dtype], shape.H, shape.k, cached ? 0 : args.numWorstTokens, shape.T, ...sendTokens.map((s) => s.length)];
}

/**
 * The checks on every rank's header, with the same verdict on every rank
 * (same call, agreeing arguments, no numWorstTokens overflow); returns the
 * rows this rank receives from each source rank.
 */
export function checkDispatchHeaders(where: string, cached: boolean, call: EpCall, headers: readonly Int32Array[], config: EpConfig): Int32Array {
  checkCall(where, cached ? 'cachedDispatch' : 'dispatch', call, headers);
  checkAgreement(where, headers, cached ? AGREED.slice(0, 2) : AGREED);
  checkWorstTokens(where, headers, config.worldSize);
  return Int32Array.from(headers, (h) => h[FIXED + config.rank]!);
}

async function finishDispatch(
  collective: Collective,
  config: EpConfig,
  args: BackendDispatchArgs<CpuRouting>,
  shape: Shape,
  sendTokens: readonly Int32Array[],
  call: EpCall,
): Promise<BackendDispatchResult<CpuRouting>> {
  const where = 'dispatch';
  const { cached, x } = args;
  const { k, rowBytes, scalesPerRow } = shape;
  const meta = await collective.meta();
  const headers = meta.map((sections) => int32View(sections[0]!));
  const recvCounts = checkDispatchHeaders(where, cached !== undefined, call, headers, config);
  const numRows = outputRows(args, recvCounts);
  const problem = cached ? cachedCountsProblem(where, cached, recvCounts) : undefined;
  const metaProblem = problem ?? sectionsProblem(where, meta, recvCounts, shape, !cached);
  const send = metaProblem ?? sendTokens.map((tokens) => rowsFor(bytesOf(x.data), tokens, rowBytes, collective.shared));

  return collective.bulk(send, (bulk) => {
    const got = receivedTensors(args, shape, numRows);
    let row = 0;
    meta.forEach((sections, src) => {
      const n = recvCounts[src]!;
      const tokens = int32View(sections[1]!);
      const expected = (collective.shared ? headers[src]![TOKENS]! : n) * rowBytes;
      if (bulk[src]!.byteLength !== expected) {
        throw new WideepError('ERR_PROTOCOL', `${where}: rank ${src} sent ${bulk[src]!.byteLength} bytes of rows, expected ${expected}`);
      }
      if (collective.shared) {
        for (let i = 0; i < n; i++) got.rows.set(bulk[src]!.subarray(tokens[i]! * rowBytes, (tokens[i]! + 1) * rowBytes), (row + i) * rowBytes);
      } else {
        got.rows.set(bulk[src]!, row * rowBytes);
      }
      got.scales?.set(float32View(sections[2]!), row * scalesPerRow);
      if (got.weights) {
        got.idx.set(int32View(sections[3]!), row * k);
        got.weights.set(float32View(sections[4]!), row * k);
      }
      row += n;
    });
    return dispatchResult(args, shape, config, got, { sendTokens, recvCounts });
  });
}

/** A dispatch's outputs, zeroed (idx -1), with views that the path receiving the rows fills. */
export interface Received {
  recvX: Tensor;
  recvXScales: Tensor | undefined;
  recvTopkWeights: Tensor | undefined;
  rows: Uint8Array;
  scales: Float32Array | undefined;
  /** Local top-k ids (-1 elsewhere), [numRows * k]. */
  idx: Int32Array;
  /** Undefined for a cached dispatch. */
  weights: Float32Array | undefined;
}

export function receivedTensors(args: BackendDispatchArgs<CpuRouting>, shape: Shape, numRows: number): Received {
  const recvX = Tensor.empty([numRows, shape.H], args.x.dtype);
  const recvXScales = shape.scalesPerRow > 0 ? Tensor.empty([numRows, shape.scalesPerRow], 'f32') : undefined;
  const recvTopkWeights = args.cached ? undefined : Tensor.empty([numRows, shape.k], 'f32');
  return {
    recvX,
    recvXScales,
    recvTopkWeights,
    rows: bytesOf(recvX.data),
    scales: recvXScales?.data as Float32Array | undefined,
    idx: new Int32Array(numRows * shape.k).fill(-1),
    weights: recvTopkWeights?.data as Float32Array | undefined,
  };
}

/** The result of either path once every row arrived; a new dispatch's routing records `where` its rows went. */
export function dispatchResult(
  args: BackendDispatchArgs<CpuRouting>,
  shape: Shape,
  config: EpConfig,
  got: Received,
  where: Pick<CpuRouting, 'sendTokens' | 'recvCounts' | 'nodes'>,
): BackendDispatchResult<CpuRouting> {
  const { cached, numWorstTokens } = args;
  const { k } = shape;
  const N = where.recvCounts.reduce((a, b) => a + b, 0);
  const routing: CpuRouting = cached ?? {
    numTokens: shape.T,
    topk: k,
    numRecvTokens: numWorstTokens > 0 ? -1 : N,
    numRows: got.recvX.shape[0]!,
    numRecvTokensPerExpert: numWorstTokens > 0 ? undefined : rowsPerExpert(got.idx, N, k, config.numLocalExperts),
    ...where,
  };
  const recvTopkIdx = cached ? undefined : Tensor.empty([routing.numRows, k], args.topkIdx!.dtype);
  if (recvTopkIdx?.dtype === 'i64') (recvTopkIdx.data as BigInt64Array).set(Array.from(got.idx, BigInt));
  else if (recvTopkIdx) (recvTopkIdx.data as Int32Array).set(got.idx);
  return { recvX: got.recvX, recvXScales: got.recvXScales, recvTopkIdx, recvTopkWeights: got.recvTopkWeights, routing };
}

/** Rows of a dispatch's outputs: the cached routing's, numWorstTokens, or exactly the rows received. */
export function outputRows(args: BackendDispatchArgs<CpuRouting>, recvCounts: Int32Array): number {
  if (args.cached) return args.cached.numRows;
  return args.numWorstTokens > 0 ? args.numWorstTokens : recvCounts.reduce((a, b) => a + b, 0);
}

/** Same verdict on every rank: the first rank whose rows exceed its numWorstTokens. */
function checkWorstTokens(where: string, headers: readonly Int32Array[], R: number): void {
  for (let d = 0; d < R; d++) {
    const worst = headers[d]![WORST]!;
    const n = headers.reduce((sum, h) => sum + h[FIXED + d]!, 0);
    if (worst > 0 && n > worst) {
      throw new WideepError('ERR_INVALID_ARG', `${where}: rank ${d} receives ${n} rows, more than its numWorstTokens = ${worst}`);
    }
  }
}

export function cachedCountsProblem(where: string, cached: CpuRouting, recvCounts: Int32Array): WideepError | undefined {
  const src = recvCounts.findIndex((n, s) => n !== cached.recvCounts[s]);
  if (src < 0) return undefined;
  return new WideepError(
    'ERR_PROTOCOL',
    `${where}: rank ${src} sends ${recvCounts[src]} rows with its cached handle, but this rank's handle expects ${cached.recvCounts[src]}; ` +
      'all ranks must pass handles of the same dispatch',
  );
}

function sectionsProblem(where: string, meta: Uint8Array[][], recvCounts: Int32Array, shape: Shape, routed: boolean): WideepError | undefined {
  return firstProblem(meta, (sections, src) => {
    const n = recvCounts[src]!;
    checkSections(where, src, sections, [4 * n, 4 * n * shape.scalesPerRow, ...(routed ? [4 * n * shape.k, 4 * n * shape.k] : [])]);
  });
}

/** Rows per local expert, each row counted once however often it lists the expert. */
export function rowsPerExpert(idx: Int32Array, N: number, k: number, L: number): number[] {
  const counts = new Array<number>(L).fill(0);
  for (let r = 0; r < N; r++) {
    for (let j = 0; j < k; j++) {
      const l = idx[r * k + j]!;
      if (l >= 0 && !isRepeat(idx, r, k, j, l)) counts[l]!++;
    }
  }
  return counts;
}
