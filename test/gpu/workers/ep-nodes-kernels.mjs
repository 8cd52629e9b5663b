// One rank: the network leg's kernels (native/ep/node_leg.cu) on fresh
// random inputs, outputs poisoned first, against the cpu reference: the node
// layout (with ids out of range counted), the records a rank packs for each
// node, the forwarder's unpacking into local ids, and the origin's reduce.
import { Stream, Tensor } from '../../../dist/index.js';
import { addBf16, roundToBf16 } from '../../../dist/ep/cpu/kernels.js';
import { NodeLegKernels } from '../../../dist/ep/cuda/node/kernels.js';
import { header } from '../../../dist/ep/cuda/node/plan.js';
import { poison, compareClose } from '../../../dist/testing/index.js';
import { Checker, bf16Random, joinJob, rankInputs } from './ep-common.mjs';
import { bytesOf, hostLayout, hostRecords, runAndExit } from './ep-nodes-common.mjs';

const { pg, seed, device } = await joinJob();
const check = new Checker(pg.rank);
const kernels = new NodeLegKernels();
const stream = new Stream(pg.device);
const on = { device, stream };
const dev = (t) => t.to(device, { stream });
const host = (t) => t.cpu({ stream });

const CASES = [
  { R: 16, P: 4, E: 64, T: 97, k: 6, H: 256, drop: 0.2, routing: 'zipf' },
  { R: 32, P: 8, E: 256, T: 1500, k: 8, H: 1024, routing: 'uniform', fp8Input: true },
  { R: 8, P: 2, E: 8, T: 1, k: 1, H: 128, routing: 'uniform' },
  { R: 4, P: 2, E: 8, T: 0, k: 2, H: 128, routing: 'uniform' },
];

