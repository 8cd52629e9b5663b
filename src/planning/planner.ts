/**
 * `planDeployment`: what a WideEP deployment of one model on N GPUs looks
 * like before anything runs. It derives the group sizes, the per-GPU memory
 * (replicated dense weights, the expert shard, the KV budget), the expected
 * dispatch/combine traffic, and the expert placement, from EPLB when load
 * statistics are given. Pure arithmetic: instant for 256 GPUs.
 */
import { WideepError } from '../errors.js';
import { layerTraffic, noneBackendTraffic, type LinkBytes } from './comm-cost.js';
import { ParallelConfig, type ConfigOverride } from './config.js';
import { resolveDeepepMode } from './dp-step.js';
import { epCallsOf, type EpCalls } from './ep-path.js';
import { balancedness, gpuLoadsOf, slotLoadsFromLogical } from './eplb-recorder.js';
import { rebalanceExperts } from './eplb.js';
import { ExpertLocationMap } from './expert-location.js';
import type { ProcessGroups } from './groups.js';
import { DEFAULT_GPU, GPU_PRESETS, type HardwareSpec } from './hardware.js';
import { normalizeModelConfig } from './model-file.js';
import { kvElementsPerTokenPerLayer, modelWeights, type ModelConfig } from './models.js';
import type { ParallelOptions, ResolvedDeepepMode, ResolvedParallelOptions } from './options.js';
import { toLoadMatrix } from './json-file.js';
import { checkPlacementSize } from './limits.js';

/** GPUs per node assumed when neither `nnodes` nor `gpusPerNode` is given. */
export const DEFAULT_GPUS_PER_NODE = 8;
/** `mem-fraction-static` assumed when not given (SGLang picks one per GPU; this is close for large GPUs). */
export const DEFAULT_MEM_FRACTION_STATIC = 0.8;
/** Prefill tokens per rank per step for the traffic estimate. */
export const DEFAULT_PREFILL_TOKENS_PER_RANK = 4096;

export interface PlanInput {
  /** SGLang options, or a config built from them. */
  parallel: ParallelOptions | ParallelConfig;
  model: ModelConfig;
  /** GPU facts; missing ones come from the H200 preset. */
  hardware?: Partial<HardwareSpec>;
  /** Expert load `[layers][routedExperts]`, either per MoE layer or per model layer (dense rows ignored). */
  eplbStats?: readonly (readonly number[])[];
  /** Tokens per rank for the decode traffic estimate; default num-max-dispatch-tokens-per-rank. */
  decodeTokensPerRank?: number;
  /** Tokens per rank for the prefill traffic estimate; default 4096. */
  prefillTokensPerRank?: number;
}

export interface MemoryPlan {
  gpu: string;
  gpuMemoryBytes: number;
  memFractionStatic: number;
  /** `gpuMemoryBytes × memFractionStatic`: weights plus KV cache. */
  staticBudgetBytes: number;
  /** Embeddings, attention, norms, dense MLPs, shared experts, routers, LM head (÷ attn_tp where sharded). */
  denseWeightBytes: number;
  /** This GPU's routed experts (a `1/moe_tp` shard of each). */
  expertShardBytes: number;
  weightBytes: number;
  /** What is left for the KV cache; negative when the weights do not fit. */
  kvBudgetBytes: number;
  kvBytesPerToken: number;
  kvTokens: number;
  /** Whether the weights and at least one token of KV cache fit in the static budget. */
  fits: boolean;
}

export interface TrafficScenario {
  phase: 'decode' | 'prefill';
  /** The dispatch mode this phase uses; null for the `none` backend. */
  mode: ResolvedDeepepMode | null;
  tokensPerRank: number;
  /** With an all-to-all backend: expected distinct destination ranks per token. */
  destinationsPerToken?: number;
  dispatch?: LinkBytes;
  combine?: LinkBytes;
  /** With `none`: the all-gather and reduce-scatter (or all-reduce) bytes per rank. */
  allGatherBytes?: number;
  reduceScatterBytes?: number;
  /** deepep: the EpBuffer calls of this phase and their path (src/planning/ep-path.ts). */
  epCalls?: EpCalls;
  /** Estimated communication time of one MoE layer. */
  layerTimeUs: number;
  /** `layerTimeUs × MoE layers`: one forward pass. */
  forwardTimeUs: number;
}

export interface PlacementPlan {
  source: 'trivial' | 'eplb';
  /** Model layer index of each row. */
  moeLayers: number[];
  /** EP ranks the slots are spread over, `R / expertsPerGpu`. */
  numGpus: number;
  physicalPerGpu: number;
  /** `[moeLayer][R]`: the logical expert in each physical slot. GPU g holds slots g·R/P … */
  phy2log: number[][];
  /** `[moeLayer][E]`: replicas per logical expert. */
  logcnt: number[][];
}

