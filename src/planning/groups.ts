/**
 * Process-group membership: which global ranks form each TP, PP, attention-TP,
 * MoE-EP, MoE-TP and MoE-DP group, and where one rank sits in each.
 *
 * Rank layout (SGLang's):
 *   rank    = replica × (tp × pp) + ppRank × tp + tpRank
 *   tpRank  = attnDpRank × attnTp + attnTpRank                 (attention view)
 *           = moeDpRank × (ep × moeTp) + epRank × moeTp + moeTpRank   (MoE view)
 *   node    = floor(rank / gpusPerNode)
 * `replica` only exceeds 0 for plain data parallelism without DP attention,
 * where SGLang launches `dp` independent TP groups.
 *
 * So attention-TP and MoE-TP groups are runs of consecutive ranks, and a MoE-EP
 * group takes every `moeTp`-th rank of its TP group.
 */

/** The sizes the layout depends on (all already validated). */
export interface GroupSizes {
  worldSize: number;
  gpusPerNode: number;
  tp: number;
  pp: number;
  /** Independent TP groups of plain DP (1 with DP attention). */
  dpReplicas: number;
  attnTpSize: number;
  moeEpSize: number;
  moeTpSize: number;
  moeDpSize: number;
}

export type GroupKind = 'tp' | 'pp' | 'attnTp' | 'moeEp' | 'moeTp' | 'moeDp';

/** Every group of each kind, as sorted lists of global ranks. */
export type ProcessGroups = Record<GroupKind, number[][]>;

export interface RankInfo {
  rank: number;
  node: number;
  localRank: number;
  dpReplica: number;
  ppRank: number;
  tpRank: number;
  attnDpRank: number;
  attnTpRank: number;
  moeDpRank: number;
  moeEpRank: number;
  moeTpRank: number;
  /** The groups this rank belongs to. */
  groups: Record<GroupKind, number[]>;
}

/** A group as an arithmetic run of ranks: `start, start + stride, …`, `count` of them. */
interface Span {
  start: number;
  count: number;
  stride: number;
}

function range({ start, count, stride }: Span): number[] {
  return Array.from({ length: count }, (_, i) => start + i * stride);
}

/** The global rank of the first member of TP group (replica, ppRank). */
function tpBase(s: GroupSizes, replica: number, ppRank: number): number {
  return replica * s.tp * s.pp + ppRank * s.tp;
}

/** The groups that contain `rank`, one span per kind. */
function spansOf(s: GroupSizes, replica: number, ppRank: number, tpRank: number): Record<GroupKind, Span> {
  const base = tpBase(s, replica, ppRank);
  const attnDpRank = Math.floor(tpRank / s.attnTpSize);
  const moeTpRank = tpRank % s.moeTpSize;
  const moeEpRank = Math.floor(tpRank / s.moeTpSize) % s.moeEpSize;
  const moeDpRank = Math.floor(tpRank / (s.moeTpSize * s.moeEpSize));
  const moeBlock = base + moeDpRank * s.moeEpSize * s.moeTpSize;
  return {
    tp: { start: base, count: s.tp, stride: 1 },
    pp: { start: replica * s.tp * s.pp + tpRank, count: s.pp, stride: s.tp },
    attnTp: { start: base + attnDpRank * s.attnTpSize, count: s.attnTpSize, stride: 1 },
    moeEp: { start: moeBlock + moeTpRank, count: s.moeEpSize, stride: s.moeTpSize },
    moeTp: { start: moeBlock + moeEpRank * s.moeTpSize, count: s.moeTpSize, stride: 1 },
    moeDp: { start: base + moeEpRank * s.moeTpSize + moeTpRank, count: s.moeDpSize, stride: s.moeEpSize * s.moeTpSize },
  };
}

/** Where `rank` sits: its replica, pipeline stage and rank inside its TP group. */
function position(s: GroupSizes, rank: number): { dpReplica: number; ppRank: number; tpRank: number } {
  const perReplica = s.tp * s.pp;
  return { dpReplica: Math.floor(rank / perReplica), ppRank: Math.floor((rank % perReplica) / s.tp), tpRank: rank % s.tp };
}

/** Where `rank` sits in every group. `rank` must be in `[0, worldSize)`. */
export function rankInfo(s: GroupSizes, rank: number): RankInfo {
  const { dpReplica, ppRank, tpRank } = position(s, rank);
  const spans = spansOf(s, dpReplica, ppRank, tpRank);
  return {
    rank,
    node: Math.floor(rank / s.gpusPerNode),
    localRank: rank % s.gpusPerNode,
    dpReplica,
    ppRank,
    tpRank,
    attnDpRank: Math.floor(tpRank / s.attnTpSize),
    attnTpRank: tpRank % s.attnTpSize,
    moeDpRank: Math.floor(tpRank / (s.moeTpSize * s.moeEpSize)),
    moeEpRank: Math.floor(tpRank / s.moeTpSize) % s.moeEpSize,
    moeTpRank: tpRank % s.moeTpSize,
    groups: Object.fromEntries(Object.entries(spans).map(([kind, span]) => [kind, range(span)])) as Record<GroupKind, number[]>,
  };
}

/**
 * Every group of every kind, each listed once. Groups are identified by their
 * first member and listed only when first met, so the work is the size of the
 * output, not world size × group size.
 */
export function processGroups(s: GroupSizes): ProcessGroups {
  const out: ProcessGroups = { tp: [], pp: [], attnTp: [], moeEp: [], moeTp: [], moeDp: [] };
  const seen: Record<GroupKind, Set<number>> = {
    tp: new Set(),
    pp: new Set(),
    attnTp: new Set(),
    moeEp: new Set(),
    moeTp: new Set(),
    moeDp: new Set(),
  };
  for (let rank = 0; rank < s.worldSize; rank++) {
    const { dpReplica, ppRank, tpRank } = position(s, rank);
    const spans = spansOf(s, dpReplica, ppRank, tpRank);
    for (const kind of Object.keys(out) as GroupKind[]) {
      const span = spans[kind];
      if (!seen[kind].has(span.start)) {
        seen[kind].add(span.start);
        out[kind].push(range(span));
      }
    }
  }
  return out;
}
