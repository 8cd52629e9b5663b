import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { ParallelConfig } from '../../../src/planning/config.js';
import { seededRandom } from '../../../src/planning/expert-location.js';
import { GPU_PRESETS } from '../../../src/planning/hardware.js';
import { MODEL_PRESETS, modelWeights, type ModelConfig } from '../../../src/planning/models.js';
import type { ParallelOptions } from '../../../src/planning/options.js';
import { planDeployment } from '../../../src/planning/planner.js';

const DSV3 = MODEL_PRESETS['deepseek-v3']!;
/** SGLang's WideEP example (64 GPUs, DP attention, DeepEP, TBO, EPLB), as camelCase options. */
const WIDE_EP = JSON.parse(
  readFileSync(fileURLToPath(new URL('../../fixtures/planning/wide-ep-options.json', import.meta.url)), 'utf8'),
) as ParallelOptions;

/** Zipf-like expert loads: a few hot experts, as in real traffic. */
function skewedLoads(layers: number, experts: number, seed: number): number[][] {
  const rand = seededRandom(seed);
  return Array.from({ length: layers }, () => Array.from({ length: experts }, () => Math.floor(1000 / (1 + rand() * 50))));
}

describe('planDeployment: the WideEP example', () => {
  const plan = planDeployment({ parallel: WIDE_EP, model: DSV3 });

  it('reports attnTpSize 1, moeTpSize 1 and 4 experts per GPU', () => {
    expect(plan.attnTpSize).toBe(1);
    expect(plan.moeTpSize).toBe(1);
    expect(plan.expertsPerGpu).toBe(4);
    expect(plan.attnDpSize).toBe(64);
    expect(plan.moeEpSize).toBe(64);
    expect(plan.numPhysicalExperts).toBe(256);
    expect(plan.worldSize).toBe(64);
    expect(plan.nnodes).toBe(8);
    expect(plan.notes.join('\n')).toMatch(/assuming 8 GPUs per node/);
  });

  it('replicates dense weights, shards experts and gives the rest to the KV cache', () => {
    const w = modelWeights(DSV3);
    const m = plan.memory;
    expect(m.denseWeightBytes).toBe(w.denseBytes);
    expect(m.expertShardBytes).toBe(4 * 58 * w.expertBytes);
    expect(m.gpuMemoryBytes).toBe(GPU_PRESETS.h200!.memoryBytes);
    expect(m.memFractionStatic).toBe(0.8);
    expect(m.kvBudgetBytes).toBeCloseTo(0.8 * m.gpuMemoryBytes - m.denseWeightBytes - m.expertShardBytes, 3);
    expect(m.kvBytesPerToken).toBe(576 * 2 * 61);
    expect(m.kvTokens).toBe(Math.floor(m.kvBudgetBytes / m.kvBytesPerToken));
    expect(m.fits).toBe(true);
  });

  it('estimates dispatch and combine over NVLink and RDMA', () => {
    const [decode, prefill] = plan.communication.scenarios;
    expect(plan.communication.ranksPerNode).toBe(8);
    expect(decode).toMatchObject({ phase: 'decode', mode: 'low_latency', tokensPerRank: 128 });
    expect(prefill).toMatchObject({ phase: 'prefill', tokensPerRank: 4096 });
    // 256 experts over 64 ranks, top-8: each token reaches 64 × (1 − C(252,8)/C(256,8)) ranks.
    expect(decode!.destinationsPerToken).toBeCloseTo(7.68, 2);
    expect(decode!.dispatch!.rdmaBytes / decode!.dispatch!.nvlinkBytes).toBeCloseTo(56 / 7, 9);
    expect(decode!.forwardTimeUs).toBeCloseTo(decode!.layerTimeUs * 58, 6);
  });

  it("shows SGLang's initial placement for every MoE layer without statistics", () => {
    expect(plan.placement.source).toBe('trivial');
    expect(plan.placement.moeLayers).toHaveLength(58);
    expect(plan.placement.moeLayers[0]).toBe(3);
    expect(plan.placement.phy2log[57]!.slice(4, 8)).toEqual([4, 5, 6, 7]);
    expect(plan.eplb).toBeNull();
  });
});

