/**
 * `wideep bench moe`: one DeepSeek-V3 MoE layer at one rank on GPU 0 (prefill
 * and decode steps, two-batch overlap on and off, a decode step replayed as a
 * CUDA graph, the stages of each step), beside the same layer written in
 * PyTorch ops in the same run, with the speed goals checked.
 */
import { writeFileSync } from 'node:fs';

import { loadCublasLt } from '../../blas/library.js';
import { cudaProbe, deviceCount } from '../../cuda/device.js';
import { WideepError } from '../../errors.js';
import { toJson, type CliCommand } from '../command.js';
import { moeShape, parseMoeArgs } from './moe-cases.js';
import { TIMELINE_RUNS, measureLayer } from './moe-measure.js';
import { buildMoeReport, renderMoe, TIMELINE_STEP } from './moe-report.js';
import { renderTimelineSvg } from './moe-svg.js';
import { probeTorch, runTorchMoe, type TorchMoeResult } from './moe-torch.js';

export const USAGE = `usage: wideep bench moe [--iters I] [--warmup W] [--no-torch] [--json] [--out file.json]
                       [--timeline-svg file.svg] [--experts E] [--prefill-tokens T] [--decode-tokens T]

Times one DeepSeek-V3 MoE layer (hidden 7168, moe intermediate 2048, 256 routed
experts, top-8 of 8 groups keeping 4, one shared expert; bf16, random weights)
at one rank on GPU 0, its EP buffer on a process group of one:
  prefill: 4096 tokens, normal mode, two-batch overlap off and on, per stage
  decode:  128 tokens, low-latency mode, eager (two-batch overlap off and on),
           and replayed as a CUDA graph: GPU time and host time per replay
beside the same layer in PyTorch ops (gate, grouped top-k, index_select,
torch._grouped_mm, index_add_) in the same run (python3 with torch; without
it the report says why). CUDA-event medians; the goals: prefill >= 1.3x
PyTorch, decode as a graph >= 2x PyTorch eager, <= 10 µs of host per replay.
--timeline-svg draws the overlapped prefill step's stages per stream.
--experts (a multiple of 8, 16..256) cuts the routed experts for a smaller run.`;

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
    show(o.torch ? 'bench moe: can python3 import torch?' : '');
    const probe = o.torch ? probeTorch() : undefined;
    if (probe && !probe.ok) warnings.push(`PyTorch is not usable, so this ran as --no-torch: ${probe.reason}`);
    const layer = await measureLayer(shape, { iters: o.iters, warmup: o.warmup, show });
    let torch: TorchMoeResult = { available: false, reason: probe?.ok === false ? probe.reason : '--no-torch' };
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
      const subtitle = `${deviceName}, ${shape.prefillTokens} tokens, ${shape.experts} experts, one rank; ${report.prefill.tbo.gpuUs} µs`;
      writeFileSync(o.timelineSvg, renderTimelineSvg(report.timeline.spans, `bench moe: ${TIMELINE_STEP}`, subtitle));
    }
    io.out(o.json ? toJson(report) : renderMoe(report));
    return 0;
  },
};
