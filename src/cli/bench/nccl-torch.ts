/**
 * The PyTorch baseline of `wideep bench nccl --torch`: runs
 * scripts/bench/torch_nccl.py under `python3 -m torch.distributed.run`, with
 * the same cases, and reads back what its rank 0 wrote. Never throws: a
 * missing python3 or torch, or a failed run, becomes `{available: false, reason}`.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

import { summarizeAll, type CaseSpec, type RawCase, type TorchReport } from './nccl-metrics.js';

export interface TorchRunOptions {
  worldSize: number;
  cases: CaseSpec[];
  script: string;
  resultFile: string;
  env: Readonly<Record<string, string | undefined>>;
  timeoutMs: number;
  /** Progress and the script's own output. */
  log: (text: string) => void;
  /** The interpreter (default: $WIDEEP_PYTHON, else python3). */
  python?: string;
}

/** What torch_nccl.py writes (and prints as its last stdout line) on rank 0. */
export interface TorchScriptResult {
  suite: 'torch-nccl';
  torchVersion: string;
  ncclVersion: string;
  worldSize: number;
  cases: RawCase[];
}

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  error?: string;
}

/** Runs a command in its own process group; on timeout the whole group gets SIGTERM, then SIGKILL. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { env: Readonly<Record<string, string | undefined>>; timeoutMs: number; onLine?: (line: string) => void },
): Promise<Run> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    let killTimer: NodeJS.Timeout | undefined;
    const child = spawn(command, [...args], { env: options.env as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const kill = (signal: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill('SIGTERM');
      killTimer = setTimeout(() => kill('SIGKILL'), 5_000);
    }, options.timeoutMs);
    const lines = (append: (s: string) => void) => {
      let partial = '';
      return (chunk: Buffer) => {
        const text = chunk.toString('utf8');
        append(text);
        if (!options.onLine) return;
        const parts = (partial + text).split('\n');
        partial = parts.pop()!;
        for (const p of parts) options.onLine(p);
      };
    };
    child.stdout!.on('data', lines((s) => (stdout += s)));
    child.stderr!.on('data', lines((s) => (stderr += s)));
    const finish = (r: Omit<Run, 'stdout' | 'stderr' | 'timedOut'>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(killTimer);
      // Leave nothing behind: torchrun's workers are in the same group.
      kill('SIGKILL');
      resolve({ ...r, stdout, stderr, timedOut });
    };
    child.once('error', (e) => finish({ code: null, signal: null, error: e.message }));
    child.once('close', (code, signal) => finish({ code, signal }));
  });
}

function tail(text: string, lines = 15): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** The last stdout line that parses as the script's result, if any. */
export function parseTorchOutput(stdout: string): TorchScriptResult | undefined {
  const lines = stdout.split('\n').reverse();
  for (const line of lines) {
    const t = line.trim();
    if (!t.startsWith('{')) continue;
    try {
      const v = JSON.parse(t) as TorchScriptResult;
      if (v && v.suite === 'torch-nccl' && Array.isArray(v.cases)) return v;
    } catch {
      // not ours
    }
  }
  return undefined;
}

export async function runTorchBaseline(o: TorchRunOptions): Promise<TorchReport> {
  const python = o.python ?? o.env.WIDEEP_PYTHON ?? 'python3';
  if (!existsSync(o.script)) return { available: false, reason: `the baseline script ${o.script} is missing` };

  o.log(`[bench nccl] torch baseline: checking ${python} and torch`);
  const probe = await runCommand(
    python,
    ['-c', 'import json, torch; print(json.dumps({"torch": torch.__version__, "cuda": torch.cuda.is_available(), "gpus": torch.cuda.device_count()}))'],
    { env: o.env, timeoutMs: 120_000 },
  );
  if (probe.error) return { available: false, reason: `${python} could not be started (${probe.error})` };
  if (probe.timedOut) return { available: false, reason: `${python} -c 'import torch' did not finish within 120 s` };
  if (probe.code !== 0) {
    const why = /No module named '?torch'?/.test(probe.stderr) ? 'torch is not installed' : tail(probe.stderr, 3);
    return { available: false, reason: `${python} cannot import torch: ${why}` };
  }
  let info: { torch: string; cuda: boolean; gpus: number };
  try {
    info = JSON.parse(probe.stdout.trim().split('\n').pop()!) as typeof info;
  } catch {
    return { available: false, reason: `unexpected answer from ${python}: ${tail(probe.stdout, 3)}` };
  }
  if (!info.cuda || info.gpus < o.worldSize) {
    return { available: false, reason: `torch ${info.torch} sees ${info.gpus} GPU(s) (cuda available: ${info.cuda}); ${o.worldSize} needed` };
  }

  const args = [
    '-m',
    'torch.distributed.run',
    '--standalone',
    '--nnodes',
    '1',
    '--nproc_per_node',
    String(o.worldSize),
    o.script,
    '--cases',
    JSON.stringify(o.cases),
    '--out',
    o.resultFile,
  ];
  o.log(`[bench nccl] torch baseline: ${python} -m torch.distributed.run --standalone --nproc_per_node ${o.worldSize} ${o.script} (torch ${info.torch})`);
  const run = await runCommand(python, args, {
    env: o.env,
    timeoutMs: o.timeoutMs,
    onLine: (line) => {
      if (line.startsWith('[bench nccl')) o.log(line);
    },
  });
  if (run.error) return { available: false, reason: `torch.distributed.run could not be started (${run.error})` };
  if (run.timedOut) return { available: false, reason: `the torch run did not finish within ${Math.round(o.timeoutMs / 1000)} s:\n${tail(run.stderr)}` };
  let result: TorchScriptResult | undefined;
  if (existsSync(o.resultFile)) {
    try {
      result = JSON.parse(readFileSync(o.resultFile, 'utf8')) as TorchScriptResult;
    } catch {
      result = undefined;
    }
  }
  result ??= parseTorchOutput(run.stdout);
  if (run.code !== 0 || !result) {
    return {
      available: false,
      reason: `the torch run failed (exit ${run.code ?? run.signal})${result ? '' : ' without a result'}:\n${tail(run.stderr)}`,
    };
  }
  return {
    available: true,
    torchVersion: result.torchVersion,
    ncclVersion: result.ncclVersion,
    worldSize: result.worldSize,
    results: summarizeAll(o.cases, result.cases, result.worldSize),
  };
}
