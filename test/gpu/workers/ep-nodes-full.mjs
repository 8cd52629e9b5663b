// One of four ranks as two nodes of two (ranksPerNode 2), NCCL on its
// network transport between the nodes (NCCL_P2P_DISABLE=1
// NCCL_SHM_DISABLE=1 from the suite). The cuda buffer's dispatch, cached
// dispatch and combine against the cpu backend's hierarchical path on the
// same fresh inputs; then an id out of range on one rank fails the dispatch
// on every rank, and the buffer still works after it.
import { EpBuffer, Tensor } from '../../../dist/index.js';
import { Checker, absTensor, bf16Random, joinJob, oracleBuffers, rankInputs, toDevice } from './ep-common.mjs';

const { pg, seed, device } = await joinJob();
const check = new Checker(pg.rank);
const R = pg.worldSize;
const me = pg.rank;
const c = { T: 64, H: 1024, k: 8, E: 32, routing: 'zipf', drop: 0.1, fp8Input: true };
const options = { hidden: c.H, numExperts: c.E, maxTokensPerRank: c.T, maxTopk: 16, timeoutMs: 30_000, ranksPerNode: 2 };

let code = 1;
const cpu = await oracleBuffers(R, options);
const gpu = await EpBuffer.create(pg, { ...options, backend: 'cuda' });
try {
  for (let rep = 0; rep < 4; rep++) {
    const s = seed + rep * 7919;
    const all = Array.from({ length: R }, (_, r) => rankInputs(c, s, r));
    const useFp8 = rep % 2 === 1;
    const xOf = (inp) => (useFp8 ? { x: inp.xFp8, xScales: inp.xScales } : { x: inp.x });
    const where = `rep ${rep}${useFp8 ? ' fp8' : ''}`;
    const ref = await Promise.all(all.map((inp, r) => cpu[r].dispatch({ ...xOf(inp), topkIdx: inp.topkIdx, topkWeights: inp.topkWeights })));
    const mine = all[me];
    const d = await gpu.dispatch({
      x: await toDevice(xOf(mine).x, device), xScales: await toDevice(xOf(mine).xScales, device),
      topkIdx: await toDevice(mine.topkIdx, device), topkWeights: await toDevice(mine.topkWeights, device),
    });
    await d.event?.done();
    const want = ref[me];
    check.checks++;
    if (d.numRecvTokens !== want.numRecvTokens) check.fail(where, `numRecvTokens ${d.numRecvTokens} vs ${want.numRecvTokens}`);
    check.bitwise(`${where} recvX`, await d.recvX.cpu(), want.recvX);
    if (useFp8) check.bitwise(`${where} recvXScales`, await d.recvXScales.cpu(), want.recvXScales);
    check.bitwise(`${where} recvTopkIdx`, await d.recvTopkIdx.cpu(), want.recvTopkIdx);
    check.bitwise(`${where} recvTopkWeights`, await d.recvTopkWeights.cpu(), want.recvTopkWeights);
    const cref = await Promise.all(all.map((inp, r) => cpu[r].dispatch({ ...xOf(inp), handle: ref[r].handle })));
    const cd = await gpu.dispatch({ x: await toDevice(xOf(mine).x, device), xScales: await toDevice(xOf(mine).xScales, device), handle: d.handle });
    await cd.event?.done();
    check.bitwise(`${where} cached recvX`, await cd.recvX.cpu(), cref[me].recvX);
    cd.release();
    cref.forEach((r) => r.release());

    const combIn = ref.map((r, rank) => Tensor.from(bf16Random(r.recvX.shape[0] * c.H, s * 17 + rank), { shape: [r.recvX.shape[0], c.H], dtype: 'bf16' }));
    const bias = all.map((inp, rank) => Tensor.from(bf16Random(inp.T * c.H, s * 19 + rank), { shape: [inp.T, c.H], dtype: 'bf16' }));
    const cc = await Promise.all(ref.map((r, rank) => cpu[rank].combine({ x: combIn[rank], handle: r.handle, topkWeights: r.recvTopkWeights, bias: bias[rank], keepHandle: true })));
    const mags = await Promise.all(ref.map((r, rank) => cpu[rank].combine({ x: absTensor(combIn[rank]), handle: r.handle, bias: absTensor(bias[rank]) })));
    const gc = await gpu.combine({ x: await combIn[me].to(device), handle: d.handle, topkWeights: d.recvTopkWeights, bias: await bias[me].to(device) });
    await gc.event?.done();
    // The cpu path's own combine differs from the flat one by each node's rounding; both are within 2^-6.
    check.closeBf16(`${where} combinedX`, await gc.combinedX.cpu(), cc[me].combinedX, mags[me].combinedX);
    check.closeF32(`${where} combinedTopkWeights`, await gc.combinedTopkWeights.cpu(), cc[me].combinedTopkWeights);
  }
  // An id out of range on rank 3: every rank fails the dispatch, and the next one goes through.
  const inp = rankInputs(c, seed + 1, me);
  const idx = Int32Array.from(inp.topkIdx.data);
  if (me === 3 && idx.length > 0) idx[0] = c.E + 5;
  const bad = gpu.dispatch({ x: await toDevice(inp.x, device), topkIdx: await Tensor.from(idx, { shape: inp.topkIdx.shape, dtype: 'i32' }).to(device), topkWeights: await toDevice(inp.topkWeights, device) });
  await check.refuses('bad ids', bad, me === 3 ? 'ERR_INVALID_ARG' : 'ERR_PEER');
  const ok = await gpu.dispatch({ x: await toDevice(inp.x, device), topkIdx: await toDevice(inp.topkIdx, device), topkWeights: await toDevice(inp.topkWeights, device) });
  await ok.event?.done();
  check.checks++;
  ok.release();
  code = check.report({ worldSize: R });
} catch (e) {
  check.fail('exception', e?.stack ?? String(e));
  code = check.report({ worldSize: R });
}
await gpu.close();
await Promise.all(cpu.map((b) => b.close()));
await pg.close();
process.exit(code);
