/**
 * One MoE layer's expert placement on the device: the tables the router reads
 * to turn a chosen logical expert into a physical slot, and the per-slot load
 * counters it increments. A rebalance rewrites the tables in place, so a CUDA
 * graph that captured the router keeps reading the current placement.
 */
import type { Stream } from '../cuda/stream.js';
import { WideepError, assertInteger } from '../errors.js';
import type { ExpertLocationMap } from '../planning/expert-location.js';
import { Tensor } from '../tensor/tensor.js';
import type { ReplicaMap } from './router.js';

/** SGLang's --ep-dispatch-algorithm: a fixed replica per (rank, expert), or a random replica per token. */
export type DispatchAlgorithm = 'static' | 'dynamic';

export interface DevicePlacementOptions {
  /** The MoE layer's index in `map`. */
  layer: number;
  /** This process's EP rank. */
  rank: number;
  device: number;
  algorithm?: DispatchAlgorithm;
  /** Seed of the dynamic replica choice (default 0). */
  seed?: number;
  stream?: Stream;
}

export class DevicePlacement {
  readonly layer: number;
  readonly rank: number;
  readonly algorithm: DispatchAlgorithm;
  readonly numLogical: number;
  readonly numPhysical: number;
  /** i32 [numPhysical]: tokens routed to each slot by this rank since the last takeLoads(). */
  readonly loads: Tensor;
  #map: ExpertLocationMap;
  readonly #seed: number;
  /** static: i32 [E]; dynamic: i32 [E, maxReplicas] and i32 [E]. */
  readonly #tables: Tensor[];

  private constructor(map: ExpertLocationMap, o: DevicePlacementOptions, tables: Tensor[], loads: Tensor) {
    this.#map = map;
    this.layer = o.layer;
    this.rank = o.rank;
    this.algorithm = o.algorithm ?? 'static';
    this.#seed = o.seed ?? 0;
    this.numLogical = map.numLogical;
    this.numPhysical = map.numPhysical;
    this.#tables = tables;
    this.loads = loads;
  }

  static async create(map: ExpertLocationMap, o: DevicePlacementOptions): Promise<DevicePlacement> {
    const where = 'DevicePlacement.create';
    assertInteger(`${where}: layer`, o.layer, 0, map.numLayers - 1);
    assertInteger(`${where}: rank`, o.rank, 0, map.numRanks - 1);
    if (o.algorithm !== undefined && o.algorithm !== 'static' && o.algorithm !== 'dynamic') {
      throw new WideepError('ERR_INVALID_ARG', `${where}: algorithm: expected 'static' or 'dynamic', got ${String(o.algorithm)}`);
    }
    if (o.seed !== undefined) assertInteger(`${where}: seed`, o.seed, 0, 0xffffffff);
    const at = `cuda:${o.device}` as const;
    const host = hostTables(map, o.layer, o.rank, o.algorithm ?? 'static');
    const tables = await Promise.all(host.map((t) => t.to(at, { stream: o.stream })));
    const loads = Tensor.zeros([map.numPhysical], 'i32', { device: at, stream: o.stream });
    return new DevicePlacement(map, o, tables, loads);
  }

  /** The placement the tables hold now. */
  get map(): ExpertLocationMap {
    return this.#map;
  }

  /** The router's replica argument: reads the device tables at every launch (and graph replay). */
  replicas(): ReplicaMap {
    const [a, b] = this.#tables;
    return this.algorithm === 'static' ? { kind: 'static', table: a! } : { kind: 'dynamic', log2phy: a!, logcnt: b!, seed: this.#seed };
  }

  /**
   * The slot loads counted since the last call, then zeroes the counters, both
   * in order on `stream`: the host waits for the copy only, not for later work.
   */
  async takeLoads(stream: Stream): Promise<Int32Array> {
    const host = Tensor.empty([this.numPhysical], 'i32');
    const copied = host.copyFrom(this.loads, { stream });
    this.loads.fillBytes(0, stream);
    await copied;
    return host.data as Int32Array;
  }

  /**
   * Rewrites the tables in place for `next` (same shape) and zeroes the load
   * counters: what they counted was for slots that may now hold other experts.
   * The caller moves the weights first (moveExpertWeights) and keeps work
   * that reads the tables (a graph replay, a forward) off `stream` until this
   * resolves.
   */
  async update(next: ExpertLocationMap, stream: Stream): Promise<void> {
    const m = this.#map;
    if (next.numLogical !== m.numLogical || next.numPhysical !== m.numPhysical || next.numRanks !== m.numRanks || next.numLayers !== m.numLayers) {
      throw new WideepError('ERR_INVALID_ARG', 'DevicePlacement.update: the new placement has another shape than the current one');
    }
    const host = hostTables(next, this.layer, this.rank, this.algorithm);
    for (let i = 0; i < host.length; i++) await this.#tables[i]!.copyFrom(host[i]!, { stream });
    this.loads.fillBytes(0, stream);
    this.#map = next;
  }

  close(stream?: Stream): void {
    for (const t of [...this.#tables, this.loads]) t.close(stream);
  }
}

function hostTables(map: ExpertLocationMap, layer: number, rank: number, algorithm: DispatchAlgorithm): Tensor[] {
  const E = map.numLogical;
  if (algorithm === 'static') return [Tensor.from(map.staticDispatchTable(rank).slice(layer * E, (layer + 1) * E))];
  const R = map.maxReplicas;
  return [
    Tensor.from(map.log2phy.slice(layer * E * R, (layer + 1) * E * R), { shape: [E, R] }),
    Tensor.from(map.logcnt.slice(layer * E, (layer + 1) * E)),
  ];
}
