// One rank of the normal-mode correctness suite: for each case and each
// repetition, fresh seeded inputs on every rank; the cuda backend's dispatch,
// cached dispatch and combine are compared with the cpu backend's, run here
// over simulated ranks on the same inputs. Outputs are poisoned first
// (WIDEEP_POISON_OUTPUTS=1), so rows a kernel does not write show up. A case
// with `replays` captures dispatch (numWorstTokens, so no host sync) ->
// combine (into `out`) in a CUDA graph and checks every replay against eager
// mode, and eager mode against the cpu backend.
import { EpBuffer, Stream, Tensor } from '../../../dist/index.js';
import { BACKEND, Checker, DRY_RUN, absTensor, bf16Random, checkGraphReplays, firstRows, joinJob, oracleBuffers, rankInputs, runCasesAndExit, toDevice } from './ep-common.mjs';

const CASES = JSON.parse(process.env.WIDEEP_TEST_CASES ?? '[]');
const trace = process.env.WIDEEP_TEST_TRACE === '1' ? (text) => process.stderr.write(`${text}\n`) : () => {};
const { pg, seed, device } = await joinJob();
const R = pg.worldSize;
const me = pg.rank;
const check = new Checker(me);
const maxT = Math.max(...CASES.map((c) => (typeof c.T === 'number' ? c.T : c.T[1])));
const maxH = Math.max(...CASES.map((c) => c.H));
const buffers = new Map();

async function buffersFor(E) {
  if (!buffers.has(E)) {
    const options = { hidden: maxH, numExperts: E, maxTokensPerRank: maxT, maxTopk: 16, timeoutMs: 20_000 };
    buffers.set(E, { gpu: await EpBuffer.create(pg, { ...options, backend: BACKEND }), cpu: await oracleBuffers(R, options) });
  }
  return buffers.get(E);
}

async function runCase(c, ci) {
  const E = c.E === 'R' ? R : c.E;
  const kase = { ...c, E };
  const { gpu, cpu } = await buffersFor(E);
  for (let rep = 0; rep < c.reps; rep++) {
    const s = seed + ci * 100_003 + rep * 7;
    const all = Array.from({ length: R }, (_, r) => rankInputs(kase, s, r));
    const useFp8 = c.fp8Input && rep % 2 === 1;
    const xOf = (inp) => (useFp8 ? { x: inp.xFp8, xScales: inp.xScales } : { x: inp.x });
    const opts = { expertAlignment: c.align ?? 1, numWorstTokens: c.worst ?? 0 };
    const where = `case ${ci} rep ${rep}${useFp8 ? ' fp8' : ''}`;

    // Oracle.
    const ref = await Promise.all(all.map((inp, r) => cpu[r].dispatch({ ...xOf(inp), topkIdx: inp.topkIdx, topkWeights: inp.topkWeights, ...opts })));
    // GPU.
    const mine = all[me];
    trace(`${where}: dispatch`);
    const d = await gpu.dispatch({
      x: await toDevice(xOf(mine).x, device),
      xScales: await toDevice(xOf(mine).xScales, device),
      topkIdx: await toDevice(mine.topkIdx, device),
      topkWeights: await toDevice(mine.topkWeights, device),
      ...opts,
    });
    await d.event?.done();
    trace(`${where}: dispatched ${d.numRecvTokens} rows`);
    const want = ref[me];
    const rows = want.numRecvTokens >= 0 ? want.numRecvTokens : d.recvX.shape[0];
    check.checks++;
    if (d.numRecvTokens !== want.numRecvTokens) check.fail(where, `numRecvTokens ${d.numRecvTokens} vs ${want.numRecvTokens}`);
    check.checks++;
    if (JSON.stringify(d.numRecvTokensPerExpert) !== JSON.stringify(want.numRecvTokensPerExpert)) {
      check.fail(where, `numRecvTokensPerExpert ${d.numRecvTokensPerExpert} vs ${want.numRecvTokensPerExpert}`);
    }
    const n = c.worst ? countValidRows(want.recvTopkIdx) : rows;
    check.bitwise(`${where} recvX`, firstRows(await d.recvX.cpu(), n), firstRows(want.recvX, n));
    if (useFp8) check.bitwise(`${where} recvXScales`, firstRows(await d.recvXScales.cpu(), n), firstRows(want.recvXScales, n));
    check.bitwise(`${where} recvTopkIdx`, await d.recvTopkIdx.cpu(), want.recvTopkIdx);
    check.bitwise(`${where} recvTopkWeights`, await d.recvTopkWeights.cpu(), want.recvTopkWeights);

    // Cached dispatch of the same routing moves x again.
    if (c.cached) {
      const cref = await Promise.all(all.map((inp, r) => cpu[r].dispatch({ ...xOf(inp), handle: ref[r].handle })));
      const cd = await gpu.dispatch({ x: await toDevice(xOf(mine).x, device), xScales: await toDevice(xOf(mine).xScales, device), handle: d.handle });
      await cd.event?.done();
      check.bitwise(`${where} cached recvX`, firstRows(await cd.recvX.cpu(), n), firstRows(cref[me].recvX, n));
      cd.release();
      cref.forEach((r) => r.release());
    }

    // Combine: a fresh bf16 input per received row (the expert outputs).
    const combIn = ref.map((r, rank) => Tensor.from(bf16Random(r.recvX.shape[0] * c.H, s * 17 + rank), { shape: [r.recvX.shape[0], c.H], dtype: 'bf16' }));
    const bias = c.bias ? all.map((inp, rank) => Tensor.from(bf16Random(inp.T * c.H, s * 19 + rank), { shape: [inp.T, c.H], dtype: 'bf16' })) : undefined;
    const cc = await Promise.all(ref.map((r, rank) => cpu[rank].combine({ x: combIn[rank], handle: r.handle, topkWeights: r.recvTopkWeights, bias: bias?.[rank], keepHandle: true })));
    const mags = await Promise.all(
      ref.map((r, rank) => cpu[rank].combine({ x: absTensor(combIn[rank]), handle: r.handle, bias: bias ? absTensor(bias[rank]) : undefined })),
    );
    if (!DRY_RUN && ci === 0 && rep === 0) {
      // More SMs than the GPU has: refused before anything runs (every block must be resident).
      await check.refuses(`${where} combine numSms`, gpu.combine({ x: await combIn[me].to(device), handle: d.handle, numSms: 100_000, keepHandle: true }), 'ERR_INVALID_ARG');
    }
    const gc = await gpu.combine({
      x: await combIn[me].to(device),
      handle: d.handle,
      topkWeights: d.recvTopkWeights,
      bias: bias ? await bias[me].to(device) : undefined,
      // Sending shares from one SM to all but one of the default 24, differing between ranks.
      numSendSms: c.sendSms ? 1 + ((me + rep) % c.sendSms) : undefined,
    });
    await gc.event?.done();
    trace(`${where}: combined`);
    check.closeBf16(`${where} combinedX`, await gc.combinedX.cpu(), cc[me].combinedX, mags[me].combinedX);
    check.closeF32(`${where} combinedTopkWeights`, await gc.combinedTopkWeights.cpu(), cc[me].combinedTopkWeights);
    gc.combinedX.close();
    gc.combinedTopkWeights.close();
  }
}

