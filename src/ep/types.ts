/**
 * Public types of the EP buffer API (docs/architecture.md "EP semantics"). Both backends
 * share them; `event`, `previousEvent` and `stream` only mean something on cuda.
 */
import type { Event } from '../cuda/event.js';
import type { Stream } from '../cuda/stream.js';
import type { Tensor } from '../tensor/tensor.js';
import type { DispatchHandle, LowLatencyHandle } from './leases.js';

export type EpBackendKind = 'cpu' | 'cuda';

export interface LowLatencyOptions {
  /** Most tokens one rank passes to one lowLatencyDispatch (1..1024). */
  maxTokensPerRank: number;
}

export interface EpBufferOptions {
  /** Default: 'cpu' for a CpuTransport; for a ProcessGroup 'cuda' when it has a device, else 'cpu'. */
  backend?: EpBackendKind;
  /** Widest row, in elements, that dispatch and combine accept (a multiple of 8). */
  hidden: number;
  /** Global expert count; a multiple of the world size. */
  numExperts: number;
  /** Normal mode: most tokens one rank passes to one dispatch. */
  maxTokensPerRank: number;
  /** Widest top-k (default 16). */
  maxTopk?: number;
  /** Dispatch results that may be alive at once (default 2). */
  numRecvSlots?: number;
  /** Enables the low-latency methods. */
  lowLatency?: LowLatencyOptions;
  /** Bound on every wait for a peer, in ms (default 100000, at most 2^31 - 1: the longest Node.js timer). */
  timeoutMs?: number;
  /** cuda: the GPU to use (default: the group's device). */
  device?: number;
  /**
   * Ranks per node, dividing the world size: ranks r and s share a node when
   * floor(r / ranksPerNode) equals floor(s / ranksPerNode). Several nodes make
   * normal mode hierarchical (cuda: NCCL between nodes, each node's ranks on one
   * host; low-latency mode across nodes is refused, ERR_UNSUPPORTED). Default: a ProcessGroup's
   * own layout (localWorldSize when its nnodes nodes are equal), else the
   * whole world is one node.
   */
  ranksPerNode?: number;
}

/** The options after defaults, identical on every rank except `rank`, `timeoutMs` and `device`. */
export interface EpConfig {
  readonly rank: number;
  readonly worldSize: number;
  readonly backend: EpBackendKind;
  readonly hidden: number;
  readonly numExperts: number;
  readonly numLocalExperts: number;
  readonly maxTokensPerRank: number;
  readonly maxTopk: number;
  readonly numRecvSlots: number;
  readonly lowLatency: Readonly<LowLatencyOptions> | undefined;
  readonly timeoutMs: number;
  readonly device: number | undefined;
  readonly ranksPerNode: number;
}

/** cuda-only ordering options; the cpu backend accepts and ignores them (its work is complete when the promise resolves). */
export interface StreamOptions {
  /** Work waits for this event before it starts. */
  previousEvent?: Event;
  /** Stream to enqueue on (default: the buffer's communication stream). */
  stream?: Stream;
}

export interface DispatchLayout {
  /** i32 [R]: tokens sent to each rank (each token counted once per rank). */
  numTokensPerRank: Tensor;
  /** i32 [E]: tokens that select each expert (each token counted once per expert). */
  numTokensPerExpert: Tensor;
  /** u8 [T, R]: 1 where the token selects some expert of that rank. */
  isTokenInRank: Tensor;
  /**
   * i32 [R / ranksPerNode]: tokens sent to each node, each token counted once
   * per node (DeepEP's num_tokens_per_rdma_rank). Left out by the cuda
   * backend within one node.
   */
  numTokensPerNode?: Tensor;
  /** cuda: recorded after the layout kernel. */
  event?: Event;
}

