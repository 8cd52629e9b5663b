/**
 * DeepSeek's expert-parallel load balancer (EPLB), written from the
 * description in docs/wide-ep.md: replicate hot experts into the redundant
 * slots and place the replicas so that GPU loads even out.
 *
 * Tie rules, which fix the output exactly:
 * - sorts are stable, by weight descending (equal weights keep index order);
 * - an item goes to the lightest pack that still has room, the first such
 *   pack on ties;
 * - a redundant slot goes to the expert with the largest `weight / replicas`,
 *   the first index on ties;
 * - when every pack holds exactly one item, item i simply goes to pack i.
 * Loads are handled as float32 (as the reference implementation does), so
 * sums and ratios round, and therefore tie, the same way.
 */
import { WideepError, assertInteger } from '../errors.js';
import { toLoadMatrix } from './json-file.js';
import { MAX_PHYSICAL_EXPERTS, checkPlacementSize } from './limits.js';

const f32 = Math.fround;

export type EplbPolicy = 'auto' | 'hierarchical' | 'global';

export interface EplbParams {
  /** R: physical expert slots per layer, a multiple of `numGpus`. */
  numReplicas: number;
  /** G: expert groups (the model's `n_group`); logical experts split into G equal groups. */
  numGroups: number;
  /** M: nodes. */
  numNodes: number;
  /** P: GPUs, a multiple of `numNodes`. */
  numGpus: number;
  /** `auto` (default) is hierarchical when `G % M == 0`, otherwise global. */
  policy?: EplbPolicy;
}

/** EPLB's output, shaped as in DeepSeek's reference. */
export interface EplbResult {
  /** `[L][R]`: the logical expert in each physical slot; GPU g holds slots `g*R/P … (g+1)*R/P - 1`. */
  phy2log: number[][];
  /** `[L][E][R-E+1]`: each logical expert's physical slots by replica number, padded with -1. */
  log2phy: number[][][];
  /** `[L][E]`: replicas per logical expert. */
  logcnt: number[][];
}

export interface Packing {
  /** The pack of each item. */
  pack: number[];
  /** The item's position inside its pack, in order of placement. */
  rankInPack: number[];
}

/** The packs that still have room, as a binary min-heap on (load, index): the lightest first, the first on ties. */
class LightestPacks {
  // Every load starts at 0, so the packs in index order already form a heap.
  private readonly heap: number[];

  constructor(private readonly load: readonly number[]) {
    this.heap = load.map((_, p) => p);
  }

  get top(): number {
    return this.heap[0]!;
  }

  /** Restores the order after the top pack's load grew. */
  topGrew(): void {
    this.siftDown(0);
  }

  /** Drops the top pack (it is full). */
  removeTop(): void {
    const last = this.heap.pop()!;
    if (this.heap.length === 0) return;
    this.heap[0] = last;
    this.siftDown(0);
  }

  private lighter(a: number, b: number): boolean {
    return this.load[a]! < this.load[b]! || (this.load[a] === this.load[b] && a < b);
  }

  private siftDown(i: number): void {
    const h = this.heap;
    for (;;) {
      const left = 2 * i + 1;
      let best = i;
      if (left < h.length && this.lighter(h[left]!, h[best]!)) best = left;
      if (left + 1 < h.length && this.lighter(h[left + 1]!, h[best]!)) best = left + 1;
      if (best === i) return;
      const moved = h[i]!;
      h[i] = h[best]!;
      h[best] = moved;
      i = best;
    }
  }
}

/**
 * Splits `weights.length` items into `numPacks` packs of equal count, heaviest
 * item first, each into the lightest pack with room.
 */
