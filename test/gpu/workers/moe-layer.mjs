// One rank of the GPU MoE layer test: a small DeepSeek-style layer (grouped
// sigmoid routing with bias, SwiGLU experts, a shared expert) on this rank's
// GPU through the EP buffer, against the layer computed on the host in double
// from the same bf16 weights:
// 1. eager normal and low-latency steps (a rank with no tokens in one), also
//    with two-batch overlap on two streams, one of them under a timeline;
// 2. with redundant expert slots (a DevicePlacement): a decode step captured
//    as a CUDA graph and replayed on fresh inputs into a poisoned output, the
//    device's load counters checked, a rebalance in the middle (EPLB's
//    placement at one rank; a reordering of each rank's own slots at several,
//    since moving weights between ranks needs NCCL), and replays after it;
// 3. weights read from a manifest of raw files give the same output, bit for
//    bit, as the same weights uploaded from the host; random device weights
//    are identical in every replica of an expert.
// Tokens whose top-k is within rounding of a tie are left out (the GPU's
// float32 logits may order them otherwise) and counted. Prints one JSON report.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DevicePlacement, EpBuffer, MoeLayer, Stream, Tensor, Timeline, initProcessGroup, loadLayerWeights, randomLayerWeights } from '../../../dist/index.js';
import { ExpertLocationMap, rebalanceExperts } from '../../../dist/planning/index.js';
import { SeededRandom } from '../../../dist/testing/index.js';
import { generateMoeLayerWeights, moeLayerConfig } from '../../../dist/simulation/index.js';
import { roundRowsToBf16 } from '../../../dist/simulation/math.js';

const config = moeLayerConfig({ hidden: 256, moeIntermediate: 128, numRoutedExperts: 16, numSharedExperts: 1, topK: 4, numExpertGroups: 4, topkGroup: 2 });
const { hidden: H, topK: k, numRoutedExperts: E } = config;
const report = { rank: -1, checks: 0, failures: [], nearTies: 0, tokens: 0, replays: 0, moves: 0 };
const fail = (msg) => report.failures.length < 20 && report.failures.push(msg);

/** The host layer, in double over bf16 values, for one token; undefined when its top-k is within 1e-3 of a tie. */
function reference(w, x, at) {
  const I = config.moeIntermediate;
  const scores = new Float64Array(E);
  const choice = new Float64Array(E);
  for (let e = 0; e < E; e++) {
    let s = 0;
    for (let h = 0; h < H; h++) s += w.gate[e * H + h] * x[at + h];
    scores[e] = 1 / (1 + Math.exp(-s));
    choice[e] = scores[e] + w.gateBias[e];
  }
  const per = E / config.numExpertGroups;
  const groups = [...Array(config.numExpertGroups).keys()].map((g) => {
    const v = [...choice.subarray(g * per, (g + 1) * per)].sort((a, b) => b - a);
    return { g, s: v[0] + v[1] };
  });
  groups.sort((a, b) => b.s - a.s);
  if (groups[config.topkGroup - 1].s - groups[config.topkGroup].s < 1e-3) return undefined;
  const kept = new Set(groups.slice(0, config.topkGroup).map((x) => x.g));
  const cand = [...Array(E).keys()].filter((e) => kept.has(Math.floor(e / per))).sort((a, b) => choice[b] - choice[a]);
  if (choice[cand[k - 1]] - choice[cand[k]] < 1e-3) return undefined;
  const chosen = cand.slice(0, k);
  const sum = chosen.reduce((s, e) => s + scores[e], 0);
  const out = new Float64Array(H);
  const mag = new Float64Array(H);
  const expert = (ew, weight) => {
    const Ie = ew.intermediate;
    const act = new Float64Array(Ie);
    for (let i = 0; i < Ie; i++) {
      let g = 0;
      let u = 0;
      for (let h = 0; h < H; h++) {
        g += ew.gate[i * H + h] * x[at + h];
        u += ew.up[i * H + h] * x[at + h];
      }
      act[i] = (g / (1 + Math.exp(-g))) * u;
    }
    // The tolerance scales with the sum of magnitudes of the down projection's
    // terms: the GPU rounds h and the activation to bf16, so a channel whose
    // terms cancel keeps their rounding error.
    for (let h = 0; h < H; h++) {
      let y = 0;
      let terms = 0;
      for (let i = 0; i < Ie; i++) {
        y += ew.down[h * Ie + i] * act[i];
        terms += Math.abs(ew.down[h * Ie + i] * act[i]);
      }
      out[h] += weight * y;
      mag[h] += Math.abs(weight) * terms;
    }
  };
  for (const e of chosen) expert(w.experts[e], (scores[e] / (sum + 1e-20)) * config.routedScalingFactor);
  expert(w.shared, 1);
  return { out, mag, chosen };
}

