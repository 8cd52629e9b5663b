import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { WideepError } from '../../../src/errors.js';
import { ParallelConfig } from '../../../src/planning/config.js';
import { balancedPacking, rebalanceExperts } from '../../../src/planning/eplb.js';
import { ExpertLocationMap, seededRandom } from '../../../src/planning/expert-location.js';
import { processGroups, rankInfo, type GroupSizes } from '../../../src/planning/groups.js';
import { MAX_GPUS, MAX_PHYSICAL_EXPERTS, MAX_PLACEMENT_ENTRIES, MAX_ROUTED_EXPERTS } from '../../../src/planning/limits.js';
import { fromHuggingFaceConfig, normalizeModelConfig } from '../../../src/planning/model-file.js';
import { MODEL_PRESETS } from '../../../src/planning/models.js';
import { planDeployment } from '../../../src/planning/planner.js';

const fixture = (name: string): Record<string, unknown> =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`../../fixtures/planning/${name}`, import.meta.url)), 'utf8')) as Record<string, unknown>;

const TINY = fixture('tiny-model.json');

/** Runs `f` and returns what it threw, which must be a WideepError with `code`. */
function thrown(f: () => unknown, code = 'ERR_INVALID_ARG'): WideepError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(WideepError);
    expect((e as WideepError).code).toBe(code);
    return e as WideepError;
  }
  throw new Error('expected a throw');
}

describe('model sizes', () => {
  it.each([1e8, 2 ** 40])('refuses %d routed experts at once, naming the limit', (n) => {
    const started = performance.now();
    const err = thrown(() => normalizeModelConfig({ ...TINY, numRoutedExperts: n }, 'big.json'));
    expect(err.message).toBe(`big.json: numRoutedExperts must be an integer in [1, ${MAX_ROUTED_EXPERTS}], got ${n}`);
    expect(performance.now() - started).toBeLessThan(100);
  });

  it('accepts the limit itself', () => {
    expect(normalizeModelConfig({ ...TINY, numRoutedExperts: MAX_ROUTED_EXPERTS, numExpertGroups: 1, topkGroup: 1 }).numRoutedExperts).toBe(
      MAX_ROUTED_EXPERTS,
    );
  });

  it('refuses integers past 2^53, where counts stop being exact', () => {
    expect(thrown(() => normalizeModelConfig({ ...TINY, hiddenSize: 2 ** 60 })).message).toMatch(/hiddenSize must be an integer >= 1, got 1152921504606847000/);
  });
});

describe('checkpoint dtypes', () => {
  const hf = fixture('hf-qwen3-moe-config.json');

  it('refuses an unknown torch_dtype, naming the accepted ones', () => {
    expect(thrown(() => fromHuggingFaceConfig({ ...hf, torch_dtype: 'int4' }, 'config.json')).message).toBe(
      'config.json: torch_dtype must be one of bfloat16, float16, float32, got "int4"',
    );
    expect(thrown(() => fromHuggingFaceConfig({ ...hf, torch_dtype: 'constructor' }, 'config.json')).message).toMatch(/got "constructor"/);
  });

  it('reads the newer `dtype` field the same way', () => {
    const { torch_dtype: _, ...rest } = hf;
    expect((fromHuggingFaceConfig({ ...rest, dtype: 'float32' }, 'c.json') as { dtypes: { unquantizedBytes: number } }).dtypes.unquantizedBytes).toBe(4);
    expect(thrown(() => fromHuggingFaceConfig({ ...rest, dtype: 'float8_e4m3fn' }, 'c.json')).message).toMatch(/dtype must be one of/);
  });

  it('refuses a quantization other than fp8 rather than counting it as unquantized', () => {
    const awq = { ...hf, quantization_config: { quant_method: 'awq', bits: 4 } };
    expect(thrown(() => fromHuggingFaceConfig(awq, 'config.json')).message).toMatch(/quantization_config\.quant_method must be 'fp8' .*got "awq"/);
  });
});

