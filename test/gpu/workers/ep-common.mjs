// Shared pieces of the EP GPU correctness workers: seeded per-rank inputs
// that every rank can regenerate for every other rank, the cpu backend run
// over simulated ranks as the oracle, and comparisons that name what differs.
import {
  EpBuffer,
  Graph,
  Tensor,
  createSimulatedRanks,
  fp8E4m3BitsToF32,
  initProcessGroup,
  quantizeBf16RowsFp8,
} from '../../../dist/index.js';
import { SeededRandom, randomRouting } from '../../../dist/testing/index.js';

/**
 * WIDEEP_TEST_DRY_RUN=1 runs the workers' logic on a machine without GPUs:
 * the "device" side is the cpu backend over the job's store.
 */
export const DRY_RUN = process.env.WIDEEP_TEST_DRY_RUN === '1';
export const BACKEND = DRY_RUN ? 'cpu' : 'cuda';

export async function joinJob() {
  const pg = await initProcessGroup();
  if (pg.device === undefined && !DRY_RUN) throw new Error(`rank ${pg.rank} has no GPU`);
  // Fresh random inputs every run; every rank uses rank 0's base seed.
  const key = 'wideep/test/seed';
  if (pg.rank === 0) await pg.store.set(key, String(Date.now() % 1_000_000_007));
  const seed = Number(new TextDecoder().decode(await pg.store.get(key)));
  return { pg, seed, device: DRY_RUN ? 'cpu' : `cuda:${pg.device}` };
}

/**
 * Fresh random bf16 values, fast: random sign, exponent for magnitudes in
 * [2^-3, 4) and mantissa, built straight as bits (xorshift32 per call).
 */
export function bf16Random(count, seed) {
  const out = new Uint16Array(count);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    // ((x >>> 16) * 5) >>> 16 picks one of 5 binades without a division.
    out[i] = (x & 0x8000) | ((124 + (((x >>> 16) * 5) >>> 16)) << 7) | (x & 0x7f);
  }
  return out;
}

/** Inputs of rank `r` for one repetition of a case (same on every rank). */
export function rankInputs(c, seed, r) {
  const T = c.zeroRank === r ? 0 : typeof c.T === 'number' ? c.T : new SeededRandom(seed * 31 + r).int(c.T[1] - c.T[0] + 1) + c.T[0];
  const routing = randomRouting({
    numTokens: T,
    numExperts: c.E,
    topk: c.k,
    kind: c.routing,
    dropProbability: c.drop ?? 0,
    seed: seed * 7 + r,
  });
  const bits = bf16Random(T * c.H, seed * 13 + r);
  const x = Tensor.from(bits, { shape: [T, c.H], dtype: 'bf16' });
  const idxDtype = c.idx64 ? 'i64' : 'i32';
  const topkIdx = c.idx64
    ? Tensor.from(BigInt64Array.from(routing.topkIdx, BigInt), { shape: [T, c.k], dtype: 'i64' })
    : Tensor.from(routing.topkIdx, { shape: [T, c.k], dtype: idxDtype });
  const topkWeights = Tensor.from(routing.topkWeights, { shape: [T, c.k], dtype: 'f32' });
  // The FP8 cast is the costliest input: made only when a repetition asks for it.
  let fp8;
  const cast = () => {
    if (!c.fp8Input) return undefined;
    if (!fp8) {
      const q = quantizeBf16RowsFp8(bits, T, c.H, false);
      fp8 = { xFp8: Tensor.from(q.q, { shape: [T, c.H], dtype: 'fp8e4m3' }), xScales: Tensor.from(q.scales, { shape: [T, c.H / 128], dtype: 'f32' }) };
    }
    return fp8;
  };
  return {
    T,
    x,
    topkIdx,
    topkWeights,
    get xFp8() {
      return cast()?.xFp8;
    },
    get xScales() {
      return cast()?.xScales;
    },
  };
}

/** cpu buffers over simulated ranks: the oracle, one per distinct option set. */
export async function oracleBuffers(R, options) {
  const ranks = createSimulatedRanks(R);
  return Promise.all(ranks.map((t) => EpBuffer.create(t, { ...options, backend: 'cpu' })));
}

export async function toDevice(t, device) {
  return t === undefined ? undefined : t.to(device);
}

/**
 * Runs `step` once eagerly, captures it in a CUDA graph and replays it
 * `replays` times, poisoning `out` before each replay and checking it against
 * the eager result every `every` replays and after the last. Returns the
 * eager result.
 */
export async function checkGraphReplays({ check, label, stream, step, out, replays, every }) {
  await step();
  await stream.synchronize();
  const eager = await out.cpu({ stream });
  const graph = await Graph.capture(stream, step);
  for (let i = 1; i <= replays; i++) {
    out.fillBytes(0xff, stream);
    graph.launch(stream);
    if (i % every === 0 || i === replays) {
      await stream.synchronize();
      check.bitwise(`${label} replay ${i}`, await out.cpu({ stream }), eager);
    }
  }
  graph.close();
  return eager;
}

export class Checker {
  constructor(rank) {
    this.rank = rank;
    this.checks = 0;
    this.failures = [];
  }

  fail(what, detail) {
    if (this.failures.length < 20) this.failures.push(`${what}: ${detail}`);
    else if (this.failures.length === 20) this.failures.push('... more failures omitted');
  }

