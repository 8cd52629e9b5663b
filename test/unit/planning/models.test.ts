import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { loadModelConfig, normalizeModelConfig, resolveModel } from '../../../src/planning/model-file.js';
import { MODEL_PRESETS, findModelPreset, kvElementsPerTokenPerLayer, modelWeights, numMoeLayers } from '../../../src/planning/models.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../../fixtures/planning/${name}`, import.meta.url));

describe('model presets', () => {
  it('has DeepSeek-V3/R1, Qwen3-235B-A22B and Kimi-K2', () => {
    expect(Object.keys(MODEL_PRESETS)).toEqual(['deepseek-v3', 'deepseek-r1', 'qwen3-235b-a22b', 'kimi-k2']);
  });

  it('finds presets by common spellings', () => {
    expect(findModelPreset('DeepSeek-V3')?.name).toBe('DeepSeek-V3');
    expect(findModelPreset('deepseek-ai/DeepSeek-R1')?.name).toBe('DeepSeek-R1');
    expect(findModelPreset('Qwen/Qwen3-235B-A22B')?.name).toBe('Qwen3-235B-A22B');
    expect(findModelPreset('moonshotai/Kimi-K2-Instruct')?.name).toBe('Kimi-K2');
    expect(findModelPreset('llama')).toBeUndefined();
  });

  // Published totals: DeepSeek-V3 671B (37B active), Qwen3 235B (22B active), Kimi-K2 1T (32B active).
  it.each([
    ['deepseek-v3', 671e9, 37.5e9],
    ['qwen3-235b-a22b', 235e9, 22.2e9],
    ['kimi-k2', 1026e9, 32.9e9],
  ])('%s: parameter counts derived from the shapes match the published totals', (key, total, active) => {
    const w = modelWeights(MODEL_PRESETS[key]!);
    expect(w.totalParams / total).toBeCloseTo(1, 2);
    expect(w.activeParams / active).toBeCloseTo(1, 2);
  });

  it('counts DeepSeek-V3 bytes: FP8 experts with 128×128 float32 scales, BF16 embeddings', () => {
    const m = MODEL_PRESETS['deepseek-v3']!;
    const w = modelWeights(m);
    // One expert: 3 matrices of 7168×2048 FP8 + 56×16 scales of 4 bytes each.
    expect(w.expertBytes).toBe(3 * (7168 * 2048 + 56 * 16 * 4));
    expect(w.numMoeLayers).toBe(58);
    expect(w.routedExpertBytes).toBe(58 * 256 * w.expertBytes);
    expect(w.parts.embedding).toBe(129280 * 7168 * 2);
    expect(w.parts.lmHead).toBe(w.parts.embedding);
    expect(w.totalBytes).toBe(w.denseBytes + w.routedExpertBytes);
  });

  it('gives the KV elements per token per layer of MLA and GQA', () => {
    expect(kvElementsPerTokenPerLayer(MODEL_PRESETS['deepseek-v3']!)).toBe(512 + 64);
    expect(kvElementsPerTokenPerLayer(MODEL_PRESETS['qwen3-235b-a22b']!)).toBe(2 * 4 * 128);
    expect(numMoeLayers(MODEL_PRESETS['kimi-k2']!)).toBe(60);
  });

  it('counts a tiny model by hand', () => {
    const m = loadModelConfig(fixture('tiny-model.json'));
    const w = modelWeights(m);
    const h = 128;
    const attn = 4 * 32 * h + 2 * 2 * 32 * h + h * 4 * 32; // q, k, v, o
    const expert = 3 * h * 64;
    const dense = 3 * h * 256;
    const norms = 3 * 2 * h + h;
    const embed = 1000 * h;
    const router = 2 * 8 * h;
    expect(w.totalParams).toBe(2 * embed + 3 * attn + norms + dense + 2 * expert + router + 2 * 8 * expert);
    expect(w.activeParams).toBe(2 * embed + 3 * attn + norms + dense + 2 * expert + router + 2 * 2 * expert);
    expect(w.totalBytes).toBe(2 * w.totalParams);
  });
});

