// A worker of `wideep launch --single-host`: says where the launcher put it, then runs a
// cpu EP dispatch and combine over the job's store twice, flat and over the group's nodes
// (the default), and says whether both paths gave the same rows.
import { EpBuffer } from '../../../dist/ep/buffer.js';
import { initProcessGroup } from '../../../dist/runtime/process-group.js';
import { Tensor } from '../../../dist/tensor/tensor.js';

const pg = await initProcessGroup({ timeoutMs: 20_000 });
const { rank, worldSize } = pg;
const [T, H, k, E] = [8, 128, 4, 2 * worldSize];
let state = rank + 1;
const next = () => (state = (state * 1103515245 + 12345) >>> 0) >>> 8;
const x = Tensor.from(Uint16Array.from({ length: T * H }, () => 0x3f00 + (next() % 256)), { shape: [T, H], dtype: 'bf16' });
const topkIdx = Tensor.from(Int32Array.from({ length: T * k }, () => next() % E), { shape: [T, k], dtype: 'i32' });
const topkWeights = Tensor.from(Float32Array.from({ length: T * k }, () => (next() % 100) / 100), { shape: [T, k], dtype: 'f32' });

const options = { backend: 'cpu', hidden: H, numExperts: E, maxTokensPerRank: T, timeoutMs: 20_000 };
const flat = await EpBuffer.create(pg, { ...options, ranksPerNode: worldSize });
const nodes = await EpBuffer.create(pg, options);
const results = [];
for (const ep of [flat, nodes]) {
  const d = await ep.dispatch({ x, topkIdx, topkWeights });
  const { combinedX } = await ep.combine({ x: d.recvX, handle: d.handle });
  results.push({ rows: Buffer.from(d.recvX.data.buffer, d.recvX.data.byteOffset, d.recvX.data.byteLength), combined: combinedX.data.length });
}
const same = results[0].rows.equals(results[1].rows) && results[0].combined === results[1].combined;
console.log(
  `rank=${rank} node=${pg.nodeRank}/${pg.nnodes} local=${pg.localRank}/${pg.localWorldSize} ` +
    `cvd=${process.env.CUDA_VISIBLE_DEVICES} ranksPerNode=${nodes.config.ranksPerNode} same=${same}`,
);
await flat.close();
await nodes.close();
await pg.close();
