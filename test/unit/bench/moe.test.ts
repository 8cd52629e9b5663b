import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import type { CliIo } from '../../../src/cli/command.js';
import { command as benchCommand } from '../../../src/cli/commands/bench.js';
import { layerConfig, MOE_GOALS, moeShape, parseMoeArgs } from '../../../src/cli/bench/moe-cases.js';
import type { LayerResult } from '../../../src/cli/bench/moe-measure.js';
import { buildMoeReport, renderMoe, type ReportInputs } from '../../../src/cli/bench/moe-report.js';
import { probeTorch, runTorchMoe, type TorchMoeResult } from '../../../src/cli/bench/moe-torch.js';
import { command } from '../../../src/cli/bench/moe.js';
import { deviceCount } from '../../../src/cuda/device.js';
import { PACKAGE_ROOT } from '../../../src/native/index.js';
import { expectWideepError } from '../../helpers/expect-error.js';

function captureIo(): CliIo & { stdout: string } {
  const io = { stdout: '', out: (t: string) => void (io.stdout += t + '\n'), err: () => undefined };
  return io;
}

describe('bench moe: arguments and shape', () => {
  it("defaults to DeepSeek-V3's layer at 4096 prefill and 128 decode tokens, PyTorch on", () => {
    const o = parseMoeArgs([]);
    expect(o).toEqual({ json: false, out: undefined, timelineSvg: undefined, iters: 20, warmup: 5, torch: true, experts: 256, prefillTokens: 4096, decodeTokens: 128, ranks: 1, shareGpu: false, expertDType: 'bf16', expertGemm: 'cublaslt' });
    const s = moeShape(o);
    expect(s).toMatchObject({ hidden: 7168, moeIntermediate: 2048, experts: 256, sharedExperts: 1, topk: 8, groups: 8, topkGroup: 4, reduced: false, ranks: 1 });
    expect(layerConfig(s)).toMatchObject({ numRoutedExperts: 256, topK: 8, numExpertGroups: 8, topkGroup: 4, scoringFunc: 'sigmoid', routedScalingFactor: 2.5 });
  });

  it('takes every option, and says in the shape when the experts were cut', () => {
    const o = parseMoeArgs(['--json', '--out', 'r.json', '--timeline-svg', 't.svg', '--iters', '3', '--warmup', '0', '--no-torch', '--experts', '16', '--prefill-tokens', '512', '--decode-tokens', '32']);
    expect(o).toEqual({ json: true, out: 'r.json', timelineSvg: 't.svg', iters: 3, warmup: 0, torch: false, experts: 16, prefillTokens: 512, decodeTokens: 32, ranks: 1, shareGpu: false, expertDType: 'bf16', expertGemm: 'cublaslt' });
    expect(moeShape(o)).toMatchObject({ experts: 16, reduced: true, prefillTokens: 512, decodeTokens: 32 });
    // 16 experts in 8 groups of 2, 4 groups kept: exactly the top-8's 8 candidates.
    expect(layerConfig(moeShape(o)).numRoutedExperts).toBe(16);
    expect(moeShape(parseMoeArgs(['--expert-dtype', 'fp8']))).toMatchObject({ dtype: 'fp8e4m3', expertGemm: 'cublaslt' });
    expect(moeShape(parseMoeArgs(['--expert-dtype', 'fp8', '--expert-gemm', 'masked']))).toMatchObject({ dtype: 'fp8e4m3', expertGemm: 'masked' });
    expect(moeShape(o)).toMatchObject({ dtype: 'bf16' });
  });

  it('refuses what the layer or the low-latency buffer cannot take', async () => {
    await expectWideepError(() => parseMoeArgs(['--experts', '20']), 'ERR_INVALID_ARG', '--experts', 'multiple of 8');
    await expectWideepError(() => parseMoeArgs(['--experts', '8']), 'ERR_INVALID_ARG', '--experts');
    await expectWideepError(() => parseMoeArgs(['--experts', '512']), 'ERR_INVALID_ARG', '--experts');
    await expectWideepError(() => parseMoeArgs(['--decode-tokens', '1025']), 'ERR_INVALID_ARG', '--decode-tokens');
    await expectWideepError(() => parseMoeArgs(['--iters', '0']), 'ERR_INVALID_ARG', '--iters');
    await expectWideepError(() => parseMoeArgs(['--expert-dtype', 'fp16']), 'ERR_INVALID_ARG', '--expert-dtype', 'bf16 or fp8');
    await expectWideepError(() => parseMoeArgs(['--expert-gemm', 'cutlass']), 'ERR_INVALID_ARG', '--expert-gemm', 'cublaslt or masked');
    await expectWideepError(() => parseMoeArgs(['--expert-gemm', 'masked']), 'ERR_INVALID_ARG', '--expert-gemm masked', '--expert-dtype fp8');
    await expectWideepError(() => parseMoeArgs(['--ranks', '3']), 'ERR_INVALID_ARG', '--ranks', 'split evenly');
    await expectWideepError(() => parseMoeArgs(['--ranks', '16']), 'ERR_INVALID_ARG', '--ranks');
    expect(() => parseMoeArgs(['--tokens', '5'])).toThrow(/--tokens/);
  });
});

