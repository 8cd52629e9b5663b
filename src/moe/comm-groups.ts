/**
 * The plan's process groups on NCCL communicators: one over the world, then
 * every group of a kind at once by ncclCommSplit (a collective over the
 * world: color = the index of the rank's group of that kind, key = its rank,
 * so members keep the plan's order). Kinds whose groups all have one member
 * get no communicator: there is nothing to talk to.
 */
import { Communicator } from '../comm/communicator.js';
import { WideepError } from '../errors.js';
import type { ParallelConfig } from '../planning/config.js';
import type { GroupKind } from '../planning/groups.js';
import type { ProcessGroup } from '../runtime/types.js';

/** The kinds a MoE layer's runtime talks over: attention-TP (dpScatter/dpGather), MoE-EP (weight moves, the none backend), MoE-TP. */
export const LAYER_GROUP_KINDS: readonly GroupKind[] = ['attnTp', 'moeEp', 'moeTp'];

/** For each kind, the split color of `rank`: the index of its group among the plan's groups of that kind; -1 where groups have one member. */
export function splitColors(config: ParallelConfig, rank: number, kinds: readonly GroupKind[] = LAYER_GROUP_KINDS): Map<GroupKind, number> {
  const groups = config.processGroups();
  const out = new Map<GroupKind, number>();
  for (const kind of kinds) {
    const list = groups[kind];
    if (!list) throw new WideepError('ERR_INVALID_ARG', `process groups: no kind ${String(kind)}`);
    out.set(kind, list.every((g) => g.length === 1) ? -1 : list.findIndex((g) => g.includes(rank)));
  }
  return out;
}

export class CommGroups {
  readonly world: Communicator;
  readonly #byKind: Map<GroupKind, Communicator>;

  private constructor(world: Communicator, byKind: Map<GroupKind, Communicator>) {
    this.world = world;
    this.#byKind = byKind;
  }

  /** A collective over `group`: every rank calls it with the same config. */
  static async create(group: ProcessGroup, config: ParallelConfig, kinds: readonly GroupKind[] = LAYER_GROUP_KINDS): Promise<CommGroups> {
    if (config.worldSize !== group.worldSize) {
      throw new WideepError('ERR_INVALID_ARG', `CommGroups.create: the plan needs ${config.worldSize} ranks, the process group has ${group.worldSize}`);
    }
    const colors = splitColors(config, group.rank, kinds);
    const world = await Communicator.create(group, { name: 'wideep-world' });
    const byKind = new Map<GroupKind, Communicator>();
    try {
      // In the same order on every rank: each split is a collective over the world.
      for (const [kind, color] of colors) {
        if (color < 0) continue;
        const c = await world.split(color, group.rank);
        if (c) byKind.set(kind, c);
      }
    } catch (e) {
      for (const c of byKind.values()) c.close();
      world.close();
      throw e;
    }
    return new CommGroups(world, byKind);
  }

  /** The communicator of this rank's group of `kind`, or undefined where such groups have one member. */
  get(kind: GroupKind): Communicator | undefined {
    return this.#byKind.get(kind);
  }

  close(): void {
    for (const c of this.#byKind.values()) c.close();
    this.#byKind.clear();
    this.world.close();
  }
}
