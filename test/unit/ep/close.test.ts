/**
 * close() lets the calls in flight end before it closes the backend: a
 * dispatch still running when its buffer closes has its routing freed (the
 * cuda backend's device tensors leaked before) and is refused with
 * ERR_CLOSED. The cuda backend is stood in for by the cpu one, which records
 * what the facade asks of it.
 */
import { expect, test, vi } from 'vitest';
import { CpuBackend } from '../../../src/ep/cpu/backend.js';
import { EpBuffer } from '../../../src/ep/buffer.js';
import { StoreTransport } from '../../../src/ep/transport.js';
import type { CreateCudaBackend } from '../../../src/ep/backend.js';
import { loopbackStoreGroups } from '../../helpers/ep-store.js';
import { expectWideepError } from '../../helpers/expect-error.js';
import { SeededRandom, fromRouting, randomBf16 } from '../../helpers/random.js';

class RecordingBackend extends CpuBackend {
  readonly log: string[] = [];
  releaseRouting(): void {
    this.log.push('releaseRouting');
  }
  override async close(): Promise<void> {
    this.log.push('close');
    await super.close();
  }
}

const made: RecordingBackend[] = [];

vi.mock('../../../src/ep/cuda/backend.js', () => ({
  createCudaBackend: (async (group, config) => {
    const backend = new RecordingBackend(new StoreTransport(group.store, group.rank, group.worldSize, 'stand-in'), config);
    made[group.rank] = backend;
    return backend;
  }) satisfies CreateCudaBackend,
}));

const rng = new SeededRandom(11);
const inputs = () => ({ x: randomBf16(rng, [2, 128]), ...fromRouting([0, 2, 1, 3], [1, 1, 1, 1], 2, 2) });

test('a dispatch in flight when its buffer closes: close waits for it, frees its routing first, and the call is ERR_CLOSED', async () => {
  const options = { backend: 'cuda', device: 0, hidden: 128, numExperts: 4, maxTokensPerRank: 2, timeoutMs: 5000 } as const;
  const store = await loopbackStoreGroups(2);
  try {
    const buffers = await Promise.all(store.groups.map((g) => EpBuffer.create(g, options)));
    const inFlight = buffers[0]!.dispatch(inputs()); // rank 1 has not come yet
    let closed = false;
    const closing = buffers[0]!.close().then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(closed).toBe(false);
    const peer = buffers[1]!.dispatch(inputs());
    await expectWideepError(inFlight, 'ERR_CLOSED', 'closed while the call was in flight');
    await closing;
    expect(made[0]!.log).toEqual(['releaseRouting', 'close']);
    (await peer).release();
    expect(made[1]!.log).toEqual(['releaseRouting']);
    await buffers[1]!.close();
  } finally {
    await store.close();
  }
});
