// A call refused on one rank (issue 18: silent mis-pairing). For each kind of
// call, rank 1 passes a bad argument in one iteration: that call must fail on
// every rank (rank 1's own error there; ERR_PEER naming rank 1 and its code
// on the others, from the call's promise or its event) and move nothing, and
// the iterations after it must move the right rows (ep-encoded.mjs: row
// values say which iteration, rank and token they belong to). On the GPU a
// peer learns the refusal of a call that does not wait for the host (a
// low-latency dispatch, a dispatch with numWorstTokens, a combine) from its
// event; a combine of a dispatch that failed so does nothing on every rank,
// and its event says why.
import { EpBuffer, Tensor } from '../../../dist/index.js';
import { BACKEND, Checker, joinJob } from './ep-common.mjs';
import { LOCAL_EXPERTS as L, combinedValue, encodedRows, everyRankRouting, lowLatencyRowValue, normalRowValue, wrongRows } from './ep-encoded.mjs';

const { pg, device } = await joinJob();
const R = pg.worldSize;
const me = pg.rank;
const T = 3;
const H = 128;
const M = 4;
const ITERATIONS = 4;
const FAILING = 2;
const check = new Checker(me);
const buffer = await EpBuffer.create(pg, { backend: BACKEND, hidden: H, numExperts: R * L, maxTokensPerRank: T, lowLatency: { maxTokensPerRank: M }, timeoutMs: 20_000 });
const { topkIdx, topkWeights } = everyRankRouting(T, R);
const routing = { topkIdx: await topkIdx.to(device), topkWeights: await topkWeights.to(device) };

/** The call rank 1 gets wrong in the failing iteration: its kind, the code it gets, and the iteration it runs in. */
const FAULTS = [
  { name: 'dispatch', code: 'ERR_DTYPE', run: normalIteration }, // x in f32
  { name: 'dispatch', code: 'ERR_DTYPE', run: (tag, bad) => normalIteration(tag, bad, R * T), worst: true }, // no host sync
  { name: 'combine', code: 'ERR_SHAPE', run: normalIteration }, // one row too many
  { name: 'lowLatencyDispatch', code: 'ERR_INVALID_ARG', run: lowLatencyIteration }, // the wrong numExperts
  { name: 'lowLatencyCombine', code: 'ERR_SHAPE', run: lowLatencyIteration }, // y of the wrong shape
];

const deviceZeros = (shape, dtype) => Tensor.zeros(shape, dtype).to(device);

function expectRows(where, host, want) {
  check.checks++;
  for (const w of wrongRows(where, host, want)) check.fail(where, w);
}

/** The error an event's call ended with, or undefined. */
const outcome = (event) => event?.done().then(() => undefined, (e) => e);

/**
 * A combine of a dispatch whose event reported `refused`: on the GPU it does
 * nothing on every rank, and its event reports the dispatch's refusal.
 */
async function combinedRefused(tag, combine, refused) {
  const combineError = await outcome((await combine()).event);
  check.checks++;
  if (combineError?.code !== refused.code) check.fail(`iteration ${tag}`, `the combine of a refused dispatch: expected ${refused.code}, got ${combineError?.code}`);
  throw refused;
}

async function normalIteration(tag, bad, numWorstTokens = 0) {
  const x = bad('dispatch') ? await deviceZeros([T, H], 'f32') : await encodedRows(tag, me, T, H).to(device);
  const d = await buffer.dispatch({ x, ...routing, numWorstTokens });
  const refused = await outcome(d.event);
  if (refused) return combinedRefused(tag, () => buffer.combine({ x: d.recvX, handle: d.handle }), refused);
  expectRows(`iteration ${tag} recvX`, await d.recvX.cpu(), normalRowValue(tag, T));
  const c = await buffer.combine({ x: bad('combine') ? await deviceZeros([d.recvX.shape[0] + 1, H], 'bf16') : d.recvX, handle: d.handle });
  await c.event?.done();
  expectRows(`iteration ${tag} combinedX`, await c.combinedX.cpu(), combinedValue(tag, me, R));
}

async function lowLatencyIteration(tag, bad) {
  const x = await encodedRows(tag, me, T, H).to(device);
  const numExperts = bad('lowLatencyDispatch') ? 2 * R * L : R * L;
  const d = await buffer.lowLatencyDispatch({ x, topkIdx: routing.topkIdx, maxTokensPerRank: M, numExperts, useFp8: false });
  const refused = await outcome(d.event);
  if (refused) return combinedRefused(tag, () => buffer.lowLatencyCombine({ y: d.recvX, ...routing, handle: d.handle }), refused);
  expectRows(`iteration ${tag} low-latency recvX`, await d.recvX.cpu(), lowLatencyRowValue(tag, T, R, M));
  const y = bad('lowLatencyCombine') ? await deviceZeros([L, R * M + 1, H], 'bf16') : d.recvX;
  const c = await buffer.lowLatencyCombine({ y, ...routing, handle: d.handle });
  await c.event?.done();
  expectRows(`iteration ${tag} low-latency combinedX`, await c.combinedX.cpu(), combinedValue(tag, me, R));
}

for (const [f, { name: fault, code, run, worst }] of FAULTS.entries()) {
  for (let i = 1; i <= ITERATIONS; i++) {
    const tag = f * ITERATIONS + i;
    const bad = (op) => me === 1 && i === FAILING && fault === op;
    const where = `${fault}${worst ? ' with numWorstTokens' : ''} refused by rank 1 in iteration ${FAILING}: iteration ${i}`;
    let error;
    try {
      await run(tag, bad);
    } catch (e) {
      error = e;
    }
    check.checks++;
    if (i !== FAILING) {
      if (error) check.fail(where, `${error.code}: ${error.message}`);
    } else if (me === 1) {
      if (error?.code !== code) check.fail(where, `expected rank 1's own ${code}, got ${error?.code}: ${error?.message}`);
    } else if (error?.code !== 'ERR_PEER' || !error.message.includes(`rank 1 failed this ${fault} (${code})`)) {
      check.fail(where, `expected ERR_PEER naming rank 1 and ${code}, got ${error?.code}: ${error?.message}`);
    }
  }
}
await pg.store.barrier('wideep/test/mispair-done');
await buffer.close();
const code = check.report({ worldSize: R });
await pg.close();
process.exit(code);
