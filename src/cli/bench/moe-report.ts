/**
 * The report of `wideep bench moe`: the layer's timings, PyTorch's beside
 * them, the ratios of the same run, each goal met or not (or unchecked, and
 * why), as JSON and as a table. Pure: unit tests cover it without a GPU.
 */
import type { TimelineSpan } from '../../cuda/timeline.js';
import { MOE_GOALS, type MoeShape } from './moe-cases.js';
import type { LayerResult, Timing } from './moe-measure.js';
import type { StageTimes } from './moe-stages.js';
import type { TorchMoeResult } from './moe-torch.js';
import { round } from './stats.js';

export interface MoeGoal {
  goal: string;
  target: number;
  /** The measured value; null where an input was not measured (`why` says which). */
  value: number | null;
  met: boolean | null;
  why?: string;
}

export interface MoeBenchReport {
  suite: 'moe';
  device: { name: string };
  shape: MoeShape;
  method: { iters: number; warmup: number; timelineRuns: number };
  prefill: { step: Timing; tbo: Timing; tboSpeedup: number; stages: StageTimes; torch?: Timing; speedupVsTorch?: number } & VsTorchFp8;
  decode: {
    eager: Timing;
    tbo: Timing;
    tboSpeedup: number;
    graph: Timing;
    stages: StageTimes;
    /** The eager step's host enqueue time per stage (µs). */
    hostStages: StageTimes;
    torch?: Timing;
    speedupVsTorch?: number;
  } & VsTorchFp8;
  /** The two-batch-overlap prefill step's stages per stream (lane 0: the layer's stream, 1: the second micro-batch's). */
  timeline: { step: string; spans: TimelineSpan[] };
  torch: { available: true; version: string } | { available: false; reason: string };
  warnings: string[];
  goals: MoeGoal[];
}

/** With fp8 experts: PyTorch's layer with fp8 experts too (rowwise scales), and our speedup over it. Information, not a goal. */
interface VsTorchFp8 {
  torchFp8?: Timing;
  speedupVsTorchFp8?: number;
}

export interface ReportInputs {
  deviceName: string;
  shape: MoeShape;
  method: MoeBenchReport['method'];
  layer: LayerResult;
  torch: TorchMoeResult;
  warnings: string[];
}

export const TIMELINE_STEP = 'prefill with two-batch overlap';

const ratio = (slow: number, fast: number) => round(slow / fast, 3);

function goal(text: string, target: number, value: number | undefined, atLeast: boolean, why: string): MoeGoal {
  if (value === undefined || !Number.isFinite(value)) return { goal: text, target, value: null, met: null, why };
  return { goal: text, target, value, met: atLeast ? value >= target : value <= target };
}

export function buildMoeReport(i: ReportInputs): MoeBenchReport {
  const { prefill, decode } = i.layer;
  const t = i.torch.available ? i.torch : undefined;
  const noTorch = i.torch.available ? '' : `PyTorch did not run (${i.torch.reason})`;
  const torch: MoeBenchReport['torch'] = i.torch.available ? { available: true, version: i.torch.torch } : { available: false, reason: i.torch.reason };
  const prefillVsTorch = t && ratio(t.prefill.gpuUs, prefill.step.gpuUs);
  // An eager step back to back takes the longer of its GPU time and the host's
  // enqueue time (PyTorch's decode step is usually host-bound), and so does a replay.
  const stepUs = (m: { gpuUs: number; hostUs?: number }) => Math.max(m.gpuUs, m.hostUs ?? 0);
  const decodeVsTorch = t && ratio(stepUs(t.decode), stepUs(decode.graph));
  const prefillTbo = ratio(prefill.step.gpuUs, prefill.tbo.gpuUs);
  const fp8Prefill = t?.prefillFp8 && { torchFp8: t.prefillFp8, speedupVsTorchFp8: ratio(t.prefillFp8.gpuUs, prefill.step.gpuUs) };
  const fp8Decode = t?.decodeFp8 && { torchFp8: t.decodeFp8, speedupVsTorchFp8: ratio(stepUs(t.decodeFp8), stepUs(decode.graph)) };
  const warnings = t?.fp8Error ? [...i.warnings, `PyTorch's fp8 layer failed, so the fp8 comparison is missing from there on: ${t.fp8Error}`] : i.warnings;
  const decodeTbo = ratio(decode.eager.gpuUs, decode.tbo.gpuUs);
  return {
    suite: 'moe',
    device: { name: i.deviceName },
    shape: i.shape,
    method: i.method,
    prefill: {
      step: prefill.step,
      tbo: prefill.tbo,
      tboSpeedup: prefillTbo,
      stages: prefill.stages,
      ...(t ? { torch: t.prefill, speedupVsTorch: prefillVsTorch } : {}),
      ...fp8Prefill,
    },
    decode: {
      eager: decode.eager,
      tbo: decode.tbo,
      tboSpeedup: decodeTbo,
      graph: decode.graph,
      stages: decode.stages,
      hostStages: decode.hostStages,
      ...(t ? { torch: t.decode, speedupVsTorch: decodeVsTorch } : {}),
      ...fp8Decode,
    },
    timeline: { step: TIMELINE_STEP, spans: prefill.tboSpans },
    torch,
    warnings,
    goals: [
      goal('prefill step (no TBO) vs the PyTorch layer', MOE_GOALS.prefillVsTorch, prefillVsTorch, true, noTorch),
      goal('decode step replayed as a graph vs the PyTorch layer, eager', MOE_GOALS.decodeGraphVsTorch, decodeVsTorch, true, noTorch),
      goal('host time per decode graph replay, replays back to back (µs)', MOE_GOALS.hostUsPerReplay, decode.graph.hostBackToBackUs, false, 'not measured'),
      ...tboGoals(i.shape, prefillTbo, decodeTbo),
    ],
  };
}

