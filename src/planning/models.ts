/**
 * MoE model shapes: the presets, and the parameter and byte counts derived
 * from them. Totals are computed from the shapes, never hard-coded, so a user
 * model from a JSON file (`model-file.ts`) gets the same treatment.
 */

/** Multi-head latent attention (DeepSeek-V2/V3, Kimi-K2). */
export interface MlaAttention {
  kind: 'mla';
  numHeads: number;
  /** Rank of the low-rank query projection; 0 means a plain `q_proj`. */
  qLoraRank: number;
  kvLoraRank: number;
  qkNopeHeadDim: number;
  qkRopeHeadDim: number;
  vHeadDim: number;
}

/** Grouped-query attention (Qwen3, Llama-style). */
export interface GqaAttention {
  kind: 'gqa';
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Per-head RMSNorm on q and k (Qwen3). */
  qkNorm: boolean;
}

export interface ModelDtypes {
  /** Bytes per element of the linear-layer weights (1 for FP8, 2 for BF16). */
  weightBytes: number;
  /** Square block size of float32 weight scales (128 for DeepSeek's FP8); 0 for none. */
  weightBlockSize: number;
  /** Bytes per element of the unquantized weights: embeddings, LM head, norms, router. */
  unquantizedBytes: number;
  /** Bytes per element of the KV cache. */
  kvCacheBytes: number;
}

export interface ModelConfig {
  name: string;
  numLayers: number;
  /** The first layers use a dense MLP instead of MoE (`first_k_dense_replace`). */
  firstKDenseLayers: number;
  hiddenSize: number;
  /** Intermediate size of the dense MLP layers. */
  intermediateSize: number;
  /** Intermediate size of one routed (and shared) expert. */
  moeIntermediateSize: number;
  numRoutedExperts: number;
  numSharedExperts: number;
  topK: number;
  /** Expert groups for group-limited routing (`n_group`); 1 for none. */
  numExpertGroups: number;
  /** Groups a token may pick from (`topk_group`). */
  topkGroup: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
  attention: MlaAttention | GqaAttention;
  dtypes: ModelDtypes;
}

const FP8_BLOCK_SCALED: ModelDtypes = { weightBytes: 1, weightBlockSize: 128, unquantizedBytes: 2, kvCacheBytes: 2 };
const BF16: ModelDtypes = { weightBytes: 2, weightBlockSize: 0, unquantizedBytes: 2, kvCacheBytes: 2 };

/*
 * The presets. The figures come from the public Hugging Face `config.json`
 * files of each model (deepseek-ai/DeepSeek-V3, Qwen/Qwen3-235B-A22B,
 * moonshotai/Kimi-K2-Instruct). DeepSeek's multi-token-prediction layer is
 * left out: it is not part of serving without speculative decoding.
 */

/** DeepSeek-V3 (and R1, which shares the architecture): 671B total, FP8 block-scaled weights. */
const DEEPSEEK_V3: ModelConfig = {
  name: 'DeepSeek-V3',
  numLayers: 61,
  firstKDenseLayers: 3,
  hiddenSize: 7168,
  intermediateSize: 18432,
  moeIntermediateSize: 2048,
  numRoutedExperts: 256,
  numSharedExperts: 1,
  topK: 8,
  numExpertGroups: 8,
  topkGroup: 4,
  vocabSize: 129280,
  tieWordEmbeddings: false,
  attention: { kind: 'mla', numHeads: 128, qLoraRank: 1536, kvLoraRank: 512, qkNopeHeadDim: 128, qkRopeHeadDim: 64, vHeadDim: 128 },
  dtypes: FP8_BLOCK_SCALED,
};

/** Qwen3-235B-A22B: BF16, no shared expert, no dense layers, GQA. */
const QWEN3_235B_A22B: ModelConfig = {
  name: 'Qwen3-235B-A22B',
  numLayers: 94,
  firstKDenseLayers: 0,
  hiddenSize: 4096,
  intermediateSize: 12288,
  moeIntermediateSize: 1536,
  numRoutedExperts: 128,
  numSharedExperts: 0,
  topK: 8,
  numExpertGroups: 1,
  topkGroup: 1,
  vocabSize: 151936,
  tieWordEmbeddings: false,
  attention: { kind: 'gqa', numHeads: 64, numKvHeads: 4, headDim: 128, qkNorm: true },
  dtypes: BF16,
};

