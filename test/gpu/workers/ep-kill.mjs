// A rank killed mid-dispatch (issue 18). After a few good iterations the last
// rank enters a dispatch, and dies (SIGKILL) while its kernels wait for the
// others: it has published its counts (on cpu, its first message) but sent no
// rows. The others enter the same dispatch two seconds later, pass the
// handshake the dead rank left, and wait for its rows. Every survivor must
// get a typed error (ERR_TIMEOUT, ERR_PEER, or a CUDA error should the dead
// rank's memory be gone) within the buffer's timeout plus a margin, never a
// hang. The launcher stops the job when the rank dies: survivors hold its
// SIGTERM until they have reported (the test gives them the time).
import { EpBuffer } from '../../../dist/index.js';
import { BACKEND, Checker, joinJob } from './ep-common.mjs';
import { LOCAL_EXPERTS as L, encodedRows, everyRankRouting } from './ep-encoded.mjs';

const TIMEOUT_MS = 5000;
/** Beyond the timeout: the host's wake-up, and ranks sharing a GPU taking turns on it. */
const MARGIN_MS = 15_000;
const GOOD_ITERATIONS = 3;

const { pg, device } = await joinJob();
const R = pg.worldSize;
const me = pg.rank;
const victim = R - 1;
const T = 64;
const H = 1024;
const check = new Checker(me);
process.on('SIGTERM', () => {}); // the launcher's teardown waits for the report below
const buffer = await EpBuffer.create(pg, { backend: BACKEND, hidden: H, numExperts: R * L, maxTokensPerRank: T, timeoutMs: TIMEOUT_MS });
const { topkIdx, topkWeights } = everyRankRouting(T, R);
const routing = { topkIdx: await topkIdx.to(device), topkWeights: await topkWeights.to(device) };

async function iteration(tag) {
  const d = await buffer.dispatch({ x: await encodedRows(tag, me, T, H).to(device), ...routing });
  await d.event?.done();
  const c = await buffer.combine({ x: d.recvX, handle: d.handle });
  await c.event?.done();
}

for (let i = 0; i < GOOD_ITERATIONS; i++) await iteration(i);
await pg.store.barrier('wideep/test/kill/ready');

const x = await encodedRows(GOOD_ITERATIONS, me, T, H).to(device);
if (me === victim) {
  void buffer.dispatch({ x, ...routing }).catch(() => {});
  await new Promise((r) => setTimeout(r, 500));
  process.kill(process.pid, 'SIGKILL');
}
await new Promise((r) => setTimeout(r, 2000));
const t0 = Date.now();
let error;
try {
  const d = await buffer.dispatch({ x, ...routing });
  await d.event?.done();
} catch (e) {
  error = e;
}
const ms = Date.now() - t0;
const typed = ['ERR_TIMEOUT', 'ERR_PEER'].includes(error?.code) || /^CUDA_ERROR_/.test(error?.code ?? '');
check.checks += 2;
if (!typed) check.fail('the dispatch the killed rank left', `expected ERR_TIMEOUT, ERR_PEER or a CUDA error, got ${error ? `${error.code}: ${error.message}` : 'success'}`);
if (ms > TIMEOUT_MS + MARGIN_MS) check.fail('the dispatch the killed rank left', `took ${ms} ms, past the ${TIMEOUT_MS} ms timeout and a ${MARGIN_MS} ms margin`);
process.exit(check.report({ worldSize: R, code: error?.code, ms }));
