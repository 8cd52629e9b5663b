/** What one simulated rank holds while it runs the layer. */
import type { EpBuffer } from '../ep/buffer.js';
import type { CpuTransport } from '../ep/transport.js';
import type { AttentionFn } from './attention.js';
import type { RankEplb, RankExperts } from './placement.js';
import type { MoeLayerWeights } from './weights.js';

export interface RankContext {
  readonly rank: number;
  readonly numRanks: number;
  /** The dense weights every rank replicates (norms, attention, gate, shared expert); routed experts come from `experts`. */
  readonly weights: MoeLayerWeights;
  readonly attention: AttentionFn;
  /** This rank's physical expert slots. */
  readonly experts: RankExperts;
  /** EPLB state; null when EPLB is off (physical ids are then the logical ones). */
  readonly eplb: RankEplb | null;
  /**
   * One EP buffer per micro-batch, each on its own transport (the second is
   * used only by two-batch overlap), so the collectives of two micro-batches
   * in flight at once never share a sequence of rounds.
   */
  readonly buffers: readonly [EpBuffer, EpBuffer];
  /** Step metadata and EPLB collectives. */
  readonly control: CpuTransport;
  /** Physical expert slots of the layer (the buffers' numExperts). */
  readonly numPhysical: number;
  /** Low-latency receive slots per rank (`--num-max-dispatch-tokens-per-rank`). */
  readonly lowLatencyTokens: number;
  readonly timeoutMs: number;
}