export function balancedPacking(weights: readonly number[], numPacks: number): Packing {
  const n = weights.length;
  if (!Number.isInteger(numPacks) || numPacks < 1 || n % numPacks !== 0) {
    throw new WideepError('ERR_INVALID_ARG', `balancedPacking: ${n} items do not split into ${numPacks} equal packs`);
  }
  const perPack = n / numPacks;
  if (perPack === 1) {
    return { pack: weights.map((_, i) => i), rankInPack: weights.map(() => 0) };
  }
  const order = weights.map((_, i) => i).sort((a, b) => f32(weights[b]!) - f32(weights[a]!) || a - b);
  const load = new Array<number>(numPacks).fill(0);
  const count = new Array<number>(numPacks).fill(0);
  const pack = new Array<number>(n);
  const rankInPack = new Array<number>(n);
  const open = new LightestPacks(load);
  for (const item of order) {
    const best = open.top;
    pack[item] = best;
    rankInPack[item] = count[best]!++;
    load[best] = f32(load[best]! + f32(weights[item]!));
    if (count[best] === perPack) open.removeTop();
    else open.topGrew();
  }
  return { pack, rankInPack };
}

export interface Replication {
  /** `[numPhysical]`: the logical expert of each physical slot; slot i < n holds expert i. */
  phy2log: number[];
  /** The replica number of each slot (0 for the original). */
  replicaRank: number[];
  /** Replicas per logical expert. */
  logcnt: number[];
}

/**
 * One replica per expert, then each extra slot to the expert with the largest
 * `weight / replicas` (first index on ties).
 */
export function replicateExperts(weights: readonly number[], numPhysical: number): Replication {
  const n = weights.length;
  if (!Number.isInteger(numPhysical) || numPhysical < n) {
    throw new WideepError('ERR_INVALID_ARG', `replicateExperts: ${numPhysical} slots cannot hold ${n} experts`);
  }
  const w = weights.map(f32);
  const phy2log = w.map((_, i) => i);
  const replicaRank = w.map(() => 0);
  const logcnt = w.map(() => 1);
  for (let slot = n; slot < numPhysical; slot++) {
    let best = 0;
    let bestLoad = f32(w[0]! / logcnt[0]!);
    for (let e = 1; e < n; e++) {
      const l = f32(w[e]! / logcnt[e]!);
      if (l > bestLoad) {
        best = e;
        bestLoad = l;
      }
    }
    phy2log.push(best);
    replicaRank.push(logcnt[best]!);
    logcnt[best]!++;
  }
  return { phy2log, replicaRank, logcnt };
}

/** One layer's placement before `log2phy` is built. */
interface LayerPlacement {
  phy2log: number[];
  replicaRank: number[];
  logcnt: number[];
}

/**
 * The hierarchical policy for one layer:
 * 1. pack the G groups onto the M nodes by group load;
 * 2. inside each node, replicate its experts into R/M slots;
 * 3. pack each node's replicas onto its P/M GPUs by load per replica.
 * The global policy is this with G = M = 1.
 */
function placeLayer(w: readonly number[], R: number, G: number, M: number, P: number): LayerPlacement {
  const E = w.length;
  const groupSize = E / G;
  const groupsPerNode = G / M;
  const expertsPerNode = E / M;
  const slotsPerNode = R / M;
  const gpusPerNode = P / M;
  const slotsPerGpu = R / P;

  // 1. Groups onto nodes. Node-major order of experts: `nodeOrder[k]` is the
  //    logical expert at position k, where node n owns positions n*E/M …
  const groupLoad = Array.from({ length: G }, (_, g) => {
    let s = 0;
    for (let j = 0; j < groupSize; j++) s = f32(s + f32(w[g * groupSize + j]!));
    return s;
  });
  const groups = balancedPacking(groupLoad, M);
  const nodeOrder = new Array<number>(E);
  for (let g = 0; g < G; g++) {
    const first = (groups.pack[g]! * groupsPerNode + groups.rankInPack[g]!) * groupSize;
    for (let j = 0; j < groupSize; j++) nodeOrder[first + j] = g * groupSize + j;
  }

  const phy2log = new Array<number>(R);
  const replicaRank = new Array<number>(R);
  const logcnt = new Array<number>(E);
  for (let node = 0; node < M; node++) {
    const experts = nodeOrder.slice(node * expertsPerNode, (node + 1) * expertsPerNode);
    const nodeWeights = experts.map((e) => w[e]!);
    // 2. Replicate inside the node.
    const rep = replicateExperts(nodeWeights, slotsPerNode);
    // 3. Replicas onto the node's GPUs, by load per replica.
    const perReplica = rep.phy2log.map((i) => f32(f32(nodeWeights[i]!) / rep.logcnt[i]!));
    const gpus = balancedPacking(perReplica, gpusPerNode);
    for (let r = 0; r < slotsPerNode; r++) {
      const slot = node * slotsPerNode + gpus.pack[r]! * slotsPerGpu + gpus.rankInPack[r]!;
      phy2log[slot] = experts[rep.phy2log[r]!]!;
      replicaRank[slot] = rep.replicaRank[r]!;
    }
    experts.forEach((e, i) => (logcnt[e] = rep.logcnt[i]!));
  }
  return { phy2log, replicaRank, logcnt };
}

