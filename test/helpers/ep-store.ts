/** EP ranks in one process as process groups over a store: one shared in memory, or a real TCP store on the loopback interface. */
import { TcpStoreClient, TcpStoreServer } from '../../src/runtime/store/index.js';
import type { KeyValueStore, ProcessGroup } from '../../src/runtime/types.js';

/** The process group of `rank` (every rank on one node) over `store`. */
export function processGroup(store: KeyValueStore, rank: number, worldSize: number, device?: number): ProcessGroup {
  return { rank, worldSize, localRank: rank, localWorldSize: worldSize, nodeRank: 0, nnodes: 1, store, device, close: async () => {} };
}

export interface StoreGroups {
  groups: ProcessGroup[];
  close(): Promise<void>;
}

/** `worldSize` process groups without GPUs (EP buffers over them use the cpu backend and a StoreTransport). */
export async function loopbackStoreGroups(worldSize: number, timeoutMs = 10_000): Promise<StoreGroups> {
  const host = '127.0.0.1';
  const server = await TcpStoreServer.listen({ host, port: 0 });
  const connect = (rank: number) => TcpStoreClient.connect({ host, port: server.port, worldSize, timeoutMs, server: rank === 0 ? server : undefined });
  const stores = await Promise.all(Array.from({ length: worldSize }, (_, rank) => connect(rank)));
  const [master, ...others] = stores;
  const groups = stores.map((store, rank) => processGroup(store, rank, worldSize));
  // The master's client owns the server: it closes last.
  return {
    groups,
    close: async () => {
      await Promise.all(others.map((s) => s.close()));
      await master!.close();
    },
  };
}
