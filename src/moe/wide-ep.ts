/**
 * The plan drives the runtime: WideEp.create checks that a ParallelConfig
 * (SGLang's flags) and a model can be served by this process group, then
 * builds the EP buffer they imply — hidden width, physical experts (routed
 * plus redundant), tokens per rank, low-latency slots — so a layer's
 * dispatch and combine are sized by the plan, not by hand.
 *
 * Every check is a function of the config, the model and the group's size,
 * which all ranks share, so a config the runtime cannot serve fails on every
 * rank with the same typed error before anything communicates.
 */
import { EpBuffer } from '../ep/buffer.js';
import { isCpuTransport, type CpuTransport } from '../ep/transport.js';
import type { EpBackendKind } from '../ep/types.js';
import { WideepError } from '../errors.js';
import type { ParallelConfig } from '../planning/config.js';
import type { ModelConfig } from '../planning/models.js';
import type { ProcessGroup } from '../runtime/types.js';
import type { Stream } from '../cuda/stream.js';
import { ExpertLocationMap } from '../planning/expert-location.js';
import { moeLayerConfig, type MoeLayerConfig } from '../simulation/config.js';
import { CommGroups } from './comm-groups.js';
import { MoeLayer, deviceWeightTensors, type ExpertDType, type ExpertGemm, type MoeLayerDeviceWeights } from './layer.js';
import { loadLayerWeights, randomLayerWeights } from './layer-weights.js';
import { DevicePlacement, type DispatchAlgorithm } from './placement.js';

export interface WideEpOptions {
  model: ModelConfig;
  /** Tokens one rank sends per normal-mode dispatch (default 4096, DeepEP's prefill chunk per rank). */
  maxTokensPerRank?: number;
  /** 'cuda' (default where the group has a GPU) or 'cpu', the reference. */
  backend?: EpBackendKind;
  /**
   * Also build the plan's NCCL communicators (world, attention-TP, MoE-EP,
   * MoE-TP) as `comms`: dpScatter/dpGather, weight moves between ranks and
   * gatheredMoe run over them. Needs one GPU per rank (NCCL refuses two ranks on one).
   */
  communicators?: boolean;
}

export const DEFAULT_PREFILL_TOKENS_PER_RANK = 4096;

/** What WideEp.create builds for a config, or the reason it cannot: pure, the same on every rank. */
export function wideEpLayout(
  config: ParallelConfig,
  model: ModelConfig,
  worldSize: number,
): { numExperts: number; lowLatencyTokens: number; ranksPerNode: number } {
  const o = config.options;
  const why = (msg: string) => new WideepError('ERR_INVALID_ARG', `WideEp.create: ${msg}`);
  if (config.worldSize !== worldSize) {
    throw why(`the plan needs ${config.worldSize} ranks (tp ${o.tp} x pp ${o.ppSize}), the process group has ${worldSize}`);
  }
  if (o.moeA2aBackend !== 'deepep') {
    throw new WideepError(
      'ERR_UNSUPPORTED',
      `WideEp.create: --moe-a2a-backend ${o.moeA2aBackend}: only deepep (the EP buffer's dispatch/combine) is served here; ` +
        'for the none backend, run gatheredMoe on a Communicator over the group',
    );
  }
  if (o.ppSize !== 1 || config.moeEpSize !== worldSize) {
    throw new WideepError('ERR_UNSUPPORTED', `WideEp.create: the EP group must be the whole world (ep ${config.moeEpSize}, pp ${o.ppSize}, world ${worldSize})`);
  }
  const numExperts = model.numRoutedExperts + o.epNumRedundantExperts;
  if (numExperts % worldSize !== 0) {
    throw why(`${model.name}: ${model.numRoutedExperts} routed + ${o.epNumRedundantExperts} redundant experts do not divide over ${worldSize} EP ranks`);
  }
  if (model.hiddenSize % 8 !== 0) throw why(`${model.name}: hidden size ${model.hiddenSize} is not a multiple of 8 (16-byte rows)`);
  // The plan's --nnodes picks the EP path: several nodes make dispatch and combine hierarchical.
  return { numExperts, lowLatencyTokens: o.numMaxDispatchTokensPerRank, ranksPerNode: worldSize / config.nnodes };
}

/** The MoE layer a model describes (its gate's scoring defaults to DeepSeek-V3's: sigmoid, x2.5, normalised). */
export function moeLayerConfigOf(model: ModelConfig, overrides: Partial<MoeLayerConfig> = {}): MoeLayerConfig {
  return moeLayerConfig({
    hidden: model.hiddenSize,
    moeIntermediate: model.moeIntermediateSize,
    numRoutedExperts: model.numRoutedExperts,
    numSharedExperts: model.numSharedExperts,
    topK: model.topK,
    numExpertGroups: model.numExpertGroups,
    topkGroup: model.topkGroup,
    ...overrides,
  });
}

