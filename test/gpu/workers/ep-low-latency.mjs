// One rank of the low-latency correctness suite: dispatch (fp8 or bf16, with
// and without receive hooks) and weighted combine, compared with the cpu
// backend over simulated ranks on the same fresh inputs; then a captured
// dispatch -> copy -> combine step replayed 1000 times against eager mode.
import { EpBuffer, Stream, Tensor } from '../../../dist/index.js';
import { BACKEND, Checker, DRY_RUN, absTensor, bf16Random, checkGraphReplays, joinJob, oracleBuffers, rankInputs, runCasesAndExit } from './ep-common.mjs';

const CASES = JSON.parse(process.env.WIDEEP_TEST_CASES ?? '[]');
const { pg, seed, device } = await joinJob();
const R = pg.worldSize;
const me = pg.rank;
const check = new Checker(me);
const maxH = Math.max(...CASES.map((c) => c.H));
const buffers = new Map();

async function buffersFor(E, M) {
  const key = `${E}/${M}`;
  if (!buffers.has(key)) {
    const options = { hidden: maxH, numExperts: E, maxTokensPerRank: 8, maxTopk: 16, lowLatency: { maxTokensPerRank: M }, timeoutMs: 20_000 };
    buffers.set(key, { gpu: await EpBuffer.create(pg, { ...options, backend: BACKEND }), cpu: await oracleBuffers(R, options) });
  }
  return buffers.get(key);
}

/**
 * Expert outputs of `rank`, [L, R*M, H]: rows drawn from a pool of random
 * rows (filling hundreds of MB element by element in JS would dominate the run).
 */
function expertOutputs(c, L, s, rank) {
  const H = c.H;
  const poolRows = 509;
  const pool = bf16Random(poolRows * H, s * 23 + rank);
  const rows = L * R * c.M;
  const out = new Uint16Array(rows * H);
  for (let i = 0; i < rows; i++) {
    const from = ((i * 131 + rank * 7919) % poolRows) * H;
    out.set(pool.subarray(from, from + H), i * H);
  }
  return Tensor.from(out, { shape: [L, R * c.M, H], dtype: 'bf16' });
}

/** Valid slots of each local expert, from recvCount. */
function slotRows(t, counts, perExpert) {
  const parts = [];
  const row = t.byteLength / t.shape[0] / perExpert;
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.byteLength);
  counts.forEach((n, j) => parts.push(bytes.subarray(j * perExpert * row, (j * perExpert + n) * row)));
  const total = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return Tensor.from(out, { dtype: 'u8' });
}

async function compareDispatch(where, d, want, c) {
  const counts = (await d.recvCount.cpu()).toNumbers();
  check.bitwise(`${where} recvCount`, await d.recvCount.cpu(), want.recvCount);
  check.bitwise(`${where} layoutRange`, await d.handle.layoutRange.cpu(), want.handle.layoutRange);
  const slots = R * c.M;
  check.bitwise(`${where} srcInfo`, slotRows(await d.handle.srcInfo.cpu(), counts, slots), slotRows(want.handle.srcInfo, counts, slots));
  const gx = slotRows(await d.recvX.cpu(), counts, slots);
  const wx = slotRows(want.recvX, counts, slots);
  if (c.fp8) {
    check.closeFp8(`${where} recvX`, gx, wx);
    const asF32 = (t) => Tensor.from(new Float32Array(t.data.buffer, t.data.byteOffset, t.byteLength / 4), { dtype: 'f32' });
    check.closeF32(`${where} recvXScales`, asF32(slotRows(await d.recvXScales.cpu(), counts, slots)), asF32(slotRows(want.recvXScales, counts, slots)));
  } else {
    check.bitwise(`${where} recvX`, gx, wx);
  }
}

