/**
 * One MoE layer on the GPUs of an EP group: router -> dispatch -> local
 * experts -> combine, plus the shared expert, every step enqueued on the
 * layer's stream. Normal mode (prefill) learns the receive counts on the host
 * once, in the dispatch; low-latency mode (decode) never waits for the host
 * and can be captured in a CUDA graph.
 *
 * Weights are bf16 device tensors: the gate and shared expert on every rank
 * (DP), and this rank's slice of the routed experts (EP: rank r holds experts
 * r*L ... r*L + L - 1, as EpBuffer routes them).
 */
import { linear } from '../blas/gemm.js';
import type { Stream } from '../cuda/stream.js';
import type { EpBuffer } from '../ep/buffer.js';
import { WideepError } from '../errors.js';
import type { MoeLayerConfig } from '../simulation/config.js';
import type { MoeLayerWeights } from '../simulation/weights.js';
import { deviceTensor, expectDType, expectShape, streamFor } from '../tensor/checks.js';
import { f32ToBf16Bits } from '../tensor/convert.js';
import { Tensor } from '../tensor/tensor.js';
import { swiglu } from './activation.js';
import { expertsForward, type ExpertWeightsOnDevice } from './experts.js';
import { permuteToExperts, unpermuteFromExperts } from './permute.js';
import { route } from './router.js';

export interface MoeLayerDeviceWeights {
  /** bf16 [E, H]. */
  gate: Tensor;
  /** f32 [E]: DeepSeek-V3's e_score_correction_bias. */
  gateBias?: Tensor;
  /** This rank's routed experts, bf16: w13 [L, 2I, H], w2 [L, H, I]. */
  experts: ExpertWeightsOnDevice;
  /** The shared experts as one, bf16: w13 [2Is, H], w2 [H, Is]. */
  shared?: { w13: Tensor; w2: Tensor };
}

export type ForwardMode = 'normal' | 'low-latency';

export interface MoeForwardOptions {
  /** normal: prefill (the dispatch learns counts on the host); low-latency: decode (no host sync). */
  mode: ForwardMode;
  stream?: Stream;
}

/** Rows of a normal-mode expert slot are padded to this (cuBLASLt's fp8 scale groups also need 4). */
const SLOT_ROWS_ALIGN = 8;

export class MoeLayer {
  readonly config: MoeLayerConfig;
  readonly device: number;
  readonly #ep: EpBuffer;
  readonly #weights: MoeLayerDeviceWeights;
  readonly #numLocal: number;

  constructor(ep: EpBuffer, config: MoeLayerConfig, weights: MoeLayerDeviceWeights) {
    const where = 'MoeLayer';
    const E = config.numRoutedExperts;
    if (ep.config.numExperts !== E || ep.config.hidden < config.hidden) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        `${where}: the EP buffer serves ${ep.config.numExperts} experts of width ${ep.config.hidden}, the layer has ${E} of width ${config.hidden}`,
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
    expectShape(where, 'weights.experts.w13', deviceTensor(where, 'weights.experts.w13', weights.experts.w13, this.device), ['L', '2I', 'H'], [L, 2 * I, H]);
    expectShape(where, 'weights.experts.w2', deviceTensor(where, 'weights.experts.w2', weights.experts.w2, this.device), ['L', 'H', 'I'], [L, H, I]);
    if (weights.shared) {
      const Is = config.numSharedExperts * I;
      expectShape(where, 'weights.shared.w13', deviceTensor(where, 'weights.shared.w13', weights.shared.w13, this.device), ['2Is', 'H'], [2 * Is, H]);
      expectShape(where, 'weights.shared.w2', deviceTensor(where, 'weights.shared.w2', weights.shared.w2, this.device), ['H', 'Is'], [H, Is]);
    }
    this.config = config;
    this.#ep = ep;
    this.#weights = weights;
    this.#numLocal = L;
  }

  /**
   * Uploads a layer built on the host (src/simulation's weights, rounded to
   * bf16): the gate and shared expert whole, and rank `ep.config.rank`'s experts.
   */
  static async fromHost(ep: EpBuffer, weights: MoeLayerWeights, device: number, stream?: Stream): Promise<MoeLayer> {
    const c = weights.config;
    const [H, I, E] = [c.hidden, c.moeIntermediate, c.numRoutedExperts];
    const L = ep.config.numLocalExperts;
    const first = ep.config.rank * L;
    const at = `cuda:${device}` as const;
    const bf16 = (values: Float32Array, shape: number[]) => Tensor.from(Uint16Array.from(values, f32ToBf16Bits), { dtype: 'bf16', shape }).to(at, { stream });
    const w13 = new Float32Array(L * 2 * I * H);
    const w2 = new Float32Array(L * H * I);
    for (let l = 0; l < L; l++) {
      const x = weights.experts[first + l]!;
      w13.set(x.gate, l * 2 * I * H);
      w13.set(x.up, l * 2 * I * H + I * H);
      w2.set(x.down, l * H * I);
    }
    const dev: MoeLayerDeviceWeights = {
      gate: await bf16(weights.gate, [E, H]),
      gateBias: await Tensor.from(Float32Array.from(weights.gateBias)).to(at, { stream }),
      experts: { w13: await bf16(w13, [L, 2 * I, H]), w2: await bf16(w2, [L, H, I]) },
    };
    if (weights.shared) {
      const Is = weights.shared.intermediate;
      const s13 = new Float32Array(2 * Is * H);
      s13.set(weights.shared.gate, 0);
      s13.set(weights.shared.up, Is * H);
      dev.shared = { w13: await bf16(s13, [2 * Is, H]), w2: await bf16(weights.shared.down, [H, Is]) };
    }
    return new MoeLayer(ep, c, dev);
  }

