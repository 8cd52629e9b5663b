/**
 * initProcessGroup(): find this process's place in the job, join the job's
 * store, and wait until every rank has joined.
 */
import { checkDevice, deviceCount, setCurrentDevice } from '../cuda/device.js';
import { WideepError } from '../errors.js';
import { detectDistEnv, type DistEnv, type DistEnvOptions } from './env.js';
import { openStore, type TcpStoreClient } from './store/index.js';
import type { KeyValueStore, ProcessGroup } from './types.js';

/** Set by `wideep launch`: the launcher hosts the store, so every rank (rank 0 too) is only a client. */
export const STORE_HOSTED_VAR = 'WIDEEP_STORE_HOSTED';
/**
 * The job's secret. `wideep launch` makes one per job and passes it to its
 * workers; where it is set, the store serves only clients that prove they
 * hold it (store/auth.ts), and the ranks trust only a store that does.
 */
export const STORE_TOKEN_VAR = 'WIDEEP_STORE_TOKEN';
/**
 * Pins this rank to one GPU instead of the one its local rank names. Set to the
 * same index for every rank, it runs several ranks on one GPU: enough for EP
 * buffers (CUDA IPC works within a GPU), not for NCCL, which refuses it.
 */
export const DEVICE_VAR = 'WIDEEP_DEVICE';
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

/** The GPU a rank works on: WIDEEP_DEVICE where set, else its local rank's, if visible. */
function rankDevice(localRank: number, pinned: string | undefined): number | undefined {
  if (pinned === undefined) return deviceCount() > localRank ? localRank : undefined;
  if (!/^\d+$/.test(pinned.trim())) {
    throw new WideepError('ERR_INVALID_ARG', `${DEVICE_VAR}=${JSON.stringify(pinned)}: expected a GPU index`);
  }
  return checkDevice(Number(pinned));
}

/**
 * Joins the job described by `options` or the environment (see detectDistEnv).
 * Under `wideep launch` (WIDEEP_STORE_HOSTED=1) the launcher hosts the store;
 * otherwise rank 0 hosts it at MASTER_ADDR:MASTER_PORT and connects to it like
 * every other rank. Each rank registers as `rank/<r>`, so a second process
 * given the same rank is refused (ERR_INVALID_ARG) instead of taking its
 * place in the barriers. Resolves once all `worldSize` ranks have joined.
 */
export async function initProcessGroup(options: InitProcessGroupOptions = {}): Promise<ProcessGroup> {
  const vars = options.env ?? process.env;
  const env = detectDistEnv(options, vars);
  const hosted = vars[STORE_HOSTED_VAR] === '1';
  // Before the store: a bad pin fails alone, not after every rank has joined.
  const device = rankDevice(env.localRank, vars[DEVICE_VAR]);
  const store = await openStore({
    host: env.masterAddr,
    // A job of one needs no agreed port: take a free one.
    port: !hosted && env.worldSize === 1 ? 0 : env.masterPort,
    worldSize: env.worldSize,
    timeoutMs: options.timeoutMs,
    isMaster: !hosted && env.rank === 0,
    token: vars[STORE_TOKEN_VAR] || undefined,
    identity: `rank/${env.rank}`,
  });
  try {
    await store.barrier(INIT_BARRIER);
  } catch (e) {
    await store.close({ drainMs: 0 });
    throw e;
  }
  if (device !== undefined) setCurrentDevice(device);
  return new TcpProcessGroup(env, store, device);
}
