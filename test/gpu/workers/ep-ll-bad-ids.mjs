// Bad low-latency input the host cannot see before the launch. A top-k id
// outside [-1, numExperts) in one rank's device tensor: that rank's dispatch
// sends the token without the entry and reports ERR_INVALID_ARG through its
// event; every other rank's dispatch completes, and nothing faults. Then ranks
// that disagree on k: every rank's dispatch fails with ERR_INVALID_ARG.
import { EpBuffer } from '../../../dist/index.js';
import { BACKEND, Checker, DRY_RUN, joinJob, rankInputs } from './ep-common.mjs';

const { pg, seed, device } = await joinJob();
const check = new Checker(pg.rank);
const E = 64;
const M = 16;
const H = 2048;
const buffer = await EpBuffer.create(pg, { backend: BACKEND, hidden: H, numExperts: E, maxTokensPerRank: 8, lowLatency: { maxTokensPerRank: M }, timeoutMs: 20_000 });
const inp = rankInputs({ T: M, H, k: 6, E, routing: 'uniform' }, seed, pg.rank);
const ids = inp.topkIdx.data;
if (pg.rank === 0) ids[3 * 6 + 2] = E; // token 3, column 2
// Through the event on the GPU; the cpu backend (WIDEEP_TEST_DRY_RUN) reads the
// ids itself and refuses the call, which then fails on every rank (ERR_PEER on
// the others).
const dispatched = (async () => {
  const d = await buffer.lowLatencyDispatch({ x: await inp.x.to(device), topkIdx: await inp.topkIdx.to(device), maxTokensPerRank: M, numExperts: E });
  await d.event?.done();
})();
if (pg.rank === 0) {
  await check.refuses('the dispatch with an id past numExperts', dispatched, 'ERR_INVALID_ARG');
} else if (DRY_RUN) {
  await check.refuses('a dispatch beside the refused one', dispatched, 'ERR_PEER');
} else {
  check.checks++;
  await dispatched.catch((e) => check.fail('a dispatch beside the bad one', `${e.code}: ${e.message}`));
}
await pg.store.barrier('wideep/test/bad-ids-done');
await buffer.close();

// Ranks that disagree on k: every receiver reads each source's ids with its own
// k, so each rank's dispatch fails (ERR_INVALID_ARG), where the cpu backend
// refuses the call itself.
if (pg.worldSize > 1) {
  const second = await EpBuffer.create(pg, { backend: BACKEND, hidden: H, numExperts: E, maxTokensPerRank: 8, lowLatency: { maxTokensPerRank: M }, timeoutMs: 20_000 });
  const k = 1 + (pg.rank % 2);
  const mixed = rankInputs({ T: M, H, k, E, routing: 'uniform' }, seed + 1, pg.rank);
  const call = (async () => {
    const d = await second.lowLatencyDispatch({ x: await mixed.x.to(device), topkIdx: await mixed.topkIdx.to(device), maxTokensPerRank: M, numExperts: E });
    await d.event?.done();
  })();
  await check.refuses(`a dispatch with k = ${k} beside ranks with another k`, call, 'ERR_INVALID_ARG');
  await pg.store.barrier('wideep/test/mixed-k-done');
  await second.close();
}
process.stdout.write(`${JSON.stringify({ rank: pg.rank, checks: check.checks, failures: check.failures })}\n`);
await pg.close();
process.exit(check.failures.length ? 1 : 0);
