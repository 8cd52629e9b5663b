/**
 * One micro-batch of one rank going through the layer, as a set of
 * operations that the stage schedule calls in order. Communication is split
 * into a send operation, which starts the collective and leaves it in flight,
 * and a receive operation, which waits for it; between the two, the other
 * micro-batch runs.
 */
import type { DispatchResult, LowLatencyDispatchResult, CombineResult, LowLatencyCombineResult } from '../ep/types.js';
import { WideepError } from '../errors.js';
import { Tensor } from '../tensor/tensor.js';
import type { ResolvedDeepepMode } from '../planning/options.js';
import type { RankContext } from './context.js';
import { ExpertScratch, expertForward, expertRows } from './experts.js';
import { gateForward } from './gate.js';
import { attentionInput, attentionResidual, moeInput } from './layer.js';
import { addRows, fromBf16Bits, toBf16Bits } from './math.js';

/** The tokens of a micro-batch: whole sequences, except that a cut sequence's earlier part arrives as prefix. */
export interface MicroBatchInput {
  /** `[T * H]` residual stream of its tokens. */
  x: Float32Array;
  seqLens: number[];
  /** Per sequence, the attention inputs of its earlier tokens. */
  prefixes: Float32Array[];
}

export type OpName =
  | 'attnPrep'
  | 'attnCore'
  | 'gate'
  | 'dispatchSend'
  | 'sharedExpert'
  | 'dispatchRecv'
  | 'experts'
  | 'combineSend'
  | 'combineRecv'
  | 'output';

const noop = (): void => {};

/** A collective in flight; the catch keeps a failure from being reported as unhandled before it is awaited. */
function inFlight<T>(p: Promise<T>): Promise<T> {
  p.catch(noop);
  return p;
}

export class MicroBatch {
  /** 0 (A) or 1 (B): which EP buffer it uses. */
  readonly index: number;
  readonly input: MicroBatchInput;
  readonly numTokens: number;
  readonly mode: ResolvedDeepepMode;

  attnIn: Float32Array | undefined;
  h: Float32Array | undefined;
  moeIn: Float32Array | undefined;
  /** Gate output: logical ids. */
  logicalIdx: Int32Array | undefined;
  /** Ids sent to dispatch: physical slots (the logical ids without EPLB). */
  topkIdx: Int32Array | undefined;
  topkWeights: Float32Array | undefined;
  shared: Float32Array | undefined;
  combined: Float32Array | undefined;
  out: Float32Array | undefined;
  /** Rows this rank received in the dispatch and sent back in the combine. */
  dispatchRows = 0;
  combineRows = 0;

  #xTensor: Tensor | undefined;
  #idxTensor: Tensor | undefined;
  #weightTensor: Tensor | undefined;
  #dispatch: Promise<DispatchResult> | undefined;
  #llDispatch: Promise<LowLatencyDispatchResult> | undefined;
  #received: DispatchResult | undefined;
  #llReceived: LowLatencyDispatchResult | undefined;
  #y: Tensor | undefined;
  #combine: Promise<CombineResult> | undefined;
  #llCombine: Promise<LowLatencyCombineResult> | undefined;

  constructor(index: number, input: MicroBatchInput, hidden: number, mode: ResolvedDeepepMode) {
    this.index = index;
    this.input = input;
    this.numTokens = input.x.length / hidden;
    this.mode = mode;
  }

  /** Runs one operation; only the receives wait. */
  run(ctx: RankContext, op: OpName): void | Promise<void> {
    switch (op) {
      case 'attnPrep':
        return this.#attnPrep(ctx);
      case 'attnCore':
        return this.#attnCore(ctx);
      case 'gate':
        return this.#gate(ctx);
      case 'dispatchSend':
        return this.#dispatchSend(ctx);
      case 'sharedExpert':
        return this.#sharedExpert(ctx);
      case 'dispatchRecv':
        return this.#dispatchRecv();
      case 'experts':
        return this.#experts(ctx);
      case 'combineSend':
        return this.#combineSend(ctx);
      case 'combineRecv':
        return this.#combineRecv();
      case 'output':
        return this.#output();
    }
  }

