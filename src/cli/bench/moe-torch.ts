/**
 * The PyTorch baseline of `wideep bench moe`: scripts/bench/torch_moe.py run
 * by python3 after wideep's layer has freed its memory, on the same GPU.
 * Whether python3 can import a CUDA torch with torch._grouped_mm is checked
 * first, so an absent PyTorch costs seconds and becomes a warning, not a
 * failure of the bench.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { join } from 'node:path';

import { PACKAGE_ROOT } from '../../native/index.js';
import type { MoeShape } from './moe-cases.js';
import type { Timing } from './moe-measure.js';

export type TorchProbe = { ok: true; version: string } | { ok: false; reason: string };

export type TorchMoeResult =
  | { available: true; torch: string; device: string; prefill: Timing; decode: Timing }
  | { available: false; reason: string };

const PROBE = [
  'import torch',
  "assert torch.cuda.is_available(), 'torch ' + torch.__version__ + ' sees no CUDA GPU'",
  "assert hasattr(torch, '_grouped_mm'), 'torch ' + torch.__version__ + ' has no torch._grouped_mm'",
  'print(torch.__version__)',
].join('\n');

/** Why a python run failed: its time limit, its spawn error, or its exit and the last line it wrote to stderr. */
function failure(what: string, r: SpawnSyncReturns<string>, timeoutMs: number): string | undefined {
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') return `${what} was stopped after its limit of ${timeoutMs / 1000} s`;
  if (r.error) return `${what} could not run: ${r.error.message}`;
  if (r.status === 0) return undefined;
  const last = (r.stderr ?? '').trim().split('\n').at(-1) ?? '';
  return `${what} exited ${r.status ?? r.signal}${last ? `: ${last}` : ''}`;
}

export function probeTorch(python = 'python3', timeoutMs = 60_000): TorchProbe {
  const r = spawnSync(python, ['-c', PROBE], { encoding: 'utf8', timeout: timeoutMs });
  const why = failure(`${python} (import torch)`, r, timeoutMs);
  return why ? { ok: false, reason: why } : { ok: true, version: r.stdout.trim() };
}

export function runTorchMoe(shape: MoeShape, iters: number, warmup: number, timeoutMs: number, python = 'python3'): TorchMoeResult {
  const script = join(PACKAGE_ROOT, 'scripts', 'bench', 'torch_moe.py');
  const r = spawnSync(python, [script], { input: JSON.stringify({ iters, warmup, shape }), encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 20 });
  const why = failure(script, r, timeoutMs);
  if (why) return { available: false, reason: why };
  try {
    return { available: true, ...(JSON.parse(r.stdout) as Omit<Extract<TorchMoeResult, { available: true }>, 'available'>) };
  } catch {
    return { available: false, reason: `${script} printed no JSON` };
  }
}
