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

function range(start: number, count: number, stride = 1): number[] {
  return Array.from({ length: count }, (_, i) => start + i * stride);
}

/** The global rank of the first member of TP group (replica, ppRank). */
function tpBase(s: GroupSizes, replica: number, ppRank: number): number {
  return replica * s.tp * s.pp + ppRank * s.tp;
}

/** The groups that contain `rank`, one per kind. */
function groupsOf(s: GroupSizes, replica: number, ppRank: number, tpRank: number): Record<GroupKind, number[]> {
  const base = tpBase(s, replica, ppRank);
  const attnDpRank = Math.floor(tpRank / s.attnTpSize);
  const moeTpRank = tpRank % s.moeTpSize;
  const moeEpRank = Math.floor(tpRank / s.moeTpSize) % s.moeEpSize;
  const moeDpRank = Math.floor(tpRank / (s.moeTpSize * s.moeEpSize));
  const moeBlock = base + moeDpRank * s.moeEpSize * s.moeTpSize;
  return {
    tp: range(base, s.tp),
    pp: range(replica * s.tp * s.pp + tpRank, s.pp, s.tp),
    attnTp: range(base + attnDpRank * s.attnTpSize, s.attnTpSize),
    moeEp: range(moeBlock + moeTpRank, s.moeEpSize, s.moeTpSize),
    moeTp: range(moeBlock + moeEpRank * s.moeTpSize, s.moeTpSize),
    moeDp: range(base + moeEpRank * s.moeTpSize + moeTpRank, s.moeDpSize, s.moeEpSize * s.moeTpSize),
  };
}

/** Where `rank` sits in every group. `rank` must be in `[0, worldSize)`. */
export function rankInfo(s: GroupSizes, rank: number): RankInfo {
  const perReplica = s.tp * s.pp;
  const dpReplica = Math.floor(rank / perReplica);
  const ppRank = Math.floor((rank % perReplica) / s.tp);
  const tpRank = rank % s.tp;
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
    groups: groupsOf(s, dpReplica, ppRank, tpRank),
  };
}

/** Every group of every kind, each listed once. */
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
    const info = rankInfo(s, rank);
    for (const kind of Object.keys(out) as GroupKind[]) {
      const g = info.groups[kind];
      // A group is identified by its first member.
      if (!seen[kind].has(g[0]!)) {
        seen[kind].add(g[0]!);
        out[kind].push(g);
      }
    }
  }
  return out;
}