function countValidRows(recvTopkIdx) {
  const k = recvTopkIdx.shape[1];
  const v = recvTopkIdx.toNumbers();
  let n = 0;
  for (let i = 0; i < recvTopkIdx.shape[0]; i++) if (v.slice(i * k, (i + 1) * k).some((e) => e >= 0)) n = i + 1;
  return n;
}

async function runGraph(c, ci) {
  const E = c.E === 'R' ? R : c.E;
  const kase = { ...c, E };
  const { gpu, cpu } = await buffersFor(E);
  const stream = new Stream(pg.device);
  const s = seed + ci * 100_003;
  const all = Array.from({ length: R }, (_, r) => rankInputs(kase, s, r));
  const expertOut = all.map((_, rank) => Tensor.from(bf16Random(c.worst * c.H, s * 17 + rank), { shape: [c.worst, c.H], dtype: 'bf16' }));
  const ref = await Promise.all(all.map((inp, r) => cpu[r].dispatch({ x: inp.x, topkIdx: inp.topkIdx, topkWeights: inp.topkWeights, numWorstTokens: c.worst })));
  const cc = await Promise.all(ref.map((r, rank) => cpu[rank].combine({ x: expertOut[rank], handle: r.handle, keepHandle: true })));
  const mags = await Promise.all(ref.map((r, rank) => cpu[rank].combine({ x: absTensor(expertOut[rank]), handle: r.handle })));

  const mine = all[me];
  const x = await mine.x.to(device);
  const topkIdx = await mine.topkIdx.to(device);
  const topkWeights = await mine.topkWeights.to(device);
  const y = await expertOut[me].to(device);
  const out = Tensor.empty([mine.T, c.H], 'bf16', { device, stream });
  const step = async () => {
    const d = await gpu.dispatch({ x, topkIdx, topkWeights, numWorstTokens: c.worst, stream });
    await gpu.combine({ x: y, handle: d.handle, out, stream });
  };
  const eager = await checkGraphReplays({ check, label: `graph case ${ci}`, stream, step, out, replays: c.replays, every: 10 });
  check.closeBf16(`graph case ${ci} eager combinedX`, eager, cc[me].combinedX, mags[me].combinedX);
  stream.close();
}

await runCasesAndExit({ cases: CASES, runCase, runGraph, check, pg, buffers });
