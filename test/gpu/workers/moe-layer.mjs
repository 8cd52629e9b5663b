// One rank of the GPU MoE layer test: the small DeepSeek-style layer of
// moe-common.mjs on this rank's GPU through the EP buffer, against the layer
// computed on the host in double from the same bf16 weights:
// 1. eager normal and low-latency steps (a rank with no tokens in one), also
//    with two-batch overlap on two streams, one of them under a timeline;
// 2. with redundant expert slots (a DevicePlacement): a decode step captured
//    as a CUDA graph and replayed on fresh inputs into a poisoned output, the
//    device's load counters checked, a rebalance in the middle (EPLB's
//    placement at one rank; a reordering of each rank's own slots at several,
//    since moving weights between ranks needs NCCL), and replays after it;
// 3. DeviceEplb reading the counters after three eager decode steps and
//    rebalancing one step later: at one rank it moves weights on the GPU and
//    the next step stays right; at several ranks its moves cross ranks, and
//    every rank refuses them for want of NCCL;
// 4. steps planned together (agreeOnStep): one rank prefills while the
//    others decode or idle, then all decode; each rank runs the plan's mode;
//    the same steps as decoder layers (forwardDecoderLayer) with an exact
//    attention stand-in before the MoE;
// 5. weights read from a manifest of raw files give the same output, bit for
//    bit, as the same weights uploaded from the host; random device weights
//    are identical in every replica of an expert;
// 6. fp8 experts (a wider layer), with cuBLASLt's and wideep's masked GEMMs:
//    eager normal and low-latency steps, with
//    and without two-batch overlap, against the host layer computing with the
//    same fp8 casts; a decode graph replayed around a rebalance that moves
//    the weights and their block scales; fp8 weights without scales, or of a
//    width cuBLASLt cannot scale, refused.
// Tokens whose top-k is within rounding of a tie are left out (the GPU's
// float32 logits may order them otherwise) and counted. Prints one JSON report.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  DeviceEplb,
  DevicePlacement,
  EpBuffer,
  MoeLayer,
  Stream,
  StoreTransport,
  Tensor,
  Timeline,
  agreeOnStep,
  deviceWeightTensors,
  forwardDecoderLayer,
  forwardPlanned,
  linear,
  initProcessGroup,
  loadLayerWeights,
  randomLayerWeights,
} from '../../../dist/index.js';
import { ExpertLocationMap, rebalanceExperts } from '../../../dist/planning/index.js';
import { SeededRandom } from '../../../dist/testing/index.js';
import { E, H, check as checkLayer, config, fail, fp8Config, k, randomTokens, report, sharedWeights, standInAttention, standInAttentionWeight } from './moe-common.mjs';

const pg = await initProcessGroup();
const { seed, weights } = await sharedWeights(pg, 'wideep/test/moe-seed');
const maxTokens = 64;
const device = `cuda:${pg.device}`;
const check = (label, xf, T, got) => checkLayer(weights, label, xf, T, got);

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

