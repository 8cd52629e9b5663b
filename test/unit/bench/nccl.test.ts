import { existsSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import type { CliIo } from '../../../src/cli/command.js';
import { deviceCount } from '../../../src/cuda/device.js';
import { benchEnv, command, parseNcclBenchArgs, torchScript } from '../../../src/cli/bench/nccl.js';
import {
  allReduceBusFactor,
  allReduceScaleLog2,
  allToAllRecvBytes,
  formatReport,
  formatTable,
  planCases,
  ratios,
  summarize,
  summarizeAll,
  type NcclBenchReport,
} from '../../../src/cli/bench/nccl-metrics.js';
import { parseTorchOutput } from '../../../src/cli/bench/nccl-torch.js';
import { WideepError } from '../../../src/errors.js';
import { gbps, median } from '../../../src/cli/bench/stats.js';

function captureIo(): CliIo & { stdout: string; stderr: string } {
  const io = {
    stdout: '',
    stderr: '',
    out: (t: string) => void (io.stdout += t.endsWith('\n') ? t : t + '\n'),
    err: (t: string) => void (io.stderr += t.endsWith('\n') ? t : t + '\n'),
  };
  return io;
}

describe('bench nccl arguments', () => {
  it('has the documented defaults', () => {
    expect(parseNcclBenchArgs([])).toEqual({
      nprocPerNode: undefined,
      iters: 50,
      warmup: 20,
      torch: false,
      json: false,
      out: undefined,
      timeoutMs: 600_000,
    });
  });

  it('reads every flag', () => {
    expect(
      parseNcclBenchArgs(['--nproc-per-node', '4', '--iters', '30', '--warmup', '0', '--torch', '--json', '--out', 'r.json', '--timeout-s', '120']),
    ).toEqual({ nprocPerNode: 4, iters: 30, warmup: 0, torch: true, json: true, out: 'r.json', timeoutMs: 120_000 });
    expect(parseNcclBenchArgs(['--nproc-per-node=2']).nprocPerNode).toBe(2);
  });

  it.each([
    [['--iters', '0'], /--iters: expected an integer in \[1, 100000\], got "0"/],
    [['--nproc-per-node', 'four'], /--nproc-per-node: expected an integer/],
    [['--warmup', '-1'], /warmup/],
    [['--bogus'], /bogus/],
    [['extra'], /extra/],
    [['--out', ''], /--out/],
  ])('refuses %j', (argv, message) => {
    let err: unknown;
    try {
      parseNcclBenchArgs(argv);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WideepError);
    expect((err as WideepError).code).toBe('ERR_INVALID_ARG');
    expect((err as WideepError).message).toMatch(message);
  });
});

describe('bench nccl environment', () => {
  it('keeps NVLink multicast off unless told otherwise', () => {
    const env = benchEnv({ PATH: '/bin' });
    expect(env).toMatchObject({ PATH: '/bin', NCCL_NVLS_ENABLE: '0', NVSHMEM_DISABLE_NVLS: '1', TORCH_SYMM_MEM_DISABLE_MULTICAST: '1' });
    expect(benchEnv({ NCCL_NVLS_ENABLE: '0' }).NCCL_NVLS_ENABLE).toBe('0');
    expect(benchEnv({ NCCL_NVLS_ENABLE: '1' }).NCCL_NVLS_ENABLE).toBe('1');
  });

  it('ships the torch baseline script', () => {
    expect(existsSync(torchScript())).toBe(true);
  });
});

describe('bench nccl arithmetic', () => {
  it('takes medians', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it('uses the nccl-tests bus bandwidth factor 2(n-1)/n', () => {
    expect(allReduceBusFactor(2)).toBe(1);
    expect(allReduceBusFactor(4)).toBe(1.5);
    expect(allReduceBusFactor(8)).toBe(1.75);
    expect(gbps(1e9, 1e6)).toBe(1);
  });

  it('reproduces the all-reduce anchor: 512 MiB on 4 ranks at 346 GB/s bus bandwidth', () => {
    const [spec] = planCases(4, { warmup: 20, iters: 50 }).filter((c) => c.id === 'all_reduce_512MiB');
    expect(spec!.bytes).toBe(512 * 1024 * 1024);
    const us = (spec!.bytes! * 1.5) / 346e3; // time that gives 346 GB/s
    const r = summarize(spec!, { id: spec!.id, perRankMedianUs: [us * 0.99, us, us, us * 1.01] }, 4);
    expect(r.timeUs).toBeCloseTo(us, 6);
    expect(r.busbwGBs).toBeCloseTo(346, 6);
    expect(r.algbwGBs).toBeCloseTo(346 / 1.5, 6);
  });

  it('reproduces the all-to-all anchors (hidden 7168, 4 ranks)', () => {
    const plan = planCases(4, { warmup: 20, iters: 50 });
    const cases: [string, number, number, number][] = [
      ['all_to_all_4096', 599, 392, 294],
      ['all_to_all_8192', 1136, 414, 310],
      ['all_to_all_128', 50, 146, 110],
    ];
    for (const [id, us, all, others] of cases) {
      const spec = plan.find((c) => c.id === id)!;
      const r = summarize(spec, { id, perRankMedianUs: [us, us, us, us] }, 4);
      // docs/performance.md rounds the times to whole µs: agree within 1 %.
      expect(Math.abs(r.recvGBs! / all - 1)).toBeLessThan(0.01);
      expect(Math.abs(r.recvOthersGBs! / others - 1)).toBeLessThan(0.01);
    }
    expect(allToAllRecvBytes(4, 4096, 7168)).toEqual({ all: 4 * 4096 * 7168 * 2, others: 3 * 4096 * 7168 * 2 });
  });

  it('plans the six cases of docs/performance.md in order, with stable ids', () => {
    expect(planCases(4, { warmup: 20, iters: 50 }).map((c) => c.id)).toEqual([
      'all_reduce_8MiB',
      'all_reduce_64MiB',
      'all_reduce_512MiB',
      'all_to_all_128',
      'all_to_all_4096',
      'all_to_all_8192',
    ]);
  });

  it('leaves bf16 room for every in-place all-reduce iteration', () => {
    for (const n of [2, 4, 8]) {
      const s = allReduceScaleLog2(n, 70);
      expect(s + Math.ceil(Math.log2(n)) * 70).toBeLessThan(127);
      expect(s).toBeGreaterThanOrEqual(-100);
    }
    expect(allReduceScaleLog2(4, 3)).toBe(0);
  });

  it('computes ours/torch ratios by id', () => {
    const plan = planCases(4, { warmup: 1, iters: 1 });
    const ours = summarizeAll(plan, [{ id: 'all_reduce_8MiB', perRankMedianUs: [100] }, { id: 'all_to_all_128', perRankMedianUs: [50] }], 4);
    const torch = summarizeAll(plan, [{ id: 'all_reduce_8MiB', perRankMedianUs: [200] }], 4);
    expect(ours.map((r) => r.id)).toEqual(['all_reduce_8MiB', 'all_to_all_128']);
    expect(ratios(ours, torch)).toEqual({ all_reduce_8MiB: { time: 0.5, bandwidth: 2 } });
  });
});

describe('bench nccl report', () => {
  const plan = planCases(4, { warmup: 20, iters: 50 });
  const raw = plan.map((c, i) => ({ id: c.id, perRankMedianUs: [100 * (i + 1), 100 * (i + 1) + 2, 100 * (i + 1) + 4, 100 * (i + 1) + 6] }));
  const results = summarizeAll(plan, raw, 4);
  const base: NcclBenchReport = {
    suite: 'nccl',
    worldSize: 4,
    gpus: ['NVIDIA H200', 'NVIDIA H200', 'NVIDIA H200', 'NVIDIA H200'],
    ncclVersion: '2.28.9',
    warmup: 20,
    iters: 50,
    results,
    torch: null,
    ratios: {},
  };

  it('aligns a table', () => {
    const t = formatTable(['name', 'value'], [['a', '1.0'], ['longer', '100.5']]).split('\n');
    expect(t).toEqual(['name    value', '------  -----', 'a         1.0', 'longer  100.5']);
  });

  it('prints one table per op without torch', () => {
    const text = formatReport(base);
    expect(text).toContain('4 ranks on 4× NVIDIA H200, NCCL 2.28.9');
    expect(text).toContain('median of 50 iterations after 20 warm-up');
    expect(text).toMatch(/all-reduce\s+time µs\s+algbw GB\/s\s+busbw GB\/s\n/);
    expect(text).toMatch(/512 MiB\s+303\.0\s+/);
    expect(text).toMatch(/4096 rows × 7168\s+224\.0\s+503\.0\s+/);
    expect(text).not.toContain('torch');
  });

  it('puts torch beside ours with the ratio', () => {
    const torchResults = summarizeAll(plan, raw.map((r) => ({ id: r.id, perRankMedianUs: r.perRankMedianUs.map((x) => x * 2) })), 4);
    const report: NcclBenchReport = {
      ...base,
      torch: { available: true, torchVersion: '2.11.0', ncclVersion: '2.28.9', worldSize: 4, results: torchResults },
      ratios: ratios(results, torchResults),
    };
    const text = formatReport(report);
    expect(text).toContain('torch 2.11.0 with NCCL 2.28.9');
    expect(text).toMatch(/busbw ours\/torch/);
    expect(text).toMatch(/512 MiB\s+303\.0\s+\S+\s+\S+\s+606\.0\s+\S+\s+2\.000/);
    expect(report.ratios.all_to_all_8192).toEqual({ time: 0.5, bandwidth: 2 });
  });

  it('says why torch did not run', () => {
    const text = formatReport({ ...base, torch: { available: false, reason: 'python3 cannot import torch: torch is not installed' } });
    expect(text).toContain('torch baseline: not run (python3 cannot import torch: torch is not installed)');
  });

  it('finds the torch script result line among other output', () => {
    const line = JSON.stringify({ suite: 'torch-nccl', torchVersion: '2.11', ncclVersion: '2.28.9', worldSize: 2, cases: [] });
    expect(parseTorchOutput(`noise\n{"not": "it"}\n${line}\nmore noise\n`)).toMatchObject({ suite: 'torch-nccl', worldSize: 2 });
    expect(parseTorchOutput('nothing here')).toBeUndefined();
  });
});

describe('bench nccl without a GPU', () => {
  it.skipIf(deviceCount() > 0)('exits with ERR_NO_GPU and a clear message', async () => {
    const io = captureIo();
    await expect(command.run([], io)).rejects.toMatchObject({ code: 'ERR_NO_GPU', message: expect.stringMatching(/bench nccl: .*GPU/) });
    expect(io.stdout).toBe('');
  });
});
