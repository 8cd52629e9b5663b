// One rank of examples/moe-layer.test.mjs, written as a user's integration
// test worker would be: a small DeepSeek-style layer on this rank's GPU,
// against the same layer computed on the host from the same bf16 weights
// (wideep/testing's moeLayerReference), outputs poisoned before every run:
// prefill steps (normal dispatch; the last rank sends no tokens in one) and
// a decode step captured as a CUDA graph, replayed on fresh tokens. Tokens
// whose expert choice is within rounding of a tie are counted, not compared.
// Prints one JSON report line; SEED (set by the test) picks the inputs.
import { EpBuffer, MoeLayer, Stream, Tensor, bf16BitsToF32, f32ToBf16Bits, initProcessGroup } from 'wideep';
import { generateMoeLayerWeights, moeLayerConfig } from 'wideep/simulation';
import { SeededRandom, compareClose, describeClose, moeLayerReference, poison } from 'wideep/testing';

const config = moeLayerConfig({ hidden: 256, moeIntermediate: 128, numRoutedExperts: 32, numSharedExperts: 1, topK: 4, numExpertGroups: 4, topkGroup: 2 });
const H = config.hidden;
const seed = Number(process.env.SEED ?? 1);
const pg = await initProcessGroup();
const report = { rank: pg.rank, seed, checks: 0, failures: [], tokens: 0, nearTies: 0, replays: 0 };
const rng = new SeededRandom(seed * 1000 + pg.rank);
const weights = generateMoeLayerWeights(config, seed); // bf16 values, the same on every rank
const stream = new Stream(pg.device);
const on = { device: `cuda:${pg.device}`, stream };

/** T random tokens: bf16 bits for the GPU and their values for the host. */
function randomTokens(T) {
  const bits = Uint16Array.from({ length: T * H }, () => f32ToBf16Bits(rng.normal()));
  return { bits, values: Float32Array.from(bits, bf16BitsToF32), host: Tensor.from(bits, { dtype: 'bf16', shape: [T, H] }) };
}

/** Compares a GPU output with the host layer; tokens near a tie are left out. */
async function check(label, tokens, T, out) {
  const ref = moeLayerReference(weights, tokens.values, T);
  const got = (await out.cpu({ stream })).toFloat32();
  const r = compareClose(got, ref.out, { atol: 1e-3, rtol: 2 ** -5, scale: ref.scale, include: (i) => ref.nearTie[Math.floor(i / H)] === 0 });
  report.tokens += T;
  report.nearTies += ref.nearTie.reduce((a, b) => a + b, 0);
  report.checks += r.checked;
  if (!r.pass) report.failures.push(describeClose(label, r, H));
}

const maxTokens = 64;
const ep = await EpBuffer.create(pg, { hidden: H, numExperts: config.numRoutedExperts, maxTokensPerRank: maxTokens, lowLatency: { maxTokensPerRank: maxTokens } });
try {
  const layer = await MoeLayer.fromHost(ep, weights, pg.device, { stream });
  for (let step = 0; step < 3; step++) {
    const T = step === 1 && pg.rank === pg.worldSize - 1 ? 0 : 1 + rng.int(maxTokens);
    const tokens = randomTokens(T);
    const x = await tokens.host.to(on.device, { stream });
    const out = poison(Tensor.empty([T, H], 'bf16', on), stream);
    await layer.forward(x, { mode: 'normal', stream, out });
    await check(`prefill step ${step}`, tokens, T, out);
    x.close(stream);
    out.close(stream);
  }

  const T = 32;
  const x = Tensor.empty([T, H], 'bf16', on);
  const out = Tensor.empty([T, H], 'bf16', on);
  await x.copyFrom(randomTokens(T).host, { stream });
  const graph = await layer.captureDecode(x, out, { stream });
  for (let r = 0; r < 3; r++) {
    const tokens = randomTokens(T);
    await x.copyFrom(tokens.host, { stream });
    poison(out, stream);
    graph.launch(stream);
    await check(`decode replay ${r}`, tokens, T, out);
    report.replays++;
  }
  graph.close();
  x.close(stream);
  out.close(stream);
} catch (e) {
  report.failures.push(`${e.code ?? ''} ${e.message}`);
} finally {
  await ep.close();
}
console.log(JSON.stringify(report));
