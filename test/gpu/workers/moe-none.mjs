// One rank of the GPU test of the routed experts without token moves
// (--moe-a2a-backend none): tokens all-gathered over NCCL, each rank's
// experts on every token, shares reduce-scattered back, against the host
// layer's routed experts. One rank has no tokens in one step; one step runs
// fp8 experts (a wider layer; block-scaled weights cast on the host, tokens
// cast on the device) against the host layer making the same casts. Then the
// attention-TP plumbing: dpScatter sums every rank's partials and hands each
// its share of the tokens, dpGather brings all tokens back (an odd token
// count, so the padding shows); and decoder-layer steps (forwardDecoderLayer)
// with one attention-TP group over every rank: each member's share of an
// exact attention stand-in, scattered, the EP MoE layer on each share, the
// outputs gathered, against the host layer; and an fp8 layer whose expert
// weights and block scales move between ranks over NCCL in a rebalance, a
// decode step checked before and after. Prints one JSON report.
import {
  CommGroups,
  DevicePlacement,
  EpBuffer,
  MoeLayer,
  StoreTransport,
  Stream,
  Tensor,
  agreeOnStep,
  dpGather,
  dpScatter,
  forwardDecoderLayer,
  gatheredMoe,
  initProcessGroup,
  linear,
  moeTokenCount,
  quantizeWeightFp8,
} from '../../../dist/index.js';
import { ExpertLocationMap, ParallelConfig } from '../../../dist/planning/index.js';
import { SeededRandom } from '../../../dist/testing/index.js';
import { E, H, check, config, fail, fp8Config, randomTokens, report, sharedWeights, standInAttention, standInAttentionWeight } from './moe-common.mjs';

const pg = await initProcessGroup();
const { seed, weights } = await sharedWeights(pg, 'wideep/test/moe-none-seed');
const device = `cuda:${pg.device}`;
const I = config.moeIntermediate;
const L = E / pg.worldSize;
const maxTokensPerRank = 48;
const bf16 = (f32, shape) => Tensor.from(new Uint16Array(new Uint32Array(f32.buffer, f32.byteOffset, f32.length).map((u) => u >>> 16)), { dtype: 'bf16', shape }).to(device);
// The plan's groups (DP attention + EP over every rank): the world, and an EP group when there are several ranks.
const plan = ParallelConfig.fromOptions({ tp: pg.worldSize, dpSize: pg.worldSize, enableDpAttention: pg.worldSize > 1, moeA2aBackend: 'deepep' });
const groups = await CommGroups.create(pg, plan);
const ep = groups.get('moeEp');
if ((ep === undefined) !== (pg.worldSize === 1)) fail(`CommGroups: an EP communicator ${ep ? 'at one rank' : `missing at ${pg.worldSize} ranks`}`);
if (ep && ep.size !== pg.worldSize) fail(`CommGroups: the EP communicator has ${ep.size} ranks, expected ${pg.worldSize}`);
const comm = groups.world;
try {
  const w13 = new Float32Array(L * 2 * I * H);
  const w2 = new Float32Array(L * H * I);
  for (let l = 0; l < L; l++) {
    const x = weights.experts[pg.rank * L + l];
    w13.set(x.gate, l * 2 * I * H);
    w13.set(x.up, l * 2 * I * H + I * H);
    w2.set(x.down, l * H * I);
  }
  const layer = {
    gate: await bf16(weights.gate, [E, H]),
    gateBias: await Tensor.from(Float32Array.from(weights.gateBias)).to(device),
    experts: { w13: await bf16(w13, [L, 2 * I, H]), w2: await bf16(w2, [L, H, I]) },
  };
  for (let step = 0; step < 3; step++) {
    const rng = new SeededRandom(seed * 13 + pg.rank * 7 + step);
    const T = step === 1 && pg.rank === pg.worldSize - 1 ? 0 : 1 + rng.int(maxTokensPerRank);
    const { xf, bits } = randomTokens(rng, T);
    const x = await Tensor.from(bits, { dtype: 'bf16', shape: [T, H] }).to(device);
    const out = await gatheredMoe({ x, comm, maxTokensPerRank, config, ...layer });
    check(weights, `step ${step}`, xf, T, (await out.cpu()).toFloat32(), { withShared: false });
    out.close();
    x.close();
  }
  await fp8Step();
  await decoderSteps();
  await crossRankMoves();
  // Every rank's partials are seeded by its rank, so each can compute the sums on the host.
  const T = 2 * pg.worldSize + 1;
  const partials = (r) => randomTokens(new SeededRandom(seed * 3 + r), T).xf;
  const mine = await Tensor.from(randomTokens(new SeededRandom(seed * 3 + pg.rank), T).bits, { dtype: 'bf16', shape: [T, H] }).to(device);
  const sum = new Float64Array(T * H);
  for (let r = 0; r < pg.worldSize; r++) partials(r).forEach((v, i) => (sum[i] += v));
  const share = dpScatter(mine, comm);
  const per = share.shape[0];
  const got = (await share.cpu()).toFloat32();
  const tol = (v) => 2 ** -7 * pg.worldSize * (Math.abs(v) + 1);
  for (let i = 0; i < per * H; i++) {
    const t = pg.rank * per + Math.floor(i / H);
    const want = t < T ? sum[t * H + (i % H)] : 0; // padded rows sum zeros
    report.checks++;
    if (!(Math.abs(got[i] - want) <= tol(want))) fail(`dpScatter row ${t} channel ${i % H}: got ${got[i]}, expected ${want}`);
  }
  const back = (await dpGather(share, comm, T).cpu()).toFloat32();
  if (back.length !== T * H) fail(`dpGather: ${back.length / H} rows, expected ${T}`);
  for (let i = 0; i < T * H; i++) {
    report.checks++;
    if (!(Math.abs(back[i] - sum[i]) <= tol(sum[i]))) fail(`dpGather row ${Math.floor(i / H)} channel ${i % H}: got ${back[i]}, expected ${sum[i]}`);
  }
} catch (e) {
  fail(`${e.code ?? ''} ${e.message}`);
} finally {
  groups.close();
}

