/**
 * The cuda backend across nodes: normal mode's hierarchical path
 * (docs/architecture.md "EP across nodes"). Rank (a, i) is local rank i of
 * node a (nodes are runs of P = ranksPerNode ranks).
 *
 * dispatch: the node layout on the GPU; a header to every same-index rank
 * over the network leg (NCCL), read on the host; the ranks' verdict (the
 * header's failures, then within the node, on the host); the records over
 * the network leg; the intranode forward (src/ep/cuda/node/forward.ts).
 * combine: the verdict; the intranode forward in reverse; each node's
 * partials back over the network leg; the origin's sum over nodes.
 *
 * Every call's host steps run in call order (a queue), since the network
 * leg's NCCL calls must be issued in the same order on every rank. The
 * promise of a call resolves once all its work is enqueued; its inputs must
 * stay alive until then.
 */
import { Event } from '../../../cuda/event.js';
import { cudaProbe } from '../../../cuda/device.js';
import { Stream } from '../../../cuda/stream.js';
import { WideepError } from '../../../errors.js';
import type { ProcessGroup } from '../../../runtime/types.js';
import { itemSize } from '../../../tensor/dtype.js';
import { Tensor, type Device } from '../../../tensor/tensor.js';
import type {
  BackendCombineArgs,
  BackendCombineResult,
  BackendDispatchArgs,
  BackendDispatchResult,
  CreateCudaBackend,
  DispatchRouting,
  EpBackend,
  LowLatencyRouting,
} from '../../backend.js';
import { localFailureNumber, type DataCallKind, type EpCall } from '../../calls.js';
import { FP8_BLOCK } from '../../fp8-quant.js';
import type { DispatchLayout, EpConfig, StreamOptions } from '../../types.js';
import { createCudaBackend } from '../backend.js';
import { IntranodeForward, nodeConfig, type ForwardRouting } from './forward.js';
import { NodeLegKernels } from './kernels.js';
import { NcclNetworkLeg, type NetworkLeg } from './network-leg.js';
import { nodeGroup } from './node-group.js';
import { header, recordLayout, starts } from './plan.js';
import { Verdicts, badIdsError, type Failed } from './verdict.js';

interface NodeRouting extends DispatchRouting {
  readonly forward: ForwardRouting;
  /** i32 [T * N]: the tokens sent to each node, node after node (the network leg's send order). */
  readonly sendList: Tensor;
  /** i32 [T, N]: each token's row in sendList, -1 where it does not go. */
  readonly posInNode: Tensor;
  /** Per node: tokens sent there. */
  readonly sendCounts: readonly number[];
  /** The stream of the last call that read it: its tensors are freed there. */
  lastStream: Stream;
}

/** An Event whose done() also reports the failures of the network leg and of the intranode call it follows. */
class NodeEvent extends Event {
  readonly #after: Event | undefined;
  readonly #leg: NetworkLeg;
  constructor(device: number, after: Event | undefined, leg: NetworkLeg) {
    super(device, { timing: true });
    this.#after = after;
    this.#leg = leg;
  }
  override async done(): Promise<void> {
    await super.done();
    await this.#after?.done();
    const e = this.#leg.error;
    if (e) throw e;
  }
}

const unsupported = (what: string) =>
  new WideepError('ERR_UNSUPPORTED', `${what} is not built for a cuda buffer across nodes (its network leg needs the row counts on the host)`);

let instances = 0;