const pg = await initProcessGroup();
report.rank = pg.rank;
const key = 'wideep/test/moe-seed';
if (pg.rank === 0) await pg.store.set(key, String(Date.now() % 1_000_000_007));
const seed = Number(new TextDecoder().decode(await pg.store.get(key)));
// bf16 weights on both sides: the host reference reads the same values the GPU does.
const raw = generateMoeLayerWeights(config, seed);
const round = (ew) => ({ ...ew, gate: roundRowsToBf16(ew.gate), up: roundRowsToBf16(ew.up), down: roundRowsToBf16(ew.down) });
const weights = { ...raw, gate: roundRowsToBf16(raw.gate), experts: raw.experts.map(round), shared: round(raw.shared) };
const maxTokens = 64;
const device = `cuda:${pg.device}`;

function randomTokens(rng, T) {
  const xf = roundRowsToBf16(Float32Array.from({ length: T * H }, () => rng.normal()));
  return { xf, bits: new Uint16Array(new Uint32Array(xf.buffer).map((u) => u >>> 16)) };
}

/** Compares a [T, H] output with the host layer; returns the logical experts chosen per checked token. */
function check(label, xf, T, got) {
  const chosen = [];
  for (let t = 0; t < T; t++) {
    report.tokens++;
    const ref = reference(weights, xf, t * H);
    if (!ref) {
      report.nearTies++;
      continue;
    }
    chosen.push(ref.chosen);
    for (let h = 0; h < H; h++) {
      report.checks++;
      const tol = 2 ** -5 * ref.mag[h] + 1e-3;
      if (!(Math.abs(got[t * H + h] - ref.out[h]) <= tol)) fail(`${label} token ${t} channel ${h}: got ${got[t * H + h]}, expected ${ref.out[h]} ± ${tol}`);
    }
  }
  return chosen;
}

async function eagerSteps() {
  const ep = await EpBuffer.create(pg, { hidden: H, numExperts: E, maxTokensPerRank: maxTokens, lowLatency: { maxTokensPerRank: maxTokens } });
  try {
    const layer = await MoeLayer.fromHost(ep, weights, pg.device);
    const timeline = new Timeline();
    const runs = [
      ['normal', false],
      ['low-latency', false],
      ['normal', true],
      ['low-latency', true],
    ];
    for (const [mode, tbo] of runs) {
      for (let step = 0; step < 3; step++) {
        const rng = new SeededRandom(seed * 17 + pg.rank * 101 + step);
        const T = mode === 'normal' && step === 1 && pg.rank === pg.worldSize - 1 ? 0 : 1 + rng.int(maxTokens);
        const { xf, bits } = randomTokens(rng, T);
        const x = await Tensor.from(bits, { dtype: 'bf16', shape: [T, H] }).to(device);
        const out = await layer.forward(x, { mode, ...(tbo ? { tbo: {} } : {}), ...(tbo && step === 2 ? { timeline } : {}) });
        check(`${mode}${tbo ? ' tbo' : ''} step ${step}`, xf, T, (await out.cpu()).toFloat32());
        out.close();
        x.close();
      }
    }
    // The timeline of the last two-batch step: both streams, every stage of both micro-batches.
    const spans = await timeline.read();
    const lanes = new Set(spans.map((sp) => sp.lane));
    const labels = new Set(spans.map((sp) => sp.label));
    report.checks++;
    if (lanes.size !== 2) fail(`timeline: ${lanes.size} lanes, expected 2 (one per micro-batch stream)`);
    for (const l of ['router', 'dispatch', 'dispatch-recv', 'experts', 'combine', 'combine-recv', 'shared']) if (!labels.has(l)) fail(`timeline: no ${l} span`);
    if (spans.some((sp) => !(sp.endUs >= sp.startUs))) fail(`timeline: a span ends before it starts: ${JSON.stringify(spans)}`);
    timeline.clear();
    layer.close();
  } finally {
    await ep.close();
  }
}