export interface EplbPlanSummary {
  policy: 'hierarchical' | 'global';
  numReplicas: number;
  numGroups: number;
  numNodes: number;
  numGpus: number;
  /** Mean over MoE layers of mean/max GPU load, under SGLang's initial placement and under EPLB's. */
  balancednessBefore: number;
  balancednessAfter: number;
  /** Per MoE layer, after. */
  balancednessPerLayer: number[];
}

export interface DeploymentPlan {
  model: {
    name: string;
    numLayers: number;
    numDenseLayers: number;
    numMoeLayers: number;
    numRoutedExperts: number;
    numSharedExperts: number;
    topK: number;
    hiddenSize: number;
    totalParams: number;
    activeParams: number;
    totalWeightBytes: number;
  };
  /** The options after defaults and SGLang's overrides. */
  options: ResolvedParallelOptions;
  overrides: readonly ConfigOverride[];
  warnings: string[];
  /** Assumptions the planner made. */
  notes: string[];
  worldSize: number;
  nnodes: number;
  gpusPerNode: number;
  attnTpSize: number;
  attnDpSize: number;
  moeTpSize: number;
  moeEpSize: number;
  moeDpSize: number;
  numPhysicalExperts: number;
  expertsPerGpu: number;
  groups: ProcessGroups;
  memory: MemoryPlan;
  communication: {
    backend: string;
    nvlinkGBps: number;
    rdmaGBps: number;
    /** EP ranks that share a node. */
    ranksPerNode: number;
    scenarios: TrafficScenario[];
  };
  placement: PlacementPlan;
  eplb: EplbPlanSummary | null;
  /** Whether the deployment fits the GPUs (`memory.fits`); `fitReason` says why not. */
  fits: boolean;
  /** Why the deployment does not fit, with what to change; null when it fits. */
  fitReason: string | null;
}

function hardwareOf(h: Partial<HardwareSpec> = {}): HardwareSpec {
  const base = GPU_PRESETS[DEFAULT_GPU]!;
  const out = { ...base, ...Object.fromEntries(Object.entries(h).filter(([, v]) => v !== undefined)) } as HardwareSpec;
  for (const k of ['memoryBytes', 'nvlinkGBps', 'rdmaGBps'] as const) {
    if (typeof out[k] !== 'number' || !(out[k] > 0) || !Number.isFinite(out[k])) {
      throw new WideepError('ERR_INVALID_ARG', `hardware ${k} ${String(out[k])}: must be a number > 0`);
    }
  }
  return out;
}

/** The stats rows for the MoE layers: `[moeLayers][E]`, from per-MoE-layer or per-model-layer rows. */
function moeStats(stats: readonly (readonly number[])[], m: ModelConfig, numMoe: number): number[][] {
  const rows = toLoadMatrix(stats, '--eplb-stats');
  if (rows[0]!.length !== m.numRoutedExperts) {
    throw new WideepError('ERR_INVALID_ARG', `--eplb-stats: rows have ${rows[0]!.length} experts, ${m.name} has ${m.numRoutedExperts} routed experts`);
  }
  if (rows.length === numMoe) return rows;
  if (rows.length === m.numLayers) return rows.slice(m.firstKDenseLayers);
  throw new WideepError(
    'ERR_INVALID_ARG',
    `--eplb-stats: ${rows.length} layers, expected ${numMoe} (MoE layers) or ${m.numLayers} (all layers) for ${m.name}`,
  );
}