async function runCase(c, ci) {
  const { R, P, E, T, k, H } = c;
  const N = R / P;
  const where = `case ${ci}`;
  const inp = rankInputs(c, seed + ci, 0);
  const idx = inp.topkIdx.data;
  // A few ids out of range on one case: counted, and routed nowhere.
  const bad = ci === 0 ? [E, -2] : [];
  const idxWithBad = Int32Array.from(idx);
  bad.forEach((e, i) => (idxWithBad[i * k] = e));
  const ref = hostLayout(Int32Array.from(idxWithBad, (e) => (e < -1 || e >= E ? -1 : e)), T, k, E, R, P);
  const W = header.width(P);
  const out = {
    isTokenInRank: Tensor.empty([T, R], 'u8', on),
    numTokensPerRank: Tensor.empty([R], 'i32', on),
    numTokensPerExpert: Tensor.empty([E], 'i32', on),
    isTokenInNode: Tensor.empty([T, N], 'u8', on),
    numTokensPerNode: Tensor.empty([N], 'i32', on),
    badIds: Tensor.empty([1], 'i32', on),
    sendList: Tensor.empty([Math.max(T * N, 1)], 'i32', on),
    posInNode: Tensor.empty([T, N], 'i32', on),
    header: Tensor.empty([N, W], 'i32', on),
  };
  poison(Object.values(out), stream);
  const idxDev = await dev(Tensor.from(idxWithBad, { shape: [T, k], dtype: 'i32' }));
  kernels.layout(idxDev, E, R, P, out, stream);
  const got = Object.fromEntries(await Promise.all(Object.entries(out).map(async ([name, t]) => [name, (await host(t)).data])));
  const same = (what, a, b) => {
    check.checks++;
    if (a.length !== b.length || a.some((v, i) => v !== b[i])) check.fail(`${where} ${what}`, `[${Array.from(a).slice(0, 12)}] vs [${Array.from(b).slice(0, 12)}]`);
  };
  same('isTokenInRank', got.isTokenInRank, ref.isTokenInRank);
  same('numTokensPerRank', got.numTokensPerRank, ref.numTokensPerRank);
  same('numTokensPerExpert', got.numTokensPerExpert, ref.numTokensPerExpert);
  same('isTokenInNode', got.isTokenInNode, ref.isTokenInNode);
  same('numTokensPerNode', got.numTokensPerNode, ref.numTokensPerNode);
  same('badIds', got.badIds, [bad.length]);
  const list = ref.nodeTokens.flatMap((l) => Array.from(l));
  same('sendList', got.sendList.subarray(0, list.length), list);
  const pos = new Int32Array(T * N).fill(-1);
  let row = 0;
  ref.nodeTokens.forEach((l, b) => l.forEach((t) => (pos[t * N + b] = row++)));
  same('posInNode', got.posInNode, pos);
  const wantHeader = Array.from({ length: N }, (_, b) => [ref.numTokensPerNode[b], ...ref.numTokensPerRank.subarray(b * P, b * P + P), bad.length, 0]).flat();
  same('header', got.header, wantHeader);

  // Pack: every node's records, as the cpu path sends them.
  const fp8 = c.fp8Input === true;
  const x = fp8 ? inp.xFp8 : inp.x;
  const S = fp8 ? H / 128 : 0;
  const src = { rows: bytesOf(x), rowBytes: H * (fp8 ? 1 : 2), scales: inp.xScales?.data, S, idx: idxWithBad, weights: inp.topkWeights.data, k };
  const want = hostRecords(list, src);
  const records = poison(Tensor.empty([list.length, want.record.bytes], 'u8', on), stream);
  kernels.pack(await dev(x), fp8 ? await dev(inp.xScales) : undefined, idxDev, await dev(inp.topkWeights), out.sendList, list.length, want.record, records, stream);
  // Padding bytes are not written: compare each record's payload only.
  const packed = bytesOf(await host(records));
  const payload = want.record.rowBytes + 4 * S + 8 * k;
  check.checks++;
  for (let q = 0; q < list.length; q++) {
    const a = packed.subarray(q * want.record.bytes, q * want.record.bytes + payload);
    const b = want.bytes.subarray(q * want.record.bytes, q * want.record.bytes + payload);
    if (a.some((v, i) => v !== b[i])) {
      check.fail(`${where} pack`, `record ${q} (token ${list[q]}) differs`);
      break;
    }
  }

  // Unpack as a forwarder of node 1: ids of its experts made local, others -1.
  const span = P * (E / R);
  const begin = Math.min(1, N - 1) * span;
  const M = list.length;
  const u = { x: Tensor.empty([M, H], x.dtype, on), xScales: fp8 ? Tensor.empty([M, S], 'f32', on) : undefined, topkIdx: Tensor.empty([M, k], 'i32', on), topkWeights: Tensor.empty([M, k], 'f32', on) };
  poison(Object.values(u).filter(Boolean), stream);
  kernels.unpack(await dev(Tensor.from(want.bytes, { shape: [M, want.record.bytes], dtype: 'u8' })), M, want.record, { begin, end: begin + span }, u, stream);
  const ux = bytesOf(await host(u.x));
  check.checks++;
  if (list.some((t, q) => ux.subarray(q * src.rowBytes, (q + 1) * src.rowBytes).some((v, i) => v !== src.rows[t * src.rowBytes + i]))) check.fail(`${where} unpack rows`, 'differ');
  if (fp8) same('unpack scales', (await host(u.xScales)).data, list.flatMap((t) => Array.from(inp.xScales.data.subarray(t * S, (t + 1) * S))));
  same('unpack ids', (await host(u.topkIdx)).data, list.flatMap((t) => Array.from(idxWithBad.subarray(t * k, (t + 1) * k), (e) => (e >= begin && e < begin + span ? e - begin : -1))));
  same('unpack weights', (await host(u.topkWeights)).data, list.flatMap((t) => Array.from(inp.topkWeights.data.subarray(t * k, (t + 1) * k))));

  // The origin's reduce: one partial per (token, node) in send order, weights, two biases.
  const partials = Tensor.from(bf16Random(M * H, seed * 3 + ci), { shape: [M, H], dtype: 'bf16' });
  const pw = Tensor.from(Float32Array.from({ length: M * k }, (_, i) => ((i * 7919) % 101) / 97), { shape: [M, k], dtype: 'f32' });
  const bias = [0, 1].map((b) => Tensor.from(bf16Random(T * H, seed * 5 + ci * 2 + b), { shape: [T, H], dtype: 'bf16' }));
  const combined = poison(Tensor.empty([T, H], 'bf16', on), stream);
  const combinedW = poison(Tensor.empty([T, k], 'f32', on), stream);
  kernels.reduce(await dev(partials), await dev(pw), out.posInNode, await Promise.all(bias.map(dev)), combined, combinedW, stream);
  const acc = new Float32Array(T * H);
  const mag = new Float32Array(T * H);
  const accW = new Float32Array(T * k);
  const abs = (u16) => u16.map((v) => v & 0x7fff);
  ref.nodeTokens.forEach((l, b) =>
    l.forEach((t) => {
      const p = pos[t * N + b];
      addBf16(acc, t * H, partials.data, p * H, H);
      addBf16(mag, t * H, abs(partials.data.subarray(p * H, (p + 1) * H)), 0, H);
      for (let c2 = 0; c2 < k; c2++) accW[t * k + c2] += pw.data[p * k + c2];
    }),
  );
  for (const b of bias) {
    addBf16(acc, 0, b.data, 0, T * H);
    addBf16(mag, 0, abs(b.data), 0, T * H);
  }
  const wantX = new Uint16Array(T * H);
  roundToBf16(acc, wantX);
  const gotX = await host(combined);
  const report = compareClose(gotX.toFloat32(), Tensor.from(wantX, { shape: [T, H], dtype: 'bf16' }).toFloat32(), { atol: 1e-6, rtol: 2 ** -6, scale: mag });
  check.checks++;
  if (report.mismatches > 0) check.fail(`${where} reduce`, JSON.stringify(report.worst));
  const rw = compareClose((await host(combinedW)).data, accW, { atol: 1e-6, rtol: 1e-6 });
  check.checks++;
  if (rw.mismatches > 0) check.fail(`${where} reduce weights`, JSON.stringify(rw.worst));
}

await runAndExit({ pg, check, stream, run: async () => {
  for (const [i, c] of CASES.entries()) await runCase(c, i);
} });
