/**
 * Every EP call carries its buffer's call number, and a rank whose call fails
 * locally (a bad argument, no free slot) still takes part in that call with
 * an error flag. So the same call fails on every rank (its own error there,
 * ERR_PEER naming it and its code on the others), the buffer stays usable for
 * the next call, and calls that do not belong together are ERR_PROTOCOL,
 * never each other's data (docs/architecture.md "Errors and codes").
 *
 * Each rank runs its own loop, as separate processes would. Row values encode
 * (iteration, source rank, token), so a row from another iteration shows.
 */
import { describe, expect, test } from 'vitest';
import { EpBuffer } from '../../../src/ep/buffer.js';
import { createSimulatedRanks } from '../../../src/ep/transport.js';
import type { EpBufferOptions } from '../../../src/ep/types.js';
import { WideepError } from '../../../src/errors.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import { closeAll, onAllRanks, simulatedBuffers } from '../../helpers/ep-sim.js';
import { loopbackStoreGroups } from '../../helpers/ep-store.js';
import { expectWideepError } from '../../helpers/expect-error.js';
import { fromRouting } from '../../helpers/random.js';

const R = 2;
const L = 2;
const H = 128;
const T = 3;
const M = 4;
const ITERATIONS = 4;
const FAILING_ITERATION = 2;
const OPTIONS: EpBufferOptions = { hidden: H, numExperts: R * L, maxTokensPerRank: T, lowLatency: { maxTokensPerRank: M }, timeoutMs: 3000 };

/** The value of every element of token t's row on rank r in iteration i (exact in bf16, and so is twice it). */
const value = (i: number, r: number, t: number) => 16 * i + 4 * r + t;

function rows(i: number, r: number): Tensor {
  return Tensor.fromNumbers(Array.from({ length: T * H }, (_, j) => value(i, r, Math.floor(j / H))), [T, H], 'bf16');
}

/** Token t selects local expert t % L of every rank, with weight 1. */
const routing = () =>
  fromRouting(
    Array.from({ length: T * R }, (_, j) => Math.floor(j % R) * L + (Math.floor(j / R) % L)),
    new Array<number>(T * R).fill(1),
    T,
    R,
  );

/** The first element of each row whose elements are not all `want(row)`, described. */
function wrongRows(label: string, t: Tensor, want: (row: number) => number | undefined): string[] {
  const v = t.toFloat32();
  const width = t.shape.at(-1)!;
  const out: string[] = [];
  for (let row = 0; row * width < v.length; row++) {
    const w = want(row);
    if (w === undefined) continue;
    const j = v.subarray(row * width, (row + 1) * width).findIndex((x) => x !== w);
    if (j >= 0) out.push(`${label} row ${row}: element ${j} is ${v[row * width + j]}, expected ${w}`);
  }
  return out;
}

type Op = 'dispatch' | 'combine' | 'lowLatencyDispatch' | 'lowLatencyCombine';
type Outcome = 'ok' | { code: string; message: string };

/** What rank 1 passes instead of a good argument in the failing iteration, and the code it gets. */
const FAULTS: Record<Op, { code: string }> = {
  dispatch: { code: 'ERR_DTYPE' }, // x in f32
  combine: { code: 'ERR_SHAPE' }, // one row too many
  lowLatencyDispatch: { code: 'ERR_INVALID_ARG' }, // the wrong numExperts
  lowLatencyCombine: { code: 'ERR_SHAPE' }, // y of the wrong shape
};

/** One rank's iterations of dispatch then combine in `mode`, rank 1 failing `fault` in FAILING_ITERATION. */
async function rankLoop(b: EpBuffer, r: number, fault: Op): Promise<{ outcomes: Outcome[]; wrong: string[] }> {
  const outcomes: Outcome[] = [];
  const wrong: string[] = [];
  const lowLatency = fault.startsWith('lowLatency');
  for (let i = 1; i <= ITERATIONS; i++) {
    const bad = (op: Op) => r === 1 && i === FAILING_ITERATION && fault === op;
    const { topkIdx, topkWeights } = routing();
    try {
      if (!lowLatency) {
        const x = bad('dispatch') ? Tensor.zeros([T, H], 'f32') : rows(i, r);
        const d = await b.dispatch({ x, topkIdx, topkWeights });
        // Rows come by source rank, then token.
        wrong.push(...wrongRows(`iteration ${i} rank ${r} recvX`, d.recvX, (row) => value(i, Math.floor(row / T), row % T)));
        const cx = bad('combine') ? Tensor.zeros([d.recvX.shape[0]! + 1, H], 'bf16') : d.recvX;
        const c = await b.combine({ x: cx, handle: d.handle });
        wrong.push(...wrongRows(`iteration ${i} rank ${r} combinedX`, c.combinedX, (t) => 2 * value(i, r, t)));
      } else {
        const d = await b.lowLatencyDispatch({ x: rows(i, r), topkIdx, maxTokensPerRank: M, numExperts: bad('lowLatencyDispatch') ? 2 * R * L : R * L, useFp8: false });
        // Expert j's slots: each source's tokens naming it (t % L == j), sources in order.
        const tokensOf = (j: number) => Array.from({ length: T }, (_, t) => t).filter((t) => t % L === j);
        const slot = (row: number) => {
          const j = Math.floor(row / (R * M));
          const n = tokensOf(j).length;
          const s = Math.floor((row % (R * M)) / n);
          return s < R ? value(i, s, tokensOf(j)[(row % (R * M)) % n]!) : undefined;
        };
        wrong.push(...wrongRows(`iteration ${i} rank ${r} low-latency recvX`, d.recvX, slot));
        const y = bad('lowLatencyCombine') ? Tensor.zeros([L, R * M + 1, H], 'bf16') : d.recvX;
        const c = await b.lowLatencyCombine({ y, topkIdx, topkWeights, handle: d.handle });
        wrong.push(...wrongRows(`iteration ${i} rank ${r} low-latency combinedX`, c.combinedX, (t) => 2 * value(i, r, t)));
      }
      outcomes.push('ok');
    } catch (e) {
      if (!(e instanceof WideepError)) throw e;
      outcomes.push({ code: e.code, message: e.message });
    }
  }
  return { outcomes, wrong };
}

