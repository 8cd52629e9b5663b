/** The TCP key-value store: server, client, and "host it here if I am the master, then connect". */
import { TcpStoreClient, type StoreClientOptions } from './client.js';
import { TcpStoreServer } from './server.js';

export { TcpStoreClient, DEFAULT_STORE_TIMEOUT_MS, type StoreClientOptions } from './client.js';
export { TcpStoreServer, type StoreServerOptions } from './server.js';
export { MAX_KEY_BYTES, MAX_VALUE_BYTES } from './protocol.js';

export interface OpenStoreOptions extends Omit<StoreClientOptions, 'server'> {
  /** Host the server in this process (rank 0, or a launcher), then connect to it like everyone else. */
  isMaster: boolean;
  /**
   * Where the master binds. Default: `host` itself when it is a loopback
   * address, otherwise every interface (so that other machines can reach a
   * name that resolves to a loopback address locally, as /etc/hosts often has).
   */
  listenHost?: string;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Opens the job's store. The master listens on `port` (0 picks a free one)
 * and its client owns the server: closing that client closes the server
 * once the other clients have left (or the client's timeout has passed).
 */
export async function openStore(options: OpenStoreOptions): Promise<TcpStoreClient> {
  if (!options.isMaster) return TcpStoreClient.connect(options);
  const server = await TcpStoreServer.listen({
    host: options.listenHost ?? (isLoopback(options.host) ? options.host : undefined),
    port: options.port,
  });
  try {
    return await TcpStoreClient.connect({ ...options, port: server.port, server });
  } catch (e) {
    await server.close();
    throw e;
  }
}
