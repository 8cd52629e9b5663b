import { WideepError } from '../../errors.js';
import { DEFAULT_GPU, GPU_PRESETS, type HardwareSpec } from '../../planning/hardware.js';
import { readJsonFile } from '../../planning/json-file.js';
import { resolveModel } from '../../planning/model-file.js';
import { MODEL_PRESETS } from '../../planning/models.js';
import { planDeployment, type DeploymentPlan, type TrafficScenario } from '../../planning/planner.js';
import { parseIntFlag, parseNumberFlag, parseSglangArgs, type ArgOptions } from '../../planning/sglang-args.js';
import { reportError, toJson, type CliCommand } from '../command.js';

const USAGE = `usage: wideep plan [SGLang flags] [--model NAME|FILE] [--gpus N] [--json]

Plans a WideEP deployment without running it: group sizes, per-GPU memory,
dispatch/combine traffic and the expert placement.

SGLang flags (same spellings as sglang.launch_server):
  --tp N  --dp-size N  --enable-dp-attention  --ep-size N  --moe-dp-size N  --pp-size N
  --nnodes N  --node-rank N  --dist-init-addr HOST:PORT
  --moe-a2a-backend none|deepep|mooncake|mori|flashinfer  --deepep-mode normal|low_latency|auto
  --enable-two-batch-overlap  --tbo-token-distribution-threshold X
  --enable-eplb  --ep-num-redundant-experts N  --eplb-rebalance-num-iterations N
  --max-running-requests N  --num-max-dispatch-tokens-per-rank N  --mem-fraction-static X

Planner options:
  --model NAME|FILE        a preset (${Object.keys(MODEL_PRESETS).join(', ')}; default deepseek-v3)
                           or a JSON file (wideep's ModelConfig or a Hugging Face config.json)
  --gpus N                 GPU count (default: tp × pp)
  --gpus-per-node N        default 8 unless --nnodes is given
  --gpu NAME               ${Object.keys(GPU_PRESETS).join(', ')}: memory and NVLink bandwidth (default ${DEFAULT_GPU})
  --gpu-memory-gb X        memory per GPU in GB (1e9 bytes)
  --nvlink-bw X            NVLink GB/s per GPU per direction
  --rdma-bw X              RDMA GB/s per GPU (default 50)
  --eplb-stats FILE        expert loads, [layers][experts]: place experts with EPLB
  --prefill-tokens-per-rank N   tokens per rank in the prefill traffic estimate (default 4096)
  --decode-tokens-per-rank N    tokens per rank in the decode estimate (default --num-max-dispatch-tokens-per-rank)
  --layer L                model layer whose placement the table shows (default the first MoE layer)
  --json                   the whole plan as JSON, every layer's placement included`;

const PLAN_OPTIONS: ArgOptions = {
  json: { type: 'boolean' },
  model: { type: 'string' },
  'model-path': { type: 'string' },
  gpu: { type: 'string' },
  'gpu-memory-gb': { type: 'string' },
  'nvlink-bw': { type: 'string' },
  'rdma-bw': { type: 'string' },
  'eplb-stats': { type: 'string' },
  'prefill-tokens-per-rank': { type: 'string' },
  'decode-tokens-per-rank': { type: 'string' },
  layer: { type: 'string' },
};

/** Rows of the placement table shown before and after the ellipsis when there are many GPUs. */
const HEAD_ROWS = 8;
const TAIL_ROWS = 2;

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}

