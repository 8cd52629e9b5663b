import { parseArgs } from 'node:util';

import { capabilities, type Capabilities } from '../../capabilities.js';
import { WideepError } from '../../errors.js';
import { DEMO_MOE_CONFIG, runMoeLayerCheck, type MoeLayerCheckResult, type PipelineEvent, type StepReport } from '../../simulation/index.js';
import { parseIntFlag } from '../../planning/sglang-args.js';
import { reportError, toJson, type CliCommand, type CliIo } from '../command.js';

const USAGE = `usage: wideep demo [--ranks N] [--tbo | --no-tbo] [--eplb | --no-eplb]
                   [--replica-choice static|dynamic] [--seed S] [--json]

Runs one DeepSeek-style MoE layer (grouped top-k gate, ${DEMO_MOE_CONFIG.numRoutedExperts} SwiGLU routed experts,
a shared expert) across N simulated ranks on the cpu backend: DP attention on
each rank's own batch (the last rank is idle), tokens to the experts and back
through EpBuffer dispatch/combine (normal mode for prefill steps, low-latency
for decode steps), two-batch overlap and EPLB. Then it runs the same layer
densely in one process and compares. Exit 0 when they match, 1 when not.

  --ranks N          simulated ranks, a divisor of ${DEMO_MOE_CONFIG.numRoutedExperts} from 2 to ${DEMO_MOE_CONFIG.numRoutedExperts} (default 4)
  --tbo, --no-tbo    two-batch overlap (default on)
  --eplb, --no-eplb  EPLB: record loads, rebalance with one redundant expert
                     per rank, move the weights (default on)
  --replica-choice   how ranks pick among an expert's replicas (default static)
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
  json: { type: 'boolean', default: false },
} as const;

export interface DemoBackend {
  backend: 'cpu';
  /** GPUs the capability probe saw. */
  gpus: number;
  /** Why the cpu backend. */
  reason: string;
}

/** Which backend the demo uses and why, from a capability report. */
export function demoBackend(caps: Pick<Capabilities, 'cuda' | 'gpus'>): DemoBackend {
  if (caps.cuda.available && caps.gpus.length > 0) {
    const n = caps.gpus.length;
    const names = [...new Set(caps.gpus.map((g) => g.name))].join(', ');
    return {
      backend: 'cpu',
      gpus: n,
      reason:
        `${n} GPU${n === 1 ? '' : 's'} found (${names}), but the demo simulates every rank in this one process, which only the cpu backend can do ` +
        '(it is also the reference the GPU kernels are tested against); the cuda backend runs one process per GPU: see wideep launch and wideep bench ep',
    };
  }
  return { backend: 'cpu', gpus: 0, reason: `no GPU: ${caps.cuda.reason ?? 'no CUDA GPU is visible'}` };
}

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

export const command: CliCommand = {
  name: 'demo',
  summary: 'run a DeepSeek-style MoE layer across simulated ranks (DP attention, EP, TBO, EPLB) and check it',
  usage: USAGE,
  async run(argv, io) {
    try {
      const { values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false });
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
      const seed = values.seed === undefined ? 1 : parseIntFlag('--seed', values.seed, 0);
      const backend = demoBackend(capabilities());
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
