/**
 * Moves one rank's expert weights on the device for a rebalance: the slots
 * whose expert changes get it from an old slot on this GPU (`local`), from an
 * earlier slot that has just received it (`reuse`), or from another rank over
 * NCCL send/recv (`recv`). Every source is read as it was before the
 * rebalance, so local sources and received weights are staged first, then
 * written, then the reuses copied.
 */
import type { Communicator, P2POp } from '../comm/communicator.js';
import { copyDeviceToDevice } from '../cuda/memory.js';
import type { Stream } from '../cuda/stream.js';
import { WideepError } from '../errors.js';
import type { RebalancePlan } from '../planning/rebalance-moves.js';
import { rebalanceOpsForRank } from '../planning/rebalance-moves.js';
import { Tensor } from '../tensor/tensor.js';
import type { ExpertWeightsOnDevice } from './experts.js';

export interface WeightMoveOptions {
  plan: RebalancePlan;
  /** The MoE layer's index in the plan. */
  layer: number;
  rank: number;
  /** This rank's physical slots, in order: [slotsPerRank, ...] each. */
  weights: ExpertWeightsOnDevice;
  /** Carries the `recv` moves; needed only when the plan has some. */
  comm?: Communicator;
  stream: Stream;
}

/** Enqueues this rank's part of `plan` for one layer on `stream` (a collective when the plan moves weights between ranks). */
export function moveExpertWeights(o: WeightMoveOptions): void {
  const ops = rebalanceOpsForRank({ ...o.plan, moves: o.plan.moves.filter((m) => m.layer === o.layer) }, o.rank);
  const crossRank = o.plan.moves.some((m) => m.layer === o.layer && m.kind === 'recv');
  // The plan is the same on every rank, so every rank refuses together, before any copy.
  if (crossRank && !o.comm) {
    throw new WideepError(
      'ERR_UNSUPPORTED',
      `rebalance: layer ${o.layer} moves expert weights between ranks, which needs an NCCL communicator (comm) over the EP group`,
    );
  }
  const w = o.weights;
  // fp8 experts move their block scales with them.
  const parts = [w.w13, w.w2, w.w13Scales, w.w2Scales].filter((t): t is Tensor => t !== undefined);
  const slotsPerRank = w.w13.shape[0]!;
  const first = o.rank * slotsPerRank;
  const slotView = (t: Tensor, slot: number) => t.narrow(slot - first, 1);
  const { stream } = o;
  // Same-shaped device views: a stream-ordered copy, no host wait.
  const copy = (dst: Tensor, src: Tensor) => copyDeviceToDevice(dst.ptr, src.ptr, dst.byteLength, stream);

  // 1. Stage: old weights of local sources, and buffers for what arrives.
  const staged = new Map<number, Tensor[]>(); // destination slot -> one buffer per part
  const stage = (slot: number) => {
    const bufs = parts.map((p) => Tensor.empty(p.shape.slice(1), p.dtype, { device: `cuda:${p.deviceIndex}`, stream }));
    staged.set(slot, bufs);
    return bufs;
  };
  for (const m of ops.copies) {
    if (m.kind !== 'local') continue;
    stage(m.slot).forEach((b, i) => copy(b, slotView(parts[i]!, m.srcSlot)));
  }
  if (crossRank) {
    const p2p: P2POp[] = [];
    for (const m of ops.sends) parts.forEach((p) => p2p.push({ kind: 'send', peer: m.rank, tensor: slotView(p, m.srcSlot) }));
    for (const m of ops.recvs) stage(m.slot).forEach((b) => p2p.push({ kind: 'recv', peer: m.srcRank, tensor: b }));
    // One NCCL group: weights and scales move as bytes.
    o.comm!.sendRecv(p2p, { stream });
  }
  // 2. Write the staged weights into their slots; 3. the reuses, from slots written in 2.
  for (const [slot, bufs] of staged) {
    bufs.forEach((b, i) => {
      copy(slotView(parts[i]!, slot), b);
      b.close(stream);
    });
  }
  for (const m of ops.copies) {
    if (m.kind === 'reuse') parts.forEach((p) => copy(slotView(p, m.slot), slotView(p, m.srcSlot)));
  }
}