export interface DispatchOptions extends StreamOptions {
  /** bf16 [T, H], or fp8e4m3 [T, H] together with `xScales`. */
  x: Tensor;
  /** f32 [T, H/128]: one dequantisation scale per 128 channels; required iff x is fp8. */
  xScales?: Tensor;
  /** i32 or i64 [T, k]; -1 = no expert. Required without `handle`, forbidden with it. */
  topkIdx?: Tensor;
  /** f32 [T, k]. Required without `handle`, forbidden with it. */
  topkWeights?: Tensor;
  /** A layout of this `topkIdx` from getDispatchLayout (optional). */
  layout?: DispatchLayout;
  /** Cached routing from an earlier dispatch of this buffer: only x (+ scales) moves. */
  handle?: DispatchHandle;
  /** Must equal the buffer's numExperts when given. */
  numExperts?: number;
  /** numRecvTokensPerExpert is rounded up to a multiple of this (default 1). */
  expertAlignment?: number;
  /**
   * > 0: outputs have this many rows whatever the real count, and the host does
   * not learn the counts (numRecvTokens = -1). At most worldSize *
   * maxTokensPerRank (a receive slot's rows). An overflow on any rank fails
   * the call on every rank with ERR_INVALID_ARG naming that rank, before any
   * row moves (cuda finds it on the device, and the buffer is unusable then).
   * With a handle: 0 or the handle's row count (the handle's choice applies).
   * A dispatch captured in a CUDA graph needs it, or a handle (ERR_UNSUPPORTED
   * otherwise: the host would wait for counts).
   */
  numWorstTokens?: number;
  /** cuda: SMs for the communication kernels (default 24, at most the GPU's SM count). */
  numSms?: number;
}

export interface DispatchResult extends Disposable {
  /** [N, H] in x's dtype; rows ordered by source rank, then source token index. */
  recvX: Tensor;
  /** f32 [N, H/128] (fp8 only). */
  recvXScales?: Tensor;
  /** [N, k] in topkIdx's dtype: local expert ids, -1 elsewhere. Undefined for a cached dispatch. */
  recvTopkIdx?: Tensor;
  /** f32 [N, k]: the weight where recvTopkIdx >= 0, else 0. Undefined for a cached dispatch. */
  recvTopkWeights?: Tensor;
  /** N, or -1 with numWorstTokens. */
  numRecvTokens: number;
  /** [L]: rows per local expert rounded up to expertAlignment; [] with numWorstTokens. */
  numRecvTokensPerExpert: number[];
  handle: DispatchHandle;
  /** cuda: recorded after the dispatch; done() rejects with the call's error (ERR_PEER when a peer refused it). */
  event?: Event;
  /** Frees the receive slot (same as handle.release()). Idempotent. */
  release(): void;
}

export interface CombineOptions extends StreamOptions {
  /** bf16 [N, H]: one row per received row of the handle's dispatch (N = its row count). */
  x: Tensor;
  handle: DispatchHandle;
  /** f32 [N, k]: reduced the same way as x. */
  topkWeights?: Tensor;
  /** bf16 [T, H], or two of them, added after the reduction. */
  bias?: Tensor | readonly [Tensor, Tensor];
  /** Keep the handle (and its slot) alive after this combine; without it, the handle ends with the call, even one that fails. */
  keepHandle?: boolean;
  /** cuda: SMs for the combine kernel (default 24, at most the GPU's SM count). */
  numSms?: number;
  /**
   * cuda, several ranks: how many of numSms push rows back to their origins;
   * the others reduce, and the senders join them once their rows are out.
   * 1 to numSms - 1 (default: min((R - 1) / R, 2 / 3) of numSms). A tuning
   * knob: the best share depends on the machine's NVLink and the rank count.
   */
  numSendSms?: number;
  /**
   * bf16 [T, H] to write combinedX into; must not overlap x. A combine
   * captured in a CUDA graph needs it, and no topkWeights (ERR_UNSUPPORTED
   * otherwise: its outputs would be allocated inside the graph, which then
   * could not be replayed while they are alive).
   */
  out?: Tensor;
}

export interface CombineResult {
  /**
   * bf16 [T, H]: starting from +0, the float32 sum over the ranks that received
   * the token, in increasing rank order, then + bias0, + bias1, rounded once.
   * Over several nodes (cpu backend), each node's sum is rounded to bf16 before
   * the nodes' partials are added in node order: within 2^-6 of the terms'
   * magnitudes of the one-node result (docs/architecture.md "EP across nodes").
   */
  combinedX: Tensor;
  /** f32 [T, k] when topkWeights was given. */
  combinedTopkWeights?: Tensor;
  /** cuda: recorded after the combine; done() rejects with the call's error (ERR_PEER when a peer refused it or its dispatch). */
  event?: Event;
}

/**
 * Low-latency kernels (cuda) take every SM and wait for their peers' matching
 * kernels. Enqueue a rank's EP operations in the same order on every rank. One
 * buffer runs its own in that order whatever streams they are given, and the
 * low-latency launches of all buffers on a GPU run in the order they were
 * enqueued too (two such kernels at once on one GPU cannot both be resident,
 * and ranks that started them in different orders would wait on each other
 * until ERR_TIMEOUT). A CUDA-graph capture is not ordered against work outside it.
 */
