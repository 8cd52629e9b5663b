// One rank of test/gpu/comm.test.ts, under `wideep launch --nproc-per-node N`.
//
// Runs every collective of Communicator for every dtype, on fresh random
// inputs derived from COMM_TEST_SEED (shared by all ranks, so each rank can
// compute every other rank's inputs and the expected result on the CPU).
// Outputs are poisoned with 0xff first (NaN for floats, -1 for integers; the
// inputs are chosen so that -1 is never a valid integer result). Prints one
// JSON line {rank, worldSize, checks, failures} and exits non-zero on any
// failure. The check count is fixed: 11 per dtype × 5 dtypes, 1 barrier,
// 1 split shape and 5 child all-reduces = 62.
import { Communicator, Stream, Tensor, WideepError, initProcessGroup } from '../../../dist/index.js';

const DTYPES = ['bf16', 'f16', 'f32', 'i32', 'i64'];
const OPS = ['sum', 'prod', 'max', 'min', 'avg'];
const COUNT = 10007; // elements per rank for reductions (odd, so tails are exercised)
const ROWS = 5; // all-to-all rows per peer
const COLS = 33;
const DEADLINE_MS = Number(process.env.COMM_TEST_DEADLINE_MS ?? 150_000);
const SEED = process.env.COMM_TEST_SEED ?? '1';

const deadline = setTimeout(() => {
  console.log(JSON.stringify({ rank: Number(process.env.RANK), checks: 0, failures: [`deadline of ${DEADLINE_MS} ms passed`] }));
  process.exit(124);
}, DEADLINE_MS);
deadline.unref();

// ---- seeded inputs ---------------------------------------------------------

function hash(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h || 1;
}

/** mulberry32: uniform uint32s from a string key. */
function prng(key) {
  let a = hash(key);
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const isFloat = (dtype) => dtype === 'bf16' || dtype === 'f16' || dtype === 'f32';

/** Largest |k| so that n quarter-integers k/4 add up exactly in the dtype's significand. */
function quarterBound(dtype, n) {
  const significand = { bf16: 256, f16: 2048, f32: 1 << 24 }[dtype];
  return Math.floor((significand - 1) / n);
}

/**
 * Values of one rank's input for one case. kind:
 *   'sum'  exact sums (floats: quarter-integers; ints: non-negative, as NCCL's integer avg needs)
 *   'prod' exact products (floats: ±0.5, ±1, ±2; ints: -3, -2, 1, 2, 3)
 *   'any'  copies, max and min (ints over the full range, never -1)
 */
function values(key, rank, length, dtype, kind, n) {
  const next = prng(`${SEED}/${key}/${rank}`);
  const out = new Array(length);
  for (let i = 0; i < length; i++) {
    const r = next();
    if (isFloat(dtype)) {
      if (kind === 'prod') out[i] = [-2, -1, -0.5, 0.5, 1, 2][r % 6];
      else {
        const k = quarterBound(dtype, n);
        out[i] = ((r % (2 * k + 1)) - k) / 4;
      }
    } else if (kind === 'prod') {
      out[i] = [-3, -2, 1, 2, 3][r % 5];
    } else if (kind === 'sum') {
      out[i] = dtype === 'i32' ? r % (1 << 20) : (r % (1 << 20)) * 1048576 + (next() % (1 << 20));
    } else if (dtype === 'i32') {
      const v = r | 0;
      out[i] = v === -1 ? 7 : v;
    } else {
      // |v| < 2^52: exercises the upper word and stays a safe integer.
      let v = (next() % (1 << 20)) * 4294967296 + r;
      if (v === 1) v = 7; // -1 is the poison
      out[i] = r & 1 ? -v : v;
    }
  }
  return out;
}

function reduce(op, columns, dtype, n) {
  return columns[0].map((_, i) => {
    const xs = columns.map((c) => c[i]);
    switch (op) {
      case 'sum':
        return xs.reduce((a, b) => a + b, 0);
      case 'prod':
        return xs.reduce((a, b) => a * b, 1);
      case 'max':
        return Math.max(...xs);
      case 'min':
        return Math.min(...xs);
      case 'avg': {
        const s = xs.reduce((a, b) => a + b, 0);
        return isFloat(dtype) ? s / n : Math.floor(s / n);
      }
    }
    throw new Error(`unknown op ${op}`);
  });
}

// ---- checking --------------------------------------------------------------

const failures = [];
let checks = 0;

function tolerance(dtype, op) {
  // Results are exact by construction; avg may round once per add and once for the scale.
  const ulp = { bf16: 2 ** -7, f16: 2 ** -10, f32: 2 ** -23 }[dtype];
  return op === 'avg' ? 4 * ulp : ulp / 4;
}

/** Compares host numbers `got` with `want`; records one check and at most one failure. */
function check(name, got, want, dtype, op = '') {
  checks++;
  if (got.length !== want.length) {
    failures.push(`${name}: ${got.length} elements, expected ${want.length}`);
    return;
  }
  const tol = isFloat(dtype) ? tolerance(dtype, op) : 0;
  let bad = 0;
  let first = -1;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    const ok = isFloat(dtype) ? Number.isFinite(g) && Math.abs(g - w) <= tol * Math.max(1, Math.abs(w)) : g === w;
    if (!ok) {
      bad++;
      if (first < 0) first = i;
    }
  }
  if (bad > 0) failures.push(`${name}: ${bad}/${want.length} wrong, first at [${first}]: got ${got[first]}, expected ${want[first]}`);
}

