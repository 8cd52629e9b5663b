/**
 * The PyTorch baseline of `wideep bench moe`: scripts/bench/torch_moe.py run
 * by python3 after wideep's layer has freed its memory, on the same GPU.
 * Whether python3 can import a CUDA torch with torch._grouped_mm is checked
 * first, so an absent PyTorch costs seconds and becomes a warning, not a
 * failure of the bench.
 */
import { spawnSync } from 'node:child_process';

import type { MoeShape } from './moe-cases.js';
import type { Timing } from './moe-measure.js';
import { pythonFailure, runBaselineScript, type ScriptResult } from './python-baseline.js';

export type TorchProbe = { ok: true; version: string } | { ok: false; reason: string };

export type TorchMoeResult = ScriptResult<{
  torch: string;
  device: string;
  prefill: Timing;
  decode: Timing;
  /** With fp8 experts on our side: PyTorch's layer with rowwise-scaled fp8 experts (torch._scaled_grouped_mm). */
  prefillFp8?: Timing;
  decodeFp8?: Timing;
  /** Why PyTorch's fp8 layer did not run, where it did not. */
  fp8Error?: string;
}>;

const PROBE = [
  'import torch',
  "assert torch.cuda.is_available(), 'torch ' + torch.__version__ + ' sees no CUDA GPU'",
  "assert hasattr(torch, '_grouped_mm'), 'torch ' + torch.__version__ + ' has no torch._grouped_mm'",
  'print(torch.__version__)',
].join('\n');

export function probeTorch(python = 'python3', timeoutMs = 60_000): TorchProbe {
  const r = spawnSync(python, ['-c', PROBE], { encoding: 'utf8', timeout: timeoutMs });
  const why = pythonFailure(`${python} (import torch)`, r, timeoutMs);
  return why ? { ok: false, reason: why } : { ok: true, version: r.stdout.trim() };
}

export function runTorchMoe(shape: MoeShape, iters: number, warmup: number, timeoutMs: number, python = 'python3'): TorchMoeResult {
  return runBaselineScript('torch_moe.py', { iters, warmup, shape }, timeoutMs, python);
}
