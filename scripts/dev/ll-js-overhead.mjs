// The JavaScript cost of the low-latency calls, with every native call
// replaced by a no-op: what the library itself adds on top of the kernel
// launches, measurable on a machine without a GPU. Needs the built addon
// (for the baton layout) and dist/. Prints median microseconds per call.
//   node scripts/dev/ll-js-overhead.mjs [iterations]
import { EpBuffer, Tensor, TcpStoreServer, initProcessGroup } from '../../dist/index.js';
import { median } from '../../dist/cli/bench/stats.js';
import { stubNative } from './stub-native.mjs';

const ITERS = Number(process.argv[2] ?? 20000);
stubNative('ll-js-overhead');

// ---- one rank with a real store --------------------------------------------------
const server = await TcpStoreServer.listen({ host: '127.0.0.1', port: 0 });
const env = { RANK: '0', WORLD_SIZE: '1', LOCAL_RANK: '0', LOCAL_WORLD_SIZE: '1', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(server.port) };
const pg = await initProcessGroup({ env });
const T = 128;
const H = 7168;
const k = 8;
const buffer = await EpBuffer.create(pg, { backend: 'cuda', hidden: H, numExperts: 256, maxTokensPerRank: 128, maxTopk: k, lowLatency: { maxTokensPerRank: T } });
const device = `cuda:${pg.device}`;
const x = Tensor.empty([T, H], 'bf16', { device });
const topkIdx = Tensor.empty([T, k], 'i32', { device });
const topkWeights = Tensor.empty([T, k], 'f32', { device });
const y = Tensor.empty([buffer.numLocalExperts, T, H], 'bf16', { device });
const out = Tensor.empty([T, H], 'bf16', { device });
const dispatchArgs = { x, topkIdx, maxTokensPerRank: T, numExperts: 256 };

const us = { dispatch: [], combine: [] };
for (let i = 0; i < ITERS; i++) {
  const t0 = performance.now();
  const d = await buffer.lowLatencyDispatch(dispatchArgs);
  const t1 = performance.now();
  await buffer.lowLatencyCombine({ y, topkIdx, topkWeights, handle: d.handle, out });
  const t2 = performance.now();
  us.dispatch.push((t1 - t0) * 1e3);
  us.combine.push((t2 - t1) * 1e3);
}
console.log(JSON.stringify({ iterations: ITERS, medianUs: { dispatch: +median(us.dispatch).toFixed(2), combine: +median(us.combine).toFixed(2) } }));
await buffer.close();
await pg.close();
await server.close();
