// Normal dispatches back to back, with no host sync between them (issue 18:
// the notify race). numWorstTokens keeps the host from waiting for counts and
// no combine comes between two dispatches, so a rank may run a dispatch ahead
// of a peer still waiting for a third rank; before notify-ack its counts could
// replace those the peer had not read yet. Each iteration routes each token to
// one rank that depends on the iteration, so the counts differ from one
// dispatch to the next, and every 50th iteration (and the last) checks where
// the rows landed (ep-encoded.mjs). WIDEEP_BACK_TO_BACK_ITERATIONS, default 2000.
import { EpBuffer, Tensor } from '../../../dist/index.js';
import { BACKEND, Checker, joinJob } from './ep-common.mjs';
import { LOCAL_EXPERTS as L, encodedRows, rowValue, wrongRows } from './ep-encoded.mjs';

const ITERATIONS = Number(process.env.WIDEEP_BACK_TO_BACK_ITERATIONS ?? 2000);
const CHECK_EVERY = 50;
const TAGS = 8; // inputs made once: making them per iteration would sync the host

const { pg, device } = await joinJob();
const R = pg.worldSize;
const me = pg.rank;
const T = 5; // not a multiple of R, so the counts change with the iteration
const H = 256;
const check = new Checker(me);
const buffer = await EpBuffer.create(pg, { backend: BACKEND, hidden: H, numExperts: R * L, maxTokensPerRank: T, timeoutMs: 60_000 });

/** In iteration i, token t of rank r goes to rank (r + t + i) % R. */
const destination = (i, r, t) => (r + t + i) % R;
const inputs = await Promise.all(
  Array.from({ length: TAGS }, async (_, i) => ({
    x: await encodedRows(i, me, T, H).to(device),
    topkIdx: await Tensor.fromNumbers(Array.from({ length: T }, (_, t) => destination(i, me, t) * L), [T, 1], 'i32').to(device),
    topkWeights: await Tensor.fromNumbers(new Array(T).fill(1), [T, 1], 'f32').to(device),
  })),
);

/** Row `row` of this rank's receive slot in iteration i: sources in order, each one's tokens for this rank in order. */
function expected(i) {
  const rows = [];
  for (let s = 0; s < R; s++) for (let t = 0; t < T; t++) if (destination(i, s, t) === me) rows.push(rowValue(i, s, t));
  return (row) => rows[row];
}

let code = 1;
try {
  for (let n = 0; n < ITERATIONS; n++) {
    const i = n % TAGS;
    const d = await buffer.dispatch({ ...inputs[i], numWorstTokens: R * T });
    if (n % CHECK_EVERY === 0 || n === ITERATIONS - 1) {
      await d.event?.done();
      check.checks++;
      for (const w of wrongRows(`dispatch ${n}`, await d.recvX.cpu(), expected(i))) check.fail(`dispatch ${n}`, w);
    }
    d.release();
  }
  code = check.report({ worldSize: R, iterations: ITERATIONS });
} catch (e) {
  check.fail('exception', `${e?.code}: ${e?.message}`);
  code = check.report({ worldSize: R, iterations: ITERATIONS });
}
await buffer.close();
await pg.close();
process.exit(code);