/** Kimi-K2: about 1T total, DeepSeek-V3's architecture with 384 experts and 64 heads. */
const KIMI_K2: ModelConfig = {
  name: 'Kimi-K2',
  numLayers: 61,
  firstKDenseLayers: 1,
  hiddenSize: 7168,
  intermediateSize: 18432,
  moeIntermediateSize: 2048,
  numRoutedExperts: 384,
  numSharedExperts: 1,
  topK: 8,
  numExpertGroups: 1,
  topkGroup: 1,
  vocabSize: 163840,
  tieWordEmbeddings: false,
  attention: { kind: 'mla', numHeads: 64, qLoraRank: 1536, kvLoraRank: 512, qkNopeHeadDim: 128, qkRopeHeadDim: 64, vHeadDim: 128 },
  dtypes: FP8_BLOCK_SCALED,
};

/** Built-in models by canonical key. `findModelPreset` also takes common spellings. */
export const MODEL_PRESETS: Readonly<Record<string, Readonly<ModelConfig>>> = Object.freeze({
  'deepseek-v3': DEEPSEEK_V3,
  'deepseek-r1': { ...DEEPSEEK_V3, name: 'DeepSeek-R1' },
  'qwen3-235b-a22b': QWEN3_235B_A22B,
  'kimi-k2': KIMI_K2,
});

/** Other names people use for the presets (Hugging Face repository names, dated releases). */
const PRESET_ALIASES: Readonly<Record<string, string>> = {
  'deepseek-v3-0324': 'deepseek-v3',
  'deepseek-r1-0528': 'deepseek-r1',
  'kimi-k2-instruct': 'kimi-k2',
  'kimi-k2-base': 'kimi-k2',
  'qwen3-235b-a22b-instruct-2507': 'qwen3-235b-a22b',
};

/**
 * The preset for `name`, ignoring case, an organisation prefix
 * (`deepseek-ai/DeepSeek-V3`) and `_` versus `-`; undefined if there is none.
 */
