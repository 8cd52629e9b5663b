/**
 * The expert sharding tables: logical expert → physical slots → EP rank, with
 * redundant replicas, and the choice of a replica at dispatch.
 *
 * Physical slots are rank-contiguous: rank r holds slots
 * `r*R/N … (r+1)*R/N - 1` of every MoE layer. The tables are flat typed
 * arrays that `update()` rewrites in place, so anything that captured them (a
 * CUDA graph, a kernel argument) stays valid across a rebalance.
 */
import { WideepError, assertInteger } from '../errors.js';
import type { EplbResult } from './eplb.js';
import { checkPlacementSize } from './limits.js';

export interface ExpertLocationShape {
  numLayers: number;
  numLogical: number;
  numPhysical: number;
  /** EP ranks (GPUs holding experts); must divide `numPhysical`. */
  numRanks: number;
  /** EP ranks per node, for same-node preferences; defaults to `numRanks` (one node). */
  ranksPerNode?: number;
}

/** How `choosePhysical` picks among replicas. */
export type ReplicaChoice =
  /** SGLang's `static` dispatch: a fixed per-rank table (same GPU, then same node, then spread). */
  | { kind: 'static'; rank: number }
  /** SGLang's `dynamic` dispatch: a uniformly random replica per token; `random` returns [0, 1). */
  | { kind: 'dynamic'; random?: () => number };

function invalid(message: string): WideepError {
  return new WideepError('ERR_INVALID_ARG', message);
}

