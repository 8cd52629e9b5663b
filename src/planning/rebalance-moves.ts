/**
 * The weight moves that turn one expert placement into another (after EPLB).
 *
 * For each slot whose expert changes, in slot order on each rank:
 * 1. `local`: copy from a slot on the same GPU that held the expert before;
 * 2. `reuse`: otherwise copy from an earlier slot on this GPU that is already
 *    receiving the same expert in this rebalance;
 * 3. `recv`: otherwise receive it from a rank that held it before, preferring
 *    one on the same node, spreading receivers over the candidates.
 * Every source is read as it was *before* the rebalance, so an executor stages
 * `local` sources (and every `recv`) into temporary buffers, runs all
 * transfers as one batch of NCCL send/recv, then writes the slots and calls
 * `ExpertLocationMap.update()`.
 */
import { WideepError } from '../errors.js';
import type { ExpertLocationMap } from './expert-location.js';

export type RebalanceMoveKind = 'local' | 'reuse' | 'recv';

export interface RebalanceMove {
  kind: RebalanceMoveKind;
  layer: number;
  /** The rank whose slot changes. */
  rank: number;
  /** The physical slot (global index in the layer) that gets the new expert. */
  slot: number;
  /** The logical expert moving in. */
  logical: number;
  /** Where the weights come from: `rank` for `local` and `reuse`, another rank for `recv`. */
  srcRank: number;
  /** The source slot: an old slot for `local`/`recv`, the earlier new slot for `reuse`. */
  srcSlot: number;
}

export interface RebalancePlan {
  moves: RebalanceMove[];
  counts: Record<RebalanceMoveKind | 'unchanged', number>;
}

function sameShape(a: ExpertLocationMap, b: ExpertLocationMap): boolean {
  return a.numLayers === b.numLayers && a.numLogical === b.numLogical && a.numPhysical === b.numPhysical && a.numRanks === b.numRanks;
}

/** Moves that turn placement `from` into placement `to` (same shape). */
export function planRebalanceMoves(from: ExpertLocationMap, to: ExpertLocationMap): RebalancePlan {
  if (!sameShape(from, to)) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `planRebalanceMoves: placements differ in shape ([${from.numLayers}, ${from.numLogical}, ${from.numPhysical}, ${from.numRanks}] vs ` +
        `[${to.numLayers}, ${to.numLogical}, ${to.numPhysical}, ${to.numRanks}])`,
    );
  }
  const per = from.physicalPerRank;
  const moves: RebalanceMove[] = [];
  const counts = { unchanged: 0, local: 0, reuse: 0, recv: 0 };
  for (let layer = 0; layer < from.numLayers; layer++) {
    const before = from.layerPhy2Log(layer);
    const after = to.layerPhy2Log(layer);
    for (let rank = 0; rank < from.numRanks; rank++) {
      const first = rank * per;
      const arriving = new Map<number, number>(); // logical -> first new slot on this rank receiving it
      for (let slot = first; slot < first + per; slot++) {
        const logical = after[slot]!;
        if (before[slot] === logical) {
          counts.unchanged++;
          continue;
        }
        const base = { layer, rank, slot, logical };
        const localSrc = before.indexOf(logical, first);
        if (localSrc >= 0 && localSrc < first + per) {
          moves.push({ ...base, kind: 'local', srcRank: rank, srcSlot: localSrc });
          counts.local++;
          continue;
        }
        const earlier = arriving.get(logical);
        if (earlier !== undefined) {
          moves.push({ ...base, kind: 'reuse', srcRank: rank, srcSlot: earlier });
          counts.reuse++;
          continue;
        }
        const holders = from.replicas(layer, logical).map((p) => from.rankOfPhysical(p));
        const candidates = [...new Set(holders)].sort((a, b) => a - b);
        const sameNode = candidates.filter((r) => from.nodeOfRank(r) === from.nodeOfRank(rank));
        const pool = sameNode.length > 0 ? sameNode : candidates;
        const srcRank = pool[rank % pool.length]!;
        const srcSlot = before.indexOf(logical, srcRank * per);
        moves.push({ ...base, kind: 'recv', srcRank, srcSlot });
        arriving.set(logical, slot);
        counts.recv++;
      }
    }
  }
  return { moves, counts };
}

/**
 * Checks that `plan` carries layer `layer` from `from` to `to`: one move per
 * slot whose expert changes, bringing the new expert from a slot that holds
 * it (before the rebalance for `local` and `recv`, an earlier slot receiving
 * it for `reuse`), on the ranks the kinds say, and no move elsewhere. A caller
 * handing in a plan made once for many layers (DeviceEplb) gets a typed
 * error, not wrong weights, when it was made for other maps.
 */
export function assertPlanForLayer(plan: RebalancePlan, from: ExpertLocationMap, to: ExpertLocationMap, layer: number): void {
  const bad = (msg: string) => new WideepError('ERR_INVALID_ARG', `rebalance plan: layer ${layer}: ${msg} (plan it with planRebalanceMoves(current map, next map))`);
  if (typeof plan !== 'object' || plan === null || !Array.isArray(plan.moves)) throw bad('expected { moves, counts }');
  const before = from.layerPhy2Log(layer);
  const after = to.layerPhy2Log(layer);
  const rankOf = (slot: number) => from.rankOfPhysical(slot);
  const moves = plan.moves.filter((m) => m.layer === layer);
  const received = new Map(moves.filter((m) => m.kind === 'recv').map((m) => [m.slot, m.logical]));
  const moved = new Set<number>();
  for (const m of moves) {
    const into = `the move into slot ${m.slot}`;
    if (before[m.slot] === m.logical) throw bad(`${into} brings expert ${m.logical}, which the slot holds already`);
    if (after[m.slot] !== m.logical) throw bad(`${into} brings expert ${m.logical}, the next map puts ${after[m.slot]} there`);
    if (moved.has(m.slot)) throw bad(`two moves into slot ${m.slot}`);
    if (rankOf(m.slot) !== m.rank || rankOf(m.srcSlot) !== m.srcRank) throw bad(`${into}: its ranks (${m.rank} from ${m.srcRank}) do not own its slots`);
    const sameRank = m.srcRank === m.rank;
    const source =
      m.kind === 'reuse'
        ? sameRank && m.srcSlot < m.slot && received.get(m.srcSlot) === m.logical
        : (m.kind === 'local') === sameRank && before[m.srcSlot] === m.logical && (m.kind === 'local' || m.kind === 'recv');
    if (!source) throw bad(`${into}: a ${m.kind} move from slot ${m.srcSlot} (rank ${m.srcRank}) does not find expert ${m.logical} there`);
    moved.add(m.slot);
  }
  for (let slot = 0; slot < before.length; slot++) {
    if (before[slot] !== after[slot] && !moved.has(slot)) throw bad(`slot ${slot} changes from expert ${before[slot]} to ${after[slot]}, but no move fills it`);
  }
}

/** What one rank does in a rebalance: its copies, what it sends, what it receives. */
export function rebalanceOpsForRank(
  plan: RebalancePlan,
  rank: number,
): { copies: RebalanceMove[]; sends: RebalanceMove[]; recvs: RebalanceMove[] } {
  return {
    copies: plan.moves.filter((m) => m.rank === rank && m.kind !== 'recv'),
    sends: plan.moves.filter((m) => m.kind === 'recv' && m.srcRank === rank),
    recvs: plan.moves.filter((m) => m.kind === 'recv' && m.rank === rank),
  };
}