function memoryPlan(m: ModelConfig, c: ParallelConfig, hw: HardwareSpec, notes: string[]): MemoryPlan {
  const w = modelWeights(m);
  const pp = c.options.ppSize;
  const p = w.parts;
  // Layer weights divide over pipeline stages; embeddings and LM head are counted whole (conservative).
  const sharded = p.embedding + p.lmHead + (p.attention + p.denseMlp + p.sharedExperts) / pp;
  const replicated = (p.norms + p.router) / pp;
  const denseWeightBytes = sharded / c.attnTpSize + replicated;
  const expertsPerGpu = c.expertsPerGpu(m.numRoutedExperts);
  const expertShardBytes = (expertsPerGpu * w.expertBytes * (w.numMoeLayers / pp)) / c.moeTpSize;

  let kvElems = kvElementsPerTokenPerLayer(m);
  // GQA shards KV heads over attention TP (replicating when there are fewer heads than ranks); MLA's latent is replicated.
  if (m.attention.kind === 'gqa') kvElems = 2 * Math.max(1, m.attention.numKvHeads / c.attnTpSize) * m.attention.headDim;
  const kvBytesPerToken = kvElems * m.dtypes.kvCacheBytes * Math.ceil(m.numLayers / pp);

  const fraction = c.options.memFractionStatic ?? DEFAULT_MEM_FRACTION_STATIC;
  if (c.options.memFractionStatic === null) notes.push(`--mem-fraction-static not given: assuming ${DEFAULT_MEM_FRACTION_STATIC}`);
  if (pp > 1) notes.push(`--pp-size ${pp}: per-GPU weights and KV assume layers split evenly over stages`);
  const staticBudgetBytes = hw.memoryBytes * fraction;
  const weightBytes = denseWeightBytes + expertShardBytes;
  const kvBudgetBytes = staticBudgetBytes - weightBytes;
  return {
    gpu: hw.gpu,
    gpuMemoryBytes: hw.memoryBytes,
    memFractionStatic: fraction,
    staticBudgetBytes,
    denseWeightBytes,
    expertShardBytes,
    weightBytes,
    kvBudgetBytes,
    kvBytesPerToken,
    kvTokens: Math.max(0, Math.floor(kvBudgetBytes / kvBytesPerToken)),
    fits: kvBudgetBytes >= kvBytesPerToken,
  };
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

/** Why `mem` does not fit, and what would make it fit; null when it fits. */
function fitReason(mem: MemoryPlan): string | null {
  if (mem.fits) return null;
  const fix = 'use more GPUs (a larger --ep-size shards the experts), GPUs with more memory, or a higher --mem-fraction-static';
  if (mem.kvBudgetBytes <= 0) {
    return (
      `the weights need ${gib(mem.weightBytes)} per GPU, more than the static budget of ${gib(mem.staticBudgetBytes)} ` +
      `(${mem.gpu} with ${(mem.gpuMemoryBytes / 1e9).toFixed(1)} GB × mem-fraction-static ${mem.memFractionStatic}); ${fix}`
    );
  }
  return `the ${Math.floor(mem.kvBudgetBytes)} bytes left after the weights hold no token of KV cache (${mem.kvBytesPerToken} bytes per token); ${fix}`;
}

/** EP ranks on one node: an EP group takes every moe_tp-th rank of its TP group. */
function epRanksPerNode(c: ParallelConfig): number {
  return Math.min(c.moeEpSize, Math.max(1, Math.floor(c.gpusPerNode / c.moeTpSize)));
}

function trafficScenarios(m: ModelConfig, c: ParallelConfig, hw: HardwareSpec, input: PlanInput, numMoe: number): TrafficScenario[] {
  const o = c.options;
  const phases: Array<['decode' | 'prefill', number]> = [
    ['decode', input.decodeTokensPerRank ?? o.numMaxDispatchTokensPerRank],
    ['prefill', input.prefillTokensPerRank ?? DEFAULT_PREFILL_TOKENS_PER_RANK],
  ];
  const link = { hidden: m.hiddenSize, nvlinkGBps: hw.nvlinkGBps, rdmaGBps: hw.rdmaGBps };
  return phases.map(([phase, tokensPerRank]) => {
    if (o.moeA2aBackend === 'none') {
      const tp = o.tp;
      const t = noneBackendTraffic({ ...link, tokensPerRank, numRanks: tp, ranksPerNode: Math.min(tp, c.gpusPerNode) }, c.attnDpSize === 1);
      return {
        phase,
        mode: null,
        tokensPerRank,
        allGatherBytes: t.allGatherBytes,
        reduceScatterBytes: t.reduceScatterBytes,
        layerTimeUs: t.timeUs,
        forwardTimeUs: t.timeUs * numMoe,
      };
    }
    const t = layerTraffic({
      ...link,
      tokensPerRank,
      numExperts: m.numRoutedExperts,
      topK: m.topK,
      numRanks: c.moeEpSize,
      ranksPerNode: epRanksPerNode(c),
    });
    const layerTimeUs = t.dispatch.timeUs + t.combine.timeUs;
    const mode = resolveDeepepMode(o.deepepMode, phase === 'prefill');
    return {
      phase,
      mode,
      tokensPerRank,
      destinationsPerToken: t.destinationsPerToken,
      dispatch: t.dispatch,
      combine: t.combine,
      ...(o.moeA2aBackend === 'deepep' && { epCalls: epCallsOf(mode, c.moeEpSize, epRanksPerNode(c)) }),
      layerTimeUs,
      forwardTimeUs: layerTimeUs * numMoe,
    };
  });
}

/** Plans a deployment (see the file comment). Throws `ERR_INVALID_ARG` for an invalid combination. */
export function planDeployment(input: PlanInput): DeploymentPlan {
  const notes: string[] = [];
  let config: ParallelConfig;
  if (input.parallel instanceof ParallelConfig) {
    config = input.parallel;
  } else {
    const opts = { ...input.parallel };
    if (opts.nnodes === undefined && opts.gpusPerNode === undefined) {
      opts.gpusPerNode = DEFAULT_GPUS_PER_NODE;
      notes.push(`--nnodes and --gpus-per-node not given: assuming ${DEFAULT_GPUS_PER_NODE} GPUs per node`);
    }
    config = ParallelConfig.fromOptions(opts);
  }
  const model = normalizeModelConfig(input.model, input.model?.name ?? 'model');
  const hw = hardwareOf(input.hardware);
  const w = modelWeights(model);
  const numMoe = w.numMoeLayers;
  const R = config.numPhysicalExperts(model.numRoutedExperts);
  const redundant = config.options.epNumRedundantExperts;
  checkPlacementSize(
    { numLayers: numMoe, numLogical: model.numRoutedExperts, numPhysical: R },
    redundant > 0 ? `--ep-num-redundant-experts ${redundant}` : `${model.name} (${numMoe} MoE layers, ${model.numRoutedExperts} routed experts)`,
    redundant > 0 ? 'use fewer redundant experts' : 'the planner cannot place a model this large',
  );
  const expertsPerGpu = config.expertsPerGpu(model.numRoutedExperts);
  const numGpus = config.moeEpSize;
  const ranksPerNode = epRanksPerNode(config);
  const shape = { numLogical: model.numRoutedExperts, numRanks: numGpus, ranksPerNode };
  const initial = ExpertLocationMap.trivial({ ...shape, numLayers: numMoe, numPhysical: R });

  let placementMap = initial;
  let eplb: EplbPlanSummary | null = null;
  if (input.eplbStats !== undefined) {
    const stats = moeStats(input.eplbStats, model, numMoe);
    const epNodes = Math.ceil(numGpus / ranksPerNode);
    const numNodes = numGpus % epNodes === 0 ? epNodes : 1;
    const params = { numReplicas: R, numGroups: model.numExpertGroups, numNodes, numGpus };
    const result = rebalanceExperts(stats, params);
    placementMap = ExpertLocationMap.fromEplb(result, shape);
    // Each logical expert's load split evenly over its replicas, summed per GPU.
    const layerBalance = (map: ExpertLocationMap, l: number): number =>
      balancedness(gpuLoadsOf(slotLoadsFromLogical(stats[l]!, map.layerPhy2Log(l), map.layerLogcnt(l)), numGpus));
    const before = stats.map((_, l) => layerBalance(initial, l));
    const after = stats.map((_, l) => layerBalance(placementMap, l));
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    eplb = { policy: result.policy, ...params, balancednessBefore: mean(before), balancednessAfter: mean(after), balancednessPerLayer: after };
    if (!config.options.enableEplb) notes.push('--eplb-stats given without --enable-eplb: the placement shows what EPLB would do');
  } else if (config.options.enableEplb) {
    notes.push("--enable-eplb without --eplb-stats: showing SGLang's initial placement (slot p holds expert p mod E)");
  }

  const memory = memoryPlan(model, config, hw, notes);
  return {
    model: {
      name: model.name,
      numLayers: model.numLayers,
      numDenseLayers: w.numDenseLayers,
      numMoeLayers: numMoe,
      numRoutedExperts: model.numRoutedExperts,
      numSharedExperts: model.numSharedExperts,
      topK: model.topK,
      hiddenSize: model.hiddenSize,
      totalParams: w.totalParams,
      activeParams: w.activeParams,
      totalWeightBytes: w.totalBytes,
    },
    options: { ...config.options },
    overrides: config.overrides,
    warnings: [...config.warnings],
    notes,
    worldSize: config.worldSize,
    nnodes: config.nnodes,
    gpusPerNode: config.gpusPerNode,
    attnTpSize: config.attnTpSize,
    attnDpSize: config.attnDpSize,
    moeTpSize: config.moeTpSize,
    moeEpSize: config.moeEpSize,
    moeDpSize: config.moeDpSize,
    numPhysicalExperts: R,
    expertsPerGpu,
    groups: config.processGroups(),
    memory,
    communication: {
      backend: config.options.moeA2aBackend,
      nvlinkGBps: hw.nvlinkGBps,
      rdmaGBps: hw.rdmaGBps,
      ranksPerNode,
      scenarios: trafficScenarios(model, config, hw, input, numMoe),
    },
    placement: {
      source: eplb ? 'eplb' : 'trivial',
      moeLayers: Array.from({ length: numMoe }, (_, i) => model.firstKDenseLayers + i),
      numGpus,
      physicalPerGpu: expertsPerGpu,
      phy2log: Array.from({ length: numMoe }, (_, l) => placementMap.layerPhy2Log(l)),
      logcnt: Array.from({ length: numMoe }, (_, l) => placementMap.layerLogcnt(l)),
    },
    eplb,
    fits: memory.fits,
    fitReason: fitReason(memory),
  };
}
