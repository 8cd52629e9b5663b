import { parseArgs } from 'node:util';

import { capabilities, type Capabilities } from '../../capabilities.js';
import { WideepError } from '../../errors.js';
import { demoBackend, type DemoBackend, type DemoBackendKind } from '../demo/backend.js';
import { cudaRankPlacement } from '../rank-placement.js';
import { runCudaDemo } from '../demo/cuda-run.js';
import { cudaSummary, renderCudaDemo } from '../demo/cuda-summary.js';
import { DECODE_REPLAYS, GPU_DEMO_CONFIG, PREFILL_STEPS } from '../demo/gpu-layer.js';
import { DEMO_MOE_CONFIG, runMoeLayerCheck, type MoeLayerCheckResult, type PipelineEvent, type StepReport } from '../../simulation/index.js';
import { parseIntFlag } from '../../planning/sglang-args.js';
import { reportError, toJson, type CliCommand, type CliIo } from '../command.js';

const USAGE = `usage: wideep demo [--backend cpu|cuda] [--ranks N] [--share-gpu] [--tbo | --no-tbo]
                   [--eplb | --no-eplb] [--replica-choice static|dynamic] [--seed S] [--json]

Runs one DeepSeek-style MoE layer (grouped top-k gate, ${DEMO_MOE_CONFIG.numRoutedExperts} SwiGLU routed experts,
a shared expert) across N ranks and checks it against a reference. Exit 0 when
they match, 1 when not.

On the cuda backend (chosen when a supported GPU and cuBLASLt are there) it
launches one process per rank, each on its own GPU: the plan (DP attention +
DeepEP) sizes the EP buffer, then prefill steps (normal dispatch) and decode
steps (low-latency dispatch, replayed as one CUDA graph) run on the GPUs, the
last rank idle in one step, and every output is compared with the layer
computed on the host.

On the cpu backend it simulates the ranks in this process: DP attention on
each rank's own batch (the last rank is idle), tokens to the experts and back
through EpBuffer dispatch/combine (normal mode for prefill steps, low-latency
for decode steps), two-batch overlap and EPLB; then it runs the same layer
densely in one process and compares.

  --backend B        cpu or cuda (default: cuda where it can run, else cpu; it says why)
  --ranks N          ranks, a divisor of ${DEMO_MOE_CONFIG.numRoutedExperts}: from 2 on the cpu backend (default 4), from
                     1 to 8 GPUs on the cuda backend (default: every visible GPU, up to 8)
  --share-gpu        cuda: every rank on GPU 0 (time-sliced; for fewer GPUs than ranks)
  --tbo, --no-tbo    cpu: two-batch overlap (default on)
  --eplb, --no-eplb  cpu: EPLB: record loads, rebalance with one redundant expert
                     per rank, move the weights (default on)
  --replica-choice   cpu: how ranks pick among an expert's replicas (default static)
  --seed S           seeds the weights and the batches (default 1)
  --json             print one summary object instead of progress`;

const OPTIONS = {
  ranks: { type: 'string' },
  tbo: { type: 'boolean' },
  'no-tbo': { type: 'boolean' },
  eplb: { type: 'boolean' },
  'no-eplb': { type: 'boolean' },
  'replica-choice': { type: 'string' },
  seed: { type: 'string' },
  backend: { type: 'string' },
  'share-gpu': { type: 'boolean' },
  json: { type: 'boolean', default: false },
} as const;

/** Options of the cpu backend's simulation that the cuda run does not have yet. */
const CPU_ONLY_OPTIONS = ['tbo', 'no-tbo', 'eplb', 'no-eplb', 'replica-choice'] as const;

function onOff(on: boolean | undefined, off: boolean | undefined, flag: string): boolean {
  if (on && off) throw new WideepError('ERR_INVALID_ARG', `--${flag} and --no-${flag} contradict each other`);
  return !off;
}

