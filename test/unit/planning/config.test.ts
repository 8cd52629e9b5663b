import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { WideepError } from '../../../src/errors.js';
import { ParallelConfig } from '../../../src/planning/config.js';
import type { ParallelOptions } from '../../../src/planning/options.js';

/** SGLang's WideEP example (64 GPUs, DP attention, DeepEP, TBO, EPLB), as camelCase options. */
const WIDE_EP = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../fixtures/planning/wide-ep-options.json', import.meta.url)), 'utf8'),
) as ParallelOptions;

/** Asserts that `opts` is refused with ERR_INVALID_ARG and a message matching every pattern. */
function refused(opts: ParallelOptions, ...patterns: RegExp[]): WideepError {
  let caught: unknown;
  try {
    ParallelConfig.fromOptions(opts);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(WideepError);
  const err = caught as WideepError;
  expect(err.code).toBe('ERR_INVALID_ARG');
  for (const p of patterns) expect(err.message).toMatch(p);
  return err;
}

describe('ParallelConfig derived sizes', () => {
  it('defaults to SGLang defaults: one GPU, nothing parallel', () => {
    const c = ParallelConfig.fromOptions();
    expect(c.worldSize).toBe(1);
    expect([c.attnTpSize, c.attnDpSize, c.moeTpSize, c.moeEpSize, c.moeDpSize]).toEqual([1, 1, 1, 1, 1]);
    expect(c.options.moeA2aBackend).toBe('none');
    expect(c.options.deepepMode).toBe('auto');
    expect(c.options.tboTokenDistributionThreshold).toBe(0.48);
    expect(c.options.numMaxDispatchTokensPerRank).toBe(128);
    expect(c.options.eplbRebalanceNumIterations).toBe(1000);
    expect(c.overrides).toEqual([]);
  });

  it('gives attn_tp = moe_tp = 1 and 4 experts per GPU for the WideEP example', () => {
    const c = ParallelConfig.fromOptions({ ...WIDE_EP, nnodes: 8 });
    expect(c.attnTpSize).toBe(1);
    expect(c.attnDpSize).toBe(64);
    expect(c.moeTpSize).toBe(1);
    expect(c.moeEpSize).toBe(64);
    expect(c.expertsPerGpu(256)).toBe(4);
    expect(c.gpusPerNode).toBe(8);
    expect(c.overrides).toEqual([]);
  });

  it('computes attn_tp = tp / dp and moe_tp = tp / ep / moe_dp', () => {
    const c = ParallelConfig.fromOptions({ tp: 16, dpSize: 4, enableDpAttention: true, epSize: 4, moeDpSize: 2 });
    expect(c.attnTpSize).toBe(4);
    expect(c.attnDpSize).toBe(4);
    expect(c.moeTpSize).toBe(2);
    expect(c.moeDpSize).toBe(2);
  });

  it('counts redundant experts in the physical slots', () => {
    const c = ParallelConfig.fromOptions({ ...WIDE_EP, epNumRedundantExperts: 64 });
    expect(c.numPhysicalExperts(256)).toBe(320);
    expect(c.expertsPerGpu(256)).toBe(5);
  });

  it('treats dp without DP attention as independent TP replicas', () => {
    const c = ParallelConfig.fromOptions({ tp: 4, dpSize: 2 });
    expect(c.worldSize).toBe(8);
    expect(c.dpReplicas).toBe(2);
    expect(c.attnTpSize).toBe(4);
  });

  it('infers nnodes from gpusPerNode, and gpusPerNode from nnodes', () => {
    expect(ParallelConfig.fromOptions({ tp: 32, gpusPerNode: 8 }).nnodes).toBe(4);
    expect(ParallelConfig.fromOptions({ tp: 32, nnodes: 4 }).gpusPerNode).toBe(8);
    expect(ParallelConfig.fromOptions({ tp: 4, gpusPerNode: 8 }).gpusPerNode).toBe(4);
  });
});

describe('ParallelConfig overrides (recorded and warned)', () => {
  it('deepep forces ep = tp', () => {
    const c = ParallelConfig.fromOptions({ tp: 16, dpSize: 16, enableDpAttention: true, moeA2aBackend: 'deepep' });
    expect(c.moeEpSize).toBe(16);
    expect(c.overrides).toEqual([expect.objectContaining({ option: 'epSize', flag: '--ep-size', from: 1, to: 16 })]);
    expect(c.warnings[0]).toMatch(/--ep-size 1 -> 16: .*deepep/);
  });

  it.each(['mooncake', 'mori'] as const)('%s forces ep = tp too', (backend) => {
    const c = ParallelConfig.fromOptions({ tp: 8, epSize: 2, moeA2aBackend: backend });
    expect(c.moeEpSize).toBe(8);
  });

  it('mori turns deepep-mode auto into normal', () => {
    const c = ParallelConfig.fromOptions({ tp: 8, moeA2aBackend: 'mori' });
    expect(c.options.deepepMode).toBe('normal');
    expect(c.overrides.map((o) => o.option)).toContain('deepepMode');
  });

  it('dp-size 1 turns DP attention off', () => {
    const c = ParallelConfig.fromOptions({ tp: 8, dpSize: 1, enableDpAttention: true });
    expect(c.options.enableDpAttention).toBe(false);
    expect(c.overrides).toEqual([expect.objectContaining({ option: 'enableDpAttention', from: true, to: false })]);
  });

  it('records no override when the value already agrees', () => {
    expect(ParallelConfig.fromOptions({ tp: 8, epSize: 8, moeA2aBackend: 'deepep' }).overrides).toEqual([]);
  });
});

describe('ParallelConfig validation rules', () => {
  it('world_size == tp × pp', () => {
    refused({ tp: 8, ppSize: 2, worldSize: 8 }, /--gpus 8/, /tp \(8\) × pp-size \(2\) = 16/);
    expect(ParallelConfig.fromOptions({ tp: 8, ppSize: 2, worldSize: 16 }).worldSize).toBe(16);
  });

  it('tp % dp == 0 with DP attention', () => {
    refused({ tp: 64, dpSize: 48, enableDpAttention: true }, /^--dp-size 48: tp \(64\) must be divisible by dp-size when --enable-dp-attention is set$/);
  });

  it('tp divisible by nnodes', () => {
    refused({ tp: 12, nnodes: 8 }, /--nnodes 8: tp \(12\) must be divisible by nnodes/);
  });

  it('multi-node DP requires DP attention', () => {
    refused({ tp: 8, dpSize: 2, nnodes: 2 }, /--dp-size 2: multi-node data parallelism \(nnodes 2\) requires --enable-dp-attention/);
    expect(ParallelConfig.fromOptions({ tp: 16, dpSize: 2, enableDpAttention: true, nnodes: 2 }).attnTpSize).toBe(8);
  });

  it('ep × moe_dp ≤ tp', () => {
    refused({ tp: 8, epSize: 4, moeDpSize: 4 }, /--ep-size 4: ep-size × moe-dp-size \(4 × 4 = 16\) must not exceed tp \(8\)/);
  });

  it('ep × moe_dp must divide tp (moe_tp is an integer)', () => {
    refused({ tp: 8, epSize: 3 }, /--ep-size 3: tp \(8\) must be divisible by ep-size × moe-dp-size/);
  });

  it('names the backend when deepep forced the ep that breaks ep × moe_dp ≤ tp', () => {
    refused({ tp: 8, moeDpSize: 2, moeA2aBackend: 'deepep' }, /--ep-size 8 \(set by --moe-a2a-backend deepep\)/);
  });

  it('two-batch overlap requires an all-to-all backend', () => {
    refused({ tp: 8, enableTwoBatchOverlap: true }, /--enable-two-batch-overlap: .*--moe-a2a-backend is none/);
  });

  it('flashinfer requires DP attention with dp == tp', () => {
    refused({ tp: 8, dpSize: 4, enableDpAttention: true, moeA2aBackend: 'flashinfer' }, /--moe-a2a-backend flashinfer: requires --enable-dp-attention with dp-size equal to tp/);
    refused({ tp: 8, moeA2aBackend: 'flashinfer' }, /DP attention off/);
    expect(ParallelConfig.fromOptions({ tp: 8, dpSize: 8, enableDpAttention: true, moeA2aBackend: 'flashinfer' }).attnTpSize).toBe(1);
  });

  it('mori refuses low_latency', () => {
    refused({ tp: 8, moeA2aBackend: 'mori', deepepMode: 'low_latency' }, /--deepep-mode low_latency: --moe-a2a-backend mori supports normal mode only/);
  });

  it('num-max-dispatch-tokens-per-rank is at most 1024', () => {
    refused({ numMaxDispatchTokensPerRank: 2048 }, /--num-max-dispatch-tokens-per-rank 2048: must be at most 1024/);
    expect(ParallelConfig.fromOptions({ numMaxDispatchTokensPerRank: 1024 }).options.numMaxDispatchTokensPerRank).toBe(1024);
  });

  it('every DP rank’s decode batch must fit the low-latency slots (per micro-batch with TBO)', () => {
    const base: ParallelOptions = { tp: 8, dpSize: 8, enableDpAttention: true, moeA2aBackend: 'deepep', maxRunningRequests: 2048 };
    refused(base, /--max-running-requests 2048: each DP rank may decode up to 256 requests \(2048 \/ 8 DP ranks\)/, /--num-max-dispatch-tokens-per-rank 128/);
    // With TBO each micro-batch is half: 128 fits.
    expect(ParallelConfig.fromOptions({ ...base, enableTwoBatchOverlap: true }).options.maxRunningRequests).toBe(2048);
    // normal mode has no such bound.
    expect(ParallelConfig.fromOptions({ ...base, deepepMode: 'normal' }).options.maxRunningRequests).toBe(2048);
  });

  it('tbo-token-distribution-threshold is in [0, 0.5]', () => {
    refused({ tboTokenDistributionThreshold: 0.6 }, /--tbo-token-distribution-threshold 0.6: must be in \[0, 0.5\]/);
  });

  it('mem-fraction-static is in (0, 1]', () => {
    refused({ memFractionStatic: 1.5 }, /--mem-fraction-static 1.5: must be in \(0, 1\]/);
    refused({ memFractionStatic: 0 }, /--mem-fraction-static 0/);
  });

  it('node-rank is below nnodes', () => {
    refused({ tp: 16, nnodes: 2, nodeRank: 2 }, /--node-rank 2: must be less than nnodes \(2\)/);
  });

  it('dist-init-addr is host:port', () => {
    refused({ distInitAddr: 'localhost' }, /--dist-init-addr localhost: must be host:port/);
    refused({ distInitAddr: 'h:70000' }, /port in \[1, 65535\]/);
    expect(ParallelConfig.fromOptions({ distInitAddr: '10.0.0.1:5000' }).options.distInitAddr).toBe('10.0.0.1:5000');
    expect(ParallelConfig.fromOptions({ distInitAddr: '[::1]:5000' }).options.distInitAddr).toBe('[::1]:5000');
  });

  it('gpus-per-node must fit the world size', () => {
    refused({ tp: 12, gpusPerNode: 8 }, /--gpus-per-node 8: world size \(12\) must be divisible by gpus-per-node/);
    refused({ tp: 16, nnodes: 2, gpusPerNode: 4 }, /world size \(16\) must equal nnodes \(2\) × gpus-per-node/);
  });

  it('checks types and ranges, naming the flag', () => {
    refused({ tp: 0 }, /--tp 0: must be an integer in \[1, 65536\]/);
    refused({ tp: 2.5 }, /--tp 2.5: must be an integer in \[1, 65536\]/);
    refused({ dpSize: '8' as unknown as number }, /--dp-size 8: must be an integer in \[1, 65536\]/);
    refused({ epNumRedundantExperts: -1 }, /--ep-num-redundant-experts -1: must be an integer in \[0, 65536\]/);
    refused({ maxRunningRequests: 2 ** 53 }, /--max-running-requests 9007199254740992: must be an integer >= 1/);
    refused({ moeA2aBackend: 'nccl' as never }, /--moe-a2a-backend nccl: must be one of none, deepep, mooncake, mori, flashinfer/);
    refused({ deepepMode: 'fast' as never }, /--deepep-mode fast: must be one of normal, low_latency, auto/);
    refused({ enableEplb: 1 as unknown as boolean }, /--enable-eplb 1: must be true or false/);
    refused({ memFractionStatic: Number.NaN }, /--mem-fraction-static null: must be a finite number/);
    refused({ tpSize: 8 } as unknown as ParallelOptions, /unknown option 'tpSize'/);
  });

  it('reports every broken rule at once, one per line', () => {
    const err = refused({ tp: 64, dpSize: 48, enableDpAttention: true, enableTwoBatchOverlap: true });
    expect(err.message.split('\n')).toHaveLength(2);
  });

  it('needs routed + redundant experts divisible by ep', () => {
    const c = ParallelConfig.fromOptions({ ...WIDE_EP, epNumRedundantExperts: 3 });
    expect(() => c.numPhysicalExperts(256)).toThrow(/--ep-num-redundant-experts 3: routed experts \(256\) \+ redundant experts \(3\) = 259 must be divisible by ep-size \(64\)/);
    const c2 = ParallelConfig.fromOptions({ tp: 48, epSize: 48, gpusPerNode: 8 });
    expect(() => c2.expertsPerGpu(256)).toThrow(/--ep-size 48: the model's 256 routed experts must be divisible by ep-size/);
  });
});

describe('ParallelConfig warnings', () => {
  it('warns when EPLB has nothing to balance, and when deepep-mode is ignored', () => {
    expect(ParallelConfig.fromOptions({ enableEplb: true }).warnings.join('\n')).toMatch(/--enable-eplb: ep-size is 1/);
    expect(ParallelConfig.fromOptions({ deepepMode: 'normal' }).warnings.join('\n')).toMatch(/no effect with --moe-a2a-backend none/);
  });

  it('warns that the none backend does not scale past 16 GPUs', () => {
    expect(ParallelConfig.fromOptions({ tp: 32, epSize: 32, gpusPerNode: 8 }).warnings.join('\n')).toMatch(/does not scale past 16 GPUs/);
  });
});

describe('process groups', () => {
  it('lays out the WideEP example: one TP/EP group, 64 attention groups of one', () => {
    const c = ParallelConfig.fromOptions({ ...WIDE_EP, nnodes: 8 });
    const g = c.processGroups();
    expect(g.tp).toEqual([Array.from({ length: 64 }, (_, i) => i)]);
    expect(g.moeEp).toEqual(g.tp);
    expect(g.attnTp).toHaveLength(64);
    expect(g.attnTp[5]).toEqual([5]);
    const r = c.rankInfo(13);
    expect(r).toMatchObject({ rank: 13, node: 1, localRank: 5, attnDpRank: 13, attnTpRank: 0, moeEpRank: 13, moeTpRank: 0 });
  });

  it('makes MoE-TP groups contiguous and MoE-EP groups strided by moe_tp', () => {
    const c = ParallelConfig.fromOptions({ tp: 8, dpSize: 2, enableDpAttention: true, epSize: 2, moeDpSize: 2 });
    // moe_tp = 2: tpRank = moeDp*4 + ep*2 + moeTp
    const g = c.processGroups();
    expect(g.moeTp).toEqual([[0, 1], [2, 3], [4, 5], [6, 7]]);
    expect(g.moeEp).toEqual([[0, 2], [1, 3], [4, 6], [5, 7]]);
    expect(g.moeDp).toEqual([[0, 4], [1, 5], [2, 6], [3, 7]]);
    expect(g.attnTp).toEqual([[0, 1, 2, 3], [4, 5, 6, 7]]);
    expect(c.rankInfo(6)).toMatchObject({ moeDpRank: 1, moeEpRank: 1, moeTpRank: 0, attnDpRank: 1, attnTpRank: 2 });
  });

  it('builds pipeline groups across stages and TP groups per replica', () => {
    const c = ParallelConfig.fromOptions({ tp: 2, ppSize: 2 });
    expect(c.processGroups().pp).toEqual([[0, 2], [1, 3]]);
    expect(c.processGroups().tp).toEqual([[0, 1], [2, 3]]);
    const d = ParallelConfig.fromOptions({ tp: 2, dpSize: 2 });
    expect(d.processGroups().tp).toEqual([[0, 1], [2, 3]]);
    expect(d.rankInfo(3).dpReplica).toBe(1);
  });

  it('refuses a rank outside the world', () => {
    expect(() => ParallelConfig.fromOptions({ tp: 4 }).rankInfo(4)).toThrow(/rank 4: must be an integer in \[0, 4\)/);
  });
});