export function findModelPreset(name: string): ModelConfig | undefined {
  const key = name.trim().toLowerCase().replace(/^.*\//, '').replace(/[_\s]+/g, '-');
  return MODEL_PRESETS[PRESET_ALIASES[key] ?? key];
}

/** Layers with a MoE block. */
export function numMoeLayers(m: ModelConfig): number {
  return m.numLayers - m.firstKDenseLayers;
}

/** Elements cached per token per layer: the MLA latent plus rope key, or K and V of every KV head. */
export function kvElementsPerTokenPerLayer(m: ModelConfig): number {
  const a = m.attention;
  return a.kind === 'mla' ? a.kvLoraRank + a.qkRopeHeadDim : 2 * a.numKvHeads * a.headDim;
}

/** Parameter and byte counts of one model, derived from its shapes. */
export interface ModelWeights {
  numDenseLayers: number;
  numMoeLayers: number;
  /** Bytes of one routed expert in one layer (gate, up and down projections, with scales). */
  expertBytes: number;
  /** Bytes of all routed experts of all layers. */
  routedExpertBytes: number;
  /** Bytes of everything else: embeddings, attention, norms, dense MLPs, shared experts, routers, LM head. */
  denseBytes: number;
  /** Parts of `denseBytes`. */
  parts: {
    embedding: number;
    lmHead: number;
    attention: number;
    norms: number;
    denseMlp: number;
    sharedExperts: number;
    router: number;
  };
  totalBytes: number;
  totalParams: number;
  /** Parameters used per token: everything but the routed experts, plus top-k of them. */
  activeParams: number;
  routedExpertParams: number;
}

/** Bytes of a quantized `[rows, cols]` linear weight, with its float32 block scales. */
function linearBytes(d: ModelDtypes, rows: number, cols: number): number {
  const scales = d.weightBlockSize > 0 ? Math.ceil(rows / d.weightBlockSize) * Math.ceil(cols / d.weightBlockSize) * 4 : 0;
  return rows * cols * d.weightBytes + scales;
}

/** The `[rows, cols]` linear weights of one attention block. */
function attentionLinears(m: ModelConfig): Array<[number, number]> {
  const h = m.hiddenSize;
  const a = m.attention;
  if (a.kind === 'mla') {
    const qHead = a.qkNopeHeadDim + a.qkRopeHeadDim;
    const q: Array<[number, number]> =
      a.qLoraRank > 0
        ? [
            [a.qLoraRank, h],
            [a.numHeads * qHead, a.qLoraRank],
          ]
        : [[a.numHeads * qHead, h]];
    return [
      ...q,
      [a.kvLoraRank + a.qkRopeHeadDim, h], // kv_a_proj_with_mqa
      [a.numHeads * (a.qkNopeHeadDim + a.vHeadDim), a.kvLoraRank], // kv_b_proj
      [h, a.numHeads * a.vHeadDim], // o_proj
    ];
  }
  return [
    [a.numHeads * a.headDim, h],
    [a.numKvHeads * a.headDim, h],
    [a.numKvHeads * a.headDim, h],
    [h, a.numHeads * a.headDim],
  ];
}

/** Norm weights inside one attention block (MLA's latent norms, Qwen3's q/k norms). */
function attentionNormElements(m: ModelConfig): number {
  const a = m.attention;
  if (a.kind === 'mla') return a.qLoraRank + a.kvLoraRank;
  return a.qkNorm ? 2 * a.headDim : 0;
}

/** A gated MLP of intermediate size `inter`: gate and up `[inter, h]`, down `[h, inter]`. */
function mlpLinears(h: number, inter: number): Array<[number, number]> {
  return [
    [inter, h],
    [inter, h],
    [h, inter],
  ];
}

function sum<T>(xs: readonly T[], f: (x: T) => number): number {
  return xs.reduce((acc, x) => acc + f(x), 0);
}

/** Parameter and byte counts of `m`. */
export function modelWeights(m: ModelConfig): ModelWeights {
  const d = m.dtypes;
  const h = m.hiddenSize;
  const dense = m.firstKDenseLayers;
  const moe = numMoeLayers(m);
  const params = (ls: Array<[number, number]>): number => sum(ls, ([r, c]) => r * c);
  const bytes = (ls: Array<[number, number]>): number => sum(ls, ([r, c]) => linearBytes(d, r, c));

  const attn = attentionLinears(m);
  const expert = mlpLinears(h, m.moeIntermediateSize);
  const denseMlp = mlpLinears(h, m.intermediateSize);
  // Per layer: input and post-attention RMSNorm, plus the attention's own norms; one final norm.
  const normElems = m.numLayers * (2 * h + attentionNormElements(m)) + h;
  const embedElems = m.vocabSize * h;
  const routerElems = moe * m.numRoutedExperts * h;

  const parts = {
    embedding: embedElems * d.unquantizedBytes,
    lmHead: m.tieWordEmbeddings ? 0 : embedElems * d.unquantizedBytes,
    attention: m.numLayers * bytes(attn),
    norms: normElems * d.unquantizedBytes,
    denseMlp: dense * bytes(denseMlp),
    sharedExperts: moe * m.numSharedExperts * bytes(expert),
    router: routerElems * d.unquantizedBytes,
  };
  const denseBytes = Object.values(parts).reduce((a, b) => a + b, 0);
  const expertBytes = bytes(expert);
  const routedExpertBytes = moe * m.numRoutedExperts * expertBytes;

  const expertParams = params(expert);
  const routedExpertParams = moe * m.numRoutedExperts * expertParams;
  const denseParams =
    embedElems * (m.tieWordEmbeddings ? 1 : 2) +
    m.numLayers * params(attn) +
    normElems +
    dense * params(denseMlp) +
    moe * m.numSharedExperts * expertParams +
    routerElems;
  return {
    numDenseLayers: dense,
    numMoeLayers: moe,
    expertBytes,
    routedExpertBytes,
    denseBytes,
    parts,
    totalBytes: denseBytes + routedExpertBytes,
    totalParams: denseParams + routedExpertParams,
    activeParams: denseParams + moe * m.topK * expertParams,
    routedExpertParams,
  };
}