/** A small deterministic generator (mulberry32) for reproducible dynamic choice in tests and simulations. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class ExpertLocationMap {
  readonly numLayers: number;
  readonly numLogical: number;
  readonly numPhysical: number;
  readonly numRanks: number;
  readonly ranksPerNode: number;
  /** Columns of `log2phy`: `numPhysical - numLogical + 1`, the most replicas one expert can have. */
  readonly maxReplicas: number;
  /** `[L * R]`: logical expert of each physical slot. */
  readonly phy2log: Int32Array;
  /** `[L * E * maxReplicas]`: physical slots of each logical expert, padded with -1. */
  readonly log2phy: Int32Array;
  /** `[L * E]`: replicas per logical expert. */
  readonly logcnt: Int32Array;

  private readonly staticTables = new Map<number, Int32Array>();

  private constructor(shape: Required<ExpertLocationShape>) {
    this.numLayers = shape.numLayers;
    this.numLogical = shape.numLogical;
    this.numPhysical = shape.numPhysical;
    this.numRanks = shape.numRanks;
    this.ranksPerNode = shape.ranksPerNode;
    this.maxReplicas = shape.numPhysical - shape.numLogical + 1;
    this.phy2log = new Int32Array(shape.numLayers * shape.numPhysical);
    this.log2phy = new Int32Array(shape.numLayers * shape.numLogical * this.maxReplicas).fill(-1);
    this.logcnt = new Int32Array(shape.numLayers * shape.numLogical);
  }

  private static checkShape(s: ExpertLocationShape): Required<ExpertLocationShape> {
    const ranksPerNode = s.ranksPerNode ?? s.numRanks;
    for (const [name, v] of Object.entries({ ...s, ranksPerNode })) assertInteger(`expert location ${name}`, v, 1);
    if (s.numPhysical < s.numLogical) {
      throw invalid(`expert location numPhysical ${s.numPhysical}: must be at least numLogical (${s.numLogical})`);
    }
    if (s.numPhysical % s.numRanks !== 0) {
      throw invalid(`expert location numPhysical ${s.numPhysical}: must be a multiple of numRanks (${s.numRanks})`);
    }
    checkPlacementSize(s, `expert location numPhysical ${s.numPhysical}`, 'use fewer physical slots, experts or layers');
    return { ...s, ranksPerNode };
  }

  /**
   * SGLang's initial placement: slot p holds logical expert `p % E`, so the
   * redundant slots repeat experts 0, 1, …
   */
  static trivial(shape: ExpertLocationShape): ExpertLocationMap {
    const s = ExpertLocationMap.checkShape(shape);
    const rows = Array.from({ length: s.numLayers }, () => Array.from({ length: s.numPhysical }, (_, p) => p % s.numLogical));
    return ExpertLocationMap.fromPhy2Log(rows, s);
  }

  /**
   * A map from per-layer `phy2log` rows. Replicas of an expert are numbered in
   * slot order. Every logical expert needs at least one slot.
   */
  static fromPhy2Log(phy2log: readonly (readonly number[])[], shape: Omit<ExpertLocationShape, 'numLayers' | 'numPhysical'>): ExpertLocationMap {
    const numPhysical = phy2log[0]?.length ?? 0;
    const map = new ExpertLocationMap(ExpertLocationMap.checkShape({ ...shape, numLayers: phy2log.length, numPhysical }));
    phy2log.forEach((row, l) => {
      if (row.length !== numPhysical) throw invalid(`phy2log row ${l} has ${row.length} slots, expected ${numPhysical}`);
      row.forEach((e, p) => map.place(l, p, e, map.logcnt[l * map.numLogical + e] ?? 0));
    });
    map.checkCovered();
    return map;
  }

  /** A map from `rebalanceExperts`' output (replica numbering kept). */
  static fromEplb(result: EplbResult, shape: { numRanks: number; ranksPerNode?: number }): ExpertLocationMap {
    const numLogical = result.logcnt[0]?.length ?? 0;
    const numPhysical = result.phy2log[0]?.length ?? 0;
    if (result.log2phy.length !== result.phy2log.length || result.logcnt.length !== result.phy2log.length) {
      throw invalid(
        `EPLB result: phy2log, log2phy and logcnt have ${result.phy2log.length}, ${result.log2phy.length} and ${result.logcnt.length} layers`,
      );
    }
    const map = new ExpertLocationMap(ExpertLocationMap.checkShape({ ...shape, numLayers: result.phy2log.length, numLogical, numPhysical }));
    // Each slot must be listed exactly once, so that phy2log and log2phy describe one placement.
    const listed = new Uint8Array(numPhysical);
    result.log2phy.forEach((layer, l) => {
      listed.fill(0);
      layer.forEach((slots, e) =>
        slots.forEach((p, k) => {
          if (p < 0) return;
          map.place(l, p, e, k);
          if (listed[p]) throw invalid(`layer ${l}: log2phy lists slot ${p} more than once`);
          listed[p] = 1;
        }),
      );
      const unlisted = listed.indexOf(0);
      if (unlisted >= 0) throw invalid(`layer ${l}: log2phy lists no expert in slot ${unlisted}`);
    });
    map.checkCovered();
    result.phy2log.forEach((row, l) => {
      const placed = map.layerPhy2Log(l);
      const p = row.findIndex((e, i) => e !== placed[i]);
      if (p >= 0) throw invalid(`layer ${l} slot ${p}: phy2log says expert ${row[p]}, which log2phy does not place there`);
    });
    return map;
  }

  /** Puts logical `e` in slot `p` of layer `l` as replica number `k`. */
  private place(l: number, p: number, e: number, k: number): void {
    if (!Number.isInteger(e) || e < 0 || e >= this.numLogical) {
      throw invalid(`layer ${l} slot ${p}: logical expert ${e} is out of range [0, ${this.numLogical})`);
    }
    if (!Number.isInteger(p) || p < 0 || p >= this.numPhysical) {
      throw invalid(`layer ${l}: physical slot ${p} is out of range [0, ${this.numPhysical})`);
    }
    if (k >= this.maxReplicas) throw invalid(`layer ${l}: logical expert ${e} has more than ${this.maxReplicas} replicas`);
    this.phy2log[l * this.numPhysical + p] = e;
    this.log2phy[(l * this.numLogical + e) * this.maxReplicas + k] = p;
    this.logcnt[l * this.numLogical + e] = Math.max(this.logcnt[l * this.numLogical + e]!, k + 1);
  }

  private checkCovered(): void {
    for (let l = 0; l < this.numLayers; l++) {
      for (let e = 0; e < this.numLogical; e++) {
        if (this.logcnt[l * this.numLogical + e] === 0) throw invalid(`layer ${l}: logical expert ${e} has no physical slot`);
      }
    }
  }

  get physicalPerRank(): number {
    return this.numPhysical / this.numRanks;
  }

  rankOfPhysical(p: number): number {
    return Math.floor(p / this.physicalPerRank);
  }

  nodeOfRank(r: number): number {
    return Math.floor(r / this.ranksPerNode);
  }

  /** The physical slots of logical `e` in `layer`, by replica number. */
  replicas(layer: number, e: number): number[] {
    const base = (layer * this.numLogical + e) * this.maxReplicas;
    return Array.from(this.log2phy.subarray(base, base + this.logcnt[layer * this.numLogical + e]!));
  }

  /** `phy2log` of one layer. */
  layerPhy2Log(layer: number): number[] {
    return Array.from(this.phy2log.subarray(layer * this.numPhysical, (layer + 1) * this.numPhysical));
  }

  /** `logcnt` of one layer. */
  layerLogcnt(layer: number): number[] {
    return Array.from(this.logcnt.subarray(layer * this.numLogical, (layer + 1) * this.numLogical));
  }

  /** The logical experts rank `rank` holds in `layer`, slot by slot. */
  expertsOfRank(layer: number, rank: number): number[] {
    const per = this.physicalPerRank;
    const base = layer * this.numPhysical + rank * per;
    return Array.from(this.phy2log.subarray(base, base + per));
  }

  /**
   * Copies `next` into this map's arrays (same shape required), so captured
   * references see the new placement.
   */
  update(next: ExpertLocationMap): void {
    const same =
      next.numLayers === this.numLayers &&
      next.numLogical === this.numLogical &&
      next.numPhysical === this.numPhysical &&
      next.numRanks === this.numRanks;
    if (!same) {
      throw invalid(
        `expert location update: shape [${next.numLayers} layers, ${next.numLogical} logical, ${next.numPhysical} physical, ${next.numRanks} ranks] ` +
          `differs from [${this.numLayers}, ${this.numLogical}, ${this.numPhysical}, ${this.numRanks}]`,
      );
    }
    this.phy2log.set(next.phy2log);
    this.log2phy.set(next.log2phy);
    this.logcnt.set(next.logcnt);
    this.staticTables.clear();
  }

  /**
   * The static dispatch table of `rank`: `[L * E]`, the physical slot that this
   * rank sends each logical expert's tokens to. Per layer and expert: a replica
   * on the same GPU if any; otherwise one on the same node, spread over the
   * node's ranks in turn; otherwise all replicas in turn over the remaining
   * ranks, so each replica serves an equal share (±1) of them.
   */
  staticDispatchTable(rank: number): Int32Array {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.numRanks) {
      throw invalid(`static dispatch rank ${String(rank)}: must be an integer in [0, ${this.numRanks})`);
    }
    const cached = this.staticTables.get(rank);
    if (cached) return cached;
    const table = new Int32Array(this.numLayers * this.numLogical);
    for (let l = 0; l < this.numLayers; l++) {
      for (let e = 0; e < this.numLogical; e++) table[l * this.numLogical + e] = this.staticChoice(l, e, rank);
    }
    this.staticTables.set(rank, table);
    return table;
  }

  private staticChoice(layer: number, e: number, rank: number): number {
    const slots = this.replicas(layer, e);
    const local = slots.find((p) => this.rankOfPhysical(p) === rank);
    if (local !== undefined) return local;
    const node = this.nodeOfRank(rank);
    const sameNode = slots.filter((p) => this.nodeOfRank(this.rankOfPhysical(p)) === node);
    const hasLocal = (r: number): boolean => slots.some((p) => this.rankOfPhysical(p) === r);
    // Position of `rank` among the ranks that share its fallback, so the
    // fallback's replicas are handed out in turn.
    if (sameNode.length > 0) {
      let k = 0;
      for (let r = node * this.ranksPerNode; r < rank; r++) if (!hasLocal(r)) k++;
      return sameNode[k % sameNode.length]!;
    }
    const nodeHasReplica = (r: number): boolean => slots.some((p) => this.nodeOfRank(this.rankOfPhysical(p)) === this.nodeOfRank(r));
    let k = 0;
    for (let r = 0; r < rank; r++) if (!nodeHasReplica(r)) k++;
    // Start the turn at a different replica for each expert, so replica 0 is not always favoured.
    return slots[(k + e + layer) % slots.length]!;
  }

  /**
   * Maps top-k logical ids (`[tokens * k]`, -1 for "no expert") of `layer` to
   * physical slots, over the whole array. Static choice reads the rank's
   * table; dynamic choice draws a replica uniformly per entry.
   */
  choosePhysical(layer: number, topkIds: Int32Array | readonly number[], choice: ReplicaChoice): Int32Array {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.numLayers) {
      throw invalid(`layer ${String(layer)}: must be an integer in [0, ${this.numLayers})`);
    }
    const out = new Int32Array(topkIds.length);
    const E = this.numLogical;
    const check = (i: number, e: number): void => {
      if (!Number.isInteger(e) || e < -1 || e >= E) throw invalid(`topkIds[${i}] is ${e}, expected -1 or a logical expert in [0, ${E})`);
    };
    if (choice.kind === 'static') {
      const table = this.staticDispatchTable(choice.rank);
      const base = layer * E;
      for (let i = 0; i < topkIds.length; i++) {
        const e = topkIds[i]!;
        check(i, e);
        out[i] = e < 0 ? -1 : table[base + e]!;
      }
      return out;
    }
    if (choice.kind !== 'dynamic') throw invalid(`replica choice ${JSON.stringify(choice)}: kind must be 'static' or 'dynamic'`);
    const random = choice.random ?? Math.random;
    for (let i = 0; i < topkIds.length; i++) {
      const e = topkIds[i]!;
      check(i, e);
      if (e < 0) {
        out[i] = -1;
        continue;
      }
      const row = layer * E + e;
      const k = Math.min(this.logcnt[row]! - 1, Math.floor(random() * this.logcnt[row]!));
      out[i] = this.log2phy[row * this.maxReplicas + k]!;
    }
    return out;
  }

  /** Nested arrays, shaped like `rebalanceExperts`' output. */
  toJSON(): EplbResult {
    const phy2log: number[][] = [];
    const log2phy: number[][][] = [];
    const logcnt: number[][] = [];
    for (let l = 0; l < this.numLayers; l++) {
      phy2log.push(this.layerPhy2Log(l));
      logcnt.push(this.layerLogcnt(l));
      const rows: number[][] = [];
      for (let e = 0; e < this.numLogical; e++) {
        const base = (l * this.numLogical + e) * this.maxReplicas;
        rows.push(Array.from(this.log2phy.subarray(base, base + this.maxReplicas)));
      }
      log2phy.push(rows);
    }
    return { phy2log, log2phy, logcnt };
  }
}
