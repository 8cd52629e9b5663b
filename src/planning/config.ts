/**
 * `ParallelConfig`: SGLang's parallelism options, validated, with SGLang's
 * overrides applied and the derived group sizes computed (docs/wide-ep.md,
 * "`--tp` is a group size, not a split").
 *
 * Every refusal is a `WideepError('ERR_INVALID_ARG')` whose message names the
 * flag, the value given and the rule, one line per broken rule.
 */
import { WideepError } from '../errors.js';
import { processGroups, rankInfo, type GroupSizes, type ProcessGroups, type RankInfo } from './groups.js';
import { MAX_GPUS, MAX_ROUTED_EXPERTS } from './limits.js';
import {
  MAX_DISPATCH_TOKENS_PER_RANK,
  OPTION_SPECS,
  PARALLEL_DEFAULTS,
  flagOf,
  type MoeA2aBackend,
  type ParallelOptions,
  type ResolvedParallelOptions,
} from './options.js';

/** A value SGLang changes behind the user's back; we record and warn. */
export interface ConfigOverride {
  option: keyof ParallelOptions;
  flag: string;
  from: unknown;
  to: unknown;
  reason: string;
}

/** Options whose smallest allowed value is 0 rather than 1. */
const MIN_ZERO: ReadonlySet<keyof ParallelOptions> = new Set(['nodeRank', 'epNumRedundantExperts']);

/** Upper bounds of the integer options that size what the planner builds (see limits.ts). */
const INT_MAX: Readonly<Partial<Record<keyof ParallelOptions, number>>> = {
  tp: MAX_GPUS,
  dpSize: MAX_GPUS,
  epSize: MAX_GPUS,
  moeDpSize: MAX_GPUS,
  ppSize: MAX_GPUS,
  nnodes: MAX_GPUS,
  nodeRank: MAX_GPUS - 1,
  worldSize: MAX_GPUS,
  gpusPerNode: MAX_GPUS,
  epNumRedundantExperts: MAX_ROUTED_EXPERTS,
};

/** Backends for which SGLang sets ep-size to tp. */
const EP_EQUALS_TP: ReadonlySet<MoeA2aBackend> = new Set(['deepep', 'mooncake', 'mori']);

/** Backends whose dispatch has a low-latency mode bounded by num-max-dispatch-tokens-per-rank. */
const LOW_LATENCY_BACKENDS: ReadonlySet<MoeA2aBackend> = new Set(['deepep', 'mooncake']);

/** Above this many GPUs the `none` backend stops scaling (docs/wide-ep.md). */
const NONE_BACKEND_SCALING_LIMIT = 16;

function show(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
}

function refuse(lines: string[]): WideepError {
  return new WideepError('ERR_INVALID_ARG', lines.join('\n'));
}

