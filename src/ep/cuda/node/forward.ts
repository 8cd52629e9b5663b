/**
 * The intranode forward of the hierarchical normal mode. Rank (b, i)
 * forwards the tokens it received over the network from every node's rank
 * (a, i) to the ranks of node b that hold their experts, through the cuda
 * backend's NVLink kernels on a buffer of node b's ranks (global expert ids
 * become the node's local ids, other nodes' ids -1). The intranode dispatch
 * lays rows out by forwarder i, then source node a; a block reorder then
 * lays them out by global source rank a * P + i, then source token, as the
 * flat path does. Combine runs it in reverse: reorder back, then the
 * intranode combine, which sums each token's rows over the node into one
 * bf16 partial per (token, node) at its forwarder.
 */
import { copyDeviceToDevice } from '../../../cuda/memory.js';
import type { Event } from '../../../cuda/event.js';
import type { Stream } from '../../../cuda/stream.js';
import { WideepError } from '../../../errors.js';
import { itemSize, type DType } from '../../../tensor/dtype.js';
import { Tensor } from '../../../tensor/tensor.js';
import type { DispatchRouting, EpBackend } from '../../backend.js';
import type { EpCall } from '../../calls.js';
import type { EpConfig } from '../../types.js';
import type { NodeLegKernels } from './kernels.js';
import { recvCountsOf, reorderBlocks, starts, type Block, type RecordLayout } from './plan.js';

/** What a forward remembers of its dispatch, for its combine and cached dispatches. */
export interface ForwardRouting {
  /** The intranode dispatch's routing. */
  readonly inner: DispatchRouting;
  /** Per forwarder i of this node: its [N][P] row counts (rows from (a, i) to local rank j at a * P + j). */
  readonly tables: readonly Int32Array[];
  /** Per source node: the tokens this rank received over the network (and forwarded). */
  readonly netCounts: readonly number[];
  /** From the intranode order to the flat order. */
  readonly blocks: readonly Block[];
  /** Rows this rank received in all. */
  readonly numRows: number;
}

export interface ForwardedRows {
  recvX: Tensor;
  recvXScales: Tensor | undefined;
  /** i32 local ids; undefined for a cached dispatch. */
  recvTopkIdx: Tensor | undefined;
  recvTopkWeights: Tensor | undefined;
  routing: ForwardRouting;
}

/** Per (token, source node): this node's partial, in the order the tokens came over the network. */
export interface NodePartials {
  combinedX: Tensor;
  combinedTopkWeights: Tensor | undefined;
  event?: Event;
}

export interface DispatchForwardArgs {
  /** u8 [sum(netCounts), record.bytes]: node 0's records, then node 1's, ... */
  records: Tensor;
  record: RecordLayout;
  netCounts: readonly number[];
  /** As ForwardRouting.tables; unused for a cached dispatch (its routing's apply). */
  tables: readonly Int32Array[];
  dtype: DType;
  hidden: number;
  cached: ForwardRouting | undefined;
  numSms: number | undefined;
  stream: Stream;
}

export interface CombineForwardArgs {
  /** bf16 [numRows, H] in the flat order. */
  x: Tensor;
  topkWeights: Tensor | undefined;
  routing: ForwardRouting;
  numSms: number | undefined;
  numSendSms: number | undefined;
  stream: Stream;
}

/** The intranode buffer's options: node b's P ranks, its P * L experts, up to N * T tokens from each forwarder. */
export function nodeConfig(config: EpConfig): EpConfig {
  const P = config.ranksPerNode;
  return {
    ...config,
    rank: config.rank % P,
    worldSize: P,
    numExperts: P * config.numLocalExperts,
    maxTokensPerRank: (config.worldSize / P) * config.maxTokensPerRank,
    lowLatency: undefined,
  };
}

/** A call of the intranode buffer with the outer call's number (the same on every rank). */
function innerCall(call: EpCall): EpCall {
  return { kind: call.kind, buffer: call.buffer, number: call.number, started: false };
}

/** Copies each block of rows from `src` to `dst` (swap: from `to` back to `from`). */
function copyBlocks(dst: Tensor, src: Tensor, blocks: readonly Block[], swap: boolean, s: Stream): void {
  const rowBytes = dst.shape.length < 2 ? 0 : (dst.numel / Math.max(dst.shape[0]!, 1)) * itemSize(dst.dtype);
  for (const b of blocks) {
    const [to, from] = swap ? [b.from, b.to] : [b.to, b.from];
    copyDeviceToDevice(dst.ptr + BigInt(to * rowBytes), src.ptr + BigInt(from * rowBytes), b.rows * rowBytes, s);
  }
}

export class IntranodeForward {
  readonly #inner: EpBackend;
  readonly #kernels: NodeLegKernels;
  readonly #config: EpConfig;
  /** This node's experts, [begin, end) of the global ids. */
  readonly #experts: { begin: number; end: number };
  /**
   * Per receive slot and output: where the reordered rows go, grown as
   * needed. Results are views of it, valid while the slot is leased, as the
   * flat path's are views of its slot: callers never free them.
   */
  readonly #staging = new Map<string, { tensor: Tensor; stream: Stream }>();