  #need<T>(v: T | undefined, what: string, op: OpName): T {
    if (v === undefined) throw new WideepError('ERR_INVALID_ARG', `micro-batch ${this.index}: ${op} needs ${what}, which has not been computed: the stage order is wrong`);
    return v;
  }

  #attnPrep(ctx: RankContext): void {
    this.attnIn = attentionInput(ctx.weights, this.input.x);
  }

  #attnCore(ctx: RankContext): void {
    const attnIn = this.#need(this.attnIn, 'the attention input', 'attnCore');
    this.h = attentionResidual(ctx.weights, ctx.attention, this.input.x, attnIn, this.input.seqLens, this.input.prefixes);
    this.moeIn = moeInput(ctx.weights, this.h);
  }

  #gate(ctx: RankContext): void {
    const x = this.#need(this.moeIn, 'the MoE input', 'gate');
    const g = gateForward(ctx.weights, x, this.numTokens);
    this.logicalIdx = g.topkIdx;
    this.topkIdx = ctx.eplb ? ctx.eplb.toPhysical(g.topkIdx) : g.topkIdx;
    this.topkWeights = g.topkWeights;
  }

  #dispatchSend(ctx: RankContext): void {
    const x = this.#need(this.moeIn, 'the MoE input', 'dispatchSend');
    const idx = this.#need(this.topkIdx, 'the top-k ids', 'dispatchSend');
    const T = this.numTokens;
    const H = ctx.weights.config.hidden;
    const k = ctx.weights.config.topK;
    this.#xTensor = Tensor.from(toBf16Bits(x), { shape: [T, H], dtype: 'bf16' });
    this.#idxTensor = Tensor.from(idx, { shape: [T, k], dtype: 'i32' });
    this.#weightTensor = Tensor.from(this.#need(this.topkWeights, 'the top-k weights', 'dispatchSend'), { shape: [T, k], dtype: 'f32' });
    const buffer = ctx.buffers[this.index]!;
    if (this.mode === 'normal') {
      this.#dispatch = inFlight(buffer.dispatch({ x: this.#xTensor, topkIdx: this.#idxTensor, topkWeights: this.#weightTensor }));
    } else {
      this.#llDispatch = inFlight(
        buffer.lowLatencyDispatch({
          x: this.#xTensor,
          topkIdx: this.#idxTensor,
          maxTokensPerRank: ctx.lowLatencyTokens,
          numExperts: ctx.numPhysical,
          // bf16 rows keep the comparison with the reference tight; fp8 would add ~2^-4 relative error per element.
          useFp8: false,
          returnRecvHook: true,
        }),
      );
    }
  }

  #sharedExpert(ctx: RankContext): void {
    const x = this.#need(this.moeIn, 'the MoE input', 'sharedExpert');
    this.shared = expertRows(ctx.weights.shared, x, ctx.weights.config.hidden);
  }

  async #dispatchRecv(): Promise<void> {
    if (this.mode === 'normal') {
      this.#received = await this.#need(this.#dispatch, 'a dispatch in flight', 'dispatchRecv');
      this.dispatchRows = this.#received.numRecvTokens;
    } else {
      const r = await this.#need(this.#llDispatch, 'a dispatch in flight', 'dispatchRecv');
      await r.hook?.();
      this.#llReceived = r;
      this.dispatchRows = (r.recvCount.data as Int32Array).reduce((a, b) => a + b, 0);
    }
  }

  /** Runs the local experts on the received rows. */
  #experts(ctx: RankContext): void {
    const H = ctx.weights.config.hidden;
    const scratch = new ExpertScratch(ctx.weights.config.moeIntermediate);
    const y = new Float32Array(H);
    if (this.mode === 'normal') {
      // One row per received token: this rank's local experts' weighted outputs, summed (docs/architecture.md, "Normal combine").
      const d = this.#need(this.#received, 'the dispatched rows', 'experts');
      const N = d.numRecvTokens;
      const k = d.recvTopkIdx!.shape[1]!;
      const x = fromBf16Bits(d.recvX.data as Uint16Array);
      const idx = d.recvTopkIdx!.data as Int32Array;
      const w = d.recvTopkWeights!.data as Float32Array;
      const acc = new Float32Array(N * H);
      for (let r = 0; r < N; r++) {
        for (let j = 0; j < k; j++) {
          const l = idx[r * k + j]!;
          if (l < 0) continue;
          expertForward(ctx.experts.local(l), x, r * H, y, 0, scratch);
          const wj = w[r * k + j]!;
          for (let i = 0; i < H; i++) acc[r * H + i]! += wj * y[i]!;
        }
      }
      this.#y = Tensor.from(toBf16Bits(acc), { shape: [N, H], dtype: 'bf16' });
    } else {
      // Expert-major slots; each slot's output unweighted (the low-latency combine weights them).
      const d = this.#need(this.#llReceived, 'the dispatched rows', 'experts');
      const [L, S] = d.recvX.shape as [number, number, number];
      const counts = d.recvCount.data as Int32Array;
      const bits = d.recvX.data as Uint16Array;
      const out = Tensor.empty([L, S, H], 'bf16');
      const outBits = out.data as Uint16Array;
      for (let l = 0; l < L; l++) {
        const expert = ctx.experts.local(l);
        for (let s = 0; s < counts[l]!; s++) {
          const row = (l * S + s) * H;
          expertForward(expert, fromBf16Bits(bits, row, H), 0, y, 0, scratch);
          outBits.set(toBf16Bits(y), row);
        }
      }
      this.#y = out;
    }
    this.combineRows = this.dispatchRows;
  }

  #combineSend(ctx: RankContext): void {
    const y = this.#need(this.#y, 'the expert outputs', 'combineSend');
    const buffer = ctx.buffers[this.index]!;
    if (this.mode === 'normal') {
      const d = this.#need(this.#received, 'the dispatched rows', 'combineSend');
      this.#combine = inFlight(buffer.combine({ x: y, handle: d.handle }));
    } else {
      const d = this.#need(this.#llReceived, 'the dispatched rows', 'combineSend');
      this.#llCombine = inFlight(
        buffer.lowLatencyCombine({ y, topkIdx: this.#idxTensor!, topkWeights: this.#weightTensor!, handle: d.handle, returnRecvHook: true }),
      );
    }
  }

  async #combineRecv(): Promise<void> {
    if (this.mode === 'normal') {
      const r = await this.#need(this.#combine, 'a combine in flight', 'combineRecv');
      this.combined = r.combinedX.toFloat32();
    } else {
      const r = await this.#need(this.#llCombine, 'a combine in flight', 'combineRecv');
      await r.hook?.();
      this.combined = r.combinedX.toFloat32();
    }
  }

  #output(): void {
    const h = this.#need(this.h, 'the attention output', 'output');
    this.out = addRows(h, this.#need(this.combined, 'the combined expert outputs', 'output'), this.#need(this.shared, 'the shared expert output', 'output'));
  }
}
