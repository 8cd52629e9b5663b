/**
 * The contract between the EpBuffer facade and a backend. The facade validates
 * every argument (shapes, dtypes, limits, devices, host values), owns the
 * leases and chooses the receive slot; a backend only moves data. Arguments
 * arrive already validated, so a backend checks nothing the facade checks.
 */
import type { Event } from '../cuda/event.js';
import type { ProcessGroup } from '../runtime/types.js';
import type { Device } from '../tensor/tensor.js';
import type { Tensor } from '../tensor/tensor.js';
import type { DataCallKind, EpCall } from './calls.js';
import type { DispatchLayout, EpConfig, StreamOptions } from './types.js';

/**
 * What a backend remembers of one dispatch, so that combine and a cached
 * dispatch can reuse its routing. Backends extend it with their own state;
 * the facade only reads these fields.
 */
export interface DispatchRouting {
  /** T: tokens this rank dispatched. */
  readonly numTokens: number;
  /** k of the dispatch's topkIdx. */
  readonly topk: number;
  /** N, or -1 when numWorstTokens hid it from the host. */
  readonly numRecvTokens: number;
  /** Rows of the result tensors: N, or numWorstTokens. */
  readonly numRows: number;
  /** [L] rows per local expert before alignment; undefined when the host does not know them. */
  readonly numRecvTokensPerExpert: readonly number[] | undefined;
  /** Made inside a CUDA-graph capture (its device state then lives with the graph). */
  readonly captured?: boolean;
}

/** What a backend remembers of one low-latency dispatch. */
export interface LowLatencyRouting {
  /** T: tokens this rank dispatched. */
  readonly numTokens: number;
  /** k of the dispatch's topkIdx (its combine's must match). */
  readonly topk: number;
}

export interface BackendDispatchArgs<R extends DispatchRouting> extends StreamOptions {
  x: Tensor;
  xScales: Tensor | undefined;
  /** Absent for a cached dispatch. */
  topkIdx: Tensor | undefined;
  topkWeights: Tensor | undefined;
  /** Present (and matching topkIdx) when the caller passed one. */
  layout: { numTokensPerRank: Tensor; numTokensPerExpert: Tensor; isTokenInRank: Tensor } | undefined;
  /** The routing of the handle for a cached dispatch. */
  cached: R | undefined;
  /** 0 = size outputs exactly. For a cached dispatch, the cached routing's choice applies. */
  numWorstTokens: number;
  numSms: number | undefined;
}

export interface BackendDispatchResult<R extends DispatchRouting> {
  recvX: Tensor;
  recvXScales: Tensor | undefined;
  /** Undefined for a cached dispatch. */
  recvTopkIdx: Tensor | undefined;
  recvTopkWeights: Tensor | undefined;
  /** A new routing, or `cached` itself for a cached dispatch. */
  routing: R;
  event?: Event;
}

export interface BackendCombineArgs<R extends DispatchRouting> extends StreamOptions {
  x: Tensor;
  routing: R;
  topkWeights: Tensor | undefined;
  /** Zero, one or two bf16 [T, H] tensors, added in this order. */
  bias: readonly Tensor[];
  numSms: number | undefined;
  /** Of numSms, the SMs that push rows (cuda); undefined: the default share. */
  numSendSms: number | undefined;
  /** bf16 [T, H] to write combinedX into; a new tensor when undefined. */
  out: Tensor | undefined;
}

export interface BackendCombineResult {
  combinedX: Tensor;
  combinedTopkWeights: Tensor | undefined;
  event?: Event;
}

export interface BackendLowLatencyDispatchArgs extends StreamOptions {
  x: Tensor;
  topkIdx: Tensor;
  useFp8: boolean;
  roundScale: boolean;
  returnRecvHook: boolean;
  cumulativeRecvStats: Tensor | undefined;
}

