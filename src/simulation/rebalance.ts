/**
 * An EPLB rebalance, as every rank runs it (collective over a control
 * transport): all-reduce the recorded loads, place the physical experts with
 * DeepSeek's EPLB, move the expert weights that change slots in one
 * all-to-all, then update the location map in place.
 */
import type { CpuTransport } from '../ep/transport.js';
import { WideepError } from '../errors.js';
import { balancedness, gpuLoadsOf, slotLoadsFromLogical } from '../planning/eplb-recorder.js';
import { rebalanceExperts } from '../planning/eplb.js';
import { ExpertLocationMap } from '../planning/expert-location.js';
import { planRebalanceMoves, rebalanceOpsForRank, type RebalancePlan } from '../planning/rebalance-moves.js';
import { LAYER, type RankEplb, type RankExperts } from './placement.js';
import { cloneExpert, expertWeights, type ExpertWeights } from './weights.js';

/** Elementwise sum of `values` over all ranks (every rank gets the same result). */
export async function allReduceSum(transport: CpuTransport, values: Float64Array, timeoutMs?: number): Promise<Float64Array> {
  const mine = new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const all = await transport.allGather(mine, { timeoutMs });
  const out = new Float64Array(values.length);
  all.forEach((bytes, src) => {
    if (bytes.byteLength !== values.byteLength) {
      throw new WideepError('ERR_PROTOCOL', `allReduceSum: rank ${src} sent ${bytes.byteLength} bytes, expected ${values.byteLength}`);
    }
    const v = new Float64Array(bytes.slice().buffer);
    for (let i = 0; i < v.length; i++) out[i]! += v[i]!;
  });
  return out;
}

/**
 * Executes this rank's part of `plan` (collective): sends the old weights of
 * the slots that other ranks receive, then fills its changed slots — local
 * copies from its old slots, received weights, and reuses of an earlier slot
 * that has just received the same expert. Returns the new slot list.
 */
export async function moveExpertWeights(transport: CpuTransport, plan: RebalancePlan, experts: RankExperts, timeoutMs?: number): Promise<ExpertWeights[]> {
  const { rank } = experts;
  const first = experts.firstSlot;
  const sample = experts.local(0);
  const n = sample.packed.length;
  const { copies, sends, recvs } = rebalanceOpsForRank(plan, rank);
  const outgoing = Array.from({ length: transport.worldSize }, (_, dst) => {
    const list = sends.filter((m) => m.rank === dst);
    const buf = new Float32Array(list.length * n);
    list.forEach((m, i) => buf.set(experts.slot(m.srcSlot).packed, i * n));
    return new Uint8Array(buf.buffer);
  });
  const received = await transport.allToAll(outgoing, { timeoutMs });

  const old = experts.slots();
  const next = old.slice();
  for (const m of copies) if (m.kind === 'local') next[m.slot - first] = cloneExpert(old[m.srcSlot - first]!);
  const cursor = new Array<number>(transport.worldSize).fill(0);
  for (const m of recvs) {
    const bytes = received[m.srcRank]!;
    const expected = recvs.filter((r) => r.srcRank === m.srcRank).length * n * 4;
    if (bytes.byteLength !== expected) {
      throw new WideepError('ERR_PROTOCOL', `rebalance: rank ${m.srcRank} sent ${bytes.byteLength} bytes of expert weights, expected ${expected}`);
    }
    const at = cursor[m.srcRank]!++ * n * 4;
    next[m.slot - first] = expertWeights(sample.hidden, sample.intermediate, new Float32Array(bytes.slice(at, at + n * 4).buffer));
  }
  for (const m of copies) if (m.kind === 'reuse') next[m.slot - first] = cloneExpert(next[m.srcSlot - first]!);
  return next;
}

export interface RebalanceOutcome {
  policy: 'hierarchical' | 'global';
  /** Balancedness (mean / max GPU load) of the recorded window under the old placement. */
  balancednessBefore: number;
  /** The same window's loads spread over the new placement (each expert's load split evenly over its replicas). */
  balancednessPredicted: number;
  /** The window's load per logical expert, summed over ranks. */
  logicalLoad: number[];
  moves: RebalancePlan['counts'];
  /** The new placement's `phy2log` and `logcnt`. */
  phy2log: number[];
  logcnt: number[];
}

/** Collective: rebalances this rank's map and expert slots from the loads recorded on all ranks. */
export async function rebalanceRank(
  transport: CpuTransport,
  eplb: RankEplb,
  experts: RankExperts,
  params: { numGroups: number; ranksPerNode: number; timeoutMs?: number },
): Promise<RebalanceOutcome> {
  const { map, recorder } = eplb;
  const R = map.numRanks;
  const physical = await allReduceSum(transport, recorder.physicalLoad(), params.timeoutMs);
  const logical = Array.from(await allReduceSum(transport, Float64Array.from(recorder.logicalLoad(map)[LAYER]!), params.timeoutMs));
  const result = rebalanceExperts([logical], {
    numReplicas: map.numPhysical,
    numGroups: params.numGroups,
    numNodes: R / params.ranksPerNode,
    numGpus: R,
  });
  const next = ExpertLocationMap.fromEplb(result, { numRanks: R, ranksPerNode: params.ranksPerNode });
  const plan = planRebalanceMoves(map, next);
  experts.replace(await moveExpertWeights(transport, plan, experts, params.timeoutMs));
  map.update(next);
  recorder.reset();
  return {
    policy: result.policy,
    balancednessBefore: balancedness(gpuLoadsOf(physical, R)),
    balancednessPredicted: balancedness(gpuLoadsOf(slotLoadsFromLogical(logical, result.phy2log[LAYER]!, result.logcnt[LAYER]!), R)),
    logicalLoad: logical,
    moves: plan.counts,
    phy2log: result.phy2log[LAYER]!,
    logcnt: result.logcnt[LAYER]!,
  };
}
