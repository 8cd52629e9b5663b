/**
 * Running a PyTorch baseline script of the benches: python3 reads a JSON job
 * on stdin and prints one JSON result. Absent PyTorch, a crash or a timeout
 * is a reason the report gives, not a failure of the bench.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { join } from 'node:path';

import { PACKAGE_ROOT } from '../../native/index.js';

export type ScriptResult<T> = ({ available: true } & T) | { available: false; reason: string };

/** Why a python run failed: its time limit, its spawn error, or its exit and the last line it wrote to stderr. */
export function pythonFailure(what: string, r: SpawnSyncReturns<string>, timeoutMs: number): string | undefined {
  if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT') return `${what} was stopped after its limit of ${timeoutMs / 1000} s`;
  if (r.error) return `${what} could not run: ${r.error.message}`;
  if (r.status === 0) return undefined;
  const last = (r.stderr ?? '').trim().split('\n').at(-1) ?? '';
  return `${what} exited ${r.status ?? r.signal}${last ? `: ${last}` : ''}`;
}

/** Runs scripts/bench/`name` with `input` as JSON on stdin; its stdout's JSON is the result. */
export function runBaselineScript<T extends object>(name: string, input: unknown, timeoutMs: number, python = 'python3'): ScriptResult<T> {
  const script = join(PACKAGE_ROOT, 'scripts', 'bench', name);
  const r = spawnSync(python, [script], { input: JSON.stringify(input), encoding: 'utf8', timeout: timeoutMs, maxBuffer: 16 << 20 });
  const why = pythonFailure(script, r, timeoutMs);
  if (why) return { available: false, reason: why };
  try {
    return { available: true, ...(JSON.parse(r.stdout) as T) };
  } catch {
    return { available: false, reason: `${script} printed no JSON` };
  }
}
