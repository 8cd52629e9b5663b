// A peer that never arrives: rank 1 skips the dispatch that every other rank
// calls. The others must fail with ERR_TIMEOUT within the buffer's timeout,
// not hang; the job then shuts down cleanly.
import { EpBuffer } from '../../../dist/index.js';
import { BACKEND, joinJob, rankInputs } from './ep-common.mjs';

const { pg, seed, device } = await joinJob();
const timeoutMs = 3000;
const buffer = await EpBuffer.create(pg, { backend: BACKEND, hidden: 2048, numExperts: 64, maxTokensPerRank: 64, timeoutMs });
const report = { rank: pg.rank, checks: 1, failures: [] };
if (pg.rank !== 1) {
  const inp = rankInputs({ T: 64, H: 2048, k: 8, E: 64, routing: 'uniform' }, seed, pg.rank);
  const t0 = Date.now();
  try {
    const d = await buffer.dispatch({
      x: await inp.x.to(device),
      topkIdx: await inp.topkIdx.to(device),
      topkWeights: await inp.topkWeights.to(device),
    });
    await d.event?.done();
    report.failures.push('dispatch completed although rank 1 never joined');
  } catch (e) {
    const ms = Date.now() - t0;
    report.code = e.code;
    report.ms = ms;
    if (e.code !== 'ERR_TIMEOUT') report.failures.push(`expected ERR_TIMEOUT, got ${e.code}: ${e.message}`);
    if (ms > timeoutMs + 5000) report.failures.push(`took ${ms} ms, past the ${timeoutMs} ms timeout`);
  }
}
await pg.store.barrier('wideep/test/timeout-done');
await buffer.close();
process.stdout.write(`${JSON.stringify(report)}\n`);
await pg.close();
process.exit(report.failures.length ? 1 : 0);