async function plannedSteps() {
  const ep = await EpBuffer.create(pg, { hidden: H, numExperts: E, maxTokensPerRank: maxTokens, lowLatency: { maxTokensPerRank: maxTokens } });
  const transport = new StoreTransport(pg.store, pg.rank, pg.worldSize, 'wideep/test/moe-steps');
  const settings = { attnTpSize: 1, moeA2aBackend: 'deepep', deepepMode: 'auto', enableTwoBatchOverlap: true, numMaxDispatchTokensPerRank: maxTokens };
  try {
    const layer = await MoeLayer.fromHost(ep, weights, pg.device);
    const wo = await Tensor.from(standInAttentionWeight(H), { dtype: 'bf16', shape: [H, H] }).to(device);
    const expected = ['normal', 'low_latency'];
    for (let step = 0; step < 2; step++) {
      const rng = new SeededRandom(seed * 37 + pg.rank * 5 + step);
      const idle = pg.worldSize > 1 && pg.rank === pg.worldSize - 1;
      const extend = step === 0 && pg.rank === 0;
      const T = idle ? 0 : extend ? 40 : 2 + rng.int(maxTokens - 2);
      const seqLens = extend ? [25, 15] : undefined;
      const plan = await agreeOnStep(transport, settings, { numTokens: T, forwardMode: extend ? 'extend' : 'decode', seqLens });
      report.checks++;
      if (plan.deepepMode !== expected[step]) fail(`planned step ${step}: mode ${plan.deepepMode}, expected ${expected[step]}`);
      const { xf, bits } = randomTokens(rng, T);
      const x = await Tensor.from(bits, { dtype: 'bf16', shape: [T, H] }).to(device);
      const out = await forwardPlanned(layer, x, plan, { seqLens });
      check(`planned step ${step} (${plan.deepepMode}${plan.useTbo ? ', tbo' : ''})`, xf, T, (await out.cpu()).toFloat32());
      // The same step as a decoder layer: the attention stand-in on the layer's stream, then the MoE on its output.
      const y = await forwardDecoderLayer(layer, x, { attention: ({ x: a, stream }) => linear(a, wo, { stream }), plan, seqLens });
      check(`decoder step ${step}`, standInAttention(xf, T, H), T, (await y.cpu()).toFloat32());
      y.close();
      out.close();
      x.close();
    }
    wo.close();
    layer.close();
  } finally {
    await transport.close();
    await ep.close();
  }
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
    // Its intermediates are allocated outside: no memory nodes, whose launch costs host time.
    const shape = graph.describe();
    report.checks++;
    report.graphShape = shape;
    if (shape.byType.memAlloc || shape.byType.memFree || !shape.byType.kernel) fail(`decode graph: ${JSON.stringify(shape)}, expected kernels and no memory nodes`);
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

async function deviceEplb() {
  const P = E + 8;
  const stream = new Stream(pg.device);
  const ep = await EpBuffer.create(pg, { hidden: H, numExperts: P, maxTokensPerRank: maxTokens, lowLatency: { maxTokensPerRank: maxTokens } });
  const map = ExpertLocationMap.trivial({ numLayers: 1, numLogical: E, numPhysical: P, numRanks: pg.worldSize });
  const placement = await DevicePlacement.create(map, { layer: 0, rank: pg.rank, device: pg.device, stream });
  const transport = new StoreTransport(pg.store, pg.rank, pg.worldSize, 'wideep/test/moe-eplb');
  try {
    const layer = await MoeLayer.fromHost(ep, weights, pg.device, { placement, stream });
    const eplb = new DeviceEplb([layer], { interval: 3, numGroups: config.numExpertGroups, transport });
    const rng = new SeededRandom(seed * 41 + pg.rank);
    for (let step = 0; step < 5; step++) {
      const T = 8 + rng.int(maxTokens - 8);
      const { xf, bits } = randomTokens(rng, T);
      const x = await Tensor.from(bits, { dtype: 'bf16', shape: [T, H] }).to(device, { stream });
      const out = await layer.forward(x, { mode: 'low-latency', stream });
      check(`eplb step ${step}`, xf, T, (await out.cpu({ stream })).toFloat32());
      out.close(stream);
      x.close(stream);
      let r;
      try {
        r = await eplb.afterStep(stream);
      } catch (e) {
        // Several ranks: EPLB moves experts between them, which needs NCCL.
        report.checks++;
        if (pg.worldSize === 1 || e.code !== 'ERR_UNSUPPORTED') fail(`DeviceEplb at step ${step}: ${e.code} ${e.message}`);
        break;
      }
      // Counters read after step 2 (the third), used one step later (lagSteps 1, the default).
      if (step === 3) {
        report.checks++;
        if (!r) fail('DeviceEplb: no rebalance after 4 steps (interval 3, lag 1)');
        else if (!(r.balancednessPredicted >= r.balancednessBefore)) fail(`DeviceEplb: balancedness ${r.balancednessBefore} -> ${r.balancednessPredicted}`);
        else report.eplb = r;
      } else if (r) fail(`DeviceEplb rebalanced after step ${step}, expected only after step 3`);
    }
    layer.close();
  } finally {
    await transport.close();
    placement.close();
    await ep.close();
    stream.close();
  }
}

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

async function fp8Experts() {
  const { seed: seed8, weights: w8 } = await sharedWeights(pg, 'wideep/test/moe-fp8-seed', fp8Config, { blockMagnitudes: true });
  const H8 = fp8Config.hidden;
  const check8 = (label, xf, T, got) => checkLayer(w8, label, xf, T, got, { expertDType: 'fp8e4m3' });
  const P = E + 8;
  const stream = new Stream(pg.device);
  const ep = await EpBuffer.create(pg, { hidden: H8, numExperts: P, maxTokensPerRank: maxTokens, lowLatency: { maxTokensPerRank: maxTokens } });
  const initial = ExpertLocationMap.trivial({ numLayers: 1, numLogical: E, numPhysical: P, numRanks: pg.worldSize });
  const placement = await DevicePlacement.create(initial, { layer: 0, rank: pg.rank, device: pg.device, stream });
  const rng = new SeededRandom(seed8 * 43 + pg.rank);
  const upload = async (T) => {
    const { xf, bits } = randomTokens(rng, T, H8);
    return { xf, x: await Tensor.from(bits, { dtype: 'bf16', shape: [T, H8] }).to(device, { stream }) };
  };
  // Eager steps, and a decode graph (fp8 scratch, no allocation inside) replayed around a rebalance
  // that moves weights and scales, with each way of running the expert GEMMs; each on its own placement.
  // Kernel nodes of each run's decode graph: the masked GEMM's must hold fewer (two GEMMs, against
  // one cuBLASLt launch per expert and GEMM), which shows that the masked run ran the masked kernel.
  const graphKernels = {};
  const steps = async (expertGemm) => {
    const own = await DevicePlacement.create(initial, { layer: 0, rank: pg.rank, device: pg.device, stream });
    let layer;
    try {
      layer = await MoeLayer.fromHost(ep, w8, pg.device, { placement: own, stream, expertDType: 'fp8e4m3', expertGemm });
      report.checks++;
      if (layer.expertDType !== 'fp8e4m3' || layer.expertGemm !== expertGemm) fail(`fp8 layer: expertDType ${layer.expertDType}, expertGemm ${layer.expertGemm}`);
      for (const [mode, tbo] of [['normal', false], ['low-latency', false], ['normal', true], ['low-latency', true]]) {
        const { xf, x } = await upload(1 + rng.int(maxTokens));
        const out = await layer.forward(x, { mode, stream, ...(tbo ? { tbo: {} } : {}) });
        check8(`fp8 ${expertGemm} ${mode}${tbo ? ' tbo' : ''}`, xf, x.shape[0], (await out.cpu({ stream })).toFloat32());
        out.close(stream);
        x.close(stream);
      }
      const T = 24;
      const x = Tensor.empty([T, H8], 'bf16', { device, stream });
      const out = Tensor.empty([T, H8], 'bf16', { device, stream });
      const graph = await layer.captureDecode(x, out, { stream });
      graphKernels[expertGemm] = graph.describe().byType.kernel ?? 0;
      const replays = async (label) => {
        for (let r = 0; r < 2; r++) {
          const { xf, bits } = randomTokens(rng, T, H8);
          await x.copyFrom(Tensor.from(bits, { dtype: 'bf16', shape: [T, H8] }), { stream });
          out.fillBytes(0xff, stream);
          graph.launch(stream);
          await stream.synchronize();
          report.replays++;
          check8(`fp8 ${expertGemm} ${label} replay ${r}`, xf, T, (await out.cpu({ stream })).toFloat32());
        }
      };
      await replays('decode graph');
      const plan = await layer.rebalance(reversedWithinRanks(initial), { stream });
      report.moves += plan.moves.length;
      if (plan.moves.length === 0) fail('fp8: the rebalance moved nothing');
      await replays('after rebalance');
      graph.close();
      x.close();
      out.close();
    } finally {
      layer?.close();
      own.close();
    }
  };
  try {
    await steps('cublaslt');
    await steps('masked');
    report.checks++;
    if (!(graphKernels.masked < graphKernels.cublaslt)) {
      fail(`fp8 decode graphs: ${graphKernels.masked} kernel nodes with the masked GEMM, ${graphKernels.cublaslt} with cuBLASLt's (expected fewer)`);
    }
    // Random fp8 weights: block scales in [0.5, 1.5)/sqrt(fan-in), replicas alike, a layer on them gives finite output.
    const rw = randomLayerWeights(ep, fp8Config, { seed: 3, device: pg.device, placement, expertDType: 'fp8e4m3', stream });
    const s13 = (await rw.experts.w13Scales.cpu({ stream })).toFloat32();
    report.checks++;
    const [lo, hi] = [0.5 / Math.sqrt(H8), 1.5 / Math.sqrt(H8)];
    if (s13.some((v) => !(v >= lo && v < hi))) fail(`random fp8 weights: a w13 block scale outside [${lo}, ${hi})`);
    // Every replica of an expert holds the same values and scales.
    const q13 = new Uint8Array((await rw.experts.w13.cpu({ stream })).data.buffer);
    const L8 = ep.config.numLocalExperts;
    const mine = placement.map.layerPhy2Log(0).slice(pg.rank * L8, (pg.rank + 1) * L8);
    const [perQ, perS] = [q13.length / L8, s13.length / L8];
    mine.forEach((e, l) => {
      const f = mine.indexOf(e);
      if (f === l) return;
      report.checks++;
      const same = (a, per) => a.subarray(l * per, (l + 1) * per).every((v, i) => v === a[f * per + i]);
      if (!same(q13, perQ) || !same(s13, perS)) fail(`random fp8 weights: slots ${f} and ${l} both hold expert ${e} but differ`);
    });
    const random = new MoeLayer(ep, fp8Config, rw, { placement, owns: false });
    const { x: rx } = await upload(8);
    const ryT = await random.forward(rx, { mode: 'normal', stream });
    const ry = (await ryT.cpu({ stream })).toFloat32();
    report.checks++;
    if (!ry.every(Number.isFinite) || ry.every((v) => v === 0)) fail('random fp8 weights: the layer output is not finite, or all zero');
    // Refusals before any kernel: fp8 weights without scales, and a width the block-scaled GEMMs cannot take.
    const narrow = { ...fp8Config, hidden: 256 };
    for (const [label, make, code, words] of [
      ['fp8 weights without scales', () => new MoeLayer(ep, fp8Config, { ...rw, experts: { w13: rw.experts.w13, w2: rw.experts.w2 } }, { placement }), 'ERR_INVALID_ARG', 'w13Scales'],
      ['fp8 experts of hidden 256', () => randomLayerWeights(ep, narrow, { seed: 4, device: pg.device, placement, expertDType: 'fp8e4m3', stream }), 'ERR_SHAPE', 'multiples of 512'],
    ]) {
      report.checks++;
      try {
        make();
        fail(`${label}: accepted`);
      } catch (err) {
        if (err.code !== code || !err.message.includes(words)) fail(`${label}: ${err.code} ${err.message}`);
      }
    }
    for (const t of [rx, ryT, ...deviceWeightTensors(rw)]) t.close(stream);
  } finally {
    placement.close();
    await ep.close();
    stream.close();
  }
}

try {
  await eagerSteps();
  await decodeGraphAndRebalance();
  await deviceEplb();
  await plannedSteps();
  await weightsFromFiles();
  await fp8Experts();
} catch (e) {
  fail(`${e.code ?? ''} ${e.message}`);
}
process.stdout.write(`${JSON.stringify(report)}\n`);