/** fp8 experts with redundant slots: a rebalance where every slot takes its expert from another rank, decode steps before and after. */
async function crossRankMoves() {
  const R = pg.worldSize;
  const { seed: s8, weights: w8 } = await sharedWeights(pg, 'wideep/test/moe-none-move-seed', fp8Config, { blockMagnitudes: true });
  const H8 = fp8Config.hidden;
  const P = E + 8;
  const stream = new Stream(pg.device);
  const ep = await EpBuffer.create(pg, { hidden: H8, numExperts: P, maxTokensPerRank, lowLatency: { maxTokensPerRank } });
  const initial = ExpertLocationMap.trivial({ numLayers: 1, numLogical: E, numPhysical: P, numRanks: R });
  const placement = await DevicePlacement.create(initial, { layer: 0, rank: pg.rank, device: pg.device, stream });
  const rng = new SeededRandom(s8 * 11 + pg.rank);
  try {
    const layer = await MoeLayer.fromHost(ep, w8, pg.device, { placement, stream, expertDType: 'fp8e4m3' });
    const step = async (label) => {
      const T = 1 + rng.int(maxTokensPerRank);
      const { xf, bits } = randomTokens(rng, T, H8);
      const x = await Tensor.from(bits, { dtype: 'bf16', shape: [T, H8] }).to(device, { stream });
      const out = await layer.forward(x, { mode: 'low-latency', stream });
      check(w8, label, xf, T, (await out.cpu({ stream })).toFloat32(), { expertDType: 'fp8e4m3' });
      out.close(stream);
      x.close(stream);
    };
    await step('fp8 before the cross-rank rebalance');
    // Slot p takes the expert of slot p + P/R, one rank on: with several ranks, experts this rank lacks arrive over NCCL.
    const row = initial.layerPhy2Log(0);
    const next = ExpertLocationMap.fromPhy2Log([row.map((_, p) => row[(p + P / R) % P])], { numLogical: E, numRanks: R });
    const plan = await layer.rebalance(next, { comm, stream });
    report.moves += plan.moves.length;
    report.checks++;
    if (R > 1 && plan.counts.recv === 0) fail('the rebalance moved nothing between ranks');
    await step('fp8 after the cross-rank rebalance');
    layer.close();
  } finally {
    placement.close();
    await ep.close();
    stream.close();
  }
}

