/**
 * EPLB on the device, every `interval` steps: each layer's router counters
 * (tokens sent to each expert slot) are copied out in stream order and
 * zeroed, and `lagSteps` steps later (when the copies have long finished, so
 * the host never waits for the GPU to catch up) summed over the EP ranks,
 * placed anew with DeepSeek's EPLB, and each layer moves its weights and
 * rewrites its tables in place, so a captured decode graph stays valid.
 * Every rank calls it after every step alike (a collective on its
 * rebalancing steps).
 */
import type { Communicator } from '../comm/communicator.js';
import type { Stream } from '../cuda/stream.js';
import type { CpuTransport } from '../ep/transport.js';
import { WideepError, assertInteger } from '../errors.js';
import { balancedness, gpuLoadsOf, slotLoadsFromLogical } from '../planning/eplb-recorder.js';
import { rebalanceExperts } from '../planning/eplb.js';
import { ExpertLocationMap } from '../planning/expert-location.js';
import { planRebalanceMoves, type RebalancePlan } from '../planning/rebalance-moves.js';
import { allReduceSum } from '../simulation/rebalance.js';
import type { DevicePlacement } from './placement.js';

/** What DeviceEplb needs of a layer (MoeLayer has it). */
export interface RebalancingLayer {
  readonly placement: Pick<DevicePlacement, 'map' | 'layer' | 'takeLoads'> | undefined;
  rebalance(next: ExpertLocationMap, options: { comm?: Communicator; stream?: Stream; plan?: RebalancePlan }): Promise<RebalancePlan>;
}

export interface DeviceEplbOptions {
  /** Rebalance after every `interval` steps. */
  interval: number;
  /** The model's expert groups (EPLB's hierarchical policy keeps groups on nodes). */
  numGroups: number;
  /** Sums the loads over the EP ranks. */
  transport: CpuTransport;
  /** Moves weights between ranks (NCCL over the EP group); needed when EPLB moves any. */
  comm?: Communicator;
  /**
   * Steps between reading the counters out and rebalancing with them
   * (default 1, or 0 with an interval of 1; 0: at once, the host waiting for
   * the copy); less than interval. The tokens of the steps between are not
   * counted: they went to slots under the old placement, and the rebalance
   * zeroes the counters.
   */
  lagSteps?: number;
  timeoutMs?: number;
}

export interface DeviceEplbReport {
  /** Steps counted so far (the rebalance came after this one). */
  step: number;
  policy: 'hierarchical' | 'global';
  /** Mean over max GPU load of the window under the old placement, all layers together. */
  balancednessBefore: number;
  /** The same loads spread over the new placement (each expert's load split evenly over its replicas). */
  balancednessPredicted: number;
  /** Slots of this process's layers (on every rank) by how they get their expert. */
  moves: RebalancePlan['counts'];
}

export class DeviceEplb {
  readonly #layers: RebalancingLayer[];
  readonly #o: DeviceEplbOptions;
  readonly #lag: number;
  #steps = 0;
  /** The counters read out on the last interval step, and the step that uses them. */
  #pending: { at: number; loads: Promise<Int32Array>[] } | undefined;

  constructor(layers: readonly RebalancingLayer[], options: DeviceEplbOptions) {
    const where = 'DeviceEplb';
    assertInteger(`${where}: interval`, options?.interval, 1);
    assertInteger(`${where}: numGroups`, options.numGroups, 1);
    this.#lag = assertInteger(`${where}: lagSteps`, options.lagSteps ?? Math.min(1, options.interval - 1), 0, options.interval - 1);
    const placements = layers.map((l, i) => {
      if (!l.placement) throw new WideepError('ERR_INVALID_ARG', `${where}: layer ${i} has no placement to rebalance`);
      return l.placement;
    });
    if (placements.length === 0) throw new WideepError('ERR_INVALID_ARG', `${where}: no layers`);
    const map = placements[0]!.map;
    const seen = new Set<number>();
    for (const p of placements) {
      if (p.map !== map) throw new WideepError('ERR_INVALID_ARG', `${where}: every layer's placement must come from one ExpertLocationMap`);
      if (seen.has(p.layer)) throw new WideepError('ERR_INVALID_ARG', `${where}: two layers have layer index ${p.layer}`);
      seen.add(p.layer);
    }
    if (options.transport.worldSize !== map.numRanks) {
      throw new WideepError('ERR_INVALID_ARG', `${where}: the transport has ${options.transport.worldSize} ranks, the placement ${map.numRanks}`);
    }
    this.#layers = [...layers];
    this.#o = options;
  }

  /**
   * Counts a step: on every interval-th it reads the counters out (enqueued
   * on `stream`, not waited for), and lagSteps later rebalances with them and
   * says what it did.
   */
  async afterStep(stream: Stream): Promise<DeviceEplbReport | undefined> {
    const step = ++this.#steps;
    if (step % this.#o.interval === 0) {
      const loads = this.#layers.map((l) => l.placement!.takeLoads(stream));
      // Awaited lagSteps later; a failed copy rejects there, not as an unhandled rejection now.
      for (const p of loads) p.catch(() => undefined);
      this.#pending = { at: step + this.#lag, loads };
    }
    const pending = this.#pending;
    if (pending?.at !== step) return undefined;
    this.#pending = undefined;
    return this.#rebalance(await Promise.all(pending.loads), stream);
  }

  async #rebalance(loads: Int32Array[], stream: Stream): Promise<DeviceEplbReport> {
    const map = this.#layers[0]!.placement!.map;
    const [P, E, R] = [map.numPhysical, map.numLogical, map.numRanks];
    // Every layer of the map gets a row; layers this process does not run count nothing.
    const physical = new Float64Array(map.numLayers * P);
    this.#layers.forEach((l, i) => physical.set(loads[i]!, l.placement!.layer * P));
    const total = await allReduceSum(this.#o.transport, physical, this.#o.timeoutMs);
    const logical = Array.from({ length: map.numLayers }, (_, l) => {
      const row = new Array<number>(E).fill(0);
      map.layerPhy2Log(l).forEach((e, p) => (row[e]! += total[l * P + p]!));
      return row;
    });
    const result = rebalanceExperts(logical, { numReplicas: P, numGroups: this.#o.numGroups, numNodes: R / map.ranksPerNode, numGpus: R });
    const next = ExpertLocationMap.fromEplb(result, { numRanks: R, ranksPerNode: map.ranksPerNode });
    // One plan for every layer of the map; each layer carries out its part.
    const plan = planRebalanceMoves(map, next);
    for (const l of this.#layers) await l.rebalance(next, { comm: this.#o.comm, stream, plan });
    const mine = new Set(this.#layers.map((l) => l.placement!.layer));
    const moves = { unchanged: 0, local: 0, reuse: 0, recv: 0 };
    for (const m of plan.moves) if (mine.has(m.layer)) moves[m.kind]++;
    const gpuTotals = (slotLoads: (l: number) => ArrayLike<number>) => {
      const sum = new Float64Array(R);
      for (let l = 0; l < map.numLayers; l++) gpuLoadsOf(slotLoads(l), R).forEach((v, g) => (sum[g]! += v));
      return sum;
    };
    return {
      step: this.#steps,
      policy: result.policy,
      balancednessBefore: balancedness(gpuTotals((l) => total.subarray(l * P, (l + 1) * P))),
      balancednessPredicted: balancedness(gpuTotals((l) => slotLoadsFromLogical(logical[l]!, result.phy2log[l]!, result.logcnt[l]!))),
      moves: { ...moves, unchanged: this.#layers.length * P - moves.local - moves.reuse - moves.recv },
    };
  }
}
