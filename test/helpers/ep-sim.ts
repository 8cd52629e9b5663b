/** Simulated EP ranks in one process, for unit tests of the cpu backend. */
import { EpBuffer } from '../../src/ep/buffer.js';
import { createSimulatedRanks } from '../../src/ep/transport.js';
import type { EpBufferOptions } from '../../src/ep/types.js';

/** One cpu EpBuffer per simulated rank, created collectively. */
export async function simulatedBuffers(worldSize: number, options: EpBufferOptions): Promise<EpBuffer[]> {
  const ranks = createSimulatedRanks(worldSize);
  return Promise.all(ranks.map((t) => EpBuffer.create(t, options)));
}

/** Runs `fn` on every rank concurrently (as collectives require) and returns the results by rank. */
export function onAllRanks<T>(buffers: readonly EpBuffer[], fn: (buffer: EpBuffer, rank: number) => Promise<T>): Promise<T[]> {
  return Promise.all(buffers.map((b, r) => fn(b, r)));
}

export async function closeAll(buffers: readonly EpBuffer[]): Promise<void> {
  await Promise.all(buffers.map((b) => b.close()));
}
