/**
 * The routed experts without token moves (SGLang's --moe-a2a-backend none):
 * every rank all-gathers the group's tokens (padded to a fixed count per
 * rank, as NCCL's all-gather needs equal blocks), computes its own experts'
 * share of every token, and a reduce-scatter sums the shares and hands each
 * rank its own tokens back. It is the baseline the EP dispatch/combine path
 * must beat, and needs NCCL between the ranks.
 */
import type { Communicator } from '../comm/communicator.js';
import type { Stream } from '../cuda/stream.js';
import { WideepError, assertInteger } from '../errors.js';
import { deviceTensor, expectDType, expectShape, streamFor } from '../tensor/checks.js';
import { Tensor } from '../tensor/tensor.js';
import { expertsForward, type ExpertWeightsOnDevice } from './experts.js';
import { permuteToExperts, slotCapacity, unpermuteFromExperts } from './permute.js';
import { quantizeRowsFp8 } from './quantize.js';
import { route, type RoutingConfig } from './router.js';
import { firstRows, padRows } from './row-padding.js';

export interface GatheredMoeOptions {
  /** bf16 [T, H], T <= maxTokensPerRank. */
  x: Tensor;
  comm: Communicator;
  /** The rows every rank contributes to the all-gather (the same on every rank). */
  maxTokensPerRank: number;
  config: RoutingConfig;
  /** bf16 [E, H] and f32 [E]. */
  gate: Tensor;
  gateBias?: Tensor;
  /** This rank's experts: rank r holds experts r*L ... r*L + L - 1 of E = L * comm.size (bf16, or fp8 with block scales: the tokens are cast to fp8 for them). */
  experts: ExpertWeightsOnDevice;
  stream?: Stream;
}

/** The routed experts' output, bf16 [T, H]. A collective over `comm`. */
export async function gatheredMoe(o: GatheredMoeOptions): Promise<Tensor> {
  const where = 'gatheredMoe';
  const x = deviceTensor(where, 'x', o.x);
  const device = x.deviceIndex;
  expectDType(where, 'x', x, ['bf16']);
  const [T, H] = x.shape as [number, number];
  const R = o.comm.size;
  const Tmax = assertInteger(`${where}: maxTokensPerRank`, o.maxTokensPerRank, 1);
  if (T > Tmax) throw new WideepError('ERR_INVALID_ARG', `${where}: x has ${T} tokens, more than maxTokensPerRank = ${Tmax}`);
  const E = o.config.numRoutedExperts;
  if (E % R !== 0) throw new WideepError('ERR_INVALID_ARG', `${where}: ${E} experts do not divide over ${R} ranks`);
  const L = E / R;
  expectShape(where, 'experts.w13', deviceTensor(where, 'experts.w13', o.experts.w13, device), ['L', '2I', 'H'], [L, null, H]);
  const stream = streamFor(where, device, o.stream);
  const at = `cuda:${device}` as const;
  const owned: Tensor[] = [];
  const empty = (shape: number[], dtype: Tensor['dtype']) => (owned.push(Tensor.empty(shape, dtype, { device: at, stream })), owned.at(-1)!);
  try {
    // 1. Everyone's tokens, padded: rank r's rows at [r * Tmax, r * Tmax + T_r).
    const mine = padRows(x, Tmax, stream);
    owned.push(mine);
    const all = o.comm.allGather(mine, empty([R * Tmax, H], 'bf16'), { stream });
    // 2. The gate on every token; ids of other ranks' experts become -1.
    const table = await Tensor.from(Int32Array.from({ length: E }, (_, e) => (Math.floor(e / L) === o.comm.rank ? e % L : -1))).to(at, { stream });
    owned.push(table);
    // The router counts per id it can emit (E); local ids land in the first L.
    const counts = empty([E], 'i32').fillBytes(0, stream);
    const r = route({ x: all, gateWeight: o.gate, bias: o.gateBias, config: o.config, replicas: { kind: 'static', table }, counts, stream });
    owned.push(r.logits, r.topkIdx, r.topkWeights);
    // 3. This rank's experts on their rows (the slot size from the counts: one host wait).
    const cap = slotCapacity(Math.max(...(await counts.cpu({ stream })).toNumbers().slice(0, L)));
    const q = o.experts.w13.dtype === 'fp8e4m3' ? quantizeRowsFp8({ x: all, stream }) : undefined;
    if (q) owned.push(q.out, q.scales);
    const g = permuteToExperts({ x: q?.out ?? all, xScales: q?.scales, topkIdx: r.topkIdx, numExperts: L, cap, stream });
    owned.push(g.x, g.counts, g.slotOf, g.overflow, ...(g.scales ? [g.scales] : []));
    const y = expertsForward({ x: g.x, xScales: g.scales, xScalesLayout: 'blocks', counts: g.counts, weights: o.experts, stream });
    owned.push(y);
    const share = unpermuteFromExperts({ y, slotOf: g.slotOf, topkIdx: r.topkIdx, weights: r.topkWeights, stream });
    owned.push(share);
    // 4. Sum the shares; each rank keeps its own block, then its T rows.
    const summed = o.comm.reduceScatter(share, empty([Tmax, H], 'bf16'), { stream });
    return firstRows(summed, T, stream);
  } finally {
    for (const t of owned) t.close(stream);
  }
}
