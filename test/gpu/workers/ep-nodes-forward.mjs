// Two ranks as the forwarders of one node (node b, chosen by the seed) of a
// simulated world of two nodes of two. Each builds, on the host, the records
// the cpu hierarchical path's network leg would bring it, runs the
// intranode forward (src/ep/cuda/node/forward.ts) on them, and checks the
// rows against the cpu backend's dispatch exactly (a cached dispatch too),
// then the node partials of a combine against the cpu path's sums.
import { Stream, Tensor } from '../../../dist/index.js';
import { addBf16, roundToBf16 } from '../../../dist/ep/cpu/kernels.js';
import { createCudaBackend } from '../../../dist/ep/cuda/backend.js';
import { IntranodeForward, nodeConfig } from '../../../dist/ep/cuda/node/forward.js';
import { NodeLegKernels } from '../../../dist/ep/cuda/node/kernels.js';
import { nodeGroup } from '../../../dist/ep/cuda/node/node-group.js';
import { compareClose } from '../../../dist/testing/index.js';
import { Checker, bf16Random, joinJob, oracleBuffers, rankInputs } from './ep-common.mjs';
import { bytesOf, hostLayout, hostRecords, runAndExit } from './ep-nodes-common.mjs';

const { pg, seed, device } = await joinJob();
const check = new Checker(pg.rank);
const kernels = new NodeLegKernels();
const stream = new Stream(pg.device);
const [N, P] = [2, 2];
const R = N * P;
const b = seed % N;
const i = pg.rank;
const me = b * P + i;

const CASES = [
  { T: 24, H: 256, k: 4, E: 16, routing: 'uniform', drop: 0.1 },
  { T: 100, H: 1024, k: 8, E: 32, routing: 'zipf', fp8Input: true },
];