describe('user models from JSON', () => {
  it('loads the camelCase shape and fills defaults', () => {
    const m = loadModelConfig(fixture('tiny-model.json'));
    expect(m).toMatchObject({ name: 'tiny-moe', numLayers: 3, topK: 2, tieWordEmbeddings: false });
    expect(m.attention).toEqual({ kind: 'gqa', numHeads: 4, numKvHeads: 2, headDim: 32, qkNorm: false });
    const minimal = normalizeModelConfig({
      numLayers: 2,
      hiddenSize: 64,
      moeIntermediateSize: 32,
      numRoutedExperts: 4,
      topK: 2,
      vocabSize: 10,
      attention: { kind: 'gqa', numHeads: 2 },
    });
    expect(minimal).toMatchObject({ name: 'model', firstKDenseLayers: 0, numSharedExperts: 0, numExpertGroups: 1, topkGroup: 1 });
    expect(minimal.dtypes).toEqual({ weightBytes: 2, weightBlockSize: 0, unquantizedBytes: 2, kvCacheBytes: 2 });
  });

  it('reads a Hugging Face DeepSeek-V3 config.json as the preset', () => {
    const m = loadModelConfig(fixture('hf-deepseek-v3-config.json'));
    expect({ ...m, name: 'x' }).toEqual({ ...MODEL_PRESETS['deepseek-v3'], name: 'x' });
  });

  it('reads a Hugging Face Qwen3-MoE config.json as the preset', () => {
    const m = loadModelConfig(fixture('hf-qwen3-moe-config.json'));
    expect({ ...m, name: 'x' }).toEqual({ ...MODEL_PRESETS['qwen3-235b-a22b'], name: 'x' });
  });

  it('names the bad field', () => {
    const base = { numLayers: 2, hiddenSize: 64, moeIntermediateSize: 32, numRoutedExperts: 4, topK: 2, vocabSize: 10, attention: { kind: 'mla', numHeads: 2, kvLoraRank: 8, qkNopeHeadDim: 8, qkRopeHeadDim: 8, vHeadDim: 8 } };
    expect(() => normalizeModelConfig({ ...base, topK: 5 }, 'f.json')).toThrow(/f.json: topK must be at most numRoutedExperts \(4\), got 5/);
    expect(() => normalizeModelConfig({ ...base, hiddenSize: -1 })).toThrow(/hiddenSize must be an integer >= 1/);
    expect(() => normalizeModelConfig({ ...base, numExpertGroups: 3 })).toThrow(/numExpertGroups must be a divisor of numRoutedExperts/);
    expect(() => normalizeModelConfig({ ...base, firstKDenseLayers: 2, intermediateSize: 8 })).toThrow(/firstKDenseLayers must be less than numLayers/);
    expect(() => normalizeModelConfig({ ...base, attention: { kind: 'mha' } })).toThrow(/attention.kind must be 'mla' or 'gqa'/);
    expect(() => normalizeModelConfig([])).toThrow(/expected a JSON object/);
    expect(() => normalizeModelConfig({ ...base, attention: { kind: 'mla', numHeads: 2 } })).toThrow(/kvLoraRank must be an integer >= 1, got undefined/);
  });

  it('reports unreadable files, bad JSON and non-MoE configs', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wideep-models-'));
    writeFileSync(join(dir, 'bad.json'), '{ nope');
    writeFileSync(join(dir, 'dense.json'), JSON.stringify({ num_hidden_layers: 2, hidden_size: 8 }));
    expect(() => loadModelConfig(join(dir, 'missing.json'))).toThrow(/cannot read the file \(ENOENT\)/);
    expect(() => loadModelConfig(join(dir, 'bad.json'))).toThrow(/not valid JSON/);
    expect(() => loadModelConfig(join(dir, 'dense.json'))).toThrow(/not a MoE model/);
  });

  it('resolves a preset name or a file path', () => {
    expect(resolveModel('kimi-k2').name).toBe('Kimi-K2');
    expect(resolveModel(fixture('tiny-model.json')).name).toBe('tiny-moe');
    expect(() => resolveModel('gpt-5')).toThrow(/--model gpt-5: not a preset \(deepseek-v3, deepseek-r1, qwen3-235b-a22b, kimi-k2\)/);
  });
});
