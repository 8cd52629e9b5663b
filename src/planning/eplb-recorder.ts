/**
 * Expert-load statistics for EPLB: a circular buffer of per-pass
 * `[layers, physical]` token counts, their window sum, the mapping back to
 * logical experts, and the balancedness metric (mean GPU load / max GPU load).
 *
 * Pure bookkeeping: the pipeline all-reduces `logicalLoad()` over the EP group
 * before it calls `rebalanceExperts`.
 */
import { WideepError, assertInteger } from '../errors.js';
import type { ExpertLocationMap } from './expert-location.js';

export interface EplbRecorderOptions {
  numLayers: number;
  numPhysical: number;
  /** Passes kept in the sliding window. */
  windowSize: number;
}

/** Mean over max of per-GPU loads; 1 when nothing was recorded (nothing is imbalanced). */
export function balancedness(gpuLoads: ArrayLike<number>): number {
  let total = 0;
  let max = 0;
  for (let i = 0; i < gpuLoads.length; i++) {
    total += gpuLoads[i]!;
    max = Math.max(max, gpuLoads[i]!);
  }
  return max === 0 ? 1 : total / gpuLoads.length / max;
}

/** Sums per-slot loads `[R]` into per-GPU loads `[numGpus]` (slots are GPU-contiguous). */
export function gpuLoadsOf(slotLoads: ArrayLike<number>, numGpus: number): Float64Array {
  const per = slotLoads.length / numGpus;
  if (!Number.isInteger(per)) throw new WideepError('ERR_INVALID_ARG', `${slotLoads.length} slots do not split over ${numGpus} GPUs`);
  const out = new Float64Array(numGpus);
  for (let p = 0; p < slotLoads.length; p++) out[Math.floor(p / per)]! += slotLoads[p]!;
  return out;
}

/**
 * Expected per-slot load of one layer when each logical expert's load
 * `weight[e]` splits evenly over its replicas: slot p gets
 * `weight[phy2log[p]] / logcnt[phy2log[p]]`.
 */
export function slotLoadsFromLogical(weight: readonly number[], phy2log: readonly number[], logcnt: readonly number[]): Float64Array {
  return Float64Array.from(phy2log, (e) => weight[e]! / logcnt[e]!);
}

/** Counts of each physical slot in a top-k array (`-1` entries skipped). */
export function countPhysical(
  physicalIds: ArrayLike<number>,
  numPhysical: number,
  into: Float64Array<ArrayBufferLike> = new Float64Array(numPhysical),
): Float64Array<ArrayBufferLike> {
  for (let i = 0; i < physicalIds.length; i++) {
    const p = physicalIds[i]!;
    if (p >= 0 && p < numPhysical) into[p]!++;
    else if (p !== -1) throw new WideepError('ERR_INVALID_ARG', `physical id ${p} at index ${i} is out of range [0, ${numPhysical})`);
  }
  return into;
}

export class EplbRecorder {
  readonly numLayers: number;
  readonly numPhysical: number;
  readonly windowSize: number;
  /** Passes recorded since creation or `reset()` (not capped by the window). */
  passes = 0;

  private readonly ring: Float64Array[];
  private readonly sum: Float64Array;
  /** The pass being assembled by `recordTopk`, or null. */
  private current: Float64Array | null = null;

  constructor(opts: EplbRecorderOptions) {
    for (const [k, v] of Object.entries(opts)) assertInteger(`EplbRecorder ${k}`, v, 1);
    this.numLayers = opts.numLayers;
    this.numPhysical = opts.numPhysical;
    this.windowSize = opts.windowSize;
    this.ring = [];
    this.sum = new Float64Array(opts.numLayers * opts.numPhysical);
  }

  /** Passes currently inside the window. */
  get size(): number {
    return this.ring.length;
  }

  /** Adds one forward pass of `[numLayers * numPhysical]` counts, evicting the oldest pass once the window is full. */
  record(counts: ArrayLike<number>): void {
    if (counts.length !== this.sum.length) {
      throw new WideepError('ERR_INVALID_ARG', `EplbRecorder.record: expected ${this.sum.length} counts ([${this.numLayers}, ${this.numPhysical}]), got ${counts.length}`);
    }
    const pass = Float64Array.from(counts);
    if (this.ring.length === this.windowSize) {
      const old = this.ring[this.passes % this.windowSize]!;
      for (let i = 0; i < pass.length; i++) this.sum[i]! += pass[i]! - old[i]!;
      this.ring[this.passes % this.windowSize] = pass;
    } else {
      for (let i = 0; i < pass.length; i++) this.sum[i]! += pass[i]!;
      this.ring.push(pass);
    }
    this.passes++;
  }

  /** Counts the physical ids one MoE layer dispatched in the pass being assembled. */
  recordTopk(layer: number, physicalIds: ArrayLike<number>): void {
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.numLayers) {
      throw new WideepError('ERR_INVALID_ARG', `EplbRecorder.recordTopk: layer ${layer} is out of range [0, ${this.numLayers})`);
    }
    this.current ??= new Float64Array(this.sum.length);
    countPhysical(physicalIds, this.numPhysical, this.current.subarray(layer * this.numPhysical, (layer + 1) * this.numPhysical));
  }

  /** Closes the pass assembled by `recordTopk` (an empty pass if none was). */
  endPass(): void {
    this.record(this.current ?? new Float64Array(this.sum.length));
    this.current = null;
  }

  /** The window's summed counts per physical slot, `[numLayers * numPhysical]`. */
  physicalLoad(): Float64Array {
    return Float64Array.from(this.sum);
  }

  /** The window's counts mapped back to logical experts: `[layer][logical]`, ready to all-reduce and pass to EPLB. */
  logicalLoad(map: ExpertLocationMap): number[][] {
    if (map.numLayers !== this.numLayers || map.numPhysical !== this.numPhysical) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `EplbRecorder.logicalLoad: map has [${map.numLayers}, ${map.numPhysical}], recorder has [${this.numLayers}, ${this.numPhysical}]`,
      );
    }
    const out: number[][] = [];
    for (let l = 0; l < this.numLayers; l++) {
      const row = new Array<number>(map.numLogical).fill(0);
      for (let p = 0; p < this.numPhysical; p++) row[map.phy2log[l * this.numPhysical + p]!]! += this.sum[l * this.numPhysical + p]!;
      out.push(row);
    }
    return out;
  }

  /** Balancedness of each layer over `numGpus` GPUs, and their mean. */
  balancedness(numGpus: number): { perLayer: number[]; mean: number } {
    const perLayer = Array.from({ length: this.numLayers }, (_, l) =>
      balancedness(gpuLoadsOf(this.sum.subarray(l * this.numPhysical, (l + 1) * this.numPhysical), numGpus)),
    );
    return { perLayer, mean: perLayer.reduce((a, b) => a + b, 0) / perLayer.length };
  }

  /** Forgets every pass (after a rebalance, the slots mean different experts). */
  reset(): void {
    this.ring.length = 0;
    this.sum.fill(0);
    this.passes = 0;
    this.current = null;
  }
}