  /** `inner`: a cuda backend of this node's ranks (rank = local index). */
  constructor(inner: EpBackend, kernels: NodeLegKernels, config: EpConfig) {
    this.#inner = inner;
    this.#kernels = kernels;
    this.#config = config;
    const P = config.ranksPerNode;
    const span = P * config.numLocalExperts;
    const begin = Math.floor(config.rank / P) * span;
    this.#experts = { begin, end: begin + span };
  }

  async dispatch(args: DispatchForwardArgs, slot: number, call: EpCall): Promise<ForwardedRows> {
    const { record, cached, stream: s } = args;
    const { ranksPerNode: P, worldSize: R, rank } = this.#config;
    const N = R / P;
    const H = args.hidden;
    const M = starts(args.netCounts).at(-1)!;
    const on = { device: this.#inner.device, stream: s };
    const x = Tensor.empty([M, H], args.dtype, on);
    const xScales = record.scalesPerRow > 0 ? Tensor.empty([M, record.scalesPerRow], 'f32', on) : undefined;
    const topkIdx = record.topk > 0 ? Tensor.empty([M, record.topk], 'i32', on) : undefined;
    const topkWeights = record.topk > 0 ? Tensor.empty([M, record.topk], 'f32', on) : undefined;
    const staged = [x, xScales, topkIdx, topkWeights];
    let pending;
    try {
      this.#kernels.unpack(args.records, M, record, this.#experts, { x, xScales, topkIdx, topkWeights }, s);
      pending = this.#inner.dispatch(
        { x, xScales, topkIdx, topkWeights, layout: undefined, cached: cached?.inner, numWorstTokens: 0, numSms: args.numSms, stream: s },
        slot,
        innerCall(call),
      );
    } finally {
      for (const t of staged) t?.close(s); // after the kernels that read them, on the same stream
    }
    const got = await pending;
    const tables = cached?.tables ?? args.tables;
    const blocks = cached?.blocks ?? reorderBlocks(tables, rank % P, N, P);
    const numRows = got.routing.numRows;
    const expected = recvCountsOf(tables, rank % P, N, P).reduce((a, b) => a + b, 0);
    if (numRows !== expected) {
      throw new WideepError('ERR_PROTOCOL', `dispatch: the node's forwarders announced ${expected} rows for this rank, but ${numRows} arrived`);
    }
    const reordered = (t: Tensor | undefined, field: string) => {
      if (!t) return undefined;
      const out = this.#staged(`${slot}/${field}`, t, s);
      copyBlocks(out, t, blocks, false, s);
      return out;
    };
    return {
      recvX: reordered(got.recvX, 'x')!,
      recvXScales: reordered(got.recvXScales, 'scales'),
      recvTopkIdx: reordered(got.recvTopkIdx, 'topkIdx'),
      recvTopkWeights: reordered(got.recvTopkWeights, 'topkWeights'),
      routing: cached ?? { inner: got.routing, tables, netCounts: args.netCounts, blocks, numRows },
    };
  }

  /** A view of like's shape and dtype in the staging buffer `key`, which grows (on stream s) when too small. */
  #staged(key: string, like: Tensor, s: Stream): Tensor {
    const rows = like.shape[0]!;
    const rowShape = like.shape.slice(1);
    const held = this.#staging.get(key);
    if (held) {
      const t = held.tensor;
      if (t.dtype === like.dtype && t.shape[0]! >= rows && t.shape.slice(1).every((d, i) => d === rowShape[i])) {
        held.stream = s;
        return t.narrow(0, rows);
      }
      t.close(held.stream.closed ? undefined : held.stream);
    }
    const grown = Tensor.empty([Math.max(rows, 1), ...rowShape], like.dtype, { device: this.#inner.device, stream: s });
    this.#staging.set(key, { tensor: grown, stream: s });
    return grown.narrow(0, rows);
  }

  /** Enqueues the reorder back and the intranode combine; the partials are this rank's, as a forwarder. */
  async combine(args: CombineForwardArgs, slot: number, call: EpCall): Promise<NodePartials> {
    const { routing, stream: s } = args;
    const on = { device: this.#inner.device, stream: s };
    const back = (t: Tensor | undefined) => {
      if (!t) return undefined;
      const out = Tensor.empty(t.shape, t.dtype, on);
      copyBlocks(out, t, routing.blocks, true, s);
      return out;
    };
    const x = back(args.x)!;
    const topkWeights = back(args.topkWeights);
    try {
      return await this.#inner.combine(
        { x, routing: routing.inner, topkWeights, bias: [], numSms: args.numSms, numSendSms: args.numSendSms, out: undefined, stream: s },
        slot,
        innerCall(call),
      );
    } finally {
      x.close(s);
      topkWeights?.close(s);
    }
  }

  releaseRouting(routing: ForwardRouting): void {
    this.#inner.releaseRouting?.(routing.inner);
  }

  close(): Promise<void> {
    for (const { tensor, stream } of this.#staging.values()) tensor.close(stream.closed ? undefined : stream);
    this.#staging.clear();
    return this.#inner.close();
  }
}