/** Decoder-layer steps, one attention-TP group over every rank: a prefill step, then a decode step. */
async function decoderSteps() {
  const R = pg.worldSize;
  const ep = await EpBuffer.create(pg, { hidden: H, numExperts: E, maxTokensPerRank, lowLatency: { maxTokensPerRank } });
  const transport = new StoreTransport(pg.store, pg.rank, R, 'wideep/test/moe-none-decoder');
  const settings = { attnTpSize: 1, moeA2aBackend: 'deepep', deepepMode: 'auto', enableTwoBatchOverlap: false, numMaxDispatchTokensPerRank: maxTokensPerRank };
  const layer = await MoeLayer.fromHost(ep, weights, pg.device);
  const wo = await Tensor.from(standInAttentionWeight(H, pg.rank, R), { dtype: 'bf16', shape: [H, H] }).to(device);
  try {
    for (const [step, forwardMode] of [[0, 'extend'], [1, 'decode']]) {
      // The members of an attention-TP group hold the same tokens; a count no multiple of R, so the padding shows.
      const rng = new SeededRandom(seed * 23 + step);
      const T = 2 * R + 1 + 2 * rng.int(10);
      const { xf, bits } = randomTokens(rng, T);
      const x = await Tensor.from(bits, { dtype: 'bf16', shape: [T, H] }).to(device);
      const plan = await agreeOnStep(transport, settings, { numTokens: moeTokenCount(T, R), forwardMode });
      const y = await forwardDecoderLayer(layer, x, { attention: ({ x: a, stream }) => linear(a, wo, { stream }), plan, attnTp: R > 1 ? comm : undefined });
      check(weights, `decoder step ${step} (${plan.deepepMode}), attention-TP ${R}`, standInAttention(xf, T, H), T, (await y.cpu()).toFloat32());
      y.close();
      x.close();
    }
  } finally {
    wo.close();
    layer.close();
    await transport.close();
    await ep.close();
  }
}

/** This rank's experts of the fp8 layer, cast to 128x128 blocks on the host, with the gate; one step. */
async function fp8Step() {
  const { seed: s8, weights: w8 } = await sharedWeights(pg, 'wideep/test/moe-none-fp8-seed', fp8Config, { blockMagnitudes: true });
  const [H8, I8] = [fp8Config.hidden, fp8Config.moeIntermediate];
  const mine = Array.from({ length: L }, (_, l) => w8.experts[pg.rank * L + l]);
  const q13 = mine.map((e) => quantizeWeightFp8(e.packed.subarray(0, 2 * I8 * H8), 2 * I8, H8));
  const q2 = mine.map((e) => quantizeWeightFp8(e.down, H8, I8));
  const cat = (parts, Ctor) => {
    const out = new Ctor(parts.reduce((n, p) => n + p.length, 0));
    parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
    return out;
  };
  const up = (data, dtype, shape) => Tensor.from(data, { dtype, shape }).to(device);
  const experts = {
    w13: await up(cat(q13.map((m) => m.q), Uint8Array), 'fp8e4m3', [L, 2 * I8, H8]),
    w13Scales: await up(cat(q13.map((m) => m.scales), Float32Array), 'f32', [L, (2 * I8) / 128, H8 / 128]),
    w2: await up(cat(q2.map((m) => m.q), Uint8Array), 'fp8e4m3', [L, H8, I8]),
    w2Scales: await up(cat(q2.map((m) => m.scales), Float32Array), 'f32', [L, H8 / 128, I8 / 128]),
  };
  const gate = await bf16(w8.gate, [E, H8]);
  const gateBias = await Tensor.from(Float32Array.from(w8.gateBias)).to(device);
  const rng = new SeededRandom(s8 * 19 + pg.rank);
  const T = 1 + rng.int(maxTokensPerRank);
  const { xf, bits } = randomTokens(rng, T, H8);
  const x = await Tensor.from(bits, { dtype: 'bf16', shape: [T, H8] }).to(device);
  const out = await gatheredMoe({ x, comm, maxTokensPerRank, config: fp8Config, gate, gateBias, experts });
  check(w8, 'fp8 step', xf, T, (await out.cpu()).toFloat32(), { withShared: false, expertDType: 'fp8e4m3' });
  for (const t of [out, x, gate, gateBias, ...Object.values(experts)]) t.close();
}
process.stdout.write(`${JSON.stringify(report)}\n`);
