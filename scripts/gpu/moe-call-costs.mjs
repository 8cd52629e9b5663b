// Where the MoE layer's decode step spends host time, at one rank on GPU 0:
//   node scripts/gpu/moe-call-costs.mjs [experts=32]
// 1. eager decode steps enqueued back to back behind a long sleep kernel (a
//    busy host) and one per wake-up after a short sleep (as bench moe times
//    them), with the mean host µs of every native method they call;
// 2. the decode graph replayed the same two ways;
// 3. graphs of one part of the step each (router, shared expert, experts,
//    EP dispatch + combine, one GEMM, one small kernel), each replayed
//    behind a sleep: which nodes make a replay cost what it costs; each
//    graph's nodes by type (Graph.describe) beside it.
// Prints one JSON object.
import { clearNativeTimes, nativeMeans, timeNativeCalls } from './native-timing.mjs';
import { EpBuffer, Graph, MoeLayer, Stream, Tensor, expertsForward, fillRandom, initProcessGroup, linear, randomLayerWeights, route, swiglu } from '../../dist/index.js';
import { layerConfig, moeShape } from '../../dist/cli/bench/moe-cases.js';
import { median } from '../../dist/cli/bench/stats.js';

const cuda = timeNativeCalls('moe-call-costs');
const experts = Number(process.argv[2] ?? 32);
const shape = moeShape({ experts, prefillTokens: 128, decodeTokens: 128 });
const config = layerConfig(shape);
const pg = await initProcessGroup({ rank: 0, worldSize: 1, env: {} });
const dev = pg.device;
const stream = new Stream(dev);
const on = { device: `cuda:${dev}`, stream };
const ep = await EpBuffer.create(pg, { backend: 'cuda', hidden: shape.hidden, numExperts: experts, maxTokensPerRank: 128, maxTopk: 8, lowLatency: { maxTokensPerRank: 128 } });
const w = randomLayerWeights(ep, config, { seed: 1, device: dev, stream });
const layer = new MoeLayer(ep, config, w);
const T = shape.decodeTokens;
const H = shape.hidden;
const x = fillRandom(Tensor.empty([T, H], 'bf16', on), 3, { kind: 'normal', std: 1 }, stream);
const out = Tensor.empty([T, H], 'bf16', on);
const step = () => layer.forward(x, { mode: 'low-latency', stream, out });
await step();
await stream.synchronize();

const result = { device: dev, experts, rows: {}, native: {}, graphs: {} };
const ROUNDS = 7;
/** Median over rounds of the mean host µs per call: `perRound` calls behind a sleep of `sleepNs`. */
async function measure(name, fn, { perRound, sleepNs }) {
  clearNativeTimes();
  const means = [];
  for (let r = 0; r < ROUNDS; r++) {
    cuda.sleep(sleepNs, stream.native);
    const t0 = performance.now();
    for (let i = 0; i < perRound; i++) await fn();
    means.push(((performance.now() - t0) * 1e3) / perRound);
    await stream.synchronize();
  }
  result.rows[name] = +median(means).toFixed(2);
  result.native[name] = nativeMeans();
}
const busy = { perRound: 10, sleepNs: 400_000_000 };
const woken = { perRound: 1, sleepNs: 2_000_000 };
await measure('eager decode step, back to back', step, busy);
await measure('eager decode step, one per wake-up', step, woken);

const graphOf = async (body) => {
  await body(); // lazily made resources exist before the capture
  await stream.synchronize();
  return Graph.capture(stream, body);
};
const replay = (g) => () => g.launch(stream);
const whole = await layer.captureDecode(x, out, { stream });
result.graphs['decode graph'] = whole.describe();
await measure('decode graph, back to back', replay(whole), busy);
await measure('decode graph, one per wake-up', replay(whole), woken);

// One part of the step per graph, on buffers made outside the capture.
const logits = Tensor.empty([T, experts], 'f32', on);
const topkIdx = Tensor.empty([T, 8], 'i32', on);
const topkWeights = Tensor.empty([T, 8], 'f32', on);
const I = config.moeIntermediate;
const sh = Tensor.empty([T, 2 * I], 'bf16', on);
const sa = Tensor.empty([T, I], 'bf16', on);
const M = ep.config.lowLatency.maxTokensPerRank;
const L = ep.numLocalExperts;
const ex = { x: Tensor.zeros([L, M, H], 'bf16', on), h: Tensor.empty([L, M, 2 * I], 'bf16', on), a: Tensor.empty([L, M, I], 'bf16', on), y: Tensor.empty([L, M, H], 'bf16', on) };
const counts = Tensor.zeros([L], 'i32', on);
const parts = {
  router: () => void route({ x, gateWeight: w.gate, bias: w.gateBias, config, stream, logits, topkIdx, topkWeights }),
  'one GEMM (shared gate/up)': () => void linear(x, w.shared.w13, { out: sh, stream }),
  'one small kernel (swiglu)': () => void swiglu({ x: sh, out: sa, stream }),
  experts: () => void expertsForward({ x: ex.x, counts, weights: w.experts, out: ex.y, scratch: { h: ex.h, a: ex.a }, stream }),
  'EP dispatch + combine': async () => {
    const d = await ep.lowLatencyDispatch({ x, topkIdx, maxTokensPerRank: M, numExperts: experts, useFp8: false, stream });
    await ep.lowLatencyCombine({ y: d.recvX, topkIdx, topkWeights, handle: d.handle, out, stream });
  },
};
for (const [name, body] of Object.entries(parts)) {
  const g = await graphOf(body);
  result.graphs[name] = g.describe();
  await measure(`graph: ${name}`, replay(g), busy);
  g.close();
}
console.log(JSON.stringify(result));
whole.close();
await stream.synchronize();
await ep.close();
await pg.close();