const layer: LayerResult = {
  prefill: {
    step: { gpuUs: 8000 },
    tbo: { gpuUs: 8400 },
    stages: { router: 120, shared: 900, dispatch: 300, experts: 6000, combine: 400 },
    tboSpans: [
      { label: 'router', lane: 0, startUs: 0, endUs: 60, hostUs: 8 },
      { label: 'router', lane: 1, startUs: 10, endUs: 70, hostUs: 9 },
    ],
  },
  decode: {
    eager: { gpuUs: 900, hostUs: 150 },
    tbo: { gpuUs: 1000, hostUs: 260 },
    graph: { gpuUs: 800, hostUs: 14.5, hostBackToBackUs: 4.2 },
    stages: { router: 15, shared: 60, dispatch: 20, experts: 650, combine: 25 },
    hostStages: { router: 30, shared: 20, dispatch: 40, experts: 45, combine: 15 },
  },
};

const torch: TorchMoeResult = { available: true, torch: '2.9.0', device: 'NVIDIA H100', prefill: { gpuUs: 12000, hostUs: 400 }, decode: { gpuUs: 1200, hostUs: 380 } };

function inputs(over: Partial<ReportInputs> = {}): ReportInputs {
  return { deviceName: 'NVIDIA H100 80GB HBM3', shape: moeShape(parseMoeArgs([])), method: { iters: 20, warmup: 5, timelineRuns: 5 }, layer, torch, warnings: [], ...over };
}

