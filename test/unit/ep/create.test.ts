import { describe, expect, test } from 'vitest';
import { EpBuffer } from '../../../src/ep/buffer.js';
import { createSimulatedRanks } from '../../../src/ep/transport.js';
import type { EpBufferOptions } from '../../../src/ep/types.js';
import { checkSharedOptions, resolveConfig, sharedOptions } from '../../../src/ep/validate.js';
import { closeAll, simulatedBuffers } from '../../helpers/ep-sim.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const BASE: EpBufferOptions = { hidden: 512, numExperts: 8, maxTokensPerRank: 16, lowLatency: { maxTokensPerRank: 8 }, timeoutMs: 5000 };

describe('EpBuffer.create', () => {
  test('exposes its configuration', async () => {
    const buffers = await simulatedBuffers(4, BASE);
    expect(buffers.map((b) => b.rank)).toEqual([0, 1, 2, 3]);
    const b = buffers[2]!;
    expect([b.worldSize, b.numExperts, b.numLocalExperts, b.hidden, b.backend]).toEqual([4, 8, 2, 512, 'cpu']);
    expect(b.config).toMatchObject({ maxTopk: 16, numRecvSlots: 2, timeoutMs: 5000, lowLatency: { maxTokensPerRank: 8 } });
    await closeAll(buffers);
  });

  test.each([
    ['hidden', { hidden: 1024 }, '1024'],
    ['numExperts', { numExperts: 16 }, '16'],
    ['maxTokensPerRank', { maxTokensPerRank: 32 }, '32'],
    ['maxTopk', { maxTopk: 8 }, '8'],
    ['lowLatency.maxTokensPerRank', { lowLatency: { maxTokensPerRank: 4 } }, '4'],
    ['lowLatency.maxTokensPerRank', { lowLatency: undefined }, 'unset'],
    ['numRecvSlots', { numRecvSlots: 3 }, '3'],
  ] as const)('every rank refuses a mismatch of %s (%o)', async (option, change, shown) => {
    const ranks = createSimulatedRanks(4);
    const res = await Promise.allSettled(ranks.map((t, r) => EpBuffer.create(t, r === 2 ? { ...BASE, ...change } : BASE)));
    const mine = (r: number) => {
      const o = r === 2 ? { ...BASE, ...change } : BASE;
      const v = option === 'lowLatency.maxTokensPerRank' ? o.lowLatency?.maxTokensPerRank : (o as Record<string, unknown>)[option] ?? (option === 'maxTopk' ? 16 : 2);
      return v === undefined ? 'unset' : String(v);
    };
    for (const [r, outcome] of res.entries()) {
      expect(outcome.status).toBe('rejected');
      const other = r === 2 ? 0 : 2;
      await expectWideepError(
        Promise.reject((outcome as PromiseRejectedResult).reason),
        'ERR_INVALID_ARG',
        `option ${option} differs between ranks: this rank (${r}) has ${mine(r)}, rank ${other} has ${mine(other)}`,
      );
    }
    expect(mine(2)).toBe(shown);
  });

  test('ranks on different backends (a rank without a GPU defaults to cpu) refuse, saying why', () => {
    const options = (r: number) => sharedOptions(resolveConfig(r, 2, r === 0 ? 'cuda' : 'cpu', { ...BASE, device: r === 0 ? 0 : undefined }));
    const all = [options(0), options(1)];
    expect(() => checkSharedOptions(1, all)).toThrow(
      /option backend differs between ranks: this rank \(1\) has cpu, rank 0 has cuda; a rank whose process group has no GPU defaults to cpu/,
    );
  });

  test.each([
    [{ numExperts: 6 }, 'numExperts: expected a multiple of the world size 4, got 6'],
    [{ hidden: 100 }, 'hidden: expected a multiple of 8'],
    [{ hidden: 0 }, 'hidden: expected an integer >= 8'],
    [{ maxTokensPerRank: 0 }, 'maxTokensPerRank'],
    [{ maxTopk: 0 }, 'maxTopk'],
    [{ numRecvSlots: 0 }, 'numRecvSlots'],
    [{ lowLatency: { maxTokensPerRank: 1025 } }, 'lowLatency.maxTokensPerRank: expected an integer in [1, 1024], got number 1025'],
    [{ timeoutMs: -1 }, 'timeoutMs'],
    [{ backend: 'tpu' }, "backend: expected 'cpu' or 'cuda'"],
  ] as [Partial<EpBufferOptions>, string][])('refuses invalid options %o locally', async (change, fragment) => {
    const t = createSimulatedRanks(4)[0]!;
    await expectWideepError(EpBuffer.create(t, { ...BASE, ...change }), 'ERR_INVALID_ARG', fragment);
  });

  test('refuses a group that is neither a transport nor a process group', async () => {
    await expectWideepError(EpBuffer.create({} as never, BASE), 'ERR_INVALID_ARG', 'a CpuTransport or a ProcessGroup');
  });
});