interface Ranks {
  buffers: EpBuffer[];
  close(): Promise<void>;
}

const TRANSPORTS: [string, () => Promise<Ranks>][] = [
  [
    'simulated ranks',
    async () => {
      const buffers = await simulatedBuffers(R, OPTIONS);
      return { buffers, close: () => closeAll(buffers) };
    },
  ],
  [
    'a StoreTransport over a loopback TCP store',
    async () => {
      const store = await loopbackStoreGroups(R);
      const buffers = await Promise.all(store.groups.map((g) => EpBuffer.create(g, { ...OPTIONS, backend: 'cpu' })));
      return {
        buffers,
        close: async () => {
          await closeAll(buffers);
          await store.close();
        },
      };
    },
  ],
];

describe.each(TRANSPORTS)('over %s', (_, makeRanks) => {
  test.each(Object.keys(FAULTS) as Op[])('%s fails on rank 1 alone in one iteration: it fails on every rank, and the next iterations are right', async (fault) => {
    const ranks = await makeRanks();
    try {
      const loops = await onAllRanks(ranks.buffers, (b, r) => rankLoop(b, r, fault));
      expect(loops.flatMap((l) => l.wrong)).toEqual([]);
      for (const [r, { outcomes }] of loops.entries()) {
        outcomes.forEach((o, n) => {
          if (n + 1 !== FAILING_ITERATION) return expect(o, `rank ${r} iteration ${n + 1}`).toBe('ok');
          const { code } = FAULTS[fault];
          expect(o, `rank ${r}`).toMatchObject(r === 1 ? { code } : { code: 'ERR_PEER' });
          if (r === 0) {
            const { message } = o as { message: string };
            expect(message).toContain(`rank 1 failed this ${fault} (${code})`);
          }
        });
      }
    } finally {
      await ranks.close();
    }
  });

  test('ranks that combine different dispatches get ERR_PROTOCOL, not each other\'s rows', async () => {
    const ranks = await makeRanks();
    try {
      const { buffers } = ranks;
      const d = await Promise.all([1, 2].map(() => onAllRanks(buffers, (b, r) => b.dispatch({ x: rows(1, r), ...routing() }))));
      // Rank 0 combines the first dispatch while rank 1 combines the second, then the other way round.
      for (const pick of [[0, 1], [1, 0]]) {
        const res = await Promise.allSettled(buffers.map((b, r) => b.combine({ x: d[pick[r]!]![r]!.recvX, handle: d[pick[r]!]![r]!.handle })));
        for (const [r, outcome] of res.entries()) {
          expect(outcome.status, `rank ${r}`).toBe('rejected');
          await expectWideepError(Promise.reject((outcome as PromiseRejectedResult).reason), 'ERR_PROTOCOL', `combine of dispatch #${pick[1 - r]! + 1}`);
        }
      }
      const loops = await onAllRanks(buffers, (b, r) => rankLoop(b, r, 'dispatch'));
      expect(loops.flatMap((l) => l.wrong)).toEqual([]);
    } finally {
      await ranks.close();
    }
  });
});

test('two buffers over one set of simulated ranks, called in different orders: ERR_PROTOCOL on every rank', async () => {
  const transports = createSimulatedRanks(R);
  const a = await Promise.all(transports.map((t) => EpBuffer.create(t, OPTIONS)));
  const b = await Promise.all(transports.map((t) => EpBuffer.create(t, OPTIONS)));
  try {
    const res = await Promise.allSettled([0, 1].map((r) => (r === 0 ? a : b)[r]!.dispatch({ x: rows(1, r), ...routing() })));
    for (const outcome of res) {
      await expectWideepError(Promise.reject((outcome as PromiseRejectedResult).reason), 'ERR_PROTOCOL', 'of another EpBuffer');
    }
  } finally {
    await closeAll([...a, ...b]);
  }
});