// ---- the run ----------------------------------------------------------------

const pg = await initProcessGroup({ timeoutMs: 60_000 });
const { rank, worldSize: n } = pg;
const device = `cuda:${pg.device}`;
let comm;
let stream;

const up = (vals, shape, dtype) => Tensor.fromNumbers(vals, shape, dtype).to(device, { stream });
const poisoned = (shape, dtype) => Tensor.empty(shape, dtype, { device, stream }).fillBytes(0xff, stream);
async function down(t) {
  await comm.wait({ stream }); // surfaces a communicator error before the copy
  const host = await t.cpu({ stream });
  return host.toNumbers();
}
const close = (...ts) => ts.forEach((t) => t.close());

async function allReduceCases(dtype) {
  for (const op of OPS) {
    const kind = op === 'prod' ? 'prod' : op === 'max' || op === 'min' ? 'any' : 'sum';
    const key = `allReduce/${dtype}/${op}`;
    const ins = Array.from({ length: n }, (_, r) => values(key, r, COUNT, dtype, kind, n));
    const x = await up(ins[rank], [COUNT], dtype);
    const out = poisoned([COUNT], dtype);
    comm.allReduce(x, { op, out, stream });
    check(`allReduce ${op} ${dtype}`, await down(out), reduce(op, ins, dtype, n), dtype, op);
    close(x, out);
  }
}

async function allGatherCase(dtype) {
  const key = `allGather/${dtype}`;
  const ins = Array.from({ length: n }, (_, r) => values(key, r, COUNT, dtype, 'any', n));
  const x = await up(ins[rank], [COUNT], dtype);
  const out = poisoned([n * COUNT], dtype);
  comm.allGather(x, out, { stream });
  check(`allGather ${dtype}`, await down(out), ins.flat(), dtype);
  close(x, out);
}

async function reduceScatterCase(dtype) {
  const key = `reduceScatter/${dtype}`;
  const ins = Array.from({ length: n }, (_, r) => values(key, r, n * COUNT, dtype, 'sum', n));
  const x = await up(ins[rank], [n * COUNT], dtype);
  const out = poisoned([COUNT], dtype);
  comm.reduceScatter(x, out, { op: 'sum', stream });
  const block = ins.map((v) => v.slice(rank * COUNT, (rank + 1) * COUNT));
  check(`reduceScatter sum ${dtype}`, await down(out), reduce('sum', block, dtype, n), dtype, 'sum');
  close(x, out);
}

async function broadcastCase(dtype, root) {
  const key = `broadcast/${dtype}`;
  const ins = Array.from({ length: n }, (_, r) => values(key, r, COUNT, dtype, 'any', n));
  const x = await up(ins[rank], [COUNT], dtype);
  const out = poisoned([COUNT], dtype);
  comm.broadcast(x, root, { out, stream });
  check(`broadcast root ${root} ${dtype}`, await down(out), ins[root], dtype);
  close(x, out);
}

async function ringCase(dtype) {
  const key = `ring/${dtype}`;
  const ins = Array.from({ length: n }, (_, r) => values(key, r, COUNT, dtype, 'any', n));
  const next = (rank + 1) % n;
  const prev = (rank + n - 1) % n;
  const x = await up(ins[rank], [COUNT], dtype);
  const out = poisoned([COUNT], dtype);
  comm.sendRecv(
    [
      { kind: 'send', peer: next, tensor: x },
      { kind: 'recv', peer: prev, tensor: out },
    ],
    { stream },
  );
  check(`sendRecv ring ${dtype}`, await down(out), ins[prev], dtype);
  close(x, out);
}