/** Each rank's slots in reverse order: a new placement whose moves are all on the same GPU. */
function reversedWithinRanks(map) {
  const per = map.physicalPerRank;
  const row = map.layerPhy2Log(0);
  const next = row.map((_, p) => row[Math.floor(p / per) * per + (per - 1 - (p % per))]);
  return ExpertLocationMap.fromPhy2Log([next], { numLogical: E, numRanks: pg.worldSize });
}

async function decodeGraphAndRebalance() {
  const P = E + 8; // 8 redundant slots: 24 divides over 1, 2 and 4 ranks
  const T = 24;
  const stream = new Stream(pg.device);
  const ep = await EpBuffer.create(pg, { hidden: H, numExperts: P, maxTokensPerRank: maxTokens, lowLatency: { maxTokensPerRank: maxTokens } });
  const initial = ExpertLocationMap.trivial({ numLayers: 1, numLogical: E, numPhysical: P, numRanks: pg.worldSize });
  const placement = await DevicePlacement.create(initial, { layer: 0, rank: pg.rank, device: pg.device, stream });
  try {
    const layer = await MoeLayer.fromHost(ep, weights, pg.device, { placement, stream });
    const x = Tensor.empty([T, H], 'bf16', { device, stream });
    const out = Tensor.empty([T, H], 'bf16', { device, stream });
    const rng = new SeededRandom(seed * 29 + pg.rank);
    await x.copyFrom(Tensor.from(randomTokens(rng, T).bits, { dtype: 'bf16', shape: [T, H] }), { stream });
    const graph = await layer.captureDecode(x, out, { stream });
    const logicalLoads = new Float64Array(E);
    const replays = async (label) => {
      await placement.takeLoads(stream); // zero the counters: the capture's warm-up step counted too
      for (let r = 0; r < 3; r++) {
        const { xf, bits } = randomTokens(rng, T);
        await x.copyFrom(Tensor.from(bits, { dtype: 'bf16', shape: [T, H] }), { stream });
        out.fillBytes(0xff, stream);
        graph.launch(stream);
        await stream.synchronize();
        report.replays++;
        check(`${label} replay ${r}`, xf, T, (await out.cpu({ stream })).toFloat32()).forEach((c) => c.forEach((e) => logicalLoads[e]++));
      }
      const loads = await placement.takeLoads(stream);
      const total = loads.reduce((a, b) => a + b, 0);
      if (total !== 3 * T * k) fail(`${label}: the load counters sum to ${total}, expected ${3 * T * k} (3 replays of ${T} tokens, top-${k})`);
      // The router must read the current tables: every counted slot is where its expert is sent now.
      const table = placement.map.staticDispatchTable(pg.rank);
      const phy2log = placement.map.layerPhy2Log(0);
      loads.forEach((n, p) => n > 0 && table[phy2log[p]] !== p && fail(`${label}: slot ${p} counted ${n} tokens, but expert ${phy2log[p]} is sent to slot ${table[phy2log[p]]}`));
    };
    await replays('decode graph');
    const next =
      pg.worldSize === 1
        ? ExpertLocationMap.fromEplb(rebalanceExperts([Array.from(logicalLoads, (v, e) => v + (e < 4 ? 100 : 0))], { numReplicas: P, numGroups: config.numExpertGroups, numNodes: 1, numGpus: 1 }), { numRanks: 1 })
        : reversedWithinRanks(initial);
    const plan = await layer.rebalance(next, { stream });
    report.moves = plan.moves.length;
    if (plan.moves.length === 0) fail('the rebalance moved nothing: the test would not show that moves work');
    await replays('after rebalance');
    graph.close();
    x.close();
    out.close();
  } finally {
    placement.close();
    await ep.close();
    stream.close();
  }
}

const bf16Bytes = (f32) => Buffer.from(new Uint16Array(new Uint32Array(f32.buffer, f32.byteOffset, f32.length).map((u) => u >>> 16)).buffer);
const concat = (parts) => {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
};

