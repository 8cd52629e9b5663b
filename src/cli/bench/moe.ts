/**
 * `wideep bench moe`: one DeepSeek-V3 MoE layer (prefill and decode steps,
 * two-batch overlap on and off, a decode step replayed as a CUDA graph, the
 * stages of each step), at one rank on GPU 0 beside the same layer written
 * in PyTorch ops in the same run, or with its experts spread over N ranks,
 * with the speed goals checked.
 */
import { writeFileSync } from 'node:fs';

import { loadCublasLt } from '../../blas/library.js';
import { capabilities } from '../../capabilities.js';
import { cudaProbe, deviceCount } from '../../cuda/device.js';
import { WideepError } from '../../errors.js';
import { toJson, type CliCommand } from '../command.js';
import { cudaRankPlacement } from '../rank-placement.js';
import { moeShape, parseMoeArgs } from './moe-cases.js';
import { TIMELINE_RUNS, measureLayer } from './moe-measure.js';
import { measureOnRanks } from './moe-ranks.js';
import { buildMoeReport, renderMoe, TIMELINE_STEP } from './moe-report.js';
import { renderTimelineSvg } from './moe-svg.js';
import { probeTorch, runTorchMoe, type TorchMoeResult } from './moe-torch.js';

export const USAGE = `usage: wideep bench moe [--iters I] [--warmup W] [--no-torch] [--json] [--out file.json]
                       [--timeline-svg file.svg] [--experts E] [--prefill-tokens T] [--decode-tokens T]
                       [--ranks N [--share-gpu]] [--expert-dtype bf16|fp8 [--expert-gemm cublaslt|masked]]

Times one DeepSeek-V3 MoE layer (hidden 7168, moe intermediate 2048, 256 routed
experts, top-8 of 8 groups keeping 4, one shared expert; bf16, random weights)
at one rank on GPU 0, its EP buffer on a process group of one:
  prefill: 4096 tokens, normal mode, two-batch overlap off and on, per stage
  decode:  128 tokens, low-latency mode, eager (two-batch overlap off and on),
           and replayed as a CUDA graph: GPU time and host time per replay
           (one per run, and replays back to back on a busy host)
beside the same layer in PyTorch ops (gate, grouped top-k, index_select,
torch._grouped_mm, index_add_) in the same run (python3 with torch; without
it the report says why). CUDA-event medians; the goals: prefill >= 1.3x
PyTorch, decode as a graph >= 2x PyTorch eager, <= 10 µs of host per replay
back to back.
--expert-dtype fp8 gives the routed experts fp8 weights with 128x128 block
scales (DeepSeek-V3's checkpoint format) and sends them fp8 tokens: half the
bytes read and sent. The goals still compare with PyTorch's bf16 layer; its
layer with fp8 experts (torch._scaled_grouped_mm, rowwise scales) is timed
and shown beside. --expert-gemm masked runs the fp8 experts' decode GEMMs
with wideep's own kernel (one launch for every expert, over the rows each one
received) instead of cuBLASLt (one launch per expert, over all its slots).
--timeline-svg draws the overlapped prefill step's stages per stream.
--experts (a multiple of 8, 16..256) cuts the routed experts for a smaller run.
--ranks N spreads the experts over N ranks, one process and GPU each through
the launcher (tokens are per rank; medians over ranks; rank 0's timeline),
without PyTorch, whose layer runs at one rank; the goal there is two-batch
overlap >= 1.2x on 4 GPUs or more. --share-gpu puts every rank on GPU 0:
time-sliced, so its overlap is no measure of a real one.`;

/** PyTorch's run: import, 2x the weights' random init, and the timed steps. */
const TORCH_TIMEOUT_MS = 120_000;

export const command: CliCommand = {
  name: 'bench moe',
  summary: 'one MoE layer (prefill, decode, TBO, CUDA graph) beside the same layer in PyTorch',
  usage: USAGE,
  async run(argv, io) {
    const o = parseMoeArgs(argv);
    const shape = moeShape(o);
    if (deviceCount() === 0) throw new WideepError('ERR_NO_GPU', 'bench moe needs a GPU, and none is visible (see wideep doctor)');
    loadCublasLt();
    const show = (s: string) => (o.json ? undefined : io.progress?.(s));
    const warnings: string[] = [];
    const wantTorch = o.torch && shape.ranks === 1;
    show(wantTorch ? 'bench moe: can python3 import torch?' : '');
    const probe = wantTorch ? probeTorch() : undefined;
    if (probe && !probe.ok) warnings.push(`PyTorch is not usable, so this ran as --no-torch: ${probe.reason}`);
    const layer =
      shape.ranks === 1
        ? await measureLayer(shape, { iters: o.iters, warmup: o.warmup, show })
        : await measureOnRanks({ shape, iters: o.iters, warmup: o.warmup }, cudaRankPlacement(capabilities(), shape.ranks, shape.sharedGpu).env, (t) => io.err(t));
    const noTorch = shape.ranks > 1 ? `PyTorch's layer runs at one rank; this run has ${shape.ranks}` : probe?.ok === false ? probe.reason : '--no-torch';
    let torch: TorchMoeResult = { available: false, reason: noTorch };
    if (probe?.ok) {
      show('bench moe: the PyTorch layer');
      torch = runTorchMoe(shape, o.iters, o.warmup, TORCH_TIMEOUT_MS);
      if (!torch.available) warnings.push(`the PyTorch layer failed: ${torch.reason}`);
    }
    show('');
    const deviceName = cudaProbe().devices[0]?.name ?? 'GPU 0';
    const report = buildMoeReport({ deviceName, shape, method: { iters: o.iters, warmup: o.warmup, timelineRuns: TIMELINE_RUNS }, layer, torch, warnings });
    if (o.out) writeFileSync(o.out, toJson(report));
    if (o.timelineSvg) {
      const where = shape.ranks === 1 ? 'one rank' : `rank 0 of ${shape.ranks}${shape.sharedGpu ? ' sharing the GPU' : ''}`;
      const subtitle = `${deviceName}, ${shape.prefillTokens} tokens, ${shape.experts} experts, ${where}; ${report.prefill.tbo.gpuUs} µs`;
      writeFileSync(o.timelineSvg, renderTimelineSvg(report.timeline.spans, `bench moe: ${TIMELINE_STEP}`, subtitle));
    }
    io.out(o.json ? toJson(report) : renderMoe(report));
    return 0;
  },
};
