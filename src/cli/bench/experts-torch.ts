/**
 * The PyTorch baseline of `wideep bench experts`: scripts/bench/torch_experts.py
 * run by python3 in the same job on the same GPU. Absent PyTorch is a result
 * (the report says why), not a failure.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { PACKAGE_ROOT } from '../../native/index.js';
import { ROUTER_CASE, type GroupedCase } from './experts-cases.js';

export interface TorchGrouped {
  E: number;
  M: number;
  N: number;
  K: number;
  bf16Us?: number;
  fp8RowwiseUs?: number;
  bf16Error?: string;
  fp8Error?: string;
}

export type TorchResult =
  | { available: true; torch: string; device: string; grouped: TorchGrouped[]; router: { topkUs: number } }
  | { available: false; reason: string };

export function runTorchExperts(cases: readonly GroupedCase[], iters: number, warmup: number, timeoutMs: number): TorchResult {
  const script = join(PACKAGE_ROOT, 'scripts', 'bench', 'torch_experts.py');
  const input = JSON.stringify({
    iters,
    warmup,
    grouped: cases.map(({ E, M, N, K }) => ({ E, M, N, K })),
    router: ROUTER_CASE,
  });
  const r = spawnSync('python3', [script], { input, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 << 20 });
  if (r.error) return { available: false, reason: `python3 could not run: ${r.error.message}` };
  if (r.status !== 0) {
    const last = (r.stderr ?? '').trim().split('\n').at(-1) ?? '';
    return { available: false, reason: `${script} exited ${r.status ?? r.signal}: ${last}` };
  }
  try {
    return { available: true, ...(JSON.parse(r.stdout) as Omit<Extract<TorchResult, { available: true }>, 'available'>) };
  } catch {
    return { available: false, reason: `${script} printed no JSON` };
  }
}
