/**
 * The contracts between the multi-process runtime and its users (NCCL
 * communicators, EP buffers, the cpu backend's store transport).
 */

export type StoreValue = Uint8Array | string;

/** A TCP key-value store shared by all ranks of a job. Values are binary. */
export interface KeyValueStore {
  /** Sets `key` (overwriting), waking every waiter on it. */
  set(key: string, value: StoreValue): Promise<void>;
  /** The value of `key`, waiting until it exists; ERR_TIMEOUT naming the key after `timeoutMs`. */
  get(key: string, options?: { timeoutMs?: number }): Promise<Uint8Array>;
  /** Resolves once every key exists; ERR_TIMEOUT naming the missing keys after `timeoutMs`. */
  wait(keys: readonly string[], options?: { timeoutMs?: number }): Promise<void>;
  /** Atomically adds `delta` to the integer at `key` (missing = 0) and returns the new value. */
  add(key: string, delta: number): Promise<number>;
  /**
   * Atomically sets `key` to `desired` if its current value equals `expected`
   * (`null` = "the key does not exist"). Returns the value after the operation.
   */
  compareSet(key: string, expected: StoreValue | null, desired: StoreValue): Promise<Uint8Array>;
  /** Deletes `key`; true when it existed. */
  delete(key: string): Promise<boolean>;
  /**
   * Waits until `worldSize` participants have called barrier with the same
   * name; repeated barriers with one name are distinct generations.
   */
  barrier(name: string, options?: { timeoutMs?: number }): Promise<void>;
  /** Closes the connection (and the server, where this process hosts it). Idempotent. */
  close(): Promise<void>;
}

/** What initProcessGroup() returns: this process's place in the job. */
export interface ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly localRank: number;
  readonly localWorldSize: number;
  readonly nodeRank: number;
  readonly nnodes: number;
  readonly store: KeyValueStore;
  /** The GPU this rank uses: WIDEEP_DEVICE where set, else localRank when that GPU is visible, else undefined. */
  readonly device: number | undefined;
  close(): Promise<void>;
}