  /** The MoE output (routed + shared), bf16 [T, H], for the MoE input x bf16 [T, H]. A collective: every rank calls it. */
  async forward(x: Tensor, options: MoeForwardOptions): Promise<Tensor> {
    const where = 'MoeLayer.forward';
    deviceTensor(where, 'x', x, this.device);
    expectDType(where, 'x', x, ['bf16']);
    expectShape(where, 'x', x, ['T', 'H'], [null, this.config.hidden]);
    if (options?.mode !== 'normal' && options?.mode !== 'low-latency') {
      throw new WideepError('ERR_INVALID_ARG', `${where}: mode: expected 'normal' or 'low-latency', got ${String(options?.mode)}`);
    }
    const stream = streamFor(where, this.device, options.stream);
    const w = this.#weights;
    const { topkIdx, topkWeights, logits } = route({ x, gateWeight: w.gate, bias: w.gateBias, config: this.config, stream });
    logits.close(stream);
    const shared = this.#sharedActivation(x, stream);
    const out = options.mode === 'normal' ? await this.#normal(x, topkIdx, topkWeights, shared, stream) : await this.#lowLatency(x, topkIdx, topkWeights, shared, stream);
    shared?.close(stream);
    topkIdx.close(stream);
    topkWeights.close(stream);
    return out;
  }

  /** silu(gate) * up of the shared expert for every token; its down projection is added where the layer's output is made. */
  #sharedActivation(x: Tensor, stream: Stream): Tensor | undefined {
    const s = this.#weights.shared;
    if (!s || x.shape[0] === 0) return undefined;
    const h = linear(x, s.w13, { stream });
    const a = swiglu({ x: h, stream }).out;
    h.close(stream);
    return a;
  }

  async #normal(x: Tensor, topkIdx: Tensor, topkWeights: Tensor, shared: Tensor | undefined, stream: Stream): Promise<Tensor> {
    const d = await this.#ep.dispatch({ x, topkIdx, topkWeights, stream });
    const N = d.numRecvTokens;
    let rows: Tensor;
    if (N === 0) {
      rows = Tensor.empty([0, this.config.hidden], 'bf16', { device: `cuda:${this.device}`, stream });
    } else {
      const most = Math.max(1, ...d.numRecvTokensPerExpert);
      const cap = Math.ceil(most / SLOT_ROWS_ALIGN) * SLOT_ROWS_ALIGN;
      const g = permuteToExperts({ x: d.recvX, topkIdx: d.recvTopkIdx!, numExperts: this.#numLocal, cap, stream });
      const y = expertsForward({ x: g.x, counts: g.counts, weights: this.#weights.experts, stream });
      rows = unpermuteFromExperts({ y, slotOf: g.slotOf, topkIdx: d.recvTopkIdx!, weights: d.recvTopkWeights!, stream });
      for (const t of [g.x, g.counts, g.slotOf, g.overflow, y]) t.close(stream);
    }
    // The combine adds the shared expert's output after its reduction.
    const bias = shared && linear(shared, this.#weights.shared!.w2, { stream });
    const { combinedX } = await this.#ep.combine({ x: rows, handle: d.handle, bias, stream });
    rows.close(stream);
    bias?.close(stream);
    return combinedX;
  }

  async #lowLatency(x: Tensor, topkIdx: Tensor, topkWeights: Tensor, shared: Tensor | undefined, stream: Stream): Promise<Tensor> {
    const ll = this.#ep.config.lowLatency;
    if (!ll) throw new WideepError('ERR_INVALID_ARG', 'MoeLayer.forward: low-latency mode needs an EP buffer created with lowLatency');
    const d = await this.#ep.lowLatencyDispatch({ x, topkIdx, maxTokensPerRank: ll.maxTokensPerRank, numExperts: this.config.numRoutedExperts, useFp8: false, stream });
    const y = expertsForward({ x: d.recvX, counts: d.recvCount, weights: this.#weights.experts, stream });
    const { combinedX } = await this.#ep.lowLatencyCombine({ y, topkIdx, topkWeights, handle: d.handle, stream });
    y.close(stream);
    // out = shared · w2ᵀ + combined, in the down projection's epilogue.
    if (shared) linear(shared, this.#weights.shared!.w2, { out: combinedX, add: combinedX, stream });
    return combinedX;
  }
}