describe('bench moe: report', () => {
  it('computes the ratios of the same run and checks each goal', () => {
    const r = buildMoeReport(inputs());
    expect(r.prefill).toMatchObject({ speedupVsTorch: 1.5, tboSpeedup: 0.952, torch: { gpuUs: 12000 } });
    expect(r.decode).toMatchObject({ speedupVsTorch: 1.5, tboSpeedup: 0.9, torch: { gpuUs: 1200 } });
    expect(r.goals).toEqual([
      { goal: 'prefill step (no TBO) vs the PyTorch layer', target: MOE_GOALS.prefillVsTorch, value: 1.5, met: true },
      { goal: 'decode step replayed as a graph vs the PyTorch layer, eager', target: MOE_GOALS.decodeGraphVsTorch, value: 1.5, met: false },
      { goal: 'host time per decode graph replay, replays back to back (µs)', target: MOE_GOALS.hostUsPerReplay, value: 4.2, met: true },
      { goal: 'prefill, two-batch overlap speedup at 1 rank', target: 1.2, value: null, met: null, why: 'needs 4 GPUs or more; this run has 1 rank' },
      { goal: 'decode, two-batch overlap speedup at 1 rank', target: 1.2, value: null, met: null, why: 'needs 4 GPUs or more; this run has 1 rank' },
    ]);
    expect(r.torch).toEqual({ available: true, version: '2.9.0' });
    expect(r.timeline.spans).toHaveLength(2);
    // The JSON round-trips: nothing in it is lost to JSON.stringify.
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });

  it("with fp8 experts, PyTorch's fp8 layer stands beside (information, not a goal), and its failure is a warning", () => {
    const shape = moeShape({ experts: 256, prefillTokens: 4096, decodeTokens: 128, expertDType: 'fp8e4m3' });
    const withFp8 = { ...torch, prefillFp8: { gpuUs: 9000 }, decodeFp8: { gpuUs: 1000, hostUs: 1100 } };
    const r = buildMoeReport(inputs({ shape, torch: withFp8 }));
    // Prefill: GPU times (9000 / 8000); decode: the longer of GPU and host time (1100 / 800).
    expect(r.prefill).toMatchObject({ torchFp8: { gpuUs: 9000 }, speedupVsTorchFp8: 1.125, speedupVsTorch: 1.5 });
    expect(r.decode).toMatchObject({ torchFp8: { gpuUs: 1000, hostUs: 1100 }, speedupVsTorchFp8: 1.375 });
    expect(r.goals.map((g) => g.value)).toEqual(buildMoeReport(inputs({ shape })).goals.map((g) => g.value));
    const text = renderMoe(r);
    expect(text).toContain("vs PyTorch's layer with fp8 experts (same precision): prefill 1.125x, decode as a graph 1.375x");
    expect(text).toMatch(/^decode, PyTorch fp8 rowwise, eager {6}/m);
    const failed = buildMoeReport(inputs({ shape, torch: { ...torch, fp8Error: 'prefill: offsets must be multiples of 16' } }));
    expect(failed.warnings).toEqual(["PyTorch's fp8 layer failed, so the fp8 comparison is missing from there on: prefill: offsets must be multiples of 16"]);
    expect(failed.decode.speedupVsTorchFp8).toBeUndefined();
    expect(renderMoe(failed)).not.toContain('same precision');
  });

  it('a host-bound PyTorch decode step counts at its host time, the longer of the two', () => {
    const hostBound = { ...torch, decode: { gpuUs: 1200, hostUs: 1600 } };
    const r = buildMoeReport(inputs({ torch: hostBound }));
    // 1600 µs of enqueueing per PyTorch step against our 800 µs replay.
    expect(r.decode.speedupVsTorch).toBe(2);
    expect(r.goals[1]).toMatchObject({ value: 2, met: true });
  });

  it('without PyTorch: no ratio, the goals it needs unchecked with the reason, the warning kept', () => {
    const warnings = ['PyTorch is not usable, so this ran as --no-torch: python3 (import torch) exited 1: ModuleNotFoundError'];
    const r = buildMoeReport(inputs({ torch: { available: false, reason: 'no module named torch' }, warnings }));
    expect(r.prefill.speedupVsTorch).toBeUndefined();
    expect(r.decode.torch).toBeUndefined();
    expect(r.torch).toEqual({ available: false, reason: 'no module named torch' });
    expect(r.goals.slice(0, 2).map((g) => [g.value, g.met, g.why])).toEqual([
      [null, null, 'PyTorch did not run (no module named torch)'],
      [null, null, 'PyTorch did not run (no module named torch)'],
    ]);
    expect(r.goals[2]).toMatchObject({ value: 4.2, met: true });
    expect(r.warnings).toEqual(warnings);
  });

  it('renders a table with each step, the stages, every goal and the warnings', () => {
    const text = renderMoe(buildMoeReport(inputs()));
    const cells = (name: string) => text.split('\n').find((l) => l.startsWith(name))!.slice(36).trim().split(/\s+/);
    expect(cells('prefill 4096 tokens')).toEqual(['8000', '-', '1.5']);
    expect(cells('decode, replayed as a CUDA graph')).toEqual(['800', '14.5', '1.5']);
    expect(text).toContain('decode graph replays back to back: 4.2 host µs each (one per run, the host woken from waiting: 14.5)');
    expect(text).not.toContain('decode graph: ');
    const shaped = { ...layer, decode: { ...layer.decode, graph: { ...layer.decode.graph, graphShape: { nodes: 17, byType: { kernel: 15, memset: 2 }, roots: 1, maxDependencies: 1, maxDependents: 1 } } } };
    expect(renderMoe(buildMoeReport(inputs({ layer: shaped })))).toContain('decode graph: 17 nodes (kernel 15, memset 2), 1 root, at most 1 in and 1 out per node');
    expect(cells('decode, PyTorch layer, eager')).toEqual(['1200', '380', '-']);
    expect(text).toContain('prefill router 120, shared 900, dispatch 300, experts 6000, combine 400');
    expect(text).toContain('decode, eager, host µs per stage: router 30, shared 20, dispatch 40, experts 45, combine 15');
    expect(text).toMatch(/^met {5}prefill step/m);
    expect(text).toMatch(/^NOT MET decode step replayed as a graph vs the PyTorch layer, eager: 1.5 \(goal 2\)/m);
    expect(text).not.toContain('REDUCED');
    const without = renderMoe(buildMoeReport(inputs({ shape: moeShape({ experts: 64, prefillTokens: 4096, decodeTokens: 128 }), torch: { available: false, reason: '--no-torch' }, warnings: ['w1'] })));
    expect(without).toContain('REDUCED to 64 experts');
    expect(without).toContain('PyTorch: not run (--no-torch)');
    expect(without).toMatch(/^n\/a {5}prefill step \(no TBO\) vs the PyTorch layer: PyTorch did not run \(--no-torch\)/m);
    expect(without).toContain('warning: w1');
    const fp8 = renderMoe(buildMoeReport(inputs({ shape: moeShape({ experts: 256, prefillTokens: 4096, decodeTokens: 128, expertDType: 'fp8e4m3' }) })));
    expect(fp8).toContain("this layer's routed experts are fp8e4m3; the goals compare with PyTorch's bf16 layer");
    expect(fp8).toContain('fp8e4m3 (cuBLASLt per expert)');
    const masked = renderMoe(buildMoeReport(inputs({ shape: moeShape({ experts: 256, prefillTokens: 4096, decodeTokens: 128, expertDType: 'fp8e4m3', expertGemm: 'masked' }) })));
    expect(masked).toContain('fp8e4m3 (wideep masked GEMM)');
    expect(text).not.toContain('routed experts are');
  });
});