  /** The call fails with a WideepError of `code`. */
  async refuses(what, promise, code) {
    this.checks++;
    try {
      await promise;
      this.fail(what, `expected ${code}, but the call succeeded`);
    } catch (e) {
      if (e?.code !== code) this.fail(what, `expected ${code}, got ${e?.code}: ${e?.message}`);
    }
  }

  /** Same shape, dtype and bytes. */
  bitwise(what, actual, expected) {
    this.checks++;
    if (actual.dtype !== expected.dtype || actual.shape.join() !== expected.shape.join()) {
      return this.fail(what, `got ${actual.dtype}[${actual.shape}], expected ${expected.dtype}[${expected.shape}]`);
    }
    const a = new Uint8Array(actual.data.buffer, actual.data.byteOffset, actual.byteLength);
    const e = new Uint8Array(expected.data.buffer, expected.data.byteOffset, expected.byteLength);
    let bad = 0;
    let first = -1;
    for (let i = 0; i < a.length; i++) {
      if (a[i] !== e[i]) {
        if (first < 0) first = i;
        bad++;
      }
    }
    if (bad) this.fail(what, `${bad} byte(s) differ, first at byte ${first} (${a[first]} vs ${e[first]})`);
  }

  /** bf16 within 2^-7 of the sum of the magnitudes of the terms (plus 1e-6). */
  closeBf16(what, actual, expected, magnitudes) {
    this.checks++;
    const a = actual.toFloat32();
    const e = expected.toFloat32();
    const m = magnitudes.toFloat32();
    if (a.length !== e.length) return this.fail(what, `got ${a.length} elements, expected ${e.length}`);
    let bad = 0;
    let first = '';
    for (let i = 0; i < a.length; i++) {
      const tol = 2 ** -7 * Math.abs(m[i]) + 1e-6;
      if (!(Math.abs(a[i] - e[i]) <= tol)) {
        if (!bad) first = `element ${i}: ${a[i]} vs ${e[i]} (tol ${tol})`;
        bad++;
      }
    }
    if (bad) this.fail(what, `${bad} element(s) out of tolerance; first ${first}`);
  }

  /** fp8 codes equal or adjacent (one e4m3 rounding step), with the same sign. */
  closeFp8(what, actual, expected) {
    this.checks++;
    const a = actual.data;
    const e = expected.data;
    let bad = 0;
    let first = -1;
    for (let i = 0; i < a.length; i++) {
      const sameSign = (a[i] & 0x80) === (e[i] & 0x80);
      const ok = a[i] === e[i] || (sameSign && Math.abs((a[i] & 0x7f) - (e[i] & 0x7f)) <= 1) ||
        (fp8E4m3BitsToF32(a[i]) === 0 && fp8E4m3BitsToF32(e[i]) === 0);
      if (!ok) {
        if (first < 0) first = i;
        bad++;
      }
    }
    if (bad) this.fail(what, `${bad} code(s) differ by more than one step, first at ${first} (${a[first]} vs ${e[first]})`);
  }

  /** f32 within a relative 1e-6. */
  closeF32(what, actual, expected) {
    this.checks++;
    const a = actual.data;
    const e = expected.data;
    let bad = 0;
    for (let i = 0; i < a.length; i++) if (!(Math.abs(a[i] - e[i]) <= 1e-6 * Math.abs(e[i]) + 1e-30)) bad++;
    if (bad) this.fail(what, `${bad} value(s) differ`);
  }

  report(extra = {}) {
    process.stdout.write(`${JSON.stringify({ rank: this.rank, checks: this.checks, failures: this.failures, ...extra })}\n`);
    return this.failures.length === 0 ? 0 : 1;
  }
}

/**
 * Runs every case (timing each on rank 0): a case with `replays` through
 * runGraph (skipped in a dry run: graphs need a GPU), the others through
 * runCase. Then reports the checks, closes the buffers and the job, and exits
 * with the verdict.
 */
export async function runCasesAndExit({ cases, runCase, runGraph, check, pg, buffers }) {
  let code = 1;
  try {
    for (const [i, c] of cases.entries()) {
      if (c.replays && DRY_RUN) continue; // graphs need a GPU
      const t0 = Date.now();
      await (c.replays ? runGraph(c, i) : runCase(c, i));
      if (pg.rank === 0) process.stderr.write(`case ${i} ${JSON.stringify(c)}: ${Date.now() - t0} ms\n`);
    }
    code = check.report({ worldSize: pg.worldSize });
  } catch (e) {
    check.fail('exception', e?.stack ?? String(e));
    code = check.report({ worldSize: pg.worldSize });
  }
  for (const { gpu, cpu } of buffers.values()) {
    await gpu.close();
    await Promise.all(cpu.map((b) => b.close()));
  }
  await pg.close();
  process.exit(code);
}

/** Element-wise |t| for f32/bf16 host tensors (magnitudes for tolerances). */
export function absTensor(t) {
  if (t.dtype === 'bf16') {
    const bits = new Uint16Array(t.data);
    for (let i = 0; i < bits.length; i++) bits[i] &= 0x7fff;
    return Tensor.from(bits, { shape: [...t.shape], dtype: 'bf16' });
  }
  return Tensor.from(t.toFloat32().map(Math.abs), { shape: [...t.shape], dtype: 'f32' });
}

/** The first `rows` rows of a host tensor, as a copy. */
export function firstRows(t, rows) {
  return t.narrow(0, rows).clone();
}

export { fp8E4m3BitsToF32, Tensor };
