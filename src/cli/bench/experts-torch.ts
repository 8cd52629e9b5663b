/**
 * The PyTorch baseline of `wideep bench experts`: scripts/bench/torch_experts.py
 * run by python3 in the same job on the same GPU. Absent PyTorch is a result
 * (the report says why), not a failure.
 */
import { ROUTER_CASE, type GroupedCase } from './experts-cases.js';
import { runBaselineScript, type ScriptResult } from './python-baseline.js';

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

export type TorchResult = ScriptResult<{ torch: string; device: string; grouped: TorchGrouped[]; router: { topkUs: number } }>;

export function runTorchExperts(cases: readonly GroupedCase[], iters: number, warmup: number, timeoutMs: number): TorchResult {
  const input = { iters, warmup, grouped: cases.map(({ E, M, N, K }) => ({ E, M, N, K })), router: ROUTER_CASE };
  return runBaselineScript('torch_experts.py', input, timeoutMs);
}