describe('bench moe: PyTorch', () => {
  it('reports a python that cannot start as a reason, not a failure', () => {
    const probe = probeTorch('/nonexistent/python3');
    expect(probe).toMatchObject({ ok: false, reason: expect.stringMatching(/could not run/) });
    const run = runTorchMoe(moeShape(parseMoeArgs([])), 1, 0, 10_000, '/nonexistent/python3');
    expect(run).toMatchObject({ available: false, reason: expect.stringMatching(/torch_moe\.py could not run/) });
  });

  const python = spawnSync('python3', ['--version']).status === 0;
  it.skipIf(!python)("this machine's python3: torch with _grouped_mm and a GPU, or the reason it is not", () => {
    const probe = probeTorch();
    if (probe.ok) expect(probe.version).toMatch(/^\d+\.\d+/);
    else expect(probe.reason).toMatch(/torch|GPU|CUDA/);
  });

  it.skipIf(!python)('torch_moe.py parses', () => {
    const script = join(PACKAGE_ROOT, 'scripts', 'bench', 'torch_moe.py');
    const r = spawnSync('python3', ['-c', 'import ast, sys; ast.parse(open(sys.argv[1]).read())', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('bench moe: the command', () => {
  it('is a suite of wideep bench, with its usage', async () => {
    const io = captureIo();
    expect(await benchCommand.run(['moe', '--help'], io)).toBe(0);
    expect(io.stdout).toContain('usage: wideep bench moe');
    expect(io.stdout).toContain('--timeline-svg');
  });

  it('refuses bad arguments before it looks for a GPU', async () => {
    await expectWideepError(command.run(['--experts', '12'], captureIo()), 'ERR_INVALID_ARG', '--experts');
  });

  it.skipIf(deviceCount() > 0)('without a GPU: ERR_NO_GPU with a one-line message, nothing printed', async () => {
    const io = captureIo();
    const e = await expectWideepError(command.run(['--json'], io), 'ERR_NO_GPU', 'bench moe needs a GPU');
    expect(e.message).not.toContain('\n');
    expect(io.stdout).toBe('');
  });
});
