/**
 * Where the experts live on one EP rank: its physical slots and their
 * weights, and (with EPLB) the logical → physical choice at dispatch and the
 * load recorder.
 */
import { EplbRecorder } from '../planning/eplb-recorder.js';
import { ExpertLocationMap, seededRandom, type ReplicaChoice } from '../planning/expert-location.js';
import { cloneExpert, type ExpertWeights, type MoeLayerWeights } from './weights.js';

/** The layer index in the expert location tables: the pipeline runs one MoE layer. */
export const LAYER = 0;

/** The physical expert slots one rank holds, with the weights of the logical expert each one holds. */
export class RankExperts {
  readonly rank: number;
  /** Physical slots per rank. */
  readonly perRank: number;
  #slots: ExpertWeights[];

  private constructor(rank: number, perRank: number, slots: ExpertWeights[]) {
    this.rank = rank;
    this.perRank = perRank;
    this.#slots = slots;
  }

  /** Loads every slot of `rank` with a copy of its logical expert's weights, as a checkpoint loader would. */
  static load(weights: MoeLayerWeights, map: ExpertLocationMap, rank: number): RankExperts {
    const experts = map.expertsOfRank(LAYER, rank).map((e) => cloneExpert(weights.experts[e]!));
    return new RankExperts(rank, map.physicalPerRank, experts);
  }

  /** First global physical slot of this rank. */
  get firstSlot(): number {
    return this.rank * this.perRank;
  }

  /** Weights of local slot `l` (global slot `firstSlot + l`). */
  local(l: number): ExpertWeights {
    return this.#slots[l]!;
  }

  /** Weights of global slot `p`, which must be one of this rank's. */
  slot(p: number): ExpertWeights {
    return this.#slots[p - this.firstSlot]!;
  }

  /** Every local slot, in order (a copy of the list). */
  slots(): ExpertWeights[] {
    return [...this.#slots];
  }

  /** Replaces every slot at once (after a rebalance). */
  replace(slots: ExpertWeights[]): void {
    this.#slots = slots;
  }
}

export type ReplicaChoiceKind = 'static' | 'dynamic';

/** One rank's EPLB state: the location map, the replica choice and the load recorder. */
export class RankEplb {
  readonly map: ExpertLocationMap;
  readonly recorder: EplbRecorder;
  readonly choice: ReplicaChoice;

  constructor(map: ExpertLocationMap, rank: number, kind: ReplicaChoiceKind, seed: number, windowSize: number) {
    this.map = map;
    this.recorder = new EplbRecorder({ numLayers: 1, numPhysical: map.numPhysical, windowSize });
    this.choice = kind === 'static' ? { kind: 'static', rank } : { kind: 'dynamic', random: seededRandom(seed * 7919 + rank) };
  }

  /** Maps the gate's logical ids to physical slots and records them as this pass's load. */
  toPhysical(logical: Int32Array): Int32Array {
    const physical = this.map.choosePhysical(LAYER, logical, this.choice);
    this.recorder.recordTopk(LAYER, physical);
    return physical;
  }
}
