/**
 * `wideep bench experts`: the expert compute of a MoE layer on one GPU at
 * DeepSeek-V3's shapes (grouped GEMMs in BF16 and FP8, the router, host time
 * per op), beside PyTorch in the same run and a dense cuBLAS GEMM of the same
 * FLOPs, with every goal checked.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { blasHandle } from '../../blas/context.js';
import { formatBlasVersion, loadCublasLt } from '../../blas/library.js';
import { cudaProbe, deviceCount } from '../../cuda/device.js';
import { Stream } from '../../cuda/stream.js';
import { WideepError, assertInteger } from '../../errors.js';
import { toJson, type CliCommand } from '../command.js';
import { GOALS, groupedCases, hbmPeakGBps, tflops, gemmFlops, ROUTER_CASE } from './experts-cases.js';
import { measureGrouped, measureHost, measureRouter, type GroupedResult, type HostResult, type RouterResult } from './experts-measure.js';
import { runTorchExperts, type TorchResult } from './experts-torch.js';
import { GpuTimer } from './gpu-timer.js';
import { round } from './stats.js';

export const USAGE = `usage: wideep bench experts [--cases prefill|decode|all] [--iters I] [--warmup W]
                           [--no-torch] [--json] [--out file.json]

Times on GPU 0, DeepSeek-V3 shapes (hidden 7168, intermediate 2048):
  grouped expert GEMMs, gate+up (N 4096, K 7168) and down (N 7168, K 2048):
    prefill 32 and 64 experts x 512 and 1024 rows; decode 32 x 16 and 32 rows, 256 x 128
    BF16 and FP8 (1x128 / 128x128 block scales), strided-batched and one launch
    per expert; FP8 also on wideep's masked kernel (one launch, each expert's
    counted rows; at 256 experts also at a decode step's 4 rows per expert);
    a dense GEMM of the same FLOPs as the ceiling
  the router: fused top-k over 4096 x 256 logits, and the gate GEMM
  host time per enqueued op, and per graph launch
beside torch._grouped_mm / torch._scaled_grouped_mm and PyTorch-ops routing in
the same run (python3 with torch; the report says when it is absent).
CUDA-event medians, L2 flushed before each run.`;

export interface ExpertsReport {
  suite: 'experts';
  device: { name: string; hbmPeakGBps?: number };
  cublasLt: { version: string; path: string };
  grouped: (GroupedResult & { torchBf16Us?: number; torchFp8Us?: number; torchError?: string })[];
  router: RouterResult & { torchTopkUs?: number };
  host: HostResult;
  torch: { available: boolean; version?: string; reason?: string };
  goals: { goal: string; target: number; value: number; met: boolean }[];
}

export const command: CliCommand = {
  name: 'bench experts',
  summary: 'expert compute benchmark (grouped GEMMs, router) beside PyTorch',
  usage: USAGE,
  async run(argv, io) {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        cases: { type: 'string', default: 'all' },
        iters: { type: 'string', default: '20' },
        warmup: { type: 'string', default: '5' },
        'no-torch': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        out: { type: 'string' },
      },
    });
    const which = values.cases!;
    if (!['prefill', 'decode', 'all'].includes(which)) throw new WideepError('ERR_INVALID_ARG', `--cases: expected prefill, decode or all, got ${which}`);
    const iters = assertInteger('--iters', Number(values.iters), 1, 10_000);
    const warmup = assertInteger('--warmup', Number(values.warmup), 0, 10_000);
    if (deviceCount() === 0) throw new WideepError('ERR_NO_GPU', 'bench experts needs a GPU, and none is visible (see wideep doctor)');
    const show = (s: string) => (values.json ? undefined : io.progress?.(s));
    const lt = loadCublasLt();
    const stream = new Stream(0);
    blasHandle(0);
    const cases = groupedCases().filter((c) => which === 'all' || c.phase === which);
    const timer = new GpuTimer(stream, { flushL2: true });
    const grouped: GroupedResult[] = [];
    try {
      for (const [i, c] of cases.entries()) {
        show(`bench experts: ${c.id} (${i + 1}/${cases.length})`);
        grouped.push(await measureGrouped(c, { iters, warmup, stream }, timer));
      }
      show('bench experts: router');
      const router = await measureRouter({ iters, warmup, stream }, timer);
      show('bench experts: host time per op');
      const host = await measureHost(stream);
      show(values['no-torch'] ? '' : 'bench experts: PyTorch baseline');
      const torch: TorchResult = values['no-torch'] ? { available: false, reason: '--no-torch' } : runTorchExperts(cases, iters, warmup, 600_000);
      show('');
      const name = cudaProbe().devices[0]?.name ?? 'GPU 0';
      const report = buildReport(name, { version: formatBlasVersion(lt.version), path: lt.path }, grouped, router, host, torch);
      if (values.out) writeFileSync(values.out, toJson(report));
      io.out(values.json ? toJson(report) : renderExperts(report));
      return 0;
    } finally {
      timer.close();
    }
  },
};

export function buildReport(
  name: string,
  cublasLt: ExpertsReport['cublasLt'],
  grouped: GroupedResult[],
  router: RouterResult,
  host: HostResult,
  torch: TorchResult,
): ExpertsReport {
  const peak = hbmPeakGBps(name);
  const rows = grouped.map((g) => {
    if (!torch.available) return g;
    const t = torch.grouped.find((x) => x.E === g.E && x.M === g.M && x.N === g.N && x.K === g.K);
    return { ...g, torchBf16Us: t?.bf16Us, torchFp8Us: t?.fp8RowwiseUs, torchError: t?.bf16Error ?? t?.fp8Error };
  });
  const goals: ExpertsReport['goals'] = [];
  const goal = (text: string, target: number, value: number, atLeast = true) =>
    Number.isFinite(value) && goals.push({ goal: text, target, value: round(value, 3), met: atLeast ? value >= target : value <= target });
  for (const r of rows) {
    const torchBf16 = 'torchBf16Us' in r && r.torchBf16Us ? r.torchBf16Us / r.bf16.us : NaN;
    if (r.phase === 'prefill') {
      goal(`${r.id}: bf16 vs torch._grouped_mm`, GOALS.prefillBf16VsTorch, torchBf16);
      goal(`${r.id}: bf16 vs dense cuBLAS of the same FLOPs`, GOALS.prefillBf16VsDense, r.dense.us / r.bf16.us);
      goal(`${r.id}: fp8 vs our bf16`, GOALS.prefillFp8VsBf16, r.bf16.us / Math.min(r.fp8?.us ?? Infinity, r.fp8Loop.us, r.fp8Masked.us));
    } else {
      goal(`${r.id}: bf16 vs torch._grouped_mm`, GOALS.decodeBf16VsTorch, torchBf16);
      if (peak) goal(`${r.id}: bf16 weight reads / HBM peak`, GOALS.decodeHbmFraction, r.bf16WeightGBps / peak);
      if (peak) goal(`${r.id}: fp8 weight reads / HBM peak`, GOALS.decodeHbmFraction, r.fp8WeightGBps / peak);
      if (peak && r.fp8MaskedStep) goal(`${r.id}: fp8 masked, ${r.fp8MaskedStep.rows} rows per expert: weight reads / HBM peak`, GOALS.decodeHbmFraction, r.fp8MaskedStep.weightGBps / peak);
    }
  }
  goal('router top-k, 4096 x 256 (µs)', GOALS.routerTopkUs, router.topkUs, false);
  if (torch.available) goal('router top-k vs PyTorch ops', GOALS.routerVsTorch, torch.router.topkUs / router.topkUs);
  for (const [k, v] of Object.entries(host)) if (k.endsWith('Us') && k !== 'graphLaunchUs') goal(`host time per ${k.slice(0, -2)} call (µs)`, GOALS.hostUsPerOp, v, false);
  return {
    suite: 'experts',
    device: { name, ...(peak ? { hbmPeakGBps: peak } : {}) },
    cublasLt,
    grouped: rows,
    router: { ...router, ...(torch.available ? { torchTopkUs: round(torch.router.topkUs, 2) } : {}) },
    host,
    torch: torch.available ? { available: true, version: torch.torch } : { available: false, reason: torch.reason },
    goals,
  };
}

export function renderExperts(r: ExpertsReport): string {
  const lines = [`bench experts on ${r.device.name}, cuBLASLt ${r.cublasLt.version}; PyTorch ${r.torch.available ? r.torch.version : `absent (${r.torch.reason})`}`, ''];
  lines.push('case                          bf16 TF/s  loop  fp8 TF/s  loop masked  dense  torch bf16  torch fp8   weights GB/s bf16 / fp8');
  for (const g of r.grouped) {
    const tb = g.torchBf16Us ? round(tflops(gemmFlops(g), g.torchBf16Us), 1) : '-';
    const tf = g.torchFp8Us ? round(tflops(gemmFlops(g), g.torchFp8Us), 1) : '-';
    lines.push(
      `${g.id.padEnd(30)}${String(g.bf16.tflops).padStart(9)}${String(g.bf16Loop.tflops).padStart(6)}${String(g.fp8?.tflops ?? 'n/a').padStart(10)}${String(g.fp8Loop.tflops).padStart(6)}${String(g.fp8Masked.tflops).padStart(7)}${String(g.dense.tflops).padStart(7)}${String(tb).padStart(12)}${String(tf).padStart(11)}${String(g.bf16WeightGBps).padStart(15)} / ${g.fp8WeightGBps}`,
    );
  }
  for (const g of r.grouped) {
    if (g.fp8MaskedStep) lines.push(`${g.id}: fp8 masked at ${g.fp8MaskedStep.rows} rows per expert (a decode step's): ${g.fp8MaskedStep.us} µs, weights ${g.fp8MaskedStep.weightGBps} GB/s`);
  }
  lines.push('', `router top-k ${ROUTER_CASE.tokens} x ${ROUTER_CASE.experts}: ${r.router.topkUs} µs (PyTorch ops: ${r.router.torchTopkUs ?? '-'} µs); gate GEMM ${r.router.gateGemm.tflops} TFLOP/s`);
  lines.push(`host µs per call: ${Object.entries(r.host).map(([k, v]) => `${k} ${v}`).join(', ')}`, '');
  for (const g of r.goals) lines.push(`${g.met ? 'met    ' : 'NOT MET'} ${g.goal}: ${g.value} (goal ${g.target})`);
  return lines.join('\n');
}