function kib(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function sci(x: number): string {
  return x === 0 ? '0' : x.toExponential(2);
}

/** Lists per-rank values up to 16 ranks; beyond, their range. */
function perRank(values: readonly string[], numbers: readonly number[]): string {
  if (values.length <= 16) return `[${values.join(', ')}]`;
  return `${Math.min(...numbers)}..${Math.max(...numbers)} over ${values.length} ranks`;
}

function stepLine(s: StepReport): string {
  const busy = s.forwardModes.filter((m) => m !== 'idle');
  const kind = busy.every((m) => m === busy[0]) ? busy[0] ?? 'idle' : 'mixed';
  const idle = s.idleRanks.length > 0 ? `; idle: rank ${s.idleRanks.join(', ')}` : '';
  const tokens = s.tokensPerRank.reduce((a, b) => a + b, 0);
  const why = kind === 'mixed' ? 'some rank prefills' : kind === 'extend' ? 'prefill' : 'decode';
  const tbo = s.useTbo
    ? `two-batch overlap, micro-batches ${perRank(s.microBatchTokens.map((m) => m.join('+')), s.microBatchTokens.map((m) => m[0]!))}`
    : 'no two-batch overlap' + (kind === 'mixed' ? ' (ranks run different modes)' : '');
  const unit = s.deepepMode === 'normal' ? 'token-rank rows' : 'token-expert slots';
  return (
    `step ${s.step}  ${kind}: ${tokens} tokens, per rank ${perRank(s.tokensPerRank.map(String), s.tokensPerRank)}${idle}\n` +
    `        ${s.deepepMode} dispatch (${why}), ${tbo}\n` +
    `        dispatch ${s.dispatchRows} ${unit} (${kib(s.dispatchBytes)}), combine ${s.combineRows} (${kib(s.combineBytes)}); ` +
    `expert load balancedness ${s.balancedness.toFixed(2)}, ${s.placement} placement`
  );
}

/** Prints each stage as it ends and, on a terminal, which one runs now. */
function progressPrinter(io: CliIo): (e: PipelineEvent) => void {
  let steps = 0;
  let done = 0;
  return (e) => {
    print(e);
    if (e.type === 'setup') steps = e.steps;
    if (e.type === 'step') done = e.report.step + 1;
    io.progress?.(done < steps ? `demo: running step ${done} (${done} of ${steps} done)…` : 'demo: running the dense reference…');
  };

  function print(e: PipelineEvent): void {
    if (e.type === 'setup') {
      const eplb = e.eplb
        ? `EPLB on: ${e.eplb.redundantExperts} redundant slots, ${e.eplb.replicaChoice} replica choice, rebalance after step ${e.eplb.rebalanceAfterSteps - 1}`
        : 'EPLB off';
      io.out(
        `ranks     ${e.numRanks} (DP attention: each rank its own batch; EP: ${e.numPhysical} expert slots, ${e.expertsPerRank} per rank; ` +
          `${e.numRanks / e.ranksPerNode} node${e.numRanks / e.ranksPerNode === 1 ? '' : 's'} of ${e.ranksPerNode})\n` +
          `features  deepep mode ${e.deepepMode}, TBO ${e.tbo ? 'on' : 'off'}, ${eplb}; low-latency slots ${e.numMaxDispatchTokensPerRank} per rank\n` +
          `steps     ${e.steps}`,
      );
    } else if (e.type === 'step') {
      io.out(stepLine(e.report));
    } else {
      const r = e.report;
      io.out(
        `eplb    rebalanced after step ${r.rebalancedAfterStep} (${r.policy} policy): balancedness ${r.balancednessBefore.toFixed(2)} -> ` +
          `${r.balancednessPredicted.toFixed(2)} predicted; ${r.replicatedExperts} experts replicated; weight moves: ` +
          `${r.moves.recv} received, ${r.moves.local} local copies, ${r.moves.reuse} reused, ${r.moves.unchanged} unchanged`,
      );
    }
  }
}

function summary(backend: DemoBackend, r: MoeLayerCheckResult, options: { tbo: boolean; eplb: boolean; replicaChoice: string; seed: number }) {
  const p = r.pipeline;
  const steps = p.steps;
  return {
    pass: r.comparison.pass,
    backend: backend.backend,
    backendReason: backend.reason,
    gpus: backend.gpus,
    ranks: p.parallel.worldSize,
    ranksPerNode: p.parallel.gpusPerNode,
    tbo: options.tbo,
    eplb: options.eplb,
    replicaChoice: options.eplb ? options.replicaChoice : undefined,
    seed: options.seed,
    model: r.config,
    parallel: {
      tp: p.parallel.options.tp,
      dpSize: p.parallel.options.dpSize,
      enableDpAttention: p.parallel.options.enableDpAttention,
      attnTpSize: p.parallel.attnTpSize,
      epSize: p.parallel.moeEpSize,
      moeA2aBackend: p.parallel.options.moeA2aBackend,
      deepepMode: p.parallel.options.deepepMode,
      numPhysicalExperts: p.numPhysical,
      expertsPerRank: p.numPhysical / p.parallel.worldSize,
    },
    totals: {
      tokens: r.totalTokens,
      dispatchRows: steps.reduce((n, s) => n + s.dispatchRows, 0),
      dispatchBytes: steps.reduce((n, s) => n + s.dispatchBytes, 0),
      combineRows: steps.reduce((n, s) => n + s.combineRows, 0),
      combineBytes: steps.reduce((n, s) => n + s.combineBytes, 0),
    },
    steps,
    eplbReport: p.eplb ?? undefined,
    comparison: r.comparison,
    timings: r.timings,
  };
}

function parseBackend(raw: string | undefined): DemoBackendKind | undefined {
  if (raw === undefined || raw === 'cpu' || raw === 'cuda') return raw;
  throw new WideepError('ERR_INVALID_ARG', `--backend ${raw}: must be cpu or cuda`);
}

function parseDemoArgs(argv: string[]) {
  return parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
}

type DemoValues = ReturnType<typeof parseDemoArgs>['values'];

/** The largest rank count the cuda demo can use on `gpus` GPUs: a power of two (it divides the experts), at most 8 (one NVLink domain). */
function defaultCudaRanks(gpus: number): number {
  let n = 1;
  while (n * 2 <= Math.min(gpus, 8)) n *= 2;
  return n;
}

async function runCuda(values: DemoValues, caps: Capabilities, backend: DemoBackend, seed: number, io: CliIo): Promise<number> {
  const given = CPU_ONLY_OPTIONS.find((o) => values[o] !== undefined);
  if (given) {
    throw new WideepError('ERR_INVALID_ARG', `--${given}: the cuda demo runs prefill and decode steps without two-batch overlap or EPLB yet; --backend cpu simulates them`);
  }
  const E = GPU_DEMO_CONFIG.numRoutedExperts;
  const share = values['share-gpu'] === true;
  const ranks = values.ranks === undefined ? (share ? 1 : defaultCudaRanks(backend.gpus)) : parseIntFlag('--ranks', values.ranks, 1);
  if (ranks > 8 || E % ranks !== 0) throw new WideepError('ERR_INVALID_ARG', `--ranks ${ranks}: the cuda demo runs 1, 2, 4 or 8 ranks (a divisor of its ${E} experts, at most 8 GPUs)`);
  const where = cudaRankPlacement(caps, ranks, share, ', --backend cpu simulates them');
  const c = GPU_DEMO_CONFIG;
  const text = !values.json;
  if (text) {
    io.out(
      `wideep demo: one DeepSeek-style MoE layer on GPUs, checked against the same layer on the host\n` +
        `backend   cuda, ${where.where}\n` +
        `          why: ${backend.reason}\n` +
        `model     hidden ${c.hidden}; ${c.numRoutedExperts} routed SwiGLU experts of width ${c.moeIntermediate}, top-${c.topK} ` +
        `from ${c.topkGroup} of ${c.numExpertGroups} groups (${c.scoringFunc}, ×${c.routedScalingFactor}); ${c.numSharedExperts} shared expert\n` +
        `plan      ${ranks > 1 ? 'DP attention + ' : ''}DeepEP over ${ranks} rank${ranks === 1 ? '' : 's'}: ${E / ranks} experts per rank; ` +
        `${PREFILL_STEPS} prefill steps, then ${DECODE_REPLAYS} replays of a captured decode step`,
    );
    io.progress?.(`demo: running ${ranks} GPU worker${ranks === 1 ? '' : 's'}…`);
  }
  const run = await runCudaDemo(ranks, where.env, { seed });
  const s = cudaSummary(backend, ranks, where.where, seed, run);
  if (!s.pass && !run.ok) io.err(run.log.slice(-4000));
  io.out(text ? renderCudaDemo(s) : toJson(s));
  return s.pass ? 0 : 1;
}

export const command: CliCommand = {
  name: 'demo',
  summary: 'run a DeepSeek-style MoE layer on the GPUs (or across simulated ranks: DP attention, EP, TBO, EPLB) and check it',
  usage: USAGE,
  async run(argv, io) {
    try {
      const { values } = parseDemoArgs(argv);
      const seed = values.seed === undefined ? 1 : parseIntFlag('--seed', values.seed, 0);
      const caps = capabilities();
      const backend = demoBackend(caps, parseBackend(values.backend));
      if (backend.backend === 'cuda') return await runCuda(values, caps, backend, seed, io);
      if (values['share-gpu']) throw new WideepError('ERR_INVALID_ARG', '--share-gpu: only the cuda backend runs ranks on GPUs');
      const E = DEMO_MOE_CONFIG.numRoutedExperts;
      const ranks = values.ranks === undefined ? 4 : parseIntFlag('--ranks', values.ranks, 2);
      if (ranks > E || E % ranks !== 0) {
        throw new WideepError('ERR_INVALID_ARG', `--ranks ${ranks}: must divide the demo model's ${E} routed experts (2, 4, 8, 16, 32 or 64)`);
      }
      const tbo = onOff(values.tbo, values['no-tbo'], 'tbo');
      const eplb = onOff(values.eplb, values['no-eplb'], 'eplb');
      const replicaChoice = values['replica-choice'] ?? 'static';
      if (replicaChoice !== 'static' && replicaChoice !== 'dynamic') {
        throw new WideepError('ERR_INVALID_ARG', `--replica-choice ${replicaChoice}: must be static or dynamic`);
      }
      const c = DEMO_MOE_CONFIG;
      const text = !values.json;
      if (text) {
        io.out(
          `wideep demo: one DeepSeek-style MoE layer across simulated ranks, checked against a dense reference\n` +
            `backend   ${backend.backend}, ${ranks} simulated ranks in this process\n` +
            `          why: ${backend.reason}\n` +
            `model     hidden ${c.hidden}; ${c.numRoutedExperts} routed SwiGLU experts of width ${c.moeIntermediate}, top-${c.topK} ` +
            `from ${c.topkGroup} of ${c.numExpertGroups} groups (${c.scoringFunc}, ×${c.routedScalingFactor}); ${c.numSharedExperts} shared expert; attention stand-in`,
        );
      }
      const result = await runMoeLayerCheck({
        numRanks: ranks,
        tbo,
        eplb: eplb ? { replicaChoice } : false,
        seed,
        onProgress: text ? progressPrinter(io) : undefined,
      });
      const cmp = result.comparison;
      if (!text) {
        io.out(toJson(summary(backend, result, { tbo, eplb, replicaChoice, seed })));
        return cmp.pass ? 0 : 1;
      }
      const lines: string[] = [];
      const e = result.pipeline.eplb;
      if (e?.balancednessAfter != null) {
        lines.push(`eplb    measured balancedness after the rebalance (steps ${e.rebalancedAfterStep + 1}..${result.pipeline.steps.length - 1}): ${e.balancednessAfter.toFixed(2)}, before: ${e.balancednessBefore.toFixed(2)}`);
      }
      lines.push(`reference dense single-process layer over all ${result.totalTokens} tokens (${result.timings.referenceMs.toFixed(0)} ms; pipeline ${result.timings.pipelineMs.toFixed(0)} ms)`);
      const worst = cmp.worst ? ` at step ${cmp.worst.step}, rank ${cmp.worst.rank}, token ${cmp.worst.token}` : '';
      lines.push(
        `error     max abs ${sci(cmp.maxAbsError)}, max relative ${sci(cmp.maxRelError)}${worst} ` +
          `(relative to each token's MoE output; tolerance ${sci(cmp.tolerance)})`,
      );
      if (cmp.problem) lines.push(`problem   ${cmp.problem}`);
      lines.push(
        cmp.pass
          ? `PASS: the pipeline on ${ranks} simulated ranks matches the dense reference`
          : `FAIL: the pipeline on ${ranks} simulated ranks does not match the dense reference`,
      );
      io.out(lines.join('\n'));
      return cmp.pass ? 0 : 1;
    } catch (e) {
      return reportError(e, io, 'demo');
    }
  },
};