/** Type checks of what the user gave; returns one message per bad value. */
function checkTypes(given: Record<string, unknown>): string[] {
  const bad: string[] = [];
  for (const [key, value] of Object.entries(given)) {
    if (value === undefined) continue;
    const spec = OPTION_SPECS[key as keyof ParallelOptions];
    if (!spec) {
      bad.push(`unknown option '${key}' (expected one of ${Object.keys(OPTION_SPECS).join(', ')})`);
      continue;
    }
    const head = `${spec.flag} ${show(value)}`;
    switch (spec.kind) {
      case 'int': {
        const min = MIN_ZERO.has(key as keyof ParallelOptions) ? 0 : 1;
        const max = INT_MAX[key as keyof ParallelOptions] ?? Number.MAX_SAFE_INTEGER;
        if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
          bad.push(`${head}: must be an integer ${max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`}`);
        }
        break;
      }
      case 'number':
        if (typeof value !== 'number' || !Number.isFinite(value)) bad.push(`${head}: must be a finite number`);
        break;
      case 'boolean':
        if (typeof value !== 'boolean') bad.push(`${head}: must be true or false`);
        break;
      case 'string':
        if (typeof value !== 'string') bad.push(`${head}: must be a string`);
        else if (spec.choices && !spec.choices.includes(value)) bad.push(`${head}: must be one of ${spec.choices.join(', ')}`);
        break;
    }
  }
  return bad;
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):(\d{1,5})$/;

export class ParallelConfig {
  /** The options after defaults and SGLang's overrides. */
  readonly options: Readonly<ResolvedParallelOptions>;
  /** Values SGLang overrides, with the reason; each also appears in `warnings`. */
  readonly overrides: readonly ConfigOverride[];
  /** Messages for the user: overrides and questionable but legal combinations. */
  readonly warnings: readonly string[];

  /** `dp` when DP attention is on, else 1. */
  readonly attnDpSize: number;
  /** `tp / attnDpSize`: the tensor-parallel width of attention. */
  readonly attnTpSize: number;
  /** `ep-size`. */
  readonly moeEpSize: number;
  /** `moe-dp-size`. */
  readonly moeDpSize: number;
  /** `tp / ep / moe_dp`: the tensor-parallel width of each expert. */
  readonly moeTpSize: number;
  /** Independent TP groups: `dp` for plain data parallelism, 1 with DP attention. */
  readonly dpReplicas: number;

  private constructor(options: ResolvedParallelOptions, overrides: ConfigOverride[], warnings: string[]) {
    this.options = Object.freeze(options);
    this.overrides = Object.freeze(overrides);
    this.warnings = Object.freeze(warnings);
    this.attnDpSize = options.enableDpAttention ? options.dpSize : 1;
    this.attnTpSize = options.tp / this.attnDpSize;
    this.moeEpSize = options.epSize;
    this.moeDpSize = options.moeDpSize;
    this.moeTpSize = options.tp / options.epSize / options.moeDpSize;
    this.dpReplicas = options.enableDpAttention ? 1 : options.dpSize;
  }

  /**
   * Validates `given` (camelCase SGLang options), applies SGLang's defaults and
   * overrides, and derives the group sizes. Throws `ERR_INVALID_ARG` listing
   * every broken rule.
   */
  static fromOptions(given: ParallelOptions = {}): ParallelConfig {
    if (given === null || typeof given !== 'object') {
      throw new WideepError('ERR_INVALID_ARG', `parallel options: expected an object, got ${show(given)}`);
    }
    const typeErrors = checkTypes(given as Record<string, unknown>);
    if (typeErrors.length > 0) throw refuse(typeErrors);

    const defined = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) as ParallelOptions;
    const o = {
      ...PARALLEL_DEFAULTS,
      distInitAddr: null,
      maxRunningRequests: null,
      memFractionStatic: null,
      ...defined,
    } as Omit<ResolvedParallelOptions, 'worldSize' | 'gpusPerNode'> & Partial<ResolvedParallelOptions>;
    const overrides: ConfigOverride[] = [];
    const warnings: string[] = [];
    const override = (option: keyof ParallelOptions, to: unknown, reason: string): void => {
      const from = (o as Record<string, unknown>)[option];
      if (from === to) return;
      overrides.push({ option, flag: flagOf(option), from, to, reason });
      warnings.push(`${flagOf(option)} ${show(from)} -> ${show(to)}: ${reason}`);
      (o as Record<string, unknown>)[option] = to;
    };
    const errors: string[] = [];

    // SGLang's overrides, in SGLang's order.
    if (o.dpSize === 1 && o.enableDpAttention) {
      override('enableDpAttention', false, 'dp-size is 1, so SGLang turns DP attention off');
    }
    if (EP_EQUALS_TP.has(o.moeA2aBackend)) {
      override('epSize', o.tp, `SGLang sets ep-size to tp (${o.tp}) when --moe-a2a-backend is ${o.moeA2aBackend}`);
    }
    if (o.moeA2aBackend === 'mori') {
      if (o.deepepMode === 'auto') override('deepepMode', 'normal', '--moe-a2a-backend mori supports normal mode only');
      else if (o.deepepMode === 'low_latency') {
        errors.push(`--deepep-mode low_latency: --moe-a2a-backend mori supports normal mode only`);
      }
    }

    // World size and nodes.
    const dpReplicas = o.enableDpAttention ? 1 : o.dpSize;
    const impliedWorld = o.tp * o.ppSize * dpReplicas;
    if (impliedWorld > MAX_GPUS) {
      // The rules below would only restate it, derived from a world that cannot be.
      const factors = `--tp ${o.tp} × --pp-size ${o.ppSize}${dpReplicas > 1 ? ` × --dp-size ${o.dpSize}` : ''}`;
      throw refuse([...errors, `${factors} = ${impliedWorld} GPUs: more than the limit of ${MAX_GPUS}`]);
    }
    const worldSize = defined.worldSize ?? impliedWorld;
    if (worldSize !== impliedWorld) {
      errors.push(
        dpReplicas > 1
          ? `--gpus ${worldSize}: world size must equal tp (${o.tp}) × pp-size (${o.ppSize}) × dp-size (${o.dpSize}) = ${impliedWorld} without --enable-dp-attention`
          : `--gpus ${worldSize}: world size must equal tp (${o.tp}) × pp-size (${o.ppSize}) = ${impliedWorld}`,
      );
    }
    let nnodes = o.nnodes;
    let gpusPerNode: number;
    if (defined.gpusPerNode !== undefined) {
      gpusPerNode = defined.gpusPerNode;
      if (defined.nnodes === undefined) {
        if (worldSize % gpusPerNode !== 0 && worldSize > gpusPerNode) {
          errors.push(`--gpus-per-node ${gpusPerNode}: world size (${worldSize}) must be divisible by gpus-per-node`);
        }
        nnodes = Math.max(1, Math.ceil(worldSize / gpusPerNode));
        o.nnodes = nnodes;
      } else if (nnodes * gpusPerNode !== worldSize) {
        errors.push(`--gpus-per-node ${gpusPerNode}: world size (${worldSize}) must equal nnodes (${nnodes}) × gpus-per-node`);
      }
      gpusPerNode = Math.min(gpusPerNode, worldSize);
    } else {
      gpusPerNode = Math.max(1, Math.floor(worldSize / nnodes));
      if (worldSize % nnodes !== 0) errors.push(`--nnodes ${nnodes}: world size (${worldSize}) must be divisible by nnodes`);
    }
    if (o.tp % nnodes !== 0) errors.push(`--nnodes ${nnodes}: tp (${o.tp}) must be divisible by nnodes`);
    if (o.nodeRank >= nnodes) errors.push(`--node-rank ${o.nodeRank}: must be less than nnodes (${nnodes})`);
    if (o.distInitAddr !== null) {
      const m = HOST_PORT.exec(o.distInitAddr);
      const port = m ? Number(m[2]) : 0;
      if (!m || port < 1 || port > 65535) {
        errors.push(`--dist-init-addr ${o.distInitAddr}: must be host:port with a port in [1, 65535]`);
      }
    }

    // Data parallelism and attention.
    if (o.enableDpAttention && o.tp % o.dpSize !== 0) {
      errors.push(`--dp-size ${o.dpSize}: tp (${o.tp}) must be divisible by dp-size when --enable-dp-attention is set`);
    }
    if (nnodes > 1 && o.dpSize > 1 && !o.enableDpAttention) {
      errors.push(`--dp-size ${o.dpSize}: multi-node data parallelism (nnodes ${nnodes}) requires --enable-dp-attention`);
    }

    // Experts.
    const epFromBackend = overrides.some((x) => x.option === 'epSize') ? ` (set by --moe-a2a-backend ${o.moeA2aBackend})` : '';
    const epTimesMoeDp = o.epSize * o.moeDpSize;
    if (epTimesMoeDp > o.tp) {
      errors.push(
        `--ep-size ${o.epSize}${epFromBackend}: ep-size × moe-dp-size (${o.epSize} × ${o.moeDpSize} = ${epTimesMoeDp}) must not exceed tp (${o.tp})`,
      );
    } else if (o.tp % epTimesMoeDp !== 0) {
      errors.push(
        `--ep-size ${o.epSize}: tp (${o.tp}) must be divisible by ep-size × moe-dp-size (${o.epSize} × ${o.moeDpSize} = ${epTimesMoeDp}), since moe_tp_size = tp / ep / moe_dp`,
      );
    }

    // Backends and modes.
    if (o.enableTwoBatchOverlap && o.moeA2aBackend === 'none') {
      errors.push(`--enable-two-batch-overlap: two-batch overlap requires an all-to-all backend, but --moe-a2a-backend is none`);
    }
    if (o.moeA2aBackend === 'flashinfer' && !(o.enableDpAttention && o.dpSize === o.tp)) {
      errors.push(
        `--moe-a2a-backend flashinfer: requires --enable-dp-attention with dp-size equal to tp (dp-size ${o.dpSize}, tp ${o.tp}, DP attention ${o.enableDpAttention ? 'on' : 'off'})`,
      );
    }
    if (o.numMaxDispatchTokensPerRank > MAX_DISPATCH_TOKENS_PER_RANK) {
      errors.push(
        `--num-max-dispatch-tokens-per-rank ${o.numMaxDispatchTokensPerRank}: must be at most ${MAX_DISPATCH_TOKENS_PER_RANK} (low-latency receive slots per rank)`,
      );
    }
    if (o.tboTokenDistributionThreshold < 0 || o.tboTokenDistributionThreshold > 0.5) {
      errors.push(`--tbo-token-distribution-threshold ${o.tboTokenDistributionThreshold}: must be in [0, 0.5]`);
    }
    if (o.memFractionStatic !== null && !(o.memFractionStatic > 0 && o.memFractionStatic <= 1)) {
      errors.push(`--mem-fraction-static ${o.memFractionStatic}: must be in (0, 1]`);
    }
    const attnDpSize = o.enableDpAttention ? o.dpSize : 1;
    if (o.maxRunningRequests !== null && LOW_LATENCY_BACKENDS.has(o.moeA2aBackend) && o.deepepMode !== 'normal') {
      // SGLang gives each DP rank max-running-requests / dp of the decode batch.
      const perRank = Math.ceil(o.maxRunningRequests / attnDpSize);
      const perDispatch = o.enableTwoBatchOverlap ? Math.ceil(perRank / 2) : perRank;
      if (perDispatch > o.numMaxDispatchTokensPerRank) {
        const what = o.enableTwoBatchOverlap ? `a two-batch-overlap micro-batch of ${perDispatch}` : `${perRank}`;
        errors.push(
          `--max-running-requests ${o.maxRunningRequests}: each DP rank may decode up to ${perRank} requests (${o.maxRunningRequests} / ${attnDpSize} DP ranks), ` +
            `and ${what} is more than --num-max-dispatch-tokens-per-rank ${o.numMaxDispatchTokensPerRank} allows in low_latency mode`,
        );
      }
    }
    if (errors.length > 0) throw refuse(errors);

    // Legal but worth saying.
    if (o.enableEplb && o.epSize === 1) {
      warnings.push('--enable-eplb: ep-size is 1, so every GPU holds every expert and EPLB has nothing to balance');
    }
    if (defined.deepepMode !== undefined && o.moeA2aBackend === 'none') {
      warnings.push(`--deepep-mode ${o.deepepMode}: has no effect with --moe-a2a-backend none`);
    }
    if (o.moeA2aBackend === 'none' && o.epSize > NONE_BACKEND_SCALING_LIMIT) {
      warnings.push(
        `--moe-a2a-backend none: every GPU computes its experts on all tokens and all-reduces, which does not scale past ${NONE_BACKEND_SCALING_LIMIT} GPUs; use deepep`,
      );
    }

    return new ParallelConfig({ ...o, nnodes, worldSize, gpusPerNode }, overrides, warnings);
  }

  get worldSize(): number {
    return this.options.worldSize;
  }

  get nnodes(): number {
    return this.options.nnodes;
  }

  get gpusPerNode(): number {
    return this.options.gpusPerNode;
  }

  /**
   * Physical expert slots per MoE layer: routed experts plus
   * `--ep-num-redundant-experts`. They must spread evenly over the EP ranks.
   */
  numPhysicalExperts(numRoutedExperts: number): number {
    const redundant = this.options.epNumRedundantExperts;
    const total = numRoutedExperts + redundant;
    if (total % this.moeEpSize !== 0) {
      throw new WideepError(
        'ERR_INVALID_ARG',
        redundant > 0
          ? `--ep-num-redundant-experts ${redundant}: routed experts (${numRoutedExperts}) + redundant experts (${redundant}) = ${total} must be divisible by ep-size (${this.moeEpSize})`
          : `--ep-size ${this.moeEpSize}: the model's ${numRoutedExperts} routed experts must be divisible by ep-size`,
      );
    }
    return total;
  }

  /** Physical experts whose weights (or a `moeTpSize` shard of them) each GPU holds. */
  expertsPerGpu(numRoutedExperts: number): number {
    return this.numPhysicalExperts(numRoutedExperts) / this.moeEpSize;
  }

  private groupSizes(): GroupSizes {
    return {
      worldSize: this.worldSize,
      gpusPerNode: this.gpusPerNode,
      tp: this.options.tp,
      pp: this.options.ppSize,
      dpReplicas: this.dpReplicas,
      attnTpSize: this.attnTpSize,
      moeEpSize: this.moeEpSize,
      moeTpSize: this.moeTpSize,
      moeDpSize: this.moeDpSize,
    };
  }

  /** Where global `rank` sits in every process group. */
  rankInfo(rank: number): RankInfo {
    if (!Number.isInteger(rank) || rank < 0 || rank >= this.worldSize) {
      throw new WideepError('ERR_INVALID_ARG', `rank ${show(rank)}: must be an integer in [0, ${this.worldSize})`);
    }
    return rankInfo(this.groupSizes(), rank);
  }

  /** Every process group, each listed once. */
  processGroups(): ProcessGroups {
    return processGroups(this.groupSizes());
  }

  toJSON(): Record<string, unknown> {
    return {
      ...this.options,
      attnTpSize: this.attnTpSize,
      attnDpSize: this.attnDpSize,
      moeTpSize: this.moeTpSize,
      moeEpSize: this.moeEpSize,
      moeDpSize: this.moeDpSize,
      dpReplicas: this.dpReplicas,
      overrides: this.overrides,
      warnings: this.warnings,
    };
  }
}
