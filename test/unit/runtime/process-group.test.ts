import { createServer, type AddressInfo } from 'node:net';

import { afterEach, describe, expect, it, vi } from 'vitest';

import { deviceCount } from '../../../src/cuda/device.js';
import { initProcessGroup } from '../../../src/runtime/process-group.js';
import { TcpStoreServer } from '../../../src/runtime/store/index.js';
import type { ProcessGroup } from '../../../src/runtime/types.js';
import { WideepError } from '../../../src/errors.js';

const text = (b: Uint8Array) => new TextDecoder().decode(b);
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {});
});

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

function torchrunEnv(rank: number, worldSize: number, port: number, extra: Record<string, string> = {}) {
  return { RANK: String(rank), WORLD_SIZE: String(worldSize), MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), ...extra };
}

async function join(envs: Record<string, string>[]): Promise<ProcessGroup[]> {
  const groups = await Promise.all(envs.map((env) => initProcessGroup({ env, timeoutMs: 10_000 })));
  // Rank 0 hosts in the default mode and closes last (it waits for the others to leave).
  cleanups.push(() => Promise.all(groups.map((g) => g.close())));
  return groups;
}

describe('initProcessGroup', () => {
  it('is a job of one without launcher variables, on a free port', async () => {
    const [pg] = await join([{}]);
    expect(pg).toMatchObject({ rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, nodeRank: 0, nnodes: 1 });
    expect(pg!.device).toBe(deviceCount() > 0 ? 0 : undefined);
    await pg!.store.set('solo', 'ok');
    expect(text(await pg!.store.get('solo'))).toBe('ok');
    await pg!.store.barrier('alone');
  });

  it('refuses a WIDEEP_DEVICE that names no GPU before joining', async () => {
    for (const pin of ['gpu0', '-1', String(deviceCount())]) {
      const err = await initProcessGroup({ env: { WIDEEP_DEVICE: pin }, timeoutMs: 2_000 }).catch((e: unknown) => e);
      expect(err, pin).toBeInstanceOf(WideepError);
      const noGpuAtAll = deviceCount() === 0 && pin === '0';
      expect((err as WideepError).code, pin).toBe(noGpuAtAll ? 'ERR_NO_GPU' : 'ERR_INVALID_ARG');
    }
  });

  it('rank 0 hosts the store at MASTER_ADDR:MASTER_PORT and every rank shares it', async () => {
    const port = await freePort();
    const groups = await join([0, 1, 2].map((r) => torchrunEnv(r, 3, port)));
    expect(groups.map((g) => g.rank)).toEqual([0, 1, 2]);
    await groups[2]!.store.set('from-2', 'hi');
    expect(text(await groups[0]!.store.get('from-2'))).toBe('hi');
    expect(await Promise.all(groups.map((g) => g.store.add('n', 1)))).toHaveLength(3);
    await Promise.all(groups.map((g) => g.store.barrier('together')));
    expect(text(await groups[1]!.store.get('n'))).toBe('3');
    // Closing: rank 0's store stays up for the ranks still connected.
    const rank0Closed = groups[0]!.close();
    await groups[1]!.store.set('after-rank0-close', 'served');
    expect(text(await groups[2]!.store.get('after-rank0-close'))).toBe('served');
    await Promise.all([groups[1]!.close(), groups[2]!.close()]);
    await rank0Closed;
    await groups[0]!.close();
  });

  it('with WIDEEP_STORE_HOSTED=1 every rank, rank 0 too, is only a client', async () => {
    const server = await TcpStoreServer.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => server.close());
    const groups = await join([0, 1].map((r) => torchrunEnv(r, 2, server.port, { WIDEEP_STORE_HOSTED: '1' })));
    expect(server.connections).toBe(2);
    await groups[0]!.store.set('k', 'v');
    expect(text(await groups[1]!.store.get('k'))).toBe('v');
  });

  it('refuses a second process that claims a rank already connected, instead of pairing it', async () => {
    const server = await TcpStoreServer.listen({ host: '127.0.0.1', port: 0 });
    cleanups.push(() => server.close());
    const env = (rank: number) => torchrunEnv(rank, 2, server.port, { WIDEEP_STORE_HOSTED: '1' });
    const rank1 = initProcessGroup({ env: env(1), timeoutMs: 5_000 });
    await vi.waitFor(() => expect(server.connections).toBe(1));
    const t0 = Date.now();
    const twin = await initProcessGroup({ env: env(1), timeoutMs: 5_000 }).catch((x: unknown) => x);
    expect(twin).toBeInstanceOf(WideepError);
    expect((twin as WideepError).code).toBe('ERR_INVALID_ARG');
    expect((twin as Error).message).toContain('rank/1 is already connected');
    expect(Date.now() - t0).toBeLessThan(2_000);
    const groups = await Promise.all([initProcessGroup({ env: env(0), timeoutMs: 5_000 }), rank1]);
    cleanups.push(() => Promise.all(groups.map((g) => g.close())));
  });

  it('joins a store that needs a token with WIDEEP_STORE_TOKEN, and is refused without it', async () => {
    const token = 'job-secret-for-this-test-000';
    const server = await TcpStoreServer.listen({ host: '127.0.0.1', port: 0, token });
    cleanups.push(() => server.close());
    const env = (extra: Record<string, string>) => torchrunEnv(0, 1, server.port, { WIDEEP_STORE_HOSTED: '1', ...extra });
    const refused = await initProcessGroup({ env: env({}), timeoutMs: 2_000 }).catch((x: unknown) => x);
    expect((refused as WideepError).code).toBe('ERR_AUTH');
    const [pg] = await join([env({ WIDEEP_STORE_TOKEN: token })]);
    await pg!.store.set('k', 'v');
  });

  it('fails with ERR_TIMEOUT when the other ranks never join', async () => {
    const port = await freePort();
    const t0 = Date.now();
    const e = await initProcessGroup({ env: torchrunEnv(0, 2, port), timeoutMs: 300 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(WideepError);
    expect((e as WideepError).code).toBe('ERR_TIMEOUT');
    expect((e as Error).message).toContain('1 of 2 ranks arrived');
    expect(Date.now() - t0).toBeLessThan(5_000);
    // It let go of the port.
    const again = await TcpStoreServer.listen({ host: '127.0.0.1', port });
    await again.close();
  });

  it('refuses an inconsistent environment before touching the network', async () => {
    const e = await initProcessGroup({ env: { RANK: '2', WORLD_SIZE: '2' } }).catch((x: unknown) => x);
    expect((e as WideepError).code).toBe('ERR_INVALID_ARG');
    expect((e as Error).message).toBe('RANK=2 must be below WORLD_SIZE=2');
  });
});