/** The policy `auto` resolves to: hierarchical when groups split evenly over nodes. */
export function eplbPolicy(numGroups: number, numNodes: number, policy: EplbPolicy = 'auto'): 'hierarchical' | 'global' {
  if (policy !== 'auto') return policy;
  return numGroups % numNodes === 0 ? 'hierarchical' : 'global';
}

function checkParams(L: number, E: number, p: EplbParams): 'hierarchical' | 'global' {
  const problem = (what: string): WideepError => new WideepError('ERR_INVALID_ARG', what);
  assertInteger('numReplicas (--replicas)', p.numReplicas, 1, MAX_PHYSICAL_EXPERTS);
  assertInteger('numGroups (--groups)', p.numGroups, 1);
  assertInteger('numNodes (--nodes)', p.numNodes, 1);
  assertInteger('numGpus (--gpus)', p.numGpus, 1);
  if (p.numReplicas < E) throw problem(`numReplicas (--replicas) ${p.numReplicas}: must be at least the number of logical experts (${E})`);
  if (p.numReplicas % p.numGpus !== 0) {
    throw problem(`numReplicas (--replicas) ${p.numReplicas}: must be a multiple of numGpus (--gpus ${p.numGpus})`);
  }
  if (p.numGpus % p.numNodes !== 0) throw problem(`numGpus (--gpus) ${p.numGpus}: must be a multiple of numNodes (--nodes ${p.numNodes})`);
  checkPlacementSize({ numLayers: L, numLogical: E, numPhysical: p.numReplicas }, `numReplicas (--replicas) ${p.numReplicas}`, 'use fewer replicas');
  if (p.policy !== undefined && !['auto', 'hierarchical', 'global'].includes(p.policy)) {
    throw problem(`policy (--policy) ${String(p.policy)}: must be auto, hierarchical or global`);
  }
  const policy = eplbPolicy(p.numGroups, p.numNodes, p.policy);
  if (policy === 'hierarchical') {
    if (p.numGroups % p.numNodes !== 0) {
      throw problem(`numGroups (--groups) ${p.numGroups}: the hierarchical policy needs it to be a multiple of numNodes (--nodes ${p.numNodes})`);
    }
    if (E % p.numGroups !== 0) {
      throw problem(`numGroups (--groups) ${p.numGroups}: the ${E} logical experts must split into equal groups`);
    }
  }
  return policy;
}

/**
 * Places `numReplicas` physical experts per layer given `weight[L][E]`, the
 * load of each logical expert. Returns `phy2log`, `log2phy` and `logcnt`.
 */
export function rebalanceExperts(weight: readonly (readonly number[])[], params: EplbParams): EplbResult & { policy: 'hierarchical' | 'global' } {
  const rows = toLoadMatrix(weight, 'weight');
  const E = rows[0]!.length;
  const policy = checkParams(rows.length, E, params);
  const [G, M] = policy === 'hierarchical' ? [params.numGroups, params.numNodes] : [1, 1];
  const R = params.numReplicas;
  const maxReplicas = R - E + 1;

  const phy2log: number[][] = [];
  const log2phy: number[][][] = [];
  const logcnt: number[][] = [];
  for (const w of rows) {
    const layer = placeLayer(w, R, G, M, params.numGpus);
    const table = Array.from({ length: E }, () => new Array<number>(maxReplicas).fill(-1));
    layer.phy2log.forEach((e, slot) => (table[e]![layer.replicaRank[slot]!] = slot));
    phy2log.push(layer.phy2log);
    log2phy.push(table);
    logcnt.push(layer.logcnt);
  }
  return { phy2log, log2phy, logcnt, policy };
}
