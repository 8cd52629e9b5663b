/**
 * Normal-mode combine on the cpu: every rank returns each received row to its
 * source (the rows of one source are contiguous in x, so they travel as a
 * view), and the source sums the rows of each token over ranks in increasing
 * order in float32, adds the biases, and rounds once to bf16.
 */
import { WideepError } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import type { BackendCombineArgs, BackendCombineResult } from '../backend.js';
import type { EpCall } from '../calls.js';
import type { CpuTransport } from '../transport.js';
import type { EpConfig } from '../types.js';
import type { CpuRouting } from './dispatch.js';
import { addBf16, roundToBf16 } from './kernels.js';
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
  uint16View,
} from './wire.js';

// Meta header: [call words, H, hasTopkWeights, rows]; then the rows' topkWeights.
export const [WIDTH, HAS_WEIGHTS, ROWS] = [CALL_WORDS, CALL_WORDS + 1, CALL_WORDS + 2];
export const AGREED = [
  [WIDTH, 'the row width H of x'],
  [HAS_WEIGHTS, 'whether topkWeights is given', (v: number) => (v ? 'topkWeights' : 'none')],
] as const;

export function cpuCombine(transport: CpuTransport, config: EpConfig, args: BackendCombineArgs<CpuRouting>, call: EpCall): Promise<BackendCombineResult> {
  const { routing } = args;
  const H = args.x.shape[1]!;
  const k = routing.topk;
  const weights = args.topkWeights?.data as Float32Array | undefined;
  const firsts = new Int32Array(routing.recvCounts.length); // first row of each source rank
  for (let s = 1; s < firsts.length; s++) firsts[s] = firsts[s - 1]! + routing.recvCounts[s - 1]!;
  const meta = Array.from(routing.recvCounts, (n, s) => {
    const { bytes, sections } = allocMessage([4 * (CALL_WORDS + 3), weights ? 4 * n * k : 0]);
    int32View(sections[0]!).set([...callWords('combine', call), H, weights ? 1 : 0, n]);
    if (weights) float32View(sections[1]!).set(weights.subarray(firsts[s]! * k, (firsts[s]! + n) * k));
    return bytes;
  });
  const collective = new Collective('combine', transport, config.timeoutMs, meta, call);
  const xBytes = bytesOf(args.x.data);
  const rows = Array.from(routing.recvCounts, (n, s) => xBytes.subarray(firsts[s]! * 2 * H, (firsts[s]! + n) * 2 * H));
  return finishCombine(collective, args, H, rows, call);
}

async function finishCombine(collective: Collective, args: BackendCombineArgs<CpuRouting>, H: number, rows: Uint8Array[], call: EpCall): Promise<BackendCombineResult> {
  const where = 'combine';
  const { routing } = args;
  const { numTokens: T, topk: k, sendTokens } = routing;
  const R = sendTokens.length;
  const meta = await collective.meta();
  const headers = meta.map((sections) => int32View(sections[0]!));
  checkCall(where, 'combine', call, headers);
  checkAgreement(where, headers, AGREED);
  const problem = firstProblem(headers, (h, src) => {
    const sent = sendTokens[src]!.length;
    if (h[ROWS] !== sent) {
      throw new WideepError(
        'ERR_PROTOCOL',
        `${where}: rank ${src} returns ${h[ROWS]} rows, but this rank's dispatch sent it ${sent}; all ranks must pass handles of the same dispatch`,
      );
    }
    checkSections(where, src, meta[src]!, [h[HAS_WEIGHTS] ? 4 * sent * k : 0]);
  });

  return collective.bulk(problem ?? rows, (bulk) => {
    bulk.forEach((b, src) => {
      if (b.byteLength !== sendTokens[src]!.length * 2 * H) {
        throw new WideepError('ERR_PROTOCOL', `${where}: rank ${src} sent ${b.byteLength} bytes of rows, expected ${sendTokens[src]!.length * 2 * H}`);
      }
    });
    // rowOn[r * T + t]: the row of token t among those rank r returns, or -1.
    const rowOn = new Int32Array(R * T).fill(-1);
    sendTokens.forEach((tokens, r) => tokens.forEach((t, i) => (rowOn[r * T + t] = i)));
    const received = bulk.map(uint16View);
    const biases = args.bias.map((b) => b.data as Uint16Array);
    const combinedX = args.out ?? Tensor.empty([T, H], 'bf16');
    const out = combinedX.data as Uint16Array;
    const acc = new Float32Array(H);
    for (let t = 0; t < T; t++) {
      acc.fill(0);
      for (let r = 0; r < R; r++) {
        const i = rowOn[r * T + t]!;
        if (i >= 0) addBf16(acc, 0, received[r]!, i * H, H);
      }
      for (const b of biases) addBf16(acc, 0, b, t * H, H);
      roundToBf16(acc, out, t * H);
    }
    let combinedTopkWeights: Tensor | undefined;
    if (args.topkWeights) {
      combinedTopkWeights = Tensor.empty([T, k], 'f32');
      const accW = combinedTopkWeights.data as Float32Array;
      for (let r = 0; r < R; r++) {
        const w = float32View(meta[r]![1]!);
        sendTokens[r]!.forEach((t, i) => {
          for (let j = 0; j < k; j++) accW[t * k + j] += w[i * k + j]!;
        });
      }
    }
    return { combinedX, combinedTopkWeights };
  });
}
