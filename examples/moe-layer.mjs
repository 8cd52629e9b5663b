// A whole DeepSeek-style MoE layer over N GPUs, one process per GPU, sized by
// SGLang's flags: router, dispatch to the ranks that own the experts, grouped
// SwiGLU experts, combine back, and the shared expert. One prefill step
// (normal dispatch) with its stage breakdown, then decode steps replayed as
// one CUDA graph each, then one decode step of a whole decoder layer: a
// simple attention (its output projection), split over the attention-TP
// group when the plan has one, before the MoE, the step planned with every
// rank. Weights are random, made on the GPU.
//
//   npx wideep launch --nproc-per-node 4 examples/moe-layer.mjs \
//     --tp 4 --dp-size 4 --enable-dp-attention --moe-a2a-backend deepep [--ep-num-redundant-experts 4]
//
// Without flags the plan is DP attention + EP over every rank. Own options:
// --model (a preset or an HF config.json; default DeepSeek-V3), --hidden and
// --moe-intermediate (narrower layers for a quick run), --tokens (prefill
// tokens per rank, default 4096), --decode-steps (default 10), --expert-dtype
// (bf16, or fp8: DeepSeek-V3's fp8 expert weights with 128x128 block scales,
// tokens sent as fp8; needs hidden and intermediate in 512s), --expert-gemm
// (fp8 decode GEMMs: cublaslt, the default, or masked: wideep's kernel). Decode steps
// take --num-max-dispatch-tokens-per-rank tokens per rank (default 128).
// Without a GPU it says so and exits 0: nothing here has a CPU fallback.
import {
  StoreTransport,
  Stream,
  Tensor,
  Timeline,
  WideEp,
  agreeOnStep,
  capabilities,
  fillRandom,
  fillValue,
  forwardDecoderLayer,
  initProcessGroup,
  linear,
  moeLayerConfigOf,
  moeTokenCount,
} from 'wideep';
import { ParallelConfig, parseSglangArgs, resolveModel, stepSettingsOf } from 'wideep/planning';

const caps = capabilities();
if (!caps.cuda.available || !caps.cublasLt.found) {
  console.log(`skipped: this example needs a GPU and cuBLASLt (${caps.cuda.reason ?? caps.cublasLt.reason})`);
  process.exit(0);
}

const own = {
  model: { type: 'string' },
  hidden: { type: 'string' },
  'moe-intermediate': { type: 'string' },
  tokens: { type: 'string' },
  'decode-steps': { type: 'string' },
  'expert-dtype': { type: 'string' },
  'expert-gemm': { type: 'string' },
};
const { options: flags, extra } = parseSglangArgs(process.argv.slice(2), own);
const int = (name, fallback) => (extra[name] === undefined ? fallback : Number(extra[name]));

const pg = await initProcessGroup();
const R = pg.worldSize;
const plan = ParallelConfig.fromOptions({ tp: R, dpSize: R, enableDpAttention: R > 1, moeA2aBackend: 'deepep', ...flags });
const preset = resolveModel(extra.model ?? 'DeepSeek-V3');
const model = { ...preset, hiddenSize: int('hidden', preset.hiddenSize), moeIntermediateSize: int('moe-intermediate', preset.moeIntermediateSize) };
const config = moeLayerConfigOf(model);
const prefillTokens = int('tokens', 4096);
const decodeTokens = plan.options.numMaxDispatchTokensPerRank;

// The plan sizes the EP buffer: hidden, routed + redundant experts, tokens per rank, low-latency slots.
// NCCL communicators only where attention is split over several ranks (dpScatter/dpGather).
const wideEp = await WideEp.create(pg, plan, { model, maxTokensPerRank: prefillTokens, communicators: plan.attnTpSize > 1 });
const stream = new Stream(pg.device);
const { numExperts } = wideEp.ep.config;
// Random weights on the GPU; with redundant expert slots, a device placement of which expert each slot holds.
const expertDType = { bf16: 'bf16', fp8: 'fp8e4m3' }[extra['expert-dtype'] ?? 'bf16'];
if (!expertDType) throw new Error(`--expert-dtype: expected bf16 or fp8, got ${extra['expert-dtype']}`);
const expertGemm = extra['expert-gemm'] ?? 'cublaslt';
const layer = await wideEp.createLayer({ seed: 1, stream, expertDType, expertGemm });