async function runCase(c, ci) {
  const { T, H, k, E } = c;
  const where = `case ${ci} node ${b}`;
  const options = { hidden: H, numExperts: E, maxTokensPerRank: T, maxTopk: 16, timeoutMs: 20_000, ranksPerNode: P };
  const cpu = await oracleBuffers(R, options);
  const config = { ...options, rank: me, worldSize: R, backend: 'cuda', numLocalExperts: E / R, numRecvSlots: 2, lowLatency: undefined, device: pg.device };
  const inner = await createCudaBackend(nodeGroup(pg, config, `test/forward${ci}`), nodeConfig(config));
  const forward = new IntranodeForward(inner, kernels, config);
  const s = seed + ci * 1009;
  const inputs = Array.from({ length: R }, (_, r) => rankInputs(c, s, r));
  const layouts = inputs.map((inp) => hostLayout(inp.topkIdx.data, T, k, E, R, P));
  const fp8 = c.fp8Input === true;
  const xOf = (inp) => (fp8 ? inp.xFp8 : inp.x);
  const ref = await Promise.all(inputs.map((inp, r) => cpu[r].dispatch({ x: xOf(inp), xScales: fp8 ? inp.xScales : undefined, topkIdx: inp.topkIdx, topkWeights: inp.topkWeights })));

  // What the network leg brings forwarder i: from each node a, rank (a, i)'s tokens for node b.
  const received = (routed) => {
    const parts = Array.from({ length: N }, (_, a) => {
      const src = inputs[a * P + i];
      return hostRecords(layouts[a * P + i].nodeTokens[b], {
        rows: bytesOf(xOf(src)), rowBytes: H * (fp8 ? 1 : 2), scales: src.xScales?.data, S: fp8 ? H / 128 : 0,
        idx: src.topkIdx.data, weights: src.topkWeights.data, k: routed ? k : 0,
      });
    });
    const netCounts = Array.from({ length: N }, (_, a) => layouts[a * P + i].nodeTokens[b].length);
    const all = new Uint8Array(parts.reduce((n, p) => n + p.bytes.length, 0));
    parts.reduce((at, p) => (all.set(p.bytes, at), at + p.bytes.length), 0);
    const record = parts[0].record;
    return { record, netCounts, records: Tensor.from(all, { shape: [all.length / record.bytes, record.bytes], dtype: 'u8' }) };
  };
  const tables = Array.from({ length: P }, (_, f) => Int32Array.from({ length: N * P }, (_, c2) => layouts[Math.floor(c2 / P) * P + f].numTokensPerRank[b * P + (c2 % P)]));
  const net = received(true);
  const got = await forward.dispatch(
    { records: await net.records.to(device, { stream }), record: net.record, netCounts: net.netCounts, tables, dtype: xOf(inputs[0]).dtype, hidden: H, cached: undefined, numSms: undefined, stream },
    0,
    { kind: 'dispatch', buffer: 0, number: 1, started: false },
  );
  const want = ref[me];
  check.bitwise(`${where} recvX`, await got.recvX.cpu({ stream }), want.recvX);
  if (fp8) check.bitwise(`${where} recvXScales`, await got.recvXScales.cpu({ stream }), want.recvXScales);
  check.bitwise(`${where} recvTopkIdx`, await got.recvTopkIdx.cpu({ stream }), want.recvTopkIdx);
  check.bitwise(`${where} recvTopkWeights`, await got.recvTopkWeights.cpu({ stream }), want.recvTopkWeights);
  check.checks++;
  if (JSON.stringify(got.routing.inner.numRecvTokensPerExpert) !== JSON.stringify(want.numRecvTokensPerExpert)) {
    check.fail(`${where} numRecvTokensPerExpert`, `${got.routing.inner.numRecvTokensPerExpert} vs ${want.numRecvTokensPerExpert}`);
  }

  // A cached dispatch: records without ids, the first dispatch's routing.
  const unrouted = received(false);
  const again = await forward.dispatch(
    { records: await unrouted.records.to(device, { stream }), record: unrouted.record, netCounts: unrouted.netCounts, tables: [], dtype: xOf(inputs[0]).dtype, hidden: H, cached: got.routing, numSms: undefined, stream },
    1,
    { kind: 'dispatch', buffer: 0, number: 2, started: false },
  );
  check.bitwise(`${where} cached recvX`, await again.recvX.cpu({ stream }), want.recvX);

  // Combine: fresh rows at node b's ranks; forwarder i's partial of each (source node, token) sums them over j.
  const rowsAt = [0, 1].map((j) => Tensor.from(bf16Random(ref[b * P + j].recvX.shape[0] * H, s * 17 + j), { shape: [ref[b * P + j].recvX.shape[0], H], dtype: 'bf16' }));
  const partials = await forward.combine(
    { x: await rowsAt[i].to(device, { stream }), topkWeights: got.recvTopkWeights, routing: got.routing, numSms: undefined, numSendSms: undefined, stream },
    0,
    { kind: 'combine', buffer: 0, number: 1, started: false },
  );
  await partials.event?.done();
  const M = net.netCounts.reduce((x, y) => x + y, 0);
  const acc = new Float32Array(M * H);
  const mag = new Float32Array(M * H);
  const accW = new Float32Array(M * k);
  for (let j = 0; j < P; j++) {
    // Receiver (b, j)'s rows: by source rank, then source token.
    const rowOf = new Map();
    let row = 0;
    for (let src = 0; src < R; src++) for (const t of layouts[src].sendTokens[b * P + j]) rowOf.set(`${src}:${t}`, row++);
    const abs = rowsAt[j].data.map((v) => v & 0x7fff);
    let p = 0;
    for (let a = 0; a < N; a++) {
      for (const t of layouts[a * P + i].nodeTokens[b]) {
        const r = rowOf.get(`${a * P + i}:${t}`);
        if (r !== undefined) {
          addBf16(acc, p * H, rowsAt[j].data, r * H, H);
          addBf16(mag, p * H, abs, r * H, H);
          for (let c2 = 0; c2 < k; c2++) accW[p * k + c2] += ref[b * P + j].recvTopkWeights.data[r * k + c2];
        }
        p++;
      }
    }
  }
  const wantX = new Uint16Array(M * H);
  roundToBf16(acc, wantX);
  const close = compareClose((await partials.combinedX.cpu({ stream })).toFloat32(), Tensor.from(wantX, { shape: [M, H], dtype: 'bf16' }).toFloat32(), { atol: 1e-6, rtol: 2 ** -6, scale: mag });
  check.checks++;
  if (close.mismatches > 0) check.fail(`${where} node partials`, JSON.stringify(close.worst));
  const closeW = compareClose((await partials.combinedTopkWeights.cpu({ stream })).data, accW, { atol: 1e-6, rtol: 1e-6 });
  check.checks++;
  if (closeW.mismatches > 0) check.fail(`${where} node partial weights`, JSON.stringify(closeW.worst));

  forward.releaseRouting(got.routing);
  await forward.close();
  await Promise.all(cpu.map((x) => x.close()));
}

await runAndExit({ pg, check, stream, run: async () => {
  for (const [ci, c] of CASES.entries()) await runCase(c, ci);
} });
