/**
 * One MoE layer on the GPUs of an EP group: router -> dispatch -> local
 * experts -> combine, plus the shared expert, every step enqueued on the
 * layer's stream. Normal mode (prefill) learns the receive counts on the host
 * once, in the dispatch; low-latency mode (decode) never waits for the host
 * and a whole decode step can be captured as one CUDA graph (captureDecode).
 *
 * Weights are device tensors: the gate and shared expert on every rank (DP,
 * bf16), and this rank's physical expert slots (EP: rank r holds slots
 * r*L ... r*L + L - 1, as EpBuffer routes them), bf16 or fp8 with 128x128
 * block scales. fp8 experts get fp8 tokens: the dispatch sends them cast per
 * 128 channels (half the bytes of bf16) and the GEMMs read half the weight
 * bytes, which bounds a decode step. With redundant experts or
 * EPLB, a DevicePlacement maps each chosen logical expert to a slot and counts
 * the slots' loads; rebalance() moves weights and rewrites it in place.
 */
import { linear } from '../blas/gemm.js';
import type { Communicator } from '../comm/communicator.js';
import { Graph } from '../cuda/graph.js';
import { Stream } from '../cuda/stream.js';
import type { Timeline } from '../cuda/timeline.js';
import type { EpBuffer } from '../ep/buffer.js';
import { WideepError } from '../errors.js';
import type { ExpertLocationMap } from '../planning/expert-location.js';
import { assertPlanForLayer, planRebalanceMoves, type RebalancePlan } from '../planning/rebalance-moves.js';
import { splitTwoBatch } from '../planning/tbo.js';
import type { MoeLayerConfig } from '../simulation/config.js';
import type { MoeLayerWeights } from '../simulation/weights.js';
import { deviceTensor, expectDType, expectShape, streamFor } from '../tensor/checks.js';
import { Tensor } from '../tensor/tensor.js';
import { swiglu } from './activation.js';
import { decodeScratch, type DecodeScratch } from './decode-scratch.js';
import { expertsForward, type ExpertWeightsOnDevice } from './experts.js';
import { checkExpertWeights } from './expert-weight-checks.js';
import { uploadLayerWeights, type HostUploadOptions } from './host-upload.js';
import { permuteToExperts, slotCapacity, unpermuteFromExperts } from './permute.js';
import { quantizeRowsFp8 } from './quantize.js';
import type { DevicePlacement } from './placement.js';
import { route } from './router.js';
import { moveExpertWeights } from './weight-moves.js';

export interface MoeLayerDeviceWeights {
  /** bf16 [E, H]. */
  gate: Tensor;
  /** f32 [E]: DeepSeek-V3's e_score_correction_bias. */
  gateBias?: Tensor;
  /**
   * This rank's physical expert slots: w13 [L, 2I, H], w2 [L, H, I], bf16, or
   * fp8e4m3 with w13Scales [L, 2I/128, H/128] and w2Scales [L, H/128, I/128]
   * (then H and I must be multiples of 512, cuBLASLt's block-scaled K).
   */
  experts: ExpertWeightsOnDevice;
  /** The shared experts as one, bf16: w13 [2Is, H], w2 [H, Is]. */
  shared?: { w13: Tensor; w2: Tensor };
}

export type ForwardMode = 'normal' | 'low-latency';

/**
 * The local experts' computation between dispatch and combine: for x bf16
 * [L, M, H] (rows of local expert l in x[l], the first counts[l] valid) it
 * returns bf16 [L, M, H] on `stream`. Rows past counts[l] are ignored. The
 * tokens come in bf16 whatever the layer's own experts are.
 */
export type ExpertsFunction = (input: { x: Tensor; counts: Tensor; mode: ForwardMode; stream: Stream }) => Tensor;