export interface CreateLayerOptions {
  /** Random weights from this seed (default 0), unless `manifest` names files. */
  seed?: number;
  /** A weights manifest (loadLayerWeights); only this rank's slots are read; its dtypes decide the experts'. */
  manifest?: string;
  /** Random weights' routed experts: bf16 (default) or fp8e4m3 with 128x128 block scales. */
  expertDType?: ExpertDType;
  /** How fp8 experts run their GEMMs (MoeLayerOptions.expertGemm; default 'cublaslt'). */
  expertGemm?: ExpertGemm;
  /** How ranks pick among an expert's replicas (default static). */
  algorithm?: DispatchAlgorithm;
  /** Overrides of the layer config the model implies (e.g. the gate's scoring). */
  config?: Partial<MoeLayerConfig>;
  stream?: Stream;
}

export class WideEp {
  readonly config: ParallelConfig;
  readonly model: ModelConfig;
  /** The EP buffer of the MoE layers, sized by the plan. */
  readonly ep: EpBuffer;
  /** The plan's NCCL communicators, with options.communicators. */
  readonly comms: CommGroups | undefined;

  private constructor(config: ParallelConfig, model: ModelConfig, ep: EpBuffer, comms: CommGroups | undefined) {
    this.config = config;
    this.model = model;
    this.ep = ep;
    this.comms = comms;
  }

  /** A collective: every rank of `group` calls it with the same config and model. */
  static async create(group: ProcessGroup | CpuTransport, config: ParallelConfig, options: WideEpOptions): Promise<WideEp> {
    if (typeof options !== 'object' || options === null || typeof options.model !== 'object') {
      throw new WideepError('ERR_INVALID_ARG', 'WideEp.create: expected options { model: ModelConfig }');
    }
    const { numExperts, lowLatencyTokens, ranksPerNode } = wideEpLayout(config, options.model, group.worldSize);
    const ep = await EpBuffer.create(group, {
      hidden: options.model.hiddenSize,
      numExperts,
      maxTokensPerRank: options.maxTokensPerRank ?? DEFAULT_PREFILL_TOKENS_PER_RANK,
      maxTopk: options.model.topK,
      lowLatency: { maxTokensPerRank: lowLatencyTokens },
      ranksPerNode,
      ...(options.backend ? { backend: options.backend } : {}),
    });
    if (!options.communicators) return new WideEp(config, options.model, ep, undefined);
    if (isCpuTransport(group)) {
      await ep.close();
      throw new WideepError('ERR_INVALID_ARG', 'WideEp.create: communicators need a ProcessGroup (NCCL), not a cpu transport');
    }
    try {
      return new WideEp(config, options.model, ep, await CommGroups.create(group, config));
    } catch (e) {
      await ep.close();
      throw e;
    }
  }

  /**
   * One MoE layer on this rank's GPU over the plan's EP buffer: the model's
   * layer config, weights random or from a manifest, and with redundant
   * experts a device placement (SGLang's initial one: slot p holds expert
   * p mod E) that rebalance() can change. The layer owns what it made:
   * layer.close() frees it. Every rank calls it alike.
   */
  async createLayer(options: CreateLayerOptions = {}): Promise<MoeLayer> {
    const device = this.ep.config.device;
    if (device === undefined) throw new WideepError('ERR_UNSUPPORTED', 'WideEp.createLayer: the EP buffer is on the cpu backend; the MoE layer runs on a GPU');
    const config = moeLayerConfigOf(this.model, options.config);
    const { numExperts, rank, worldSize } = this.ep.config;
    const placement =
      numExperts > config.numRoutedExperts
        ? await DevicePlacement.create(
            ExpertLocationMap.trivial({ numLayers: 1, numLogical: config.numRoutedExperts, numPhysical: numExperts, numRanks: worldSize, ranksPerNode: this.ep.config.ranksPerNode }),
            { layer: 0, rank, device, algorithm: options.algorithm, stream: options.stream },
          )
        : undefined;
    const at = { device, stream: options.stream, placement };
    let weights: MoeLayerDeviceWeights | undefined;
    try {
      weights = options.manifest
        ? await loadLayerWeights(this.ep, config, options.manifest, at)
        : randomLayerWeights(this.ep, config, { ...at, seed: options.seed ?? 0, expertDType: options.expertDType });
      return new MoeLayer(this.ep, config, weights, { placement, owns: true, expertGemm: options.expertGemm });
    } catch (e) {
      // Refused: free what was made for it (the layer would have owned it).
      if (weights) for (const t of deviceWeightTensors(weights)) t.close(options.stream);
      placement?.close(options.stream);
      throw e;
    }
  }

  /** Frees everything it built. Idempotent. */
  close(): Promise<void> {
    this.comms?.close();
    return this.ep.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
