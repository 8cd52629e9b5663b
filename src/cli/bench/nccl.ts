/**
 * `wideep bench nccl`: NCCL all-reduce bus bandwidth and equal all-to-all
 * through our Communicator, optionally beside PyTorch's NCCL in the same run.
 * It starts one worker per GPU itself (launch() on nccl-worker.js).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { toJson, type CliCommand, type CliIo } from '../command.js';
import { cudaProbe, deviceCount } from '../../cuda/device.js';
import { launch } from '../../runtime/launcher.js';
import { WideepError } from '../../errors.js';
import { PACKAGE_ROOT } from '../../native/index.js';
import { formatReport, planCases, ratios, summarizeAll, type NcclBenchReport, type TorchReport } from './nccl-metrics.js';
import { runTorchBaseline } from './nccl-torch.js';
import type { WorkerConfig, WorkerResult } from './nccl-worker.js';

export const USAGE = `usage: wideep bench nccl [--nproc-per-node N] [--iters I] [--warmup W] [--torch]
                         [--json] [--out file.json] [--timeout-s S]

Measures NCCL through wideep's Communicator, bf16, one process per GPU:
  all-reduce of 8 MiB, 64 MiB and 512 MiB (time, algbw, busbw = algbw × 2(n-1)/n)
  equal all-to-all, hidden 7168, 128 / 4096 / 8192 rows to every rank
    (time, bytes received per rank per second: all rows, and rows from other ranks)
Each op is timed with CUDA events; the median of the timed iterations on each
rank, then the median across ranks, is reported.

options:
  --nproc-per-node N   ranks (default: every visible GPU)
  --iters I            timed iterations per case (default 50)
  --warmup W           warm-up iterations per case (default 20)
  --torch              also run scripts/bench/torch_nccl.py under
                       python3 -m torch.distributed.run and print ours/torch
  --json               print one JSON object instead of the tables
  --out file.json      also write the JSON object to a file
  --timeout-s S        limit for each of the two runs (default 600)

NCCL_NVLS_ENABLE=0 (NVLink multicast off) is kept for every process started.`;

export interface NcclBenchArgs {
  nprocPerNode: number | undefined;
  iters: number;
  warmup: number;
  torch: boolean;
  json: boolean;
  out: string | undefined;
  timeoutMs: number;
}

function usageError(message: string): WideepError {
  return new WideepError('ERR_INVALID_ARG', `bench nccl: ${message}`);
}

function intFlag(flag: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw usageError(`${flag}: expected an integer in [${min}, ${max}], got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

export function parseNcclBenchArgs(argv: readonly string[]): NcclBenchArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        'nproc-per-node': { type: 'string' },
        iters: { type: 'string' },
        warmup: { type: 'string' },
        torch: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        out: { type: 'string' },
        'timeout-s': { type: 'string' },
      },
    }));
  } catch (e) {
    throw usageError((e as Error).message);
  }
  if (values.out === '') throw usageError('--out: expected a file name');
  return {
    nprocPerNode: intFlag('--nproc-per-node', values['nproc-per-node'], 1, 1024),
    iters: intFlag('--iters', values.iters, 1, 100_000) ?? 50,
    warmup: intFlag('--warmup', values.warmup, 0, 100_000) ?? 20,
    torch: values.torch ?? false,
    json: values.json ?? false,
    out: values.out,
    timeoutMs: (intFlag('--timeout-s', values['timeout-s'], 10, 86_400) ?? 600) * 1000,
  };
}

/**
 * The environment of everything the benchmark starts: the caller's, with
 * NVLink multicast kept off (docs/gpu-runs.md) unless the caller set these already.
 */
export function benchEnv(base: Readonly<Record<string, string | undefined>> = process.env): Record<string, string | undefined> {
  return {
    ...base,
    NCCL_NVLS_ENABLE: base.NCCL_NVLS_ENABLE ?? '0',
    NVSHMEM_DISABLE_NVLS: base.NVSHMEM_DISABLE_NVLS ?? '1',
    TORCH_SYMM_MEM_DISABLE_MULTICAST: base.TORCH_SYMM_MEM_DISABLE_MULTICAST ?? '1',
    OMP_NUM_THREADS: base.OMP_NUM_THREADS ?? '1',
    PYTHONUNBUFFERED: '1',
  };
}