function size(bytes: number): string {
  if (Math.abs(bytes) >= 2 ** 30) return gib(bytes);
  if (Math.abs(bytes) >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
  return `${(bytes / 2 ** 10).toFixed(1)} KiB`;
}

function us(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(2)} ms` : `${x.toFixed(1)} µs`;
}

function billions(n: number): string {
  return `${(n / 1e9).toFixed(1)}B`;
}

function table(rows: string[][], indent = '  '): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => indent + r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ').trimEnd());
}

function trafficRows(scenarios: TrafficScenario[]): string[][] {
  if (scenarios[0]?.dispatch === undefined) {
    return [
      ['phase', 'tokens/rank', 'all-gather', 'reduce-scatter', 'time/layer', 'time/forward'],
      ...scenarios.map((s) => [s.phase, String(s.tokensPerRank), size(s.allGatherBytes!), size(s.reduceScatterBytes!), us(s.layerTimeUs), us(s.forwardTimeUs)]),
    ];
  }
  return [
    ['phase', 'mode', 'EP path', 'tokens/rank', 'dest/token', 'dispatch NVLink', 'dispatch RDMA', 'combine NVLink', 'combine RDMA', 'time/layer', 'time/forward'],
    ...scenarios.map((s) => [
      s.phase,
      s.mode ?? '-',
      s.epCalls?.path ?? '-',
      String(s.tokensPerRank),
      s.destinationsPerToken!.toFixed(2),
      size(s.dispatch!.nvlinkBytes),
      size(s.dispatch!.rdmaBytes),
      size(s.combine!.nvlinkBytes),
      size(s.combine!.rdmaBytes),
      us(s.layerTimeUs),
      us(s.forwardTimeUs),
    ]),
  ];
}

function placementLines(p: DeploymentPlan, layer: number | undefined): string[] {
  const pl = p.placement;
  const modelLayer = layer ?? pl.moeLayers[0]!;
  const row = pl.moeLayers.indexOf(modelLayer);
  if (row < 0) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `--layer ${modelLayer}: not a MoE layer of ${p.model.name} (MoE layers are ${pl.moeLayers[0]}..${pl.moeLayers[pl.moeLayers.length - 1]})`,
    );
  }
  const phy2log = pl.phy2log[row]!;
  const identical = pl.phy2log.every((r) => r.every((e, i) => e === phy2log[i]));
  const how = pl.source === 'eplb' ? 'EPLB' : `initial: slot p holds expert p mod ${p.model.numRoutedExperts}`;
  const out = [
    `placement of layer ${modelLayer} (${how}; ${identical ? `all ${pl.moeLayers.length} MoE layers identical` : 'layers differ'})`,
  ];
  const rows: string[][] = [['GPU', 'node', 'experts']];
  const show = (g: number): void => {
    rows.push([String(g), String(Math.floor(g / p.communication.ranksPerNode)), phy2log.slice(g * pl.physicalPerGpu, (g + 1) * pl.physicalPerGpu).join(' ')]);
  };
  const many = pl.numGpus > HEAD_ROWS + TAIL_ROWS;
  for (let g = 0; g < (many ? HEAD_ROWS : pl.numGpus); g++) show(g);
  if (many) {
    rows.push(['…', '', `${pl.numGpus - HEAD_ROWS - TAIL_ROWS} more GPUs (--json carries every GPU of every layer)`]);
    for (let g = pl.numGpus - TAIL_ROWS; g < pl.numGpus; g++) show(g);
  }
  out.push(...table(rows));
  if (p.eplb) {
    const e = p.eplb;
    out.push(
      `  EPLB ${e.policy} (R ${e.numReplicas}, groups ${e.numGroups}, nodes ${e.numNodes}, GPUs ${e.numGpus}): ` +
        `balancedness ${e.balancednessBefore.toFixed(3)} -> ${e.balancednessAfter.toFixed(3)} (mean over layers; layer ${modelLayer}: ${e.balancednessPerLayer[row]!.toFixed(3)})`,
    );
  }
  return out;
}

function kvBudgetCell(mem: DeploymentPlan['memory']): string {
  const perToken = `${mem.kvBytesPerToken.toLocaleString('en-US')} B/token`;
  if (mem.fits) return `${gib(mem.kvBudgetBytes)} = ${mem.kvTokens.toLocaleString('en-US')} tokens at ${perToken}`;
  if (mem.kvBudgetBytes <= 0) return `none: the weights exceed the static budget by ${gib(-mem.kvBudgetBytes)}`;
  return `${size(mem.kvBudgetBytes)}: not one token at ${perToken}`;
}

/** The human-readable plan. */
export function renderPlan(p: DeploymentPlan, layer?: number): string {
  const o = p.options;
  const m = p.model;
  const mem = p.memory;
  const groups = (Object.entries(p.groups) as Array<[string, number[][]]>).map(([k, gs]) => `${k} ${gs.length}×${gs[0]!.length}`);
  const lines = [
    `wideep plan: ${m.name} on ${p.worldSize} GPUs (${p.nnodes} node${p.nnodes > 1 ? 's' : ''} × ${p.gpusPerNode}), ${mem.gpu}`,
    '',
    'parallelism',
    `  tp ${o.tp}  dp-size ${o.dpSize} (DP attention ${o.enableDpAttention ? 'on' : 'off'})  ep-size ${o.epSize}  moe-dp-size ${o.moeDpSize}  pp-size ${o.ppSize}`,
    `  attnTpSize ${p.attnTpSize}  attnDpSize ${p.attnDpSize}  moeTpSize ${p.moeTpSize}  moeEpSize ${p.moeEpSize}  moeDpSize ${p.moeDpSize}`,
    `  expertsPerGpu ${p.expertsPerGpu}  (${p.numPhysicalExperts} physical = ${m.numRoutedExperts} routed + ${o.epNumRedundantExperts} redundant, over ${p.moeEpSize} EP ranks)`,
    `  backend ${o.moeA2aBackend}, deepep-mode ${o.deepepMode}, two-batch overlap ${o.enableTwoBatchOverlap ? 'on' : 'off'}, EPLB ${o.enableEplb ? `on (every ${o.eplbRebalanceNumIterations} passes)` : 'off'}`,
    `  process groups (count×size): ${groups.join(', ')}`,
    '',
    'model',
    `  ${m.name}: ${m.numLayers} layers (${m.numDenseLayers} dense, ${m.numMoeLayers} MoE), hidden ${m.hiddenSize}, ` +
      `${m.numRoutedExperts} routed + ${m.numSharedExperts} shared experts, top-${m.topK}, ${billions(m.totalParams)} params (${billions(m.activeParams)} active), ${gib(m.totalWeightBytes)}`,
    '',
    `memory per GPU (${mem.gpu}, ${gib(mem.gpuMemoryBytes)}, mem-fraction-static ${mem.memFractionStatic})`,
    ...table([
      ['dense weights (replicated)', gib(mem.denseWeightBytes)],
      [`expert shard (${p.expertsPerGpu} experts × ${m.numMoeLayers} layers${p.moeTpSize > 1 ? ` ÷ moe_tp ${p.moeTpSize}` : ''})`, gib(mem.expertShardBytes)],
      ['weights', gib(mem.weightBytes)],
      ['KV cache budget', kvBudgetCell(mem)],
    ]),
    '',
    `communication per MoE layer per GPU (${p.communication.backend}; NVLink ${p.communication.nvlinkGBps} GB/s, RDMA ${p.communication.rdmaGBps} GB/s, ${p.communication.ranksPerNode} EP ranks per node)`,
    ...table(trafficRows(p.communication.scenarios)),
    '',
    ...placementLines(p, layer),
  ];
  if (p.notes.length > 0) lines.push('', 'notes', ...p.notes.map((n) => `  ${n}`));
  if (p.warnings.length > 0) lines.push('', 'warnings', ...p.warnings.map((w) => `  ${w}`));
  return lines.join('\n');
}

function hardware(extra: Record<string, string | boolean | undefined>): Partial<HardwareSpec> {
  const name = (extra.gpu as string | undefined) ?? DEFAULT_GPU;
  const preset = GPU_PRESETS[name.toLowerCase()];
  if (!preset) throw new WideepError('ERR_INVALID_ARG', `--gpu ${name}: must be one of ${Object.keys(GPU_PRESETS).join(', ')}`);
  const num = (flag: string): number | undefined => {
    const raw = extra[flag] as string | undefined;
    if (raw === undefined) return undefined;
    const v = parseNumberFlag(`--${flag}`, raw);
    if (!(v > 0)) throw new WideepError('ERR_INVALID_ARG', `--${flag} ${raw}: must be > 0`);
    return v;
  };
  const memGb = num('gpu-memory-gb');
  return {
    ...preset,
    memoryBytes: memGb === undefined ? preset.memoryBytes : memGb * 1e9,
    nvlinkGBps: num('nvlink-bw') ?? preset.nvlinkGBps,
    rdmaGBps: num('rdma-bw') ?? preset.rdmaGBps,
  };
}

export const command: CliCommand = {
  name: 'plan',
  summary: 'plan a WideEP deployment: group sizes, memory, traffic, expert placement',
  usage: USAGE,
  async run(argv, io) {
    try {
      const { options, extra, positionals, warnings } = parseSglangArgs(argv, PLAN_OPTIONS);
      if (positionals.length > 0) throw new WideepError('ERR_INVALID_ARG', `unexpected argument '${positionals[0]}'`);
      if (extra.model !== undefined && extra['model-path'] !== undefined && extra.model !== extra['model-path']) {
        throw new WideepError('ERR_INVALID_ARG', `--model-path ${String(extra['model-path'])}: conflicts with --model ${String(extra.model)}`);
      }
      const model = resolveModel((extra.model ?? extra['model-path'] ?? 'deepseek-v3') as string);
      const int = (flag: string): number | undefined =>
        extra[flag] === undefined ? undefined : parseIntFlag(`--${flag}`, extra[flag] as string, flag === 'layer' ? 0 : 1);
      const statsPath = extra['eplb-stats'] as string | undefined;
      // The largest plans take seconds; --json stays quiet.
      if (!extra.json) io.progress?.('wideep plan: sizing groups, memory and traffic, placing the experts…');
      const plan = planDeployment({
        parallel: options,
        model,
        hardware: hardware(extra),
        eplbStats: statsPath === undefined ? undefined : (readJsonFile(statsPath, '--eplb-stats') as number[][]),
        prefillTokensPerRank: int('prefill-tokens-per-rank'),
        decodeTokensPerRank: int('decode-tokens-per-rank'),
      });
      plan.warnings.unshift(...warnings);
      for (const w of plan.warnings) io.err(`wideep: warning: ${w}`);
      io.out(extra.json ? toJson(plan) : renderPlan(plan, int('layer')));
      // A plan that does not fit is a result, not a usage error: exit 1.
      if (!plan.fits) {
        io.err(`wideep: the plan does not fit: ${plan.fitReason}`);
        return 1;
      }
      return 0;
    } catch (e) {
      return reportError(e, io, 'plan');
    }
  },
};