export interface LowLatencyDispatchOptions extends StreamOptions {
  /** bf16 [T, H], T <= maxTokensPerRank. */
  x: Tensor;
  /**
   * i32 or i64 [T, k], ids in [-1, numExperts). Ids in host memory are checked
   * before anything starts; in device memory the host cannot read them, so the
   * kernel leaves an id outside that range out of the send and fails this rank's
   * event with ERR_INVALID_ARG (the buffer is unusable then).
   */
  topkIdx: Tensor;
  /** Must equal options.lowLatency.maxTokensPerRank. */
  maxTokensPerRank: number;
  /** Must equal the buffer's numExperts. */
  numExperts: number;
  /** Send fp8 rows with per-128-channel scales (default true; needs H % 128 == 0). */
  useFp8?: boolean;
  /** Round scales up to powers of two (default false; ignored without useFp8). */
  roundScale?: boolean;
  /** Return `hook`, which completes the receive (see LowLatencyDispatchResult.hook). */
  returnRecvHook?: boolean;
  /** i32 [L], incremented by recvCount. */
  cumulativeRecvStats?: Tensor;
}

export interface LowLatencyDispatchResult extends Disposable {
  /** [L, R*M, H], fp8e4m3 or bf16; slots ordered by source rank, then source token. */
  recvX: Tensor;
  /** f32 [L, R*M, H/128] (fp8 only). */
  recvXScales?: Tensor;
  /** i32 [L]: slots used per local expert. */
  recvCount: Tensor;
  handle: LowLatencyHandle;
  /**
   * cuda: recorded after the call's kernels (with returnRecvHook, again behind
   * the receive when the hook runs). done() rejects with the call's error:
   * ERR_PEER when a peer refused the call, whose combine then does nothing on
   * any rank. No host sync sees it sooner.
   */
  event?: Event;
  /**
   * With returnRecvHook. cuda: the dispatch only sent; the hook completes the
   * receive, and reading recvX, recvXScales, recvCount or the handle's tensors
   * before it has resolved is a usage error (they may be incomplete). cpu:
   * everything has arrived already and the hook resolves at once. Call it
   * once; lowLatencyCombine refuses the handle (ERR_INVALID_ARG) until it has
   * been called, and releasing the result without calling it runs the receive
   * first, so that this rank stays in step with its peers.
   */
  hook?: () => Promise<void>;
  /** Frees the low-latency buffer (same as handle.release()). Idempotent. */
  release(): void;
}

export interface LowLatencyCombineOptions extends StreamOptions {
  /** bf16 [L, R*M, H]: expert outputs in the dispatch's slot layout. */
  y: Tensor;
  /** This rank's i32/i64 [T, k] of that dispatch, same T and k (entries may be -1 to skip). */
  topkIdx: Tensor;
  /** f32 [T, k]. */
  topkWeights: Tensor;
  handle: LowLatencyHandle;
  /**
   * Return `hook`: on cuda combinedX is complete only once it has resolved. The
   * send half still waits (within the buffer's timeout) until every rank has
   * entered its combine, because owners reduce with the origins' weights.
   */
  returnRecvHook?: boolean;
  /** bf16 [T, H] to write the result into; required during a CUDA-graph capture (ERR_UNSUPPORTED otherwise). */
  out?: Tensor;
}

export interface LowLatencyCombineResult {
  /**
   * bf16 [T, H]. Each rank that owns some of the token's experts reduces its
   * share first: partial = bf16 of the float32 sum over k ascending (skipping
   * -1 and other ranks' experts) of fround(w[t, k] * y[slot of (t, k)])
   * (multiply, round, add: no fused multiply-add). combinedX is bf16 of the
   * float32 sum of the partials, owner ranks ascending. So a token crosses
   * NVLink once per owner rank, not once per expert, at the cost of one bf16
   * rounding per partial (as in normal mode, where each rank returns one row).
   */
  combinedX: Tensor;
  /** cuda: as LowLatencyDispatchResult.event, for the combine. */
  event?: Event;
  /**
   * With returnRecvHook. cuda: completes the receive. cpu: resolves at once.
   * Call it once; until then the dispatch's handle keeps its buffer, and
   * releasing the handle without calling it runs the receive first, so that
   * this rank stays in step with its peers.
   */
  hook?: () => Promise<void>;
}