/** The compiled worker beside this file, or dist/cli/bench/ when this runs from src/ (tests). */
export function workerScript(): string {
  const here = fileURLToPath(new URL('./nccl-worker.js', import.meta.url));
  if (existsSync(here)) return here;
  return join(PACKAGE_ROOT, 'dist', 'cli', 'bench', 'nccl-worker.js');
}

export function torchScript(): string {
  return join(PACKAGE_ROOT, 'scripts', 'bench', 'torch_nccl.py');
}

function noGpu(): WideepError {
  let why = 'no CUDA GPU is visible';
  try {
    const p = cudaProbe();
    if (p.error) why = `no usable GPU (${p.error.message})`;
  } catch (e) {
    why = `CUDA is unavailable (${(e as Error).message})`;
  }
  return new WideepError('ERR_NO_GPU', `bench nccl: ${why}; this benchmark needs at least one GPU per rank (ERR_NO_GPU)`);
}

export async function runNcclBench(args: NcclBenchArgs, io: CliIo): Promise<number> {
  const gpus = deviceCount();
  if (gpus === 0) throw noGpu();
  const n = args.nprocPerNode ?? gpus;
  if (n > gpus) throw usageError(`--nproc-per-node ${n}: only ${gpus} GPU(s) are visible`);
  const script = workerScript();
  if (!existsSync(script)) {
    throw new WideepError('ERR_INVALID_ARG', `bench nccl: the worker ${script} is missing; run npx tsc -p tsconfig.build.json`);
  }

  const cases = planCases(n, { warmup: args.warmup, iters: args.iters });
  const env = benchEnv();
  const dir = mkdtempSync(join(tmpdir(), 'wideep-bench-nccl-'));
  try {
    const config: WorkerConfig = {
      cases,
      resultFile: join(dir, 'wideep.json'),
      deadlineMs: args.timeoutMs,
      commTimeoutMs: Math.min(120_000, args.timeoutMs),
    };
    io.err(`[bench nccl] ${n} ranks: ${cases.map((c) => c.label).join(', ')} (NCCL_NVLS_ENABLE=${env.NCCL_NVLS_ENABLE})`);
    const started = Date.now();
    const res = await launch({
      script,
      args: [JSON.stringify(config)],
      nprocPerNode: n,
      env,
      // Workers print nothing for stdout's reader: keep stdout for the report.
      stdout: (t) => io.err(t),
      stderr: (t) => io.err(t),
    });
    if (!res.ok || !existsSync(config.resultFile)) {
      io.err(`wideep bench nccl: the workers failed: ${res.message ?? 'rank 0 wrote no result'}`);
      return 1;
    }
    const worker = JSON.parse(readFileSync(config.resultFile, 'utf8')) as WorkerResult;
    io.err(`[bench nccl] wideep run done in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    let torch: TorchReport | null = null;
    if (args.torch) {
      torch = await runTorchBaseline({
        worldSize: n,
        cases,
        script: torchScript(),
        resultFile: join(dir, 'torch.json'),
        env,
        timeoutMs: args.timeoutMs,
        log: (t) => io.err(t),
      });
      if (!torch.available) io.err(`[bench nccl] torch baseline not available: ${torch.reason}`);
    }

    const results = summarizeAll(cases, worker.cases, worker.worldSize);
    const report: NcclBenchReport = {
      suite: 'nccl',
      worldSize: worker.worldSize,
      gpus: worker.gpus,
      ncclVersion: worker.ncclVersion,
      ncclPath: worker.ncclPath,
      warmup: args.warmup,
      iters: args.iters,
      results,
      torch,
      ratios: torch?.available ? ratios(results, torch.results) : {},
    };
    if (args.out) writeFileSync(args.out, toJson(report) + '\n');
    io.out(args.json ? toJson(report) : formatReport(report));
    return 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const command: CliCommand = {
  name: 'nccl',
  summary: 'NCCL all-reduce bus bandwidth and all-to-all, beside PyTorch with --torch',
  usage: USAGE,
  async run(argv, io) {
    return runNcclBench(parseNcclBenchArgs(argv), io);
  },
};