/** Two-batch overlap's gain counts on GPUs of their own, enough of them for transfers worth hiding. */
function tboGoals(shape: MoeShape, prefill: number, decode: number): MoeGoal[] {
  const why =
    shape.ranks < MOE_GOALS.tboMinGpus
      ? `needs ${MOE_GOALS.tboMinGpus} GPUs or more; this run has ${shape.ranks} rank${shape.ranks === 1 ? '' : 's'}`
      : shape.sharedGpu
        ? 'the ranks share one GPU, time-sliced: no measure of overlap'
        : '';
  const at = `at ${shape.ranks} rank${shape.ranks === 1 ? '' : 's'}`;
  return [
    goal(`prefill, two-batch overlap speedup ${at}`, MOE_GOALS.tboSpeedup, why ? undefined : prefill, true, why),
    goal(`decode, two-batch overlap speedup ${at}`, MOE_GOALS.tboSpeedup, why ? undefined : decode, true, why),
  ];
}

function ranksText(s: MoeShape): string {
  if (s.ranks === 1) return 'one rank';
  return `${s.ranks} ranks${s.sharedGpu ? ' sharing GPU 0' : ', one GPU each'} (${s.experts / s.ranks} experts and the tokens below per rank; medians over ranks)`;
}

const cell = (v: number | undefined, width: number) => (v === undefined ? '-' : String(v)).padStart(width);

export function renderMoe(r: MoeBenchReport): string {
  const s = r.shape;
  const lines = [
    `bench moe on ${r.device.name}: ${s.model} MoE layer${s.reduced ? ` REDUCED to ${s.experts} experts` : ''}, hidden ${s.hidden}, ` +
      `intermediate ${s.moeIntermediate}, top-${s.topk} of ${s.experts} (${s.groups} groups, ${s.topkGroup} kept), ${s.sharedExperts} shared, ${s.dtype}${s.dtype === 'bf16' ? '' : ` (${s.expertGemm === 'masked' ? 'wideep masked GEMM' : 'cuBLASLt per expert'})`}, ${ranksText(s)}`,
    `PyTorch: ${r.torch.available ? r.torch.version : `not run (${r.torch.reason})`}${s.dtype === 'bf16' ? '' : ` (this layer's routed experts are ${s.dtype}; the goals compare with PyTorch's bf16 layer, its fp8 layer is shown beside)`}; medians of ${r.method.iters} runs after ${r.method.warmup}`,
    '',
    'step                                    GPU µs    host µs   PyTorch / this',
  ];
  const row = (name: string, t: Timing | undefined, vsTorch?: number) => {
    if (t) lines.push(`${name.padEnd(36)}${cell(t.gpuUs, 10)}${cell(t.hostUs, 11)}${cell(vsTorch, 17)}`);
  };
  row(`prefill ${s.prefillTokens} tokens`, r.prefill.step, r.prefill.speedupVsTorch);
  row('prefill, two-batch overlap', r.prefill.tbo);
  row('prefill, PyTorch layer', r.prefill.torch);
  row(`decode ${s.decodeTokens} tokens, eager`, r.decode.eager);
  row('decode, eager, two-batch overlap', r.decode.tbo);
  row('decode, replayed as a CUDA graph', r.decode.graph, r.decode.speedupVsTorch);
  row('decode, PyTorch layer, eager', r.decode.torch);
  row('prefill, PyTorch layer, fp8 rowwise', r.prefill.torchFp8);
  row('decode, PyTorch fp8 rowwise, eager', r.decode.torchFp8);
  if (r.prefill.speedupVsTorchFp8 !== undefined || r.decode.speedupVsTorchFp8 !== undefined) {
    lines.push(`vs PyTorch's layer with fp8 experts (same precision): prefill ${r.prefill.speedupVsTorchFp8 ?? '-'}x, decode as a graph ${r.decode.speedupVsTorchFp8 ?? '-'}x`);
  }
  const b2b = r.decode.graph.hostBackToBackUs;
  if (b2b !== undefined) lines.push(`decode graph replays back to back: ${b2b} host µs each (one per run, the host woken from waiting: ${r.decode.graph.hostUs ?? '-'})`);
  const gs = r.decode.graph.graphShape;
  if (gs) {
    const types = Object.entries(gs.byType).map(([k, v]) => `${k} ${v}`).join(', ');
    lines.push(`decode graph: ${gs.nodes} nodes (${types}), ${gs.roots} root${gs.roots === 1 ? '' : 's'}, at most ${gs.maxDependencies} in and ${gs.maxDependents} out per node`);
  }
  lines.push('', `two-batch overlap (no / with), ${s.ranks === 1 ? 'one rank' : `${s.ranks} ranks`}: prefill ${r.prefill.tboSpeedup}x, decode ${r.decode.tboSpeedup}x`);
  const stages = (st: StageTimes) => Object.entries(st).map(([k, v]) => `${k} ${v}`).join(', ');
  lines.push(
    `stages, GPU µs: prefill ${stages(r.prefill.stages)}`,
    `                decode ${stages(r.decode.stages)}`,
    `decode, eager, host µs per stage: ${stages(r.decode.hostStages)}`,
    '',
  );
  for (const g of r.goals) {
    const verdict = g.met === null ? 'n/a    ' : g.met ? 'met    ' : 'NOT MET';
    lines.push(`${verdict} ${g.goal}: ${g.value ?? g.why} (goal ${g.target})`);
  }
  for (const w of r.warnings) lines.push(`warning: ${w}`);
  return lines.join('\n');
}