async function allToAllCase(dtype) {
  const key = `allToAll/${dtype}`;
  const per = ROWS * COLS;
  const ins = Array.from({ length: n }, (_, r) => values(key, r, n * per, dtype, 'any', n));
  const x = await up(ins[rank], [n * ROWS, COLS], dtype);
  const out = poisoned([n * ROWS, COLS], dtype);
  comm.allToAll(x, out, { stream });
  // Block j of the output is rank j's block `rank`.
  const want = ins.flatMap((v) => v.slice(rank * per, (rank + 1) * per));
  check(`allToAll ${dtype}`, await down(out), want, dtype);
  close(x, out);
}

/** Rows rank `src` sends to rank `dst`: uneven, with zeros. */
const sendRows = (src, dst) => (src * 3 + dst * 5 + 1) % 4;

async function allToAllvCase(dtype) {
  const key = `allToAllv/${dtype}`;
  const sendCounts = (r) => Array.from({ length: n }, (_, j) => sendRows(r, j));
  const rowsOf = (r) => sendCounts(r).reduce((a, b) => a + b, 0);
  const ins = Array.from({ length: n }, (_, r) => values(key, r, Math.max(1, rowsOf(r)) * COLS, dtype, 'any', n));
  const recvCounts = Array.from({ length: n }, (_, i) => sendRows(i, rank));
  const recvRows = recvCounts.reduce((a, b) => a + b, 0);
  const x = await up(ins[rank], [Math.max(1, rowsOf(rank)), COLS], dtype);
  // One guard row past the received rows must stay poisoned.
  const out = poisoned([recvRows + 1, COLS], dtype);
  comm.allToAllv(x, sendCounts(rank), out, recvCounts, { stream });
  const want = [];
  for (let i = 0; i < n; i++) {
    const offset = sendCounts(i).slice(0, rank).reduce((a, b) => a + b, 0);
    want.push(...ins[i].slice(offset * COLS, (offset + recvCounts[i]) * COLS));
  }
  const got = await down(out);
  const guard = got.slice(recvRows * COLS);
  const guardOk = guard.every((v) => (isFloat(dtype) ? Number.isNaN(v) : v === -1));
  check(`allToAllv ${dtype} (recv ${recvCounts.join('/')})`, got.slice(0, recvRows * COLS), want, dtype);
  if (!guardOk) failures.push(`allToAllv ${dtype}: the guard row after the ${recvRows} received rows was overwritten`);
  close(x, out);
}

async function splitCases() {
  const color = rank % 2;
  const members = Array.from({ length: n }, (_, r) => r).filter((r) => r % 2 === color);
  const child = await comm.split(color, rank);
  checks++;
  if (!child || child.size !== members.length || child.rank !== members.indexOf(rank)) {
    failures.push(`split: expected rank ${members.indexOf(rank)} of ${members.length}, got ${child ? `rank ${child.rank} of ${child.size}` : 'no communicator'}`);
    child?.close();
    return;
  }
  try {
    for (const dtype of DTYPES) {
      const key = `split/${dtype}`;
      const ins = Array.from({ length: n }, (_, r) => values(key, r, COUNT, dtype, 'sum', n));
      const x = await up(ins[rank], [COUNT], dtype);
      const out = poisoned([COUNT], dtype);
      child.allReduce(x, { op: 'sum', out, stream });
      await child.wait({ stream });
      check(`split(${color}) allReduce sum ${dtype}`, (await out.cpu({ stream })).toNumbers(), reduce('sum', members.map((r) => ins[r]), dtype, n), dtype, 'sum');
      close(x, out);
    }
  } finally {
    child.close();
  }
}

let exitCode = 0;
try {
  stream = new Stream(pg.device);
  comm = await Communicator.create(pg, { timeoutMs: 60_000, name: 'comm-test' });
  if (comm.rank !== rank || comm.size !== n) failures.push(`communicator is rank ${comm.rank} of ${comm.size}, expected ${rank} of ${n}`);
  for (const [i, dtype] of DTYPES.entries()) {
    await allReduceCases(dtype);
    await allGatherCase(dtype);
    await reduceScatterCase(dtype);
    await broadcastCase(dtype, i % n);
    await ringCase(dtype);
    await allToAllCase(dtype);
    await allToAllvCase(dtype);
  }
  await comm.barrier({ stream });
  checks++;
  await splitCases();
  await comm.barrier({ stream });
} catch (e) {
  failures.push(`exception: ${e instanceof WideepError ? `${e.code}: ` : ''}${e?.stack ?? e}`);
} finally {
  comm?.close();
  stream?.close();
}
if (failures.length > 0) exitCode = 1;
console.log(JSON.stringify({ rank, worldSize: n, checks, failures: failures.slice(0, 30) }));
await pg.store.barrier('comm-test/printed', { timeoutMs: 30_000 }).catch(() => {});
await pg.close();
clearTimeout(deadline);
process.exit(exitCode);
