/** The TCP key-value store: server, client, and "host it here if I am the master, then connect". */
import { TcpStoreClient, type StoreClientOptions } from './client.js';
import { TcpStoreServer } from './server.js';

export { TcpStoreClient, DEFAULT_STORE_TIMEOUT_MS, type StoreClientOptions } from './client.js';
export { TcpStoreServer, DEFAULT_STORE_LIMITS, type StoreServerOptions, type StoreServerLimits } from './server.js';
export { MAX_KEY_BYTES, MAX_VALUE_BYTES } from './protocol.js';
export { newToken } from './auth.js';
export { leftKey, ownedKey } from './identity.js';

export interface OpenStoreOptions extends Omit<StoreClientOptions, 'server'> {
  /** Host the server in this process (rank 0, or a launcher), then connect to it like everyone else. */
  isMaster: boolean;
  /**
   * Where the master binds. Default: `host` itself, and nothing else: a store
   * listens on every interface only when asked to (listenHost '0.0.0.0' or
   * '::'). A name that this machine resolves to a loopback address (as
   * /etc/hosts often maps its own name) is then unreachable from other
   * machines: give the master's routable address.
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
  const server = await TcpStoreServer.listen({ host: options.listenHost ?? options.host, port: options.port, token: options.token });
  try {
    return await TcpStoreClient.connect({ ...options, port: server.port, server });
  } catch (e) {
    await server.close();
    throw e;
  }
}