describe('planDeployment with EPLB statistics', () => {
  it('places 256 GPUs with redundant experts instantly and balances better', () => {
    const stats = skewedLoads(58, 256, 3);
    const start = performance.now();
    const plan = planDeployment({
      parallel: { ...WIDE_EP, tp: 256, dpSize: 256, epSize: 256, epNumRedundantExperts: 256 },
      model: DSV3,
      eplbStats: stats,
    });
    expect(performance.now() - start).toBeLessThan(2000);
    expect(plan.expertsPerGpu).toBe(2);
    expect(plan.placement.source).toBe('eplb');
    expect(plan.placement.phy2log).toHaveLength(58);
    expect(plan.placement.phy2log[0]).toHaveLength(512);
    // 8 expert groups do not split over 32 nodes: the global policy.
    expect(plan.eplb).toMatchObject({ policy: 'global', numReplicas: 512, numGroups: 8, numNodes: 32, numGpus: 256 });
    expect(plan.eplb!.balancednessAfter).toBeGreaterThan(plan.eplb!.balancednessBefore);
    expect(plan.eplb!.balancednessPerLayer).toHaveLength(58);
  });

  it('accepts one row per model layer and ignores the dense ones', () => {
    const stats = skewedLoads(61, 256, 4);
    const plan = planDeployment({ parallel: WIDE_EP, model: DSV3, eplbStats: stats });
    const moeOnly = planDeployment({ parallel: WIDE_EP, model: DSV3, eplbStats: stats.slice(3) });
    expect(plan.placement.phy2log).toEqual(moeOnly.placement.phy2log);
    // 8 groups over 8 nodes: hierarchical.
    expect(plan.eplb).toMatchObject({ policy: 'hierarchical', numGroups: 8, numNodes: 8, numGpus: 64 });
  });

  it('refuses statistics of the wrong shape', () => {
    expect(() => planDeployment({ parallel: WIDE_EP, model: DSV3, eplbStats: skewedLoads(10, 256, 1) })).toThrow(/--eplb-stats: 10 layers, expected 58 \(MoE layers\) or 61/);
    expect(() => planDeployment({ parallel: WIDE_EP, model: DSV3, eplbStats: skewedLoads(58, 128, 1) })).toThrow(/rows have 128 experts, DeepSeek-V3 has 256/);
  });
});

describe('planDeployment: other layouts', () => {
  it('refuses a bad combination with the rule', () => {
    expect(() => planDeployment({ parallel: { tp: 64, dpSize: 48, enableDpAttention: true }, model: DSV3 })).toThrow(
      /--dp-size 48: tp \(64\) must be divisible by dp-size when --enable-dp-attention is set/,
    );
  });

  it('plans the none backend with attention TP: sharded dense weights, an all-reduce, GQA heads over attn_tp', () => {
    const qwen = MODEL_PRESETS['qwen3-235b-a22b']!;
    const plan = planDeployment({ parallel: { tp: 8, epSize: 8 }, model: qwen });
    expect(plan.attnTpSize).toBe(8);
    expect(plan.expertsPerGpu).toBe(16);
    const s = plan.communication.scenarios[0]!;
    expect(s.mode).toBeNull();
    expect(s.allGatherBytes).toBeCloseTo((7 / 8) * 128 * 4096 * 2, 6);
    // 4 KV heads over 8 attention ranks: each keeps one.
    expect(plan.memory.kvBytesPerToken).toBe(2 * 1 * 128 * 2 * 94);
    const w = modelWeights(qwen);
    expect(plan.memory.denseWeightBytes).toBeCloseTo((w.denseBytes - w.parts.norms - w.parts.router) / 8 + w.parts.norms + w.parts.router, 3);
  });

  it('takes a ParallelConfig and hardware overrides', () => {
    const config = ParallelConfig.fromOptions({ ...WIDE_EP, nnodes: 16, memFractionStatic: 0.9 });
    const plan = planDeployment({ parallel: config, model: DSV3, hardware: { gpu: 'H100', memoryBytes: 80e9, rdmaGBps: 25 }, decodeTokensPerRank: 64 });
    expect(plan.gpusPerNode).toBe(4);
    expect(plan.memory).toMatchObject({ gpu: 'H100', gpuMemoryBytes: 80e9, memFractionStatic: 0.9 });
    expect(plan.communication.rdmaGBps).toBe(25);
    expect(plan.communication.scenarios[0]!.tokensPerRank).toBe(64);
    expect(() => planDeployment({ parallel: config, model: DSV3, hardware: { nvlinkGBps: -1 } })).toThrow(/nvlinkGBps -1: must be a number > 0/);
  });

  it('says when the weights do not fit', () => {
    const plan = planDeployment({ parallel: { tp: 8, epSize: 8 }, model: MODEL_PRESETS['kimi-k2']!, hardware: { memoryBytes: 80e9 } });
    expect(plan.memory.fits).toBe(false);
    expect(plan.memory.kvTokens).toBe(0);
  });

  it('validates a hand-made model', () => {
    const broken = { ...DSV3, topK: 300 } as ModelConfig;
    expect(() => planDeployment({ parallel: WIDE_EP, model: broken })).toThrow(/topK must be at most numRoutedExperts \(256\)/);
  });
});