async function weightsFromFiles() {
  const dir = mkdtempSync(join(tmpdir(), `wideep-moe-${pg.rank}-`));
  const I = config.moeIntermediate;
  const Is = weights.shared.intermediate;
  const files = {
    gate: ['bf16', [E, H], bf16Bytes(weights.gate)],
    gateBias: ['f32', [E], Buffer.from(Float32Array.from(weights.gateBias).buffer)],
    'experts.w13': ['bf16', [E, 2 * I, H], bf16Bytes(concat(weights.experts.flatMap((x) => [x.gate, x.up])))],
    'experts.w2': ['bf16', [E, H, I], bf16Bytes(concat(weights.experts.map((x) => x.down)))],
    'shared.w13': ['bf16', [2 * Is, H], bf16Bytes(concat([weights.shared.gate, weights.shared.up]))],
    'shared.w2': ['bf16', [H, Is], bf16Bytes(weights.shared.down)],
  };
  const tensors = {};
  for (const [name, [dtype, shape, bytes]] of Object.entries(files)) {
    writeFileSync(join(dir, `${name}.bin`), bytes);
    tensors[name] = { file: `${name}.bin`, dtype, shape };
  }
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ format: 'wideep-moe-layer/1', tensors }));
  const ep = await EpBuffer.create(pg, { hidden: H, numExperts: E, maxTokensPerRank: maxTokens });
  try {
    const fromHost = await MoeLayer.fromHost(ep, weights, pg.device);
    const fromFiles = new MoeLayer(ep, config, await loadLayerWeights(ep, config, join(dir, 'manifest.json'), { device: pg.device }));
    const rng = new SeededRandom(seed * 31 + pg.rank);
    const T = 1 + rng.int(maxTokens);
    const x = await Tensor.from(randomTokens(rng, T).bits, { dtype: 'bf16', shape: [T, H] }).to(device);
    const a = new Uint16Array((await (await fromHost.forward(x, { mode: 'normal' })).cpu()).data.buffer);
    const b = new Uint16Array((await (await fromFiles.forward(x, { mode: 'normal' })).cpu()).data.buffer);
    report.checks += a.length;
    const diff = a.findIndex((v, i) => v !== b[i]);
    if (diff >= 0) fail(`weights from files: element ${diff} is ${b[diff]}, the host upload gives ${a[diff]} (bf16 bits)`);
  } finally {
    await ep.close();
    rmSync(dir, { recursive: true, force: true });
  }
  // Random device weights: every replica of an expert holds the same bytes.
  const P = E + 8;
  const ep2 = await EpBuffer.create(pg, { hidden: H, numExperts: P, maxTokensPerRank: maxTokens });
  const map = ExpertLocationMap.trivial({ numLayers: 1, numLogical: E, numPhysical: P, numRanks: pg.worldSize });
  const placement = await DevicePlacement.create(map, { layer: 0, rank: pg.rank, device: pg.device });
  try {
    const w = randomLayerWeights(ep2, config, { seed: 7, device: pg.device, placement });
    const w13 = new Uint16Array((await w.experts.w13.cpu()).data.buffer);
    const L = ep2.config.numLocalExperts;
    const per = w13.length / L;
    const phy2log = map.layerPhy2Log(0).slice(pg.rank * L, (pg.rank + 1) * L);
    const firstOf = new Map();
    phy2log.forEach((e, l) => {
      if (!firstOf.has(e)) return firstOf.set(e, l);
      const f = firstOf.get(e);
      report.checks++;
      if (w13.subarray(l * per, (l + 1) * per).some((v, i) => v !== w13[f * per + i])) fail(`random weights: slots ${f} and ${l} both hold expert ${e} but differ`);
    });
    if (w13.every((v) => v === w13[0])) fail('random weights: w13 is constant');
  } finally {
    placement.close();
    await ep2.close();
  }
}

try {
  await eagerSteps();
  await decodeGraphAndRebalance();
  await weightsFromFiles();
} catch (e) {
  fail(`${e.code ?? ''} ${e.message}`);
}
process.stdout.write(`${JSON.stringify(report)}\n`);