describe('expert loads', () => {
  const params = { numReplicas: 4, numGroups: 1, numNodes: 1, numGpus: 2 };

  it('rebalanceExperts refuses loads whose float32 sum overflows, naming the first bad entry', () => {
    const err = thrown(() => rebalanceExperts([[1, 2, 3], [4, 1e308, 6]], params));
    expect(err.message).toMatch(/^weight: \[1\]\[1\] is 1e\+308, which takes row 1's total load past 1e\+38/);
    // Each value alone fits; their sum does not.
    expect(thrown(() => rebalanceExperts([[9e37, 9e37, 1]], params)).message).toMatch(/\[0\]\[1\] is 9e\+37/);
  });

  it('refuses non-finite and negative loads', () => {
    expect(thrown(() => rebalanceExperts([[1, Number.POSITIVE_INFINITY, 3]], params)).message).toMatch(/\[0\]\[1\] is null, expected a finite number >= 0/);
    expect(thrown(() => rebalanceExperts([[1, 2, Number.NaN]], params)).message).toMatch(/\[0\]\[2\] is null/);
    expect(thrown(() => rebalanceExperts([[1, -2, 3]], params)).message).toMatch(/\[0\]\[1\] is -2/);
  });

  it('still balances large finite loads', () => {
    const r = rebalanceExperts([[3e37, 1e37, 1e37]], params);
    expect(r.logcnt[0]).toEqual([2, 1, 1]);
  });
});

describe('placement sizes', () => {
  it('rebalanceExperts refuses more replicas than the limit before allocating', () => {
    const started = performance.now();
    expect(thrown(() => rebalanceExperts([[1, 2]], { numReplicas: 1e8, numGroups: 1, numNodes: 1, numGpus: 1 })).message).toBe(
      `numReplicas (--replicas): expected an integer in [1, ${MAX_PHYSICAL_EXPERTS}], got number 100000000`,
    );
    expect(performance.now() - started).toBeLessThan(100);
  });

  it('rebalanceExperts refuses a log2phy table past the limit', () => {
    const loads = Array.from({ length: 64 }, () => Array.from({ length: 256 }, (_, e) => e + 1));
    const err = thrown(() => rebalanceExperts(loads, { numReplicas: 512, numGroups: 1, numNodes: 1, numGpus: 8 }));
    expect(err.message).toMatch(/^numReplicas \(--replicas\) 512: the placement table would hold 64 layers × 256 experts × 257 replica columns = 4\.21e\+6 entries, more than the limit of 4,194,304; use fewer replicas$/);
  });

  it('ExpertLocationMap refuses a table past the limit', () => {
    const shape = { numLayers: 65, numLogical: MAX_ROUTED_EXPERTS, numPhysical: MAX_ROUTED_EXPERTS, numRanks: 1 };
    expect(shape.numLayers * shape.numLogical).toBeGreaterThan(MAX_PLACEMENT_ENTRIES);
    expect(thrown(() => ExpertLocationMap.trivial(shape)).message).toMatch(/expert location numPhysical 65536: the placement table would hold 65 layers/);
  });

  it('ExpertLocationMap.fromEplb refuses a slot that log2phy lists twice or not at all', () => {
    // Slot 1 listed for both experts: phy2log alone cannot show it.
    const twice = { phy2log: [[0, 1, 0]], log2phy: [[[0, 1], [1, -1]]], logcnt: [[2, 1]] };
    expect(thrown(() => ExpertLocationMap.fromEplb(twice, { numRanks: 1 })).message).toMatch(/layer 0: log2phy lists slot 1 more than once/);
    const missing = { phy2log: [[0, 1, 0]], log2phy: [[[0, -1], [1, -1]]], logcnt: [[1, 1]] };
    expect(thrown(() => ExpertLocationMap.fromEplb(missing, { numRanks: 1 })).message).toMatch(/layer 0: log2phy lists no expert in slot 2/);
  });

  it('planDeployment refuses redundant experts whose table would pass the limit, naming the flag', () => {
    const err = thrown(() =>
      planDeployment({ parallel: { tp: 8, epSize: 8, epNumRedundantExperts: 512 }, model: MODEL_PRESETS['deepseek-v3']! }),
    );
    expect(err.message).toMatch(/^--ep-num-redundant-experts 512: the placement table would hold 58 layers × 256 experts × 513 replica columns/);
  });

  it('planDeployment plans the largest model the limits allow within seconds', () => {
    const model = normalizeModelConfig({ ...TINY, numRoutedExperts: MAX_ROUTED_EXPERTS, numLayers: 65, numExpertGroups: 1, topkGroup: 1 });
    const started = performance.now();
    const plan = planDeployment({ parallel: { tp: 8, epSize: 8 }, model });
    expect(plan.placement.phy2log).toHaveLength(64);
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});

describe('GPU counts', () => {
  it('refuses tp × pp × dp past the limit, and each size past it', () => {
    expect(thrown(() => ParallelConfig.fromOptions({ tp: 65536, ppSize: 2 })).message).toMatch(
      new RegExp(`^--tp 65536 × --pp-size 2 = 131072 GPUs: more than the limit of ${MAX_GPUS}$`),
    );
    expect(thrown(() => ParallelConfig.fromOptions({ tp: 8, dpSize: 2 ** 20 })).message).toMatch(/--dp-size 1048576: must be an integer in \[1, 65536\]/);
    expect(thrown(() => ParallelConfig.fromOptions({ epNumRedundantExperts: 1e6 })).message).toMatch(/--ep-num-redundant-experts 1000000: must be an integer in \[0, 65536\]/);
  });

  it('lists the process groups of the largest world quickly', () => {
    const c = ParallelConfig.fromOptions({ tp: MAX_GPUS, dpSize: MAX_GPUS, enableDpAttention: true, moeA2aBackend: 'deepep', gpusPerNode: 8 });
    const started = performance.now();
    const groups = c.processGroups();
    expect(performance.now() - started).toBeLessThan(2_000);
    expect(groups.tp).toHaveLength(1);
    expect(groups.attnTp).toHaveLength(MAX_GPUS);
    expect(groups.moeEp[0]).toHaveLength(MAX_GPUS);
  });

  it('lists the same groups as each rank sees', () => {
    const sizes: GroupSizes = { worldSize: 32, gpusPerNode: 8, tp: 8, pp: 2, dpReplicas: 2, attnTpSize: 4, moeEpSize: 2, moeTpSize: 2, moeDpSize: 2 };
    const groups = processGroups(sizes);
    for (let rank = 0; rank < sizes.worldSize; rank++) {
      const info = rankInfo(sizes, rank);
      for (const kind of Object.keys(groups) as Array<keyof typeof groups>) {
        expect(groups[kind].filter((g) => g.includes(rank)), `${kind} of rank ${rank}`).toEqual([info.groups[kind]]);
      }
    }
  });
});

describe('balancedPacking', () => {
  /** The rule, written plainly: each item, heaviest first, into the lightest pack with room (the first on ties). */
  function reference(weights: number[], numPacks: number): { pack: number[]; rankInPack: number[] } {
    const perPack = weights.length / numPacks;
    const order = weights.map((_, i) => i).sort((a, b) => Math.fround(weights[b]!) - Math.fround(weights[a]!) || a - b);
    const load = new Array<number>(numPacks).fill(0);
    const count = new Array<number>(numPacks).fill(0);
    const pack: number[] = [];
    const rankInPack: number[] = [];
    for (const item of order) {
      let best = -1;
      for (let p = 0; p < numPacks; p++) if (count[p]! < perPack && (best < 0 || load[p]! < load[best]!)) best = p;
      pack[item] = best;
      rankInPack[item] = count[best]!++;
      load[best] = Math.fround(load[best]! + Math.fround(weights[item]!));
    }
    return { pack, rankInPack };
  }

  it('places exactly as the plain rule does, ties included', () => {
    const random = seededRandom(7);
    for (let trial = 0; trial < 200; trial++) {
      const numPacks = 1 + Math.floor(random() * 12);
      const perPack = 2 + Math.floor(random() * 6);
      // Small integers make ties between loads frequent.
      const weights = Array.from({ length: numPacks * perPack }, () => Math.floor(random() * 5));
      expect(balancedPacking(weights, numPacks), `trial ${trial}`).toEqual(reference(weights, numPacks));
    }
  });

  it('packs the most slots the limits allow quickly', () => {
    const random = seededRandom(3);
    const weights = Array.from({ length: MAX_PHYSICAL_EXPERTS }, () => random());
    const started = performance.now();
    balancedPacking(weights, MAX_PHYSICAL_EXPERTS / 2);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe('planDeployment fit', () => {
  it('says that a plan does not fit, and why', () => {
    const plan = planDeployment({ parallel: {}, model: MODEL_PRESETS['deepseek-v3']!, hardware: { memoryBytes: 1e9 } });
    expect(plan.fits).toBe(false);
    expect(plan.memory.fits).toBe(false);
    expect(plan.fitReason).toMatch(/^the weights need [\d.]+ GiB per GPU, more than the static budget of 0\.75 GiB \(H200 with 1\.0 GB × mem-fraction-static 0\.8\); use more GPUs/);
  });

  it('does not fit when the KV budget holds no token', () => {
    const model = normalizeModelConfig(TINY);
    const fitting = planDeployment({ parallel: {}, model });
    // Leave half a token of KV cache after the weights.
    const memoryBytes = (fitting.memory.weightBytes + fitting.memory.kvBytesPerToken / 2) / fitting.memory.memFractionStatic;
    const plan = planDeployment({ parallel: {}, model, hardware: { memoryBytes } });
    expect(plan.memory.kvBudgetBytes).toBeGreaterThan(0);
    expect(plan.fits).toBe(false);
    expect(plan.fitReason).toMatch(/bytes left after the weights hold no token of KV cache/);
  });

  it('fits with room for the KV cache', () => {
    const plan = planDeployment({ parallel: { tp: 8, epSize: 8 }, model: MODEL_PRESETS['deepseek-v3']! });
    expect(plan).toMatchObject({ fits: true, fitReason: null });
  });
});
