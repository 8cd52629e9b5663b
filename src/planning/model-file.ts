/**
 * User models: a JSON file, either in wideep's own camelCase `ModelConfig`
 * shape or a Hugging Face `config.json` (DeepSeek-V3/Kimi-K2 and Qwen3-MoE
 * field names), checked field by field.
 */
import { basename } from 'node:path';

import { WideepError } from '../errors.js';
import { readJsonFile } from './json-file.js';
import { MAX_ROUTED_EXPERTS } from './limits.js';
import { MODEL_PRESETS, findModelPreset, type ModelConfig, type ModelDtypes } from './models.js';

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bad(source: string, field: string, expected: string, got: unknown): WideepError {
  return new WideepError('ERR_INVALID_ARG', `${source}: ${field} must be ${expected}, got ${JSON.stringify(got) ?? String(got)}`);
}

function int(source: string, o: Json, field: string, min: number, fallback?: number, max?: number): number {
  const v = o[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || (max !== undefined && v > max)) {
    throw bad(source, field, max === undefined ? `an integer >= ${min}` : `an integer in [${min}, ${max}]`, o[field]);
  }
  return v;
}

function bool(source: string, o: Json, field: string, fallback: boolean): boolean {
  const v = o[field] ?? fallback;
  if (typeof v !== 'boolean') throw bad(source, field, 'true or false', v);
  return v;
}

const BF16_DTYPES: ModelDtypes = { weightBytes: 2, weightBlockSize: 0, unquantizedBytes: 2, kvCacheBytes: 2 };

/**
 * Checks a camelCase model description and fills the optional fields
 * (`firstKDenseLayers` 0, `numSharedExperts` 0, one expert group, untied
 * embeddings, BF16 everywhere). Throws `ERR_INVALID_ARG` naming the field.
 */
export function normalizeModelConfig(value: unknown, source = 'model'): ModelConfig {
  if (!isObject(value)) throw new WideepError('ERR_INVALID_ARG', `${source}: expected a JSON object describing the model`);
  const o = value;
  const name = o.name ?? source;
  if (typeof name !== 'string' || name === '') throw bad(source, 'name', 'a non-empty string', o.name);
  const numLayers = int(source, o, 'numLayers', 1);
  const firstKDenseLayers = int(source, o, 'firstKDenseLayers', 0, 0);
  if (firstKDenseLayers >= numLayers) throw bad(source, 'firstKDenseLayers', `less than numLayers (${numLayers})`, firstKDenseLayers);
  const hiddenSize = int(source, o, 'hiddenSize', 1);
  const intermediateSize = int(source, o, 'intermediateSize', firstKDenseLayers > 0 ? 1 : 0, 0);
  const moeIntermediateSize = int(source, o, 'moeIntermediateSize', 1);
  const numRoutedExperts = int(source, o, 'numRoutedExperts', 1, undefined, MAX_ROUTED_EXPERTS);
  const numSharedExperts = int(source, o, 'numSharedExperts', 0, 0);
  const topK = int(source, o, 'topK', 1);
  if (topK > numRoutedExperts) throw bad(source, 'topK', `at most numRoutedExperts (${numRoutedExperts})`, topK);
  const numExpertGroups = int(source, o, 'numExpertGroups', 1, 1);
  if (numRoutedExperts % numExpertGroups !== 0) {
    throw bad(source, 'numExpertGroups', `a divisor of numRoutedExperts (${numRoutedExperts})`, numExpertGroups);
  }
  const topkGroup = int(source, o, 'topkGroup', 1, numExpertGroups);
  if (topkGroup > numExpertGroups) throw bad(source, 'topkGroup', `at most numExpertGroups (${numExpertGroups})`, topkGroup);
  const vocabSize = int(source, o, 'vocabSize', 1);
  const tieWordEmbeddings = bool(source, o, 'tieWordEmbeddings', false);

  const a = o.attention;
  if (!isObject(a)) throw bad(source, 'attention', "an object with kind 'mla' or 'gqa'", a);
  let attention: ModelConfig['attention'];
  if (a.kind === 'mla') {
    attention = {
      kind: 'mla',
      numHeads: int(source, a, 'numHeads', 1),
      qLoraRank: int(source, a, 'qLoraRank', 0, 0),
      kvLoraRank: int(source, a, 'kvLoraRank', 1),
      qkNopeHeadDim: int(source, a, 'qkNopeHeadDim', 0),
      qkRopeHeadDim: int(source, a, 'qkRopeHeadDim', 1),
      vHeadDim: int(source, a, 'vHeadDim', 1),
    };
  } else if (a.kind === 'gqa') {
    const numHeads = int(source, a, 'numHeads', 1);
    const numKvHeads = int(source, a, 'numKvHeads', 1, numHeads);
    if (numHeads % numKvHeads !== 0) throw bad(source, 'attention.numKvHeads', `a divisor of numHeads (${numHeads})`, numKvHeads);
    attention = {
      kind: 'gqa',
      numHeads,
      numKvHeads,
      headDim: int(source, a, 'headDim', 1, Math.floor(hiddenSize / numHeads)),
      qkNorm: bool(source, a, 'qkNorm', false),
    };
  } else {
    throw bad(source, 'attention.kind', "'mla' or 'gqa'", a.kind);
  }

  const d = o.dtypes ?? BF16_DTYPES;
  if (!isObject(d)) throw bad(source, 'dtypes', 'an object', d);
  const dtypes: ModelDtypes = {
    weightBytes: int(source, d, 'weightBytes', 1, BF16_DTYPES.weightBytes),
    weightBlockSize: int(source, d, 'weightBlockSize', 0, 0),
    unquantizedBytes: int(source, d, 'unquantizedBytes', 1, BF16_DTYPES.unquantizedBytes),
    kvCacheBytes: int(source, d, 'kvCacheBytes', 1, BF16_DTYPES.kvCacheBytes),
  };
  return {
    name,
    numLayers,
    firstKDenseLayers,
    hiddenSize,
    intermediateSize,
    moeIntermediateSize,
    numRoutedExperts,
    numSharedExperts,
    topK,
    numExpertGroups,
    topkGroup,
    vocabSize,
    tieWordEmbeddings,
    attention,
    dtypes,
  };
}

