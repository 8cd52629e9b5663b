// Long runs on one buffer (issue 18): WIDEEP_SOAK_ITERATIONS (default 10,000)
// dispatch -> combine iterations in each of four modes: normal and
// low-latency, eager and replayed from a CUDA graph (eager low-latency
// iterations alternate with hooked ones). Device memory in use (cudaMemGetInfo
// once every rank has trimmed its pool) and this process's resident set and
// V8 heap (after a full GC: the job runs with --expose-gc) are taken after a
// warm-up and at the end of each mode, and must stay within small bounds.
// Every 1000th iteration and the last check the rows (ep-encoded.mjs).
import { EpBuffer, Graph, Stream, Tensor, memGetInfo, trimMemoryPool } from '../../../dist/index.js';
import { BACKEND, Checker, DRY_RUN, joinJob } from './ep-common.mjs';
import { LOCAL_EXPERTS as L, combinedValue, encodedRows, everyRankRouting, lowLatencyRowValue, normalRowValue, wrongRows } from './ep-encoded.mjs';

const ITERATIONS = Number(process.env.WIDEEP_SOAK_ITERATIONS ?? 10_000);
const CHECK_EVERY = 1000;
/** Growth allowed between the warm-up and the end of a mode, in bytes. */
const BOUNDS = { device: 16 * 2 ** 20, rss: 48 * 2 ** 20, heap: 8 * 2 ** 20 };

const { pg, device } = await joinJob();
const R = pg.worldSize;
const me = pg.rank;
const T = 64;
const H = 512;
const M = 64;
const check = new Checker(me);
const buffer = await EpBuffer.create(pg, { backend: BACKEND, hidden: H, numExperts: R * L, maxTokensPerRank: T, lowLatency: { maxTokensPerRank: M }, timeoutMs: 60_000 });
const stream = DRY_RUN ? undefined : new Stream(pg.device);
const { topkIdx: hostIdx, topkWeights: hostWeights } = everyRankRouting(T, R);
const topkIdx = await hostIdx.to(device);
const topkWeights = await hostWeights.to(device);
const measures = {};

function expectRows(where, host, want) {
  check.checks++;
  for (const w of wrongRows(where, host, want)) check.fail(where, w);
}

/** Device bytes in use on this GPU (all ranks at the same point), this process's RSS and V8 heap. */
async function footprint(label) {
  await stream?.synchronize();
  await pg.store.barrier(`wideep/test/soak/${label}/settled`);
  globalThis.gc?.();
  let deviceBytes = 0;
  if (!DRY_RUN) {
    trimMemoryPool(pg.device);
    await pg.store.barrier(`wideep/test/soak/${label}/trimmed`);
    const { free, total } = memGetInfo(pg.device);
    deviceBytes = total - free;
  }
  const { rss, heapUsed } = process.memoryUsage();
  return { device: deviceBytes, rss, heap: heapUsed };
}

/** Runs `iteration(i)` ITERATIONS times, measuring after a warm-up of a tenth (at least one) and at the end. */
async function soak(mode, iteration) {
  const warmup = Math.max(1, Math.floor(ITERATIONS / 10));
  const t0 = Date.now();
  let before;
  for (let i = 0; i < ITERATIONS; i++) {
    if (i === warmup) before = await footprint(`${mode}/before`);
    await iteration(i, i % CHECK_EVERY === 0 || i === ITERATIONS - 1);
  }
  before ??= await footprint(`${mode}/before`);
  const after = await footprint(`${mode}/after`);
  const growth = Object.fromEntries(Object.keys(BOUNDS).map((k) => [k, after[k] - before[k]]));
  measures[mode] = { growth, ms: Date.now() - t0 };
  for (const [k, bound] of Object.entries(BOUNDS)) {
    check.checks++;
    if (growth[k] > bound) check.fail(`${mode}: ${k} memory`, `grew by ${growth[k]} bytes over ${ITERATIONS - warmup} iterations, more than ${bound}`);
  }
}

async function normalStep(tag, inspect) {
  const x = await encodedRows(tag, me, T, H).to(device);
  const d = await buffer.dispatch({ x, topkIdx, topkWeights, stream });
  await d.event?.done();
  if (inspect) expectRows(`normal ${tag} recvX`, await d.recvX.cpu({ stream }), normalRowValue(tag, T));
  const c = await buffer.combine({ x: d.recvX, handle: d.handle, stream });
  await c.event?.done();
  if (inspect) expectRows(`normal ${tag} combinedX`, await c.combinedX.cpu({ stream }), combinedValue(tag, me, R));
  c.combinedX.close(stream);
  x.close(stream);
}

async function lowLatencyStep(tag, inspect, hooked) {
  const x = await encodedRows(tag, me, T, H).to(device);
  const d = await buffer.lowLatencyDispatch({ x, topkIdx, maxTokensPerRank: M, numExperts: R * L, useFp8: false, returnRecvHook: hooked, stream });
  if (hooked) await d.hook();
  await d.event?.done();
  if (inspect) expectRows(`low-latency ${tag} recvX`, await d.recvX.cpu({ stream }), lowLatencyRowValue(tag, T, R, M));
  const c = await buffer.lowLatencyCombine({ y: d.recvX, topkIdx, topkWeights, handle: d.handle, returnRecvHook: hooked, stream });
  if (hooked) await c.hook();
  await c.event?.done();
  if (inspect) expectRows(`low-latency ${tag} combinedX`, await c.combinedX.cpu({ stream }), combinedValue(tag, me, R));
  c.combinedX.close(stream);
  x.close(stream);
}

/** A dispatch -> combine step captured once, replayed ITERATIONS times into `out`, which is poisoned before some replays. */
async function graphSoak(mode, capture) {
  const out = Tensor.empty([T, H], 'bf16', { device, stream });
  const graph = await Graph.capture(stream, () => capture(out));
  await soak(mode, async (i, inspect) => {
    if (inspect) out.fillBytes(0xff, stream);
    graph.launch(stream);
    if (inspect) {
      await stream.synchronize();
      expectRows(`${mode} replay ${i}`, await out.cpu({ stream }), combinedValue(0, me, R));
    }
  });
  graph.close();
  out.close(stream);
}

let code = 1;
try {
  await soak('normal, eager', (i, inspect) => normalStep(i % 200, inspect));
  await soak('low-latency, eager', (i, inspect) => lowLatencyStep(i % 200, inspect, i % 2 === 1));
  if (!DRY_RUN) {
    const x = await encodedRows(0, me, T, H).to(device);
    await graphSoak('normal, graph', async (out) => {
      const d = await buffer.dispatch({ x, topkIdx, topkWeights, numWorstTokens: R * T, stream });
      await buffer.combine({ x: d.recvX, handle: d.handle, out, stream });
    });
    const y = Tensor.empty([L, R * M, H], 'bf16', { device, stream });
    await graphSoak('low-latency, graph', async (out) => {
      const d = await buffer.lowLatencyDispatch({ x, topkIdx, maxTokensPerRank: M, numExperts: R * L, useFp8: false, stream });
      await y.copyFrom(d.recvX, { stream }); // stands in for the experts
      await buffer.lowLatencyCombine({ y, topkIdx, topkWeights, handle: d.handle, out, stream });
    });
  }
  code = check.report({ worldSize: R, iterations: ITERATIONS, measures });
} catch (e) {
  check.fail('exception', e?.stack ?? String(e));
  code = check.report({ worldSize: R, iterations: ITERATIONS, measures });
}
await buffer.close();
stream?.close();
await pg.close();
process.exit(code);
