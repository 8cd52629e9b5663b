// One rank of the dead-peer case of test/gpu/comm.test.ts, started directly
// (not by the launcher, which would stop the survivors) with torchrun
// variables and WIDEEP_STORE_HOSTED=1: the test hosts the store.
//
// Every rank joins a communicator with timeoutMs 8000 and runs a few
// all-reduces. Then rank DEAD_RANK (1) exits with code 7 while the others
// enqueue one more all-reduce and await comm.wait(): it must reject with a
// WideepError whose code is ERR_TIMEOUT or NCCL_*. Survivors print
// {rank, code, ms, message} and exit 0 when it did, 1 otherwise.
import { Communicator, Stream, Tensor, WideepError, initProcessGroup } from '../../../dist/index.js';

const TIMEOUT_MS = Number(process.env.COMM_TEST_TIMEOUT_MS ?? 8000);
const DEAD_RANK = Number(process.env.COMM_TEST_DEAD_RANK ?? 1);
const rank = Number(process.env.RANK);
const print = (o) => console.log(JSON.stringify({ rank, ...o }));

// Nothing may hang: give up well after the communicator's own timeout.
const deadline = setTimeout(() => {
  print({ code: 'HANG', ms: null, message: `no answer ${TIMEOUT_MS + 40_000} ms after start` });
  process.exit(3);
}, TIMEOUT_MS + 40_000);
deadline.unref();

const pg = await initProcessGroup({ timeoutMs: 60_000 });
const stream = new Stream(pg.device);
const comm = await Communicator.create(pg, { timeoutMs: TIMEOUT_MS, name: 'dead-peer' });
const x = await Tensor.fromNumbers(Array.from({ length: 4096 }, (_, i) => (i % 7) + rank), [4096], 'f32').to(`cuda:${pg.device}`, { stream });
for (let i = 0; i < 3; i++) {
  comm.allReduce(x, { op: 'max', stream });
  await comm.wait({ stream });
}
await pg.store.barrier('dead-peer/healthy', { timeoutMs: 60_000 });

if (rank === DEAD_RANK) {
  print({ code: 'EXITING', ms: 0, message: `rank ${rank} exits with code 7 now` });
  process.exit(7);
}

// Give the dead rank a moment to be gone, so the op really has a missing peer.
await new Promise((r) => setTimeout(r, 200));
const t0 = Date.now();
let outcome;
try {
  comm.allReduce(x, { op: 'max', stream });
  await comm.wait({ stream });
  outcome = { code: 'NONE', ms: Date.now() - t0, message: 'the all-reduce completed without its peer' };
} catch (e) {
  const code = e instanceof WideepError ? e.code : `not a WideepError: ${e?.name}`;
  outcome = { code, ms: Date.now() - t0, message: String(e?.message ?? e).slice(0, 300) };
}
print(outcome);
const ok = outcome.code === 'ERR_TIMEOUT' || outcome.code.startsWith('NCCL_');
try {
  comm.close();
  stream.close();
} catch {
  // closing after an abort must not matter here
}
await Promise.race([pg.close(), new Promise((r) => setTimeout(r, 2_000))]);
clearTimeout(deadline);
process.exit(ok ? 0 : 1);
