/**
 * The SGLang-compatible parallelism options: their camelCase names in the API,
 * their kebab-case flags on the command line, and SGLang's defaults.
 *
 * This file only describes the options; `config.ts` validates them and derives
 * the group sizes, `sglang-args.ts` parses them from argv.
 */

/** `--moe-a2a-backend`: how tokens reach the experts (docs/wide-ep.md). */
export const MOE_A2A_BACKENDS = ['none', 'deepep', 'mooncake', 'mori', 'flashinfer'] as const;
export type MoeA2aBackend = (typeof MOE_A2A_BACKENDS)[number];

/** `--deepep-mode`: `auto` resolves per step (see `resolveDeepepMode`). */
export const DEEPEP_MODES = ['normal', 'low_latency', 'auto'] as const;
export type DeepepMode = (typeof DEEPEP_MODES)[number];

/** A DeepEP mode after `auto` has been resolved for one step. */
export type ResolvedDeepepMode = Exclude<DeepepMode, 'auto'>;

/**
 * Options as a user gives them. Every field is optional; missing ones take
 * SGLang's defaults (`PARALLEL_DEFAULTS`).
 */
export interface ParallelOptions {
  /** `--tp`: the size of the group of GPUs that cooperate (a group size, not a split). */
  tp?: number;
  /** `--dp-size`: data-parallel size; with DP attention, the number of attention DP ranks inside `tp`. */
  dpSize?: number;
  /** `--enable-dp-attention`. */
  enableDpAttention?: boolean;
  /** `--ep-size`: expert-parallel size. */
  epSize?: number;
  /** `--moe-dp-size`: replicas of the expert layout inside `tp`. */
  moeDpSize?: number;
  /** `--pp-size`: pipeline stages. */
  ppSize?: number;
  /** `--nnodes`. */
  nnodes?: number;
  /** `--node-rank`. */
  nodeRank?: number;
  /** `--dist-init-addr host:port`. */
  distInitAddr?: string;
  /** `--moe-a2a-backend`. */
  moeA2aBackend?: MoeA2aBackend;
  /** `--deepep-mode`. */
  deepepMode?: DeepepMode;
  /** `--enable-two-batch-overlap`. */
  enableTwoBatchOverlap?: boolean;
  /** `--tbo-token-distribution-threshold` (default 0.48, at most 0.5). */
  tboTokenDistributionThreshold?: number;
  /** `--enable-eplb`. */
  enableEplb?: boolean;
  /** `--ep-num-redundant-experts`: extra physical expert slots per MoE layer. */
  epNumRedundantExperts?: number;
  /** `--eplb-rebalance-num-iterations`: forward passes between rebalances. */
  eplbRebalanceNumIterations?: number;
  /** `--max-running-requests`: over all DP ranks together. */
  maxRunningRequests?: number;
  /** `--num-max-dispatch-tokens-per-rank`: low-latency receive slots per rank (1..1024). */
  numMaxDispatchTokensPerRank?: number;
  /** `--mem-fraction-static`: fraction of GPU memory for weights plus KV cache. */
  memFractionStatic?: number;
  /** `--gpus` (wideep): the GPU count, i.e. the world size. Default: what the other sizes imply. */
  worldSize?: number;
  /** `--gpus-per-node` (wideep): default `worldSize / nnodes`. */
  gpusPerNode?: number;
}

/** The options after defaults and SGLang's overrides. */
export interface ResolvedParallelOptions {
  tp: number;
  dpSize: number;
  enableDpAttention: boolean;
  epSize: number;
  moeDpSize: number;
  ppSize: number;
  nnodes: number;
  nodeRank: number;
  distInitAddr: string | null;
  moeA2aBackend: MoeA2aBackend;
  deepepMode: DeepepMode;
  enableTwoBatchOverlap: boolean;
  tboTokenDistributionThreshold: number;
  enableEplb: boolean;
  epNumRedundantExperts: number;
  eplbRebalanceNumIterations: number;
  maxRunningRequests: number | null;
  numMaxDispatchTokensPerRank: number;
  memFractionStatic: number | null;
  worldSize: number;
  gpusPerNode: number;
}

