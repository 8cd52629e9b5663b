/**
 * Low-latency combine on the cpu: each owner returns the slots of every local
 * expert to their source ranks. A source reduces each token the way the cuda
 * backend does: per owner rank (ascending), the weighted rows of that rank's
 * experts in top-k order, rounded to one bf16 partial; then the partials, in float.
 */
import { WideepError } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import type { BackendLowLatencyCombineArgs, BackendLowLatencyCombineResult } from '../backend.js';
import type { EpCall } from '../calls.js';
import { expertOwner, isRepeat, readTopkIdx } from '../dispatch-layout.js';
import type { CpuTransport } from '../transport.js';
import type { EpConfig } from '../types.js';
import { addScaledBf16, roundToBf16 } from './kernels.js';
import { resolvedHook, type CpuLowLatencyRouting } from './ll-dispatch.js';
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
  int32View,
  rowsFor,
  uint16View,
} from './wire.js';

// Meta header: [call words, H]; then, per local expert, where this source's slots begin and how many there are.
const AGREED = [[CALL_WORDS, 'the row width H of y']] as const;

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
  call: EpCall,
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
    const { bytes, sections } = allocMessage([4 * (CALL_WORDS + 1), 4 * L, 4 * L]);
    int32View(sections[0]!).set([...callWords('lowLatencyCombine', call), H]);
    const begins = int32View(sections[1]!);
    const counts = int32View(sections[2]!);
    for (let j = 0; j < L; j++) [begins[j], counts[j]] = range(j, src);
    return bytes;
  });
  const collective = new Collective(where, transport, config.timeoutMs, meta, call);
  const yBytes = bytesOf(args.y.data);
  const rowsTo = (src: number) => {
    const rows: number[] = [];
    for (let j = 0; j < L; j++) {
      const [begin, count] = range(j, src);
      for (let i = 0; i < count; i++) rows.push(j * slots + begin + i);
    }
    return rows;
  };
  const bulk = (shared: boolean) => Array.from({ length: R }, (_, src) => (shared ? yBytes : rowsFor(yBytes, rowsTo(src), 2 * H, false)));
  return finishCombine(collective, config, args, topkIdx, H, bulk, call);
}

async function finishCombine(
  collective: Collective,
  config: EpConfig,
  args: BackendLowLatencyCombineArgs<CpuLowLatencyRouting>,
  topkIdx: Int32Array,
  H: number,
  bulkFor: (shared: boolean) => Uint8Array[],
  call: EpCall,
): Promise<BackendLowLatencyCombineResult> {
  const where = 'lowLatencyCombine';
  const { routing } = args;
  const { numLocalExperts: L, numExperts: E } = config;
  const slots = args.y.shape[1]!;
  const meta = await collective.meta();
  const headers = meta.map((sections) => int32View(sections[0]!));
  checkCall(where, 'lowLatencyCombine', call, headers);
  checkAgreement(where, headers, AGREED);
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
    const partial = new Float32Array(H);
    const partialBits = new Uint16Array(H);
    for (let t = 0; t < T; t++) {
      acc.fill(0);
      // One bf16 partial per owner rank, ascending (what the cuda backend sends), summed in float.
      for (let owner = 0; owner < config.worldSize; owner++) {
        let used = false;
        partial.fill(0);
        for (let j = 0; j < k; j++) {
          const e = topkIdx[t * k + j]!;
          if (e < 0 || expertOwner(e, L) !== owner) continue;
          const row = base[owner]![e - owner * L]! + place[t * routing.topk + dispatchColumn(routing, t, e)]!;
          addScaledBf16(partial, 0, weights[t * k + j]!, received[owner]!, row * H, H);
          used = true;
        }
        if (!used) continue;
        roundToBf16(partial, partialBits);
        addScaledBf16(acc, 0, 1, partialBits, 0, H);
      }
      roundToBf16(acc, out, t * H);
    }
    const result: BackendLowLatencyCombineResult = { combinedX };
    if (args.returnRecvHook) result.hook = resolvedHook;
    return result;
  });
}