export interface MoeForwardOptions {
  /** normal: prefill (the dispatch learns counts on the host); low-latency: decode (no host sync). */
  mode: ForwardMode;
  stream?: Stream;
  /** bf16 [T, H] to write the output into (required while capturing a graph). */
  out?: Tensor;
  /** Records each stage's GPU time (not while capturing). */
  timeline?: Timeline;
  /** Replaces the grouped SwiGLU experts (the layer's own weights are then unused). */
  experts?: ExpertsFunction;
  /**
   * Two-batch overlap: the tokens split in two micro-batches (as the
   * planner's splitTwoBatch splits `seqLens`, default one token per sequence),
   * the second on its own stream, so that one micro-batch's dispatch or
   * combine runs while the other's experts compute. Every rank must pass it
   * alike (it changes the order of the EP calls); not while capturing.
   */
  tbo?: TwoBatchOptions;
}

export interface TwoBatchOptions {
  /** Tokens of each sequence this step, in order (sums to T). */
  seqLens?: readonly number[];
  /** The second micro-batch's stream (default: one the layer keeps). */
  stream?: Stream;
}

export type ExpertDType = 'bf16' | 'fp8e4m3';

/** Every tensor of a layer's device weights. */
export function deviceWeightTensors(w: MoeLayerDeviceWeights): Tensor[] {
  const e = w.experts;
  return [w.gate, w.gateBias, e.w13, e.w2, e.w13Scales, e.w2Scales, w.shared?.w13, w.shared?.w2].filter((t): t is Tensor => t !== undefined);
}

export interface MoeLayerOptions {
  /** Needed when the EP buffer has more slots than the layer has experts (redundant experts), and for rebalance(). */
  placement?: DevicePlacement;
  /** close() also frees the weights and the placement (default false: they are the caller's; fromHost's uploads are the layer's). */
  owns?: boolean;
  /**
   * How fp8 experts run their two GEMMs in low-latency (decode) steps:
   * 'cublaslt' (default), one cuBLASLt launch per expert over all its slots;
   * 'masked', wideep's own kernel, one launch for every expert over the rows
   * each one received (counted on the device). Normal steps, whose slots are
   * sized to the largest count, and bf16 experts always use cuBLASLt.
   */
  expertGemm?: ExpertGemm;
}

export type ExpertGemm = 'cublaslt' | 'masked';

export interface RebalanceOptions {
  /** NCCL over the EP group; needed when weights move between ranks. */
  comm?: Communicator;
  stream?: Stream;
  /**
   * planRebalanceMoves(placement.map, next), when the caller has it: one plan
   * covers every layer of the map, so rebalancing L layers plans once, not L
   * times. Checked against this layer's maps.
   */
  plan?: RebalancePlan;
}

export class MoeLayer {
  readonly config: MoeLayerConfig;
  readonly device: number;
  readonly placement: DevicePlacement | undefined;
  /** The routed experts' weights (and so the tokens they are sent). */
  readonly expertDType: ExpertDType;
  readonly expertGemm: ExpertGemm;
  readonly #ep: EpBuffer;
  readonly #weights: MoeLayerDeviceWeights;
  readonly #numLocal: number;
  #secondStream: Stream | undefined;
  #ownsWeights: boolean;
  readonly #ownsPlacement: boolean;