const on = { device: `cuda:${pg.device}`, stream };
const tokens = (T, seed) => fillRandom(Tensor.empty([T, config.hidden], 'bf16', on), seed, { kind: 'normal', std: 1 }, stream);
const finite = async (t) => (await t.cpu({ stream })).toFloat32().every(Number.isFinite);

// Prefill: one warm-up step (cuBLASLt plans, lazily made buffers), then one timed step.
const x = tokens(prefillTokens, 100 + pg.rank);
(await layer.forward(x, { mode: 'normal', stream })).close(stream);
const timeline = new Timeline();
const t0 = performance.now();
const y = await layer.forward(x, { mode: 'normal', stream, timeline });
await stream.synchronize();
const prefillMs = performance.now() - t0;
const stages = (await timeline.read()).map((s) => `${s.label} ${((s.endUs - s.startUs) / 1e3).toFixed(2)}`).join(', ');
let ok = await finite(y);

// Decode: x and out stay allocated; each step refills x in place and replays the graph.
const xd = tokens(decodeTokens, 200 + pg.rank);
const out = Tensor.empty([decodeTokens, config.hidden], 'bf16', on);
const step = await layer.captureDecode(xd, out, { stream });
const steps = int('decode-steps', 10);
let hostUs = 0;
await stream.synchronize();
const t1 = performance.now();
for (let i = 0; i < steps; i++) {
  fillRandom(xd, 300 + i * R + pg.rank, { kind: 'normal', std: 1 }, stream);
  const h = performance.now();
  step.launch(stream);
  hostUs += (performance.now() - h) * 1e3;
}
await stream.synchronize();
const decodeUs = ((performance.now() - t1) * 1e3) / steps;
ok &&= await finite(out);

// One decoder layer's decode step. The attention stand-in is an output projection; with an
// attention-TP group each member keeps its share of the output rows (zeros elsewhere), so the
// members' partial sums add up to the whole, which dpScatter does before the MoE.
const A = plan.attnTpSize;
const attnTp = wideEp.comms?.get('attnTp');
const wo = fillRandom(Tensor.empty([config.hidden, config.hidden], 'bf16', on), 7, { kind: 'normal', std: 1 / Math.sqrt(config.hidden) }, stream);
const per = config.hidden / A;
const member = attnTp ? attnTp.rank : 0;
if (member > 0) fillValue(wo.narrow(0, member * per), 0, stream);
if (member < A - 1) fillValue(wo.narrow((member + 1) * per, config.hidden - (member + 1) * per), 0, stream);
// The members of an attention-TP group hold the same tokens: seeded by the DP rank.
const xs = tokens(decodeTokens, 400 + Math.floor(pg.rank / A));
const transport = new StoreTransport(pg.store, pg.rank, R, 'example/moe-layer/steps');
const stepPlan = await agreeOnStep(transport, stepSettingsOf(plan), { numTokens: moeTokenCount(decodeTokens, A), forwardMode: 'decode' });
const attention = ({ x: h, stream: s }) => linear(h, wo, { stream: s });
const ys = await forwardDecoderLayer(layer, xs, { attention, plan: stepPlan, attnTp, stream });
ok &&= ys.shape[0] === decodeTokens && (await finite(ys));
await transport.close();

console.log(
  `${R} rank${R === 1 ? '' : 's'}, ${config.numRoutedExperts} ${layer.expertDType}${layer.expertDType === 'bf16' ? '' : ` (${layer.expertGemm} GEMMs)`} experts in ${numExperts} slots (${numExperts / R} per rank), hidden ${config.hidden}: ` +
    `prefill ${prefillTokens} tokens ${prefillMs.toFixed(2)} ms (GPU ms: ${stages}); ` +
    `decode ${decodeTokens} tokens ${decodeUs.toFixed(0)} us per step as a graph, ${(hostUs / steps).toFixed(1)} us of host time per launch; ` +
    `a decoder step (attention-TP ${A}, ${stepPlan.deepepMode}); ` +
    `output ${ok ? 'finite' : 'NOT FINITE'}`,
);
step.close();
for (const t of [x, y, xd, out, wo, xs, ys]) t.close(stream);
layer.close();
await wideEp.close();
process.exit(ok ? 0 : 1);