/** Bytes per element of the checkpoint dtypes wideep knows. */
const DTYPE_BYTES: ReadonlyMap<string, number> = new Map([
  ['bfloat16', 2],
  ['float16', 2],
  ['float32', 4],
]);

/** Bytes per element of the unquantized weights; an unknown dtype is refused rather than guessed. */
function checkpointDtypeBytes(hf: Json, source: string): number {
  // Recent transformers releases write `dtype`, older ones `torch_dtype`.
  const field = hf.torch_dtype !== undefined ? 'torch_dtype' : 'dtype';
  const name = hf[field] ?? 'bfloat16';
  const bytes = typeof name === 'string' ? DTYPE_BYTES.get(name) : undefined;
  if (bytes === undefined) throw bad(source, field, `one of ${[...DTYPE_BYTES.keys()].join(', ')}`, name);
  return bytes;
}

/** Whether the linear weights are FP8; a quantization other than FP8 is refused rather than taken as unquantized. */
function isFp8Checkpoint(q: Json | undefined, source: string): boolean {
  if (q === undefined) return false;
  if (q.quant_method === 'fp8') return true;
  throw bad(
    source,
    'quantization_config.quant_method',
    "'fp8' (the only quantization wideep reads from a config.json; describe other models in wideep's own shape, with dtypes.weightBytes)",
    q.quant_method,
  );
}

/** Translates a Hugging Face `config.json` into the camelCase shape. */
export function fromHuggingFaceConfig(hf: Json, source: string): unknown {
  const experts = hf.n_routed_experts ?? hf.num_experts;
  if (experts === undefined) {
    throw new WideepError('ERR_INVALID_ARG', `${source}: not a MoE model (no n_routed_experts or num_experts)`);
  }
  const unquantized = checkpointDtypeBytes(hf, source);
  const q = isObject(hf.quantization_config) ? hf.quantization_config : undefined;
  const fp8 = isFp8Checkpoint(q, source);
  const block = fp8 && Array.isArray(q?.weight_block_size) ? Number(q.weight_block_size[0]) : 0;
  const heads = hf.num_attention_heads;
  const attention =
    hf.kv_lora_rank !== undefined && hf.kv_lora_rank !== null
      ? {
          kind: 'mla',
          numHeads: heads,
          qLoraRank: hf.q_lora_rank ?? 0,
          kvLoraRank: hf.kv_lora_rank,
          qkNopeHeadDim: hf.qk_nope_head_dim,
          qkRopeHeadDim: hf.qk_rope_head_dim,
          vHeadDim: hf.v_head_dim,
        }
      : {
          kind: 'gqa',
          numHeads: heads,
          numKvHeads: hf.num_key_value_heads ?? heads,
          headDim: hf.head_dim,
          qkNorm: String(hf.model_type ?? '').startsWith('qwen3'),
        };
  const name = (typeof hf._name_or_path === 'string' && hf._name_or_path) || basename(source).replace(/\.json$/, '');
  return {
    name,
    numLayers: hf.num_hidden_layers,
    firstKDenseLayers: hf.first_k_dense_replace ?? (Array.isArray(hf.mlp_only_layers) ? hf.mlp_only_layers.length : 0),
    hiddenSize: hf.hidden_size,
    intermediateSize: hf.intermediate_size ?? 0,
    moeIntermediateSize: hf.moe_intermediate_size,
    numRoutedExperts: experts,
    numSharedExperts: hf.n_shared_experts ?? 0,
    topK: hf.num_experts_per_tok,
    numExpertGroups: hf.n_group ?? 1,
    topkGroup: hf.topk_group ?? hf.n_group ?? 1,
    vocabSize: hf.vocab_size,
    tieWordEmbeddings: hf.tie_word_embeddings ?? false,
    attention,
    dtypes: {
      weightBytes: fp8 ? 1 : unquantized,
      weightBlockSize: block,
      unquantizedBytes: unquantized,
      kvCacheBytes: unquantized,
    },
  };
}

/**
 * Loads a model description from a JSON file: wideep's camelCase shape, or a
 * Hugging Face `config.json` (recognised by `num_hidden_layers`).
 */
export function loadModelConfig(path: string): ModelConfig {
  const value = readJsonFile(path, 'model file');
  if (isObject(value) && 'num_hidden_layers' in value) return normalizeModelConfig(fromHuggingFaceConfig(value, path), path);
  return normalizeModelConfig(value, path);
}

/** A preset by name (see `findModelPreset`), else a JSON file at that path. */
export function resolveModel(nameOrPath: string): ModelConfig {
  const preset = findModelPreset(nameOrPath);
  if (preset) return preset;
  if (!/[/\\]|\.json$/i.test(nameOrPath)) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `--model ${nameOrPath}: not a preset (${Object.keys(MODEL_PRESETS).join(', ')}) and not a path to a .json file`,
    );
  }
  return loadModelConfig(nameOrPath);
}