export interface BackendLowLatencyDispatchResult<L extends LowLatencyRouting> {
  recvX: Tensor;
  recvXScales: Tensor | undefined;
  /** i32 [L]. */
  recvCount: Tensor;
  /** i32 [L, R*M]: source token index per slot (-1 unused on cpu). */
  srcInfo: Tensor;
  /** i32 [L, R, 2]: (begin, count) of the slots from each source rank. */
  layoutRange: Tensor;
  routing: L;
  event?: Event;
  hook?: () => Promise<void>;
}

export interface BackendLowLatencyCombineArgs<L extends LowLatencyRouting> extends StreamOptions {
  y: Tensor;
  topkIdx: Tensor;
  topkWeights: Tensor;
  routing: L;
  returnRecvHook: boolean;
  out: Tensor | undefined;
}

export interface BackendLowLatencyCombineResult {
  combinedX: Tensor;
  event?: Event;
  hook?: () => Promise<void>;
}

/**
 * A backend. Every collective method enqueues (cuda) or starts (cpu) its work
 * before it returns its promise, and sets `call.started` as it begins to
 * communicate: the facade releases a combined handle's lease right after the
 * call, and all ranks call collective methods in the same order. A problem
 * with the arguments that only the backend can see is thrown synchronously,
 * before any communication; the facade then has the rank take part in the
 * call with the failure (takePart), so that it fails on every rank.
 *
 * `slot` is the receive slot the facade leased: 0..numRecvSlots-1 for normal
 * mode, 0 or 1 for low-latency mode. Slot choice is deterministic given the
 * sequence of calls and releases, so ranks that use the API symmetrically
 * agree on it.
 */
export interface EpBackend<R extends DispatchRouting = DispatchRouting, L extends LowLatencyRouting = LowLatencyRouting> {
  readonly kind: 'cpu' | 'cuda';
  /** Where every tensor argument and result lives. */
  readonly device: Device;
  /**
   * The most SMs a normal-mode call may name: cuda's kernels wait on blocks of
   * the same launch (the combine's reducers on its senders), so all of them
   * must be resident; the device's SM count. Undefined: no bound.
   */
  readonly maxNumSms?: number;
  /** Local (no communication). */
  getDispatchLayout(topkIdx: Tensor, options: StreamOptions): DispatchLayout;
  dispatch(args: BackendDispatchArgs<R>, slot: number, call: EpCall): Promise<BackendDispatchResult<R>>;
  combine(args: BackendCombineArgs<R>, slot: number, call: EpCall): Promise<BackendCombineResult>;
  lowLatencyDispatch(args: BackendLowLatencyDispatchArgs, slot: number, call: EpCall): Promise<BackendLowLatencyDispatchResult<L>>;
  lowLatencyCombine(args: BackendLowLatencyCombineArgs<L>, slot: number, call: EpCall): Promise<BackendLowLatencyCombineResult>;
  /**
   * Collective: resets low-latency receive state. `live` is this rank's count
   * of live low-latency results; if any rank has one, every rank throws
   * ERR_BUSY (agreeNoLowLatencyResults in transport.ts) and nothing is reset.
   */
  cleanLowLatencyBuffer(live: number, call: EpCall): Promise<void>;
  /**
   * This rank's part in `call`, which failed here before it communicated
   * (`failure`: src/ep/calls.ts), so that its peers fail it too, at once and
   * in step. `target`: for a combine, the slot (normal) or half (low-latency)
   * of the dispatch it combines; for a low-latency dispatch, the half whose
   * turn the call took; unused for a normal dispatch. It throws only where
   * this rank cannot take part at all (a cuda buffer an earlier error ended).
   */
  takePart(call: EpCall & { kind: DataCallKind }, failure: number, target: number): void;
  /** Called once no handle refers to `routing` any more. */
  releaseRouting?(routing: R): void;
  close(): Promise<void>;
}

/** The export `src/ep/cuda/backend.ts` must provide (loaded on demand by EpBuffer.create). */
export type CreateCudaBackend = (group: ProcessGroup, config: EpConfig) => Promise<EpBackend>;