  constructor(ep: EpBuffer, config: MoeLayerConfig, weights: MoeLayerDeviceWeights, options: MoeLayerOptions = {}) {
    const where = 'MoeLayer';
    const E = config.numRoutedExperts;
    const P = ep.config.numExperts;
    const placement = options.placement;
    if (ep.config.hidden < config.hidden || (P !== E && !placement)) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `${where}: the EP buffer serves ${P} expert slots of width ${ep.config.hidden}, the layer has ${E} experts of width ${config.hidden}` +
          (P > E ? ' (more slots than experts needs a placement)' : ''),
      );
    }
    if (placement && (placement.numLogical !== E || placement.numPhysical !== P || placement.rank !== ep.config.rank)) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `${where}: placement: rank ${placement.rank} with ${placement.numLogical} experts in ${placement.numPhysical} slots, ` +
          `expected rank ${ep.config.rank} with ${E} in ${P}`,
      );
    }
    const gate = deviceTensor(where, 'weights.gate', weights.gate);
    this.device = gate.deviceIndex;
    const H = config.hidden;
    const I = config.moeIntermediate;
    const L = ep.config.numLocalExperts;
    expectDType(where, 'weights.gate', gate, ['bf16']);
    expectShape(where, 'weights.gate', gate, ['E', 'H'], [E, H]);
    if (weights.gateBias) expectShape(where, 'weights.gateBias', deviceTensor(where, 'weights.gateBias', weights.gateBias, this.device), ['E'], [E]);
    this.expertDType = checkExpertWeights(where, weights.experts, { L, H, I, device: this.device, ep });
    this.expertGemm = expertGemmOf(where, options.expertGemm, this.expertDType);
    if (weights.shared) {
      const Is = config.numSharedExperts * I;
      expectShape(where, 'weights.shared.w13', deviceTensor(where, 'weights.shared.w13', weights.shared.w13, this.device), ['2Is', 'H'], [2 * Is, H]);
      expectShape(where, 'weights.shared.w2', deviceTensor(where, 'weights.shared.w2', weights.shared.w2, this.device), ['H', 'Is'], [H, Is]);
    }
    this.config = config;
    this.placement = placement;
    this.#ownsWeights = this.#ownsPlacement = options.owns ?? false;
    this.#ep = ep;
    this.#weights = weights;
    this.#numLocal = L;
  }

  /**
   * Uploads a layer built on the host (src/simulation's weights, rounded to
   * bf16): the gate and shared expert whole, and the experts of rank
   * `ep.config.rank`'s slots (slot p holds expert p, or the placement's), in
   * bf16 or, with expertDType 'fp8e4m3', cast to fp8 128x128 blocks on the host.
   */
  static async fromHost(ep: EpBuffer, weights: MoeLayerWeights, device: number, options: MoeLayerOptions & HostUploadOptions = {}): Promise<MoeLayer> {
    const dev = await uploadLayerWeights(ep, weights, device, options);
    const layer = new MoeLayer(ep, weights.config, dev, { placement: options.placement, expertGemm: options.expertGemm });
    layer.#ownsWeights = true; // it uploaded them
    return layer;
  }

  /** The MoE output (routed + shared), bf16 [T, H], for the MoE input x bf16 [T, H]. A collective: every rank calls it. */
  async forward(x: Tensor, options: MoeForwardOptions): Promise<Tensor> {
    const stream = this.#checkForward('MoeLayer.forward', x, options);
    if (options.tbo) return this.#twoBatch(x, options, stream);
    return this.#run(this.#step(x, options, stream, options.out));
  }

  #checkForward(where: string, x: Tensor, options: MoeForwardOptions): Stream {
    deviceTensor(where, 'x', x, this.device);
    expectDType(where, 'x', x, ['bf16']);
    expectShape(where, 'x', x, ['T', 'H'], [null, this.config.hidden]);
    if (options?.mode !== 'normal' && options?.mode !== 'low-latency') {
      throw new WideepError('ERR_INVALID_ARG', `${where}: mode: expected 'normal' or 'low-latency', got ${String(options?.mode)}`);
    }
    if (options.out) {
      expectDType(where, 'out', deviceTensor(where, 'out', options.out, this.device), ['bf16']);
      expectShape(where, 'out', options.out, ['T', 'H'], [x.shape[0]!, this.config.hidden]);
    }
    if (options.experts !== undefined && typeof options.experts !== 'function') {
      throw new WideepError('ERR_INVALID_ARG', `${where}: experts: expected a function ({ x, counts, mode, stream }) => Tensor`);
    }
    return streamFor(where, this.device, options.stream);
  }

  async #run(step: Step): Promise<Tensor> {
    for await (const _ of this.#phases(step));
    return step.result!;
  }

  #step(x: Tensor, o: MoeForwardOptions, stream: Stream, out: Tensor | undefined, hooks = false, scratch?: DecodeScratch): Step {
    return { x, stream, mode: o.mode, out, experts: o.experts, hooks, scratch, stage: stageRunner(o.timeline, stream), result: undefined };
  }

  /**
   * Two micro-batches on two streams, their phases interleaved so that each
   * EP transfer has the other micro-batch's GEMMs beside it. Normal mode:
   * dispatch 0, experts 0 | dispatch 1, combine 0 | experts 1, combine 1.
   * Low-latency mode (receive hooks, so no kernel spins while the other
   * computes): send 0, send 1, receive + experts 0 | in flight 1, combine-send
   * 0, receive + experts 1, combine-send 1, combine-receive 0 and 1.
   */
  async #twoBatch(x: Tensor, o: MoeForwardOptions, s0: Stream): Promise<Tensor> {
    const where = 'MoeLayer.forward';
    const T = x.shape[0]!;
    if (s0.isCapturing()) throw new WideepError('ERR_UNSUPPORTED', `${where}: tbo: not during a CUDA-graph capture`);
    const seqLens = o.tbo!.seqLens ?? Array.from({ length: T }, () => 1);
    if (seqLens.reduce((a, b) => a + b, 0) !== T) throw new WideepError('ERR_INVALID_ARG', `${where}: tbo.seqLens: must sum to the ${T} tokens of x`);
    const split = T === 0 ? 0 : splitTwoBatch({ forwardMode: o.mode === 'normal' ? 'extend' : 'decode', seqLens }).splitTokenIndex;
    const s1 = o.tbo!.stream ?? (this.#secondStream ??= new Stream(this.device));
    if (s1 === s0 || s1.device !== this.device) throw new WideepError('ERR_INVALID_ARG', `${where}: tbo.stream: expected a second stream on cuda:${this.device}`);
    const out = o.out ?? Tensor.empty([T, this.config.hidden], 'bf16', { device: `cuda:${this.device}`, stream: s0 });
    // s1 starts after what s0 has queued (x's producer); s0 ends after s1.
    const fork = s0.record();
    s1.waitEvent(fork);
    const hooks = o.mode === 'low-latency';
    const steps = [this.#step(x.narrow(0, split), o, s0, out.narrow(0, split), hooks), this.#step(x.narrow(split, T - split), o, s1, out.narrow(split, T - split), hooks)];
    const phases = steps.map((st) => this.#phases(st));
    for (const i of o.mode === 'normal' ? [0, 0, 1, 0, 1, 1] : [0, 1, 0, 0, 1, 1, 0, 1]) await phases[i]!.next();
    const join = s1.record();
    s0.waitEvent(join);
    fork.close();
    join.close();
    return out;
  }

  /** One micro-batch's forward; each yield is a point where another micro-batch's phase may be enqueued. */
  async *#phases(step: Step): AsyncGenerator<void, void> {
    const w = this.#weights;
    const p = this.placement;
    const { x, stream, scratch: sc } = step;
    const { topkIdx, topkWeights, logits } = await step.stage('router', () =>
      route({ x, gateWeight: w.gate, bias: w.gateBias, config: this.config, replicas: p?.replicas(), counts: p?.loads, stream, ...sc?.router }),
    );
    const shared = await step.stage('shared', () => this.#sharedActivation(x, stream, sc));
    yield* step.mode === 'normal' ? this.#normal(step, topkIdx, topkWeights, shared) : this.#lowLatency(step, topkIdx, topkWeights, shared);
    if (!sc) for (const t of [logits, shared, topkIdx, topkWeights]) t?.close(stream);
  }

  /**
   * Captures one decode step (low-latency forward of `x` into `out`, both
   * bf16 [T, H] that stay allocated) as a CUDA graph. It runs the step once
   * first, so that every lazily made resource exists before the capture; a
   * collective, like forward. Replay with graph.launch(stream): it reads x
   * and the placement's tables as they are at each replay.
   */
  async captureDecode(x: Tensor, out: Tensor, options: { stream?: Stream; experts?: ExpertsFunction } = {}): Promise<Graph> {
    const o = { mode: 'low-latency' as const, out, stream: options.stream, experts: options.experts };
    const stream = this.#checkForward('MoeLayer.captureDecode', x, o);
    const fp8 = this.#fp8Tokens(o.experts);
    const masked = this.#maskedGemm(o.mode, o.experts);
    const scratch = decodeScratch(this.#ep.config, this.config, { T: x.shape[0]!, hasShared: this.#weights.shared !== undefined, fp8, masked, device: this.device, stream });
    try {
      await this.#run(this.#step(x, o, stream, out, false, scratch));
      return await Graph.capture(stream, async () => void (await this.#run(this.#step(x, o, stream, out, false, scratch))), { owns: scratch.all });
    } catch (e) {
      for (const t of scratch.all) t.close();
      throw e;
    }
  }

  /**
   * Moves to placement `next` (from EPLB): this rank's changed slots get
   * their new experts' weights (copies on the GPU, NCCL send/recv between
   * ranks), then the placement's device tables are rewritten in place. A
   * collective over the EP group; returns the plan it carried out (the
   * given one, or its own). Work on
   * `stream` before it sees the old placement, work after it the new one.
   */
  async rebalance(next: ExpertLocationMap, options: RebalanceOptions = {}): Promise<RebalancePlan> {
    const p = this.placement;
    if (!p) throw new WideepError('ERR_INVALID_ARG', 'MoeLayer.rebalance: the layer was built without a placement');
    const stream = streamFor('MoeLayer.rebalance', this.device, options.stream);
    const plan = options.plan ?? planRebalanceMoves(p.map, next);
    if (options.plan) assertPlanForLayer(plan, p.map, next, p.layer);
    moveExpertWeights({ plan, layer: p.layer, rank: p.rank, weights: this.#weights.experts, comm: options.comm, stream });
    await p.update(next, stream);
    return plan;
  }

  /** Frees its second stream, the weights it owns (fromHost's, or with owns) and, with owns, the placement. Idempotent. */
  close(): void {
    this.#secondStream?.close();
    this.#secondStream = undefined;
    if (this.#ownsWeights) for (const t of deviceWeightTensors(this.#weights)) t.close();
    if (this.#ownsPlacement) this.placement?.close();
  }

  /** silu(gate) * up of the shared expert for every token; its down projection is added where the layer's output is made. */
  #sharedActivation(x: Tensor, stream: Stream, scratch: DecodeScratch | undefined): Tensor | undefined {
    const s = this.#weights.shared;
    if (!s || x.shape[0] === 0) return undefined;
    const h = linear(x, s.w13, { out: scratch?.shared?.h, stream });
    const a = swiglu({ x: h, out: scratch?.shared?.a, stream }).out;
    if (!scratch) h.close(stream);
    return a;
  }

  /** Whether a step sends fp8 tokens: the layer's own fp8 experts do; a user's experts function gets bf16. */
  #fp8Tokens(experts: ExpertsFunction | undefined): boolean {
    return this.expertDType === 'fp8e4m3' && experts === undefined;
  }

  /**
   * Whether a step's expert GEMMs run on the masked kernel: the layer's own fp8
   * experts in low-latency steps (normal steps size their slots to the largest
   * count, which suits cuBLASLt's tiles).
   */
  #maskedGemm(mode: ForwardMode, experts: ExpertsFunction | undefined): boolean {
    return this.expertGemm === 'masked' && mode === 'low-latency' && this.#fp8Tokens(experts);
  }

  #experts(step: Step, x: Tensor, counts: Tensor, xScales: { xScales?: Tensor; xScalesLayout?: 'rows' | 'blocks' }): Tensor {
    if (step.experts) return step.experts({ x, counts, mode: step.mode, stream: step.stream });
    const sc = step.scratch;
    const strategy = this.#maskedGemm(step.mode, step.experts) ? 'masked' : undefined;
    return expertsForward({ x, ...xScales, counts, weights: this.#weights.experts, stream: step.stream, strategy, ...(sc ? { out: sc.y, scratch: sc.experts } : {}) });
  }

  async *#normal(step: Step, topkIdx: Tensor, topkWeights: Tensor, shared: Tensor | undefined): AsyncGenerator<void, void> {
    const { x, stream } = step;
    const d = await step.stage('dispatch', async () => {
      if (!this.#fp8Tokens(step.experts)) return this.#ep.dispatch({ x, topkIdx, topkWeights, stream });
      const q = quantizeRowsFp8({ x, stream });
      try {
        return await this.#ep.dispatch({ x: q.out, xScales: q.scales, topkIdx, topkWeights, stream });
      } finally {
        // Freed in stream order, behind the dispatch's kernels that read them.
        q.out.close(stream);
        q.scales.close(stream);
      }
    });
    yield;
    const N = d.numRecvTokens;
    const rows = await step.stage('experts', () => {
      if (N === 0) return Tensor.empty([0, this.config.hidden], 'bf16', { device: `cuda:${this.device}`, stream });
      const cap = slotCapacity(Math.max(...d.numRecvTokensPerExpert));
      const g = permuteToExperts({ x: d.recvX, xScales: d.recvXScales, topkIdx: d.recvTopkIdx!, numExperts: this.#numLocal, cap, stream });
      const y = this.#experts(step, g.x, g.counts, { xScales: g.scales, xScalesLayout: 'blocks' });
      const r = unpermuteFromExperts({ y, slotOf: g.slotOf, topkIdx: d.recvTopkIdx!, weights: d.recvTopkWeights!, stream });
      for (const t of [g.x, g.scales, g.counts, g.slotOf, g.overflow, y]) t?.close(stream);
      return r;
    });
    // The combine adds the shared expert's output after its reduction.
    const bias = await step.stage('shared', () => shared && linear(shared, this.#weights.shared!.w2, { stream }));
    yield;
    const { combinedX } = await step.stage('combine', () => this.#ep.combine({ x: rows, handle: d.handle, bias, out: step.out, stream }));
    rows.close(stream);
    bias?.close(stream);
    step.result = combinedX;
  }

  async *#lowLatency(step: Step, topkIdx: Tensor, topkWeights: Tensor, shared: Tensor | undefined): AsyncGenerator<void, void> {
    const ll = this.#ep.config.lowLatency;
    if (!ll) throw new WideepError('ERR_INVALID_ARG', 'MoeLayer.forward: low-latency mode needs an EP buffer created with lowLatency');
    const { x, stream } = step;
    const returnRecvHook = step.hooks;
    const d = await step.stage('dispatch', () =>
      this.#ep.lowLatencyDispatch({ x, topkIdx, maxTokensPerRank: ll.maxTokensPerRank, numExperts: this.#ep.config.numExperts, useFp8: this.#fp8Tokens(step.experts), returnRecvHook, stream }),
    );
    yield;
    if (d.hook) await step.stage('dispatch-recv', d.hook);
    const y = await step.stage('experts', () => this.#experts(step, d.recvX, d.recvCount, { xScales: d.recvXScales }));
    yield;
    const c = await step.stage('combine', () => this.#ep.lowLatencyCombine({ y, topkIdx, topkWeights, handle: d.handle, out: step.out, returnRecvHook, stream }));
    yield;
    if (c.hook) await step.stage('combine-recv', c.hook);
    if (!step.scratch || step.experts) y.close(stream);
    // out = shared · w2ᵀ + combined, in the down projection's epilogue.
    if (shared) await step.stage('shared', () => linear(shared, this.#weights.shared!.w2, { out: c.combinedX, add: c.combinedX, stream }));
    step.result = c.combinedX;
  }
}

interface Step {
  x: Tensor;
  stream: Stream;
  mode: ForwardMode;
  out: Tensor | undefined;
  experts: ExpertsFunction | undefined;
  /** Low-latency calls return receive hooks (two-batch overlap). */
  hooks: boolean;
  /** A captured decode step's intermediates, allocated outside the graph. */
  scratch: DecodeScratch | undefined;
  stage: <T>(label: string, enqueue: () => T | Promise<T>) => Promise<T>;
  /** The micro-batch's output, once its last phase ran. */
  result: Tensor | undefined;
}

function stageRunner(timeline: Timeline | undefined, stream: Stream): Step['stage'] {
  return async (label, enqueue) => (timeline ? timeline.span(label, stream, enqueue) : enqueue());
}

function expertGemmOf(where: string, v: unknown, dtype: ExpertDType): ExpertGemm {
  if (v === undefined) return 'cublaslt';
  if (v !== 'cublaslt' && v !== 'masked') throw new WideepError('ERR_INVALID_ARG', `${where}: expertGemm: expected 'cublaslt' or 'masked', got ${String(v)}`);
  if (v === 'masked' && dtype !== 'fp8e4m3') throw new WideepError('ERR_INVALID_ARG', `${where}: expertGemm 'masked' runs fp8 experts; these are ${dtype}`);
  return v;
}
