/**
 * initProcessGroup(): find this process's place in the job, join the job's
 * store, and wait until every rank has joined.
 */
import { deviceCount, setCurrentDevice } from '../cuda/device.js';
import { detectDistEnv, type DistEnv, type DistEnvOptions } from './env.js';
import { openStore, type TcpStoreClient } from './store/index.js';
import type { KeyValueStore, ProcessGroup } from './types.js';

/** Set by `wideep launch`: the launcher hosts the store, so every rank (rank 0 too) is only a client. */
export const STORE_HOSTED_VAR = 'WIDEEP_STORE_HOSTED';
/** The barrier every rank passes before initProcessGroup() returns. */
const INIT_BARRIER = 'wideep/init-process-group';

export interface InitProcessGroupOptions extends DistEnvOptions {
  /** Limit for connecting, for the joining barrier, and the store's default per call (ms); 300 s. */
  timeoutMs?: number;
  /** Variables to read instead of process.env. */
  env?: Readonly<Record<string, string | undefined>>;
}

class TcpProcessGroup implements ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly localWorldSize: number;
  readonly nodeRank: number;
  readonly nnodes: number;
  readonly device: number | undefined;
  readonly #store: TcpStoreClient;

  constructor(env: DistEnv, store: TcpStoreClient, device: number | undefined) {
    this.rank = env.rank;
    this.worldSize = env.worldSize;
    this.localRank = env.localRank;
    this.localWorldSize = env.localWorldSize;
    this.nodeRank = env.nodeRank;
    this.nnodes = env.nnodes;
    this.device = device;
    this.#store = store;
  }

  get store(): KeyValueStore {
    return this.#store;
  }

  /** Closes the store; where rank 0 hosts it, after the other ranks have left. Idempotent. */
  close(): Promise<void> {
    return this.#store.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Joins the job described by `options` or the environment (see detectDistEnv).
 * Under `wideep launch` (WIDEEP_STORE_HOSTED=1) the launcher hosts the store;
 * otherwise rank 0 hosts it at MASTER_ADDR:MASTER_PORT and connects to it like
 * every other rank. Resolves once all `worldSize` ranks have joined.
 */
export async function initProcessGroup(options: InitProcessGroupOptions = {}): Promise<ProcessGroup> {
  const vars = options.env ?? process.env;
  const env = detectDistEnv(options, vars);
  const hosted = vars[STORE_HOSTED_VAR] === '1';
  const store = await openStore({
    host: env.masterAddr,
    // A job of one needs no agreed port: take a free one.
    port: !hosted && env.worldSize === 1 ? 0 : env.masterPort,
    worldSize: env.worldSize,
    timeoutMs: options.timeoutMs,
    isMaster: !hosted && env.rank === 0,
  });
  try {
    await store.barrier(INIT_BARRIER);
  } catch (e) {
    await store.close({ drainMs: 0 });
    throw e;
  }
  const device = deviceCount() > env.localRank ? env.localRank : undefined;
  if (device !== undefined) setCurrentDevice(device);
  return new TcpProcessGroup(env, store, device);
}
