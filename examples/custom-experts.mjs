// Your own experts between dispatch and combine: MoeLayer.forward's `experts`
// option takes a function that gets this rank's received rows in expert-major
// layout (x bf16 [L, M, H], the first counts[l] rows of x[l] valid) and
// returns the experts' outputs in the same layout, enqueued on `stream`.
// Here it is a plain loop over the local experts, one linear + SwiGLU +
// linear each, checked against the layer's built-in grouped GEMMs in both
// modes (prefill's normal dispatch, decode's low-latency one).
//
//   node examples/custom-experts.mjs                                (one GPU)
//   npx wideep launch --nproc-per-node 2 examples/custom-experts.mjs
//
// Without a GPU it says so and exits 0.
import { EpBuffer, MoeLayer, Stream, Tensor, capabilities, fillRandom, initProcessGroup, linear, randomLayerWeights, swiglu } from 'wideep';
import { moeLayerConfig } from 'wideep/simulation';
import { compareClose, describeClose, poison } from 'wideep/testing';

const caps = capabilities();
if (!caps.cuda.available || !caps.cublasLt.found) {
  console.log(`skipped: this example needs a GPU and cuBLASLt (${caps.cuda.reason ?? caps.cublasLt.reason})`);
  process.exit(0);
}

const pg = await initProcessGroup();
const config = moeLayerConfig({ hidden: 1024, moeIntermediate: 256, numRoutedExperts: 32, topK: 8, numExpertGroups: 8, topkGroup: 4 });
const { hidden: H, moeIntermediate: I } = config;
const T = 64;
const stream = new Stream(pg.device);
const on = { device: `cuda:${pg.device}`, stream };
const ep = await EpBuffer.create(pg, { hidden: H, numExperts: config.numRoutedExperts, maxTokensPerRank: T, lowLatency: { maxTokensPerRank: T } });
const weights = randomLayerWeights(ep, config, { seed: 7, device: pg.device, stream });
const layer = new MoeLayer(ep, config, weights);

/** The local experts one at a time: y[l] = down(silu(gate(x[l])) * up(x[l])). */
function loopExperts({ x, stream }) {
  const [L, M] = x.shape;
  const y = Tensor.empty(x.shape, 'bf16', on);
  for (let l = 0; l < L; l++) {
    const rows = x.narrow(l, 1).reshape([M, H]);
    const gateUp = linear(rows, weights.experts.w13.narrow(l, 1).reshape([2 * I, H]), { stream }); // [M, 2I]
    const act = swiglu({ x: gateUp, stream }).out; // [M, I]
    linear(act, weights.experts.w2.narrow(l, 1).reshape([H, I]), { out: y.narrow(l, 1).reshape([M, H]), stream });
    gateUp.close(stream);
    act.close(stream);
  }
  return y;
}

const x = fillRandom(Tensor.empty([T, H], 'bf16', on), 11 + pg.rank, { kind: 'normal', std: 1 }, stream);
let ok = true;
for (const mode of ['normal', 'low-latency']) {
  const builtIn = poison(Tensor.empty([T, H], 'bf16', on), stream);
  const mine = poison(Tensor.empty([T, H], 'bf16', on), stream);
  await layer.forward(x, { mode, stream, out: builtIn });
  await layer.forward(x, { mode, stream, out: mine, experts: loopExperts });
  const expected = (await builtIn.cpu({ stream })).toFloat32();
  const got = (await mine.cpu({ stream })).toFloat32();
  // Two GEMM paths round differently: a few bf16 ulps, relative to the output's size.
  const size = expected.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const r = compareClose(got, expected, { atol: 2 ** -6 * size, rtol: 2 ** -5 });
  console.log(describeClose(`${mode}: your experts against the built-in ones`, r, H));
  ok &&= r.pass;
  builtIn.close(stream);
  mine.close(stream);
}
x.close(stream);
await ep.close();
process.exit(ok ? 0 : 1);