async function runCase(c, ci) {
  const E = c.E === 'R' ? R : c.E;
  const L = E / R;
  const kase = { ...c, E, T: [0, c.M] };
  const { gpu, cpu } = await buffersFor(E, c.M);
  const stream = DRY_RUN ? undefined : new Stream(pg.device);
  // Expert outputs stay fixed within a case; tokens, routing and weights are fresh every repetition.
  const ys = Array.from({ length: R }, (_, r) => expertOutputs(c, L, seed + ci * 100_003, r));
  const yAbs = ys.map(absTensor);
  const yDevice = await ys[me].to(device);
  for (let rep = 0; rep < c.reps; rep++) {
    const s = seed + ci * 100_003 + rep * 7;
    const all = Array.from({ length: R }, (_, r) => rankInputs(rep === 0 ? { ...kase, T: c.M } : kase, s, r));
    const hook = c.hooks && rep % 2 === 1;
    const flags = { useFp8: c.fp8, roundScale: c.roundScale ?? false };
    const where = `case ${ci} rep ${rep}${hook ? ' hook' : ''}`;
    const ref = await Promise.all(all.map((inp, r) => cpu[r].lowLatencyDispatch({ x: inp.x, topkIdx: inp.topkIdx, maxTokensPerRank: c.M, numExperts: E, ...flags })));
    const mine = all[me];
    const topkIdx = await mine.topkIdx.to(device);
    const d = await gpu.lowLatencyDispatch({ x: await mine.x.to(device), topkIdx, maxTokensPerRank: c.M, numExperts: E, ...flags, returnRecvHook: hook, stream });
    if (hook) await d.hook();
    await stream?.synchronize();
    await compareDispatch(where, d, ref[me], c);

    const cc = await Promise.all(ref.map((r, rank) => cpu[rank].lowLatencyCombine({ y: ys[rank], topkIdx: all[rank].topkIdx, topkWeights: all[rank].topkWeights, handle: r.handle })));
    const refAgain = await Promise.all(all.map((inp, r) => cpu[r].lowLatencyDispatch({ x: inp.x, topkIdx: inp.topkIdx, maxTokensPerRank: c.M, numExperts: E, ...flags })));
    const mags = await Promise.all(
      refAgain.map((r, rank) =>
        cpu[rank].lowLatencyCombine({ y: yAbs[rank], topkIdx: all[rank].topkIdx, topkWeights: absTensor(all[rank].topkWeights), handle: r.handle }),
      ),
    );
    const gc = await gpu.lowLatencyCombine({
      y: yDevice,
      topkIdx,
      topkWeights: await mine.topkWeights.to(device),
      handle: d.handle,
      returnRecvHook: hook,
      stream,
    });
    if (hook) await gc.hook();
    await stream?.synchronize();
    check.closeBf16(`${where} combinedX`, await gc.combinedX.cpu(), cc[me].combinedX, mags[me].combinedX);
    gc.combinedX.close();
  }
  stream?.close();
}

async function runGraph(c, ci) {
  const E = c.E === 'R' ? R : c.E;
  const L = E / R;
  const { gpu } = await buffersFor(E, c.M);
  const stream = new Stream(pg.device);
  const s = seed + ci * 100_003;
  const inp = rankInputs({ ...c, E, T: c.M }, s, me);
  const x = await inp.x.to(device);
  const topkIdx = await inp.topkIdx.to(device);
  const topkWeights = await inp.topkWeights.to(device);
  const ySource = await expertOutputs(c, L, s, me).to(device);
  const y = Tensor.empty([L, R * c.M, c.H], 'bf16', { device, stream });
  const out = Tensor.empty([c.M, c.H], 'bf16', { device, stream });
  const step = async () => {
    const d = await gpu.lowLatencyDispatch({ x, topkIdx, maxTokensPerRank: c.M, numExperts: E, useFp8: c.fp8, stream });
    await y.copyFrom(ySource, { stream }); // stands in for the expert computation
    await gpu.lowLatencyCombine({ y, topkIdx, topkWeights, handle: d.handle, out, stream });
  };
  await checkGraphReplays({ check, label: `graph case ${ci}`, stream, step, out, replays: c.replays, every: 100 });
  stream.close();
}

await runCasesAndExit({ cases: CASES, runCase, runGraph, check, pg, buffers });
