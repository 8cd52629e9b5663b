// The JavaScript cost of one eager MoE decode step (router, shared expert,
// low-latency dispatch, experts, combine) with every native call replaced by
// a no-op (stub-native.mjs): what the library itself adds on top of the
// launches, measurable without a GPU. Needs the built addon and dist/.
//   node [--cpu-prof] scripts/dev/moe-js-overhead.mjs [iterations] [experts]
import { stubNative } from './stub-native.mjs';
import { EpBuffer, MoeLayer, Tensor, TcpStoreServer, initProcessGroup, randomLayerWeights } from '../../dist/index.js';
import { layerConfig, moeShape } from '../../dist/cli/bench/moe-cases.js';
import { median } from '../../dist/cli/bench/stats.js';

stubNative('moe-js-overhead');
const ITERS = Number(process.argv[2] ?? 5000);
const experts = Number(process.argv[3] ?? 32);
const shape = moeShape({ experts, prefillTokens: 128, decodeTokens: 128 });
const config = layerConfig(shape);
const server = await TcpStoreServer.listen({ host: '127.0.0.1', port: 0 });
const env = { RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(server.port) };
const pg = await initProcessGroup({ env });
const ep = await EpBuffer.create(pg, { backend: 'cuda', hidden: shape.hidden, numExperts: experts, maxTokensPerRank: 128, maxTopk: 8, lowLatency: { maxTokensPerRank: 128 } });
const layer = new MoeLayer(ep, config, randomLayerWeights(ep, config, { seed: 1, device: pg.device }));
const device = `cuda:${pg.device}`;
const x = Tensor.empty([shape.decodeTokens, shape.hidden], 'bf16', { device });
const out = Tensor.empty([shape.decodeTokens, shape.hidden], 'bf16', { device });

const us = [];
for (let i = 0; i < ITERS; i++) {
  const t0 = performance.now();
  await layer.forward(x, { mode: 'low-latency', out });
  us.push((performance.now() - t0) * 1e3);
}
console.log(JSON.stringify({ iterations: ITERS, experts, medianUsPerStep: +median(us.slice(ITERS >> 1)).toFixed(2) }));
await ep.close();
await pg.close();
await server.close();