class CudaNodeBackend implements EpBackend<NodeRouting, LowLatencyRouting> {
  readonly kind = 'cuda' as const;
  readonly device: Device;
  readonly maxNumSms: number;
  readonly #dev: number;
  readonly #config: EpConfig;
  readonly #kernels: NodeLegKernels;
  readonly #leg: NetworkLeg;
  readonly #forward: IntranodeForward;
  readonly #verdicts: Verdicts;
  readonly #stream: Stream;
  /** The host steps of the calls so far, in call order. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(config: EpConfig, kernels: NodeLegKernels, leg: NetworkLeg, forward: IntranodeForward, verdicts: Verdicts) {
    this.#dev = config.device!;
    this.device = `cuda:${this.#dev}`;
    this.maxNumSms = cudaProbe().devices[this.#dev]?.multiProcessorCount ?? 132;
    this.#config = config;
    this.#kernels = kernels;
    this.#leg = leg;
    this.#forward = forward;
    this.#verdicts = verdicts;
    this.#stream = new Stream(this.#dev);
  }

  get #nodes(): number {
    return this.#config.worldSize / this.#config.ranksPerNode;
  }

  #streamFor(o: StreamOptions): Stream {
    const s = o.stream ?? this.#stream;
    if (o.previousEvent) s.waitEvent(o.previousEvent);
    return s;
  }

  /** Runs `step` after every earlier call's host steps. */
  #inTurn<T>(step: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(step);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  #event(s: Stream, after?: Event): NodeEvent | undefined {
    return s.isCapturing() ? undefined : (new NodeEvent(this.#dev, after, this.#leg).record(s) as NodeEvent);
  }

  /** The node layout's outputs for T tokens, on `s`. */
  #layoutOutputs(T: number, s: Stream) {
    const { worldSize: R, numExperts: E } = this.#config;
    const on = { device: this.device, stream: s };
    return {
      isTokenInRank: Tensor.empty([T, R], 'u8', on),
      numTokensPerRank: Tensor.empty([R], 'i32', on),
      numTokensPerExpert: Tensor.empty([E], 'i32', on),
      isTokenInNode: Tensor.empty([T, this.#nodes], 'u8', on),
      numTokensPerNode: Tensor.empty([this.#nodes], 'i32', on),
      badIds: Tensor.empty([1], 'i32', on),
    };
  }

  getDispatchLayout(topkIdx: Tensor, options: StreamOptions): DispatchLayout {
    if (topkIdx.dtype !== 'i32') throw unsupported('an i64 topkIdx');
    const s = this.#streamFor(options);
    const [T] = topkIdx.shape as [number];
    const { worldSize: R, numExperts: E } = this.#config;
    const out = this.#layoutOutputs(T, s);
    this.#kernels.layout(topkIdx, E, R, this.#config.ranksPerNode, out, s);
    out.isTokenInNode.close(s);
    out.badIds.close(s);
    const { isTokenInRank, numTokensPerRank, numTokensPerExpert, numTokensPerNode } = out;
    const event = this.#event(s);
    return { isTokenInRank, numTokensPerRank, numTokensPerExpert, numTokensPerNode, ...(event ? { event } : {}) };
  }

  dispatch(args: BackendDispatchArgs<NodeRouting>, slot: number, call: EpCall): Promise<BackendDispatchResult<NodeRouting>> {
    if (args.numWorstTokens > 0) throw unsupported('numWorstTokens');
    if (args.topkIdx && args.topkIdx.dtype !== 'i32') throw unsupported('an i64 topkIdx');
    const s = this.#streamFor(args);
    call.started = true;
    return this.#inTurn(() => this.#dispatch(args, slot, call, s));
  }

  async #dispatch(args: BackendDispatchArgs<NodeRouting>, slot: number, call: EpCall, s: Stream): Promise<BackendDispatchResult<NodeRouting>> {
    const where = 'dispatch';
    const { x, xScales, topkIdx, topkWeights, cached } = args;
    const { worldSize: R, ranksPerNode: P, numExperts: E } = this.#config;
    const N = this.#nodes;
    const [T, H] = x.shape as [number, number];
    const on = { device: this.device, stream: s };
    // A fresh dispatch's layout; a cached one reuses its routing's.
    const fresh = cached ? undefined : { sendList: Tensor.empty([Math.max(T * N, 1)], 'i32', on), posInNode: Tensor.empty([T, N], 'i32', on) };
    try {
      const sent = await this.#exchangeHeaders(s, (headers) => {
        if (!fresh) return false;
        const scratch = this.#layoutOutputs(T, s);
        this.#kernels.layout(topkIdx!, E, R, P, { ...scratch, ...fresh, header: headers }, s);
        for (const t of Object.values(scratch)) t.close(s);
        return true;
      }, 0);
      const W = header.width(P);
      const mineBad = sent.mine[header.badIds(P)]!;
      const rail = this.#railFailure(sent.got);
      const table = fresh ? Int32Array.from({ length: N * P }, (_, c) => sent.got[Math.floor(c / P) * W + header.rankTokens(c % P)]!) : [];
      const extras = await this.#verdicts.node(where, 'dispatch', call, rail, table, () => badIdsError(where, mineBad, E));
      const netCounts = cached ? cached.forward.netCounts : Array.from({ length: N }, (_, a) => sent.got[a * W + header.nodeTokens]!);
      const sendCounts = cached ? cached.sendCounts : Array.from({ length: N }, (_, b) => sent.mine[b * W + header.nodeTokens]!);
      const sendList = cached ? cached.sendList : fresh!.sendList;
      const record = recordLayout(H * itemSize(x.dtype), xScales ? H / FP8_BLOCK : 0, cached ? 0 : topkIdx!.shape[1]!);

      // The network leg: each node's records, from this rank's send list.
      const sendStarts = starts(sendCounts);
      const netStarts = starts(netCounts);
      const sendBuf = Tensor.empty([sendStarts.at(-1)!, record.bytes], 'u8', on);
      const recvBuf = Tensor.empty([netStarts.at(-1)!, record.bytes], 'u8', on);
      try {
        this.#kernels.pack(x, xScales, cached ? undefined : topkIdx, cached ? undefined : topkWeights, sendList, sendStarts.at(-1)!, record, sendBuf, s);
        this.#leg.exchange(
          sendCounts.map((c, b) => sendBuf.narrow(sendStarts[b]!, c)),
          netCounts.map((c, a) => recvBuf.narrow(netStarts[a]!, c)),
          s,
        );
        const got = await this.#forward.dispatch(
          { records: recvBuf, record, netCounts, tables: extras, dtype: x.dtype, hidden: H, cached: cached?.forward, numSms: args.numSms, stream: s },
          slot,
          call,
        );
        const routing: NodeRouting = cached ?? {
          numTokens: T,
          topk: record.topk,
          numRecvTokens: got.routing.numRows,
          numRows: got.routing.numRows,
          numRecvTokensPerExpert: got.routing.inner.numRecvTokensPerExpert,
          forward: got.routing,
          sendList,
          posInNode: fresh!.posInNode,
          sendCounts,
          lastStream: s,
        };
        routing.lastStream = s;
        return {
          recvX: got.recvX,
          recvXScales: got.recvXScales,
          recvTopkIdx: got.recvTopkIdx,
          recvTopkWeights: got.recvTopkWeights,
          routing,
          event: this.#event(s),
        };
      } finally {
        sendBuf.close(s);
        recvBuf.close(s);
      }
    } catch (e) {
      fresh?.sendList.close(s);
      fresh?.posInNode.close(s);
      throw e;
    }
  }

  /**
   * The headers over the network leg: `fill` writes this rank's [N][W]
   * header on the device and returns true, or false for a header of zeros
   * with `failure` in every row. Returns this rank's header and what every
   * node's same-index rank sent it, both read on the host.
   */
  async #exchangeHeaders(s: Stream, fill: (headers: Tensor) => boolean, failure: number): Promise<{ mine: Int32Array; got: Int32Array }> {
    const P = this.#config.ranksPerNode;
    const N = this.#nodes;
    const W = header.width(P);
    const on = { device: this.device, stream: s };
    const mine = Tensor.empty([N, W], 'i32', on);
    const got = Tensor.empty([N, W], 'i32', on);
    try {
      if (!fill(mine)) {
        const host = new Int32Array(N * W);
        for (let b = 0; b < N; b++) host[b * W + header.failure(P)] = failure;
        await mine.copyFrom(Tensor.from(host, { shape: [N, W], dtype: 'i32' }), { stream: s });
      }
      this.#leg.exchange(
        Array.from({ length: N }, (_, b) => mine.narrow(b, 1)),
        Array.from({ length: N }, (_, a) => got.narrow(a, 1)),
        s,
      );
      await this.#leg.wait(s);
      return { mine: (await mine.cpu({ stream: s })).data as Int32Array, got: (await got.cpu({ stream: s })).data as Int32Array };
    } finally {
      mine.close(s);
      got.close(s);
    }
  }

  /** The first failure the same-index ranks' headers report: a local failure, or ids out of range. */
  #railFailure(got: Int32Array): Failed | undefined {
    const P = this.#config.ranksPerNode;
    const W = header.width(P);
    const local = this.#config.rank % P;
    for (let a = 0; a < this.#nodes; a++) {
      const failure = got[a * W + header.failure(P)]!;
      const bad = got[a * W + header.badIds(P)]!;
      if (failure || bad) return { rank: a * P + local, failure: failure || localFailureNumber(new WideepError('ERR_INVALID_ARG', 'bad ids')) };
    }
    return undefined;
  }

  combine(args: BackendCombineArgs<NodeRouting>, slot: number, call: EpCall): Promise<BackendCombineResult> {
    const s = this.#streamFor(args);
    call.started = true;
    return this.#inTurn(() => this.#combine(args, slot, call, s));
  }

  async #combine(args: BackendCombineArgs<NodeRouting>, slot: number, call: EpCall, s: Stream): Promise<BackendCombineResult> {
    const where = 'combine';
    const { routing, topkWeights } = args;
    const failed = await this.#verdicts.rail(where, 'combine', call, undefined);
    await this.#verdicts.node(where, 'combine', call, failed, []);
    const H = args.x.shape[1]!;
    const T = routing.numTokens;
    const on = { device: this.device, stream: s };
    const partials = await this.#forward.combine(
      { x: args.x, topkWeights, routing: routing.forward, numSms: args.numSms, numSendSms: args.numSendSms, stream: s },
      slot,
      call,
    );
    // Each node's partials back to their origins, then the origin's sum.
    const netStarts = starts(routing.forward.netCounts);
    const sendStarts = starts(routing.sendCounts);
    const back = Tensor.empty([sendStarts.at(-1)!, H], 'bf16', on);
    const k = topkWeights?.shape[1] ?? 0;
    const backWeights = topkWeights ? Tensor.empty([sendStarts.at(-1)!, k], 'f32', on) : undefined;
    const legOf = (from: Tensor, to: Tensor) =>
      this.#leg.exchange(
        routing.forward.netCounts.map((c, a) => from.narrow(netStarts[a]!, c)),
        routing.sendCounts.map((c, b) => to.narrow(sendStarts[b]!, c)),
        s,
      );
    legOf(partials.combinedX, back);
    if (backWeights) legOf(partials.combinedTopkWeights!, backWeights);
    partials.combinedX.close(s);
    partials.combinedTopkWeights?.close(s);
    const combinedX = args.out ?? Tensor.empty([T, H], 'bf16', on);
    const combinedTopkWeights = topkWeights ? Tensor.empty([T, k], 'f32', on) : undefined;
    this.#kernels.reduce(back, backWeights, routing.posInNode, args.bias, combinedX, combinedTopkWeights, s);
    back.close(s);
    backWeights?.close(s);
    routing.lastStream = s;
    return { combinedX, combinedTopkWeights, event: this.#event(s, partials.event) };
  }

  releaseRouting(routing: NodeRouting): void {
    const s = routing.lastStream.closed ? this.#stream : routing.lastStream;
    routing.sendList.close(s);
    routing.posInNode.close(s);
    this.#forward.releaseRouting(routing.forward);
  }

  lowLatencyDispatch(): never {
    throw unsupported('low-latency mode');
  }

  lowLatencyCombine(): never {
    throw unsupported('low-latency mode');
  }

  cleanLowLatencyBuffer(): never {
    throw unsupported('low-latency mode');
  }

  /**
   * This rank's part in a call its host refused: the same steps, flagged,
   * so that every rank fails the call at once (ERR_PEER naming this one).
   * What the steps find is dropped: EpBuffer reports this rank's own error.
   */
  takePart(call: EpCall & { kind: DataCallKind }, failure: number): void {
    const failed = { rank: this.#config.rank, failure };
    const s = this.#stream;
    const part =
      call.kind === 'dispatch'
        ? async () => {
            await this.#exchangeHeaders(s, () => false, failure);
            await this.#verdicts.node('dispatch', 'dispatch', call, failed, []);
          }
        : async () => {
            await this.#verdicts.rail('combine', 'combine', call, failed);
            await this.#verdicts.node('combine', 'combine', call, failed, []);
          };
    if (call.kind === 'dispatch' || call.kind === 'combine') this.#inTurn(part).catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    try {
      await this.#forward.close();
    } finally {
      this.#leg.close();
      await this.#verdicts.close();
      this.#stream.close();
    }
  }
}

export const createCudaNodeBackend: CreateCudaBackend = async (group: ProcessGroup, config: EpConfig) => {
  const prefix = `wideep/ep/nodes${instances++}`;
  const kernels = new NodeLegKernels();
  const inner = await createCudaBackend(nodeGroup(group, config, prefix), nodeConfig(config));
  let leg: NetworkLeg | undefined;
  try {
    leg = await NcclNetworkLeg.create(group, config, prefix);
    return new CudaNodeBackend(config, kernels, leg, new IntranodeForward(inner, kernels, config), new Verdicts(group.store, config, prefix));
  } catch (e) {
    leg?.close();
    await inner.close();
    throw e;
  }
};