/** SGLang's defaults (`server_args.py`), for the options that have a fixed one. */
export const PARALLEL_DEFAULTS = {
  tp: 1,
  dpSize: 1,
  enableDpAttention: false,
  epSize: 1,
  moeDpSize: 1,
  ppSize: 1,
  nnodes: 1,
  nodeRank: 0,
  moeA2aBackend: 'none',
  deepepMode: 'auto',
  enableTwoBatchOverlap: false,
  tboTokenDistributionThreshold: 0.48,
  enableEplb: false,
  epNumRedundantExperts: 0,
  eplbRebalanceNumIterations: 1000,
  numMaxDispatchTokensPerRank: 128,
} as const;

/** The most low-latency receive slots per rank (DeepEP's limit). */
export const MAX_DISPATCH_TOKENS_PER_RANK = 1024;

export type OptionKind = 'int' | 'number' | 'boolean' | 'string';

export interface OptionSpec {
  /** The flag errors name, SGLang's spelling. */
  flag: string;
  /** Other spellings SGLang accepts for the same option. */
  aliases: readonly string[];
  kind: OptionKind;
  /** For string options with a fixed set of values. */
  choices?: readonly string[];
}

/** Every option, with its flag. The order is the order of `--help`. */
export const OPTION_SPECS: { readonly [K in keyof ParallelOptions]-?: OptionSpec } = {
  tp: { flag: '--tp', aliases: ['--tp-size', '--tensor-parallel-size'], kind: 'int' },
  dpSize: { flag: '--dp-size', aliases: ['--dp', '--data-parallel-size'], kind: 'int' },
  enableDpAttention: { flag: '--enable-dp-attention', aliases: [], kind: 'boolean' },
  epSize: { flag: '--ep-size', aliases: ['--ep', '--expert-parallel-size'], kind: 'int' },
  moeDpSize: { flag: '--moe-dp-size', aliases: [], kind: 'int' },
  ppSize: { flag: '--pp-size', aliases: ['--pp', '--pipeline-parallel-size'], kind: 'int' },
  nnodes: { flag: '--nnodes', aliases: [], kind: 'int' },
  nodeRank: { flag: '--node-rank', aliases: [], kind: 'int' },
  distInitAddr: { flag: '--dist-init-addr', aliases: ['--nccl-init-addr'], kind: 'string' },
  moeA2aBackend: { flag: '--moe-a2a-backend', aliases: [], kind: 'string', choices: MOE_A2A_BACKENDS },
  deepepMode: { flag: '--deepep-mode', aliases: [], kind: 'string', choices: DEEPEP_MODES },
  enableTwoBatchOverlap: { flag: '--enable-two-batch-overlap', aliases: [], kind: 'boolean' },
  tboTokenDistributionThreshold: { flag: '--tbo-token-distribution-threshold', aliases: [], kind: 'number' },
  enableEplb: { flag: '--enable-eplb', aliases: [], kind: 'boolean' },
  epNumRedundantExperts: { flag: '--ep-num-redundant-experts', aliases: [], kind: 'int' },
  eplbRebalanceNumIterations: { flag: '--eplb-rebalance-num-iterations', aliases: [], kind: 'int' },
  maxRunningRequests: { flag: '--max-running-requests', aliases: [], kind: 'int' },
  numMaxDispatchTokensPerRank: { flag: '--num-max-dispatch-tokens-per-rank', aliases: [], kind: 'int' },
  memFractionStatic: { flag: '--mem-fraction-static', aliases: [], kind: 'number' },
  worldSize: { flag: '--gpus', aliases: [], kind: 'int' },
  gpusPerNode: { flag: '--gpus-per-node', aliases: [], kind: 'int' },
};

/** The flag that names option `key` in messages. */
export function flagOf(key: keyof ParallelOptions): string {
  return OPTION_SPECS[key].flag;
}
