/**
 * The ranks of one node as a ProcessGroup of their own, for the cuda
 * backend's intranode buffer: rank = local index, worldSize = ranksPerNode,
 * and a store whose keys are prefixed per node, so that the nodes' buffers
 * do not collide, and whose barrier counts only the node's ranks.
 */
import type { KeyValueStore, ProcessGroup, StoreValue } from '../../../runtime/types.js';
import type { EpConfig } from '../../types.js';

class NodeStore implements KeyValueStore {
  readonly #store: KeyValueStore;
  readonly #prefix: string;
  readonly #size: number;
  readonly #generations = new Map<string, number>();

  constructor(store: KeyValueStore, prefix: string, size: number) {
    this.#store = store;
    this.#prefix = prefix;
    this.#size = size;
  }

  #key(key: string): string {
    return `${this.#prefix}/${key}`;
  }

  set(key: string, value: StoreValue): Promise<void> {
    return this.#store.set(this.#key(key), value);
  }
  get(key: string, options?: { timeoutMs?: number }): Promise<Uint8Array> {
    return this.#store.get(this.#key(key), options);
  }
  wait(keys: readonly string[], options?: { timeoutMs?: number }): Promise<void> {
    return this.#store.wait(keys.map((k) => this.#key(k)), options);
  }
  add(key: string, delta: number): Promise<number> {
    return this.#store.add(this.#key(key), delta);
  }
  compareSet(key: string, expected: StoreValue | null, desired: StoreValue): Promise<Uint8Array> {
    return this.#store.compareSet(this.#key(key), expected, desired);
  }
  delete(key: string): Promise<boolean> {
    return this.#store.delete(this.#key(key));
  }

  /** The last of the node's ranks to arrive opens it; each generation has its own keys. */
  async barrier(name: string, options?: { timeoutMs?: number }): Promise<void> {
    const generation = this.#generations.get(name) ?? 0;
    this.#generations.set(name, generation + 1);
    const key = this.#key(`barrier/${name}/${generation}`);
    if ((await this.#store.add(`${key}/arrived`, 1)) === this.#size) await this.#store.set(`${key}/open`, '1');
    await this.#store.get(`${key}/open`, options);
  }

  /** The job's store belongs to the job's group. */
  async close(): Promise<void> {}
}

/** This rank's node as a group; `prefix` names the buffer, so that several buffers' nodes do not collide. */
export function nodeGroup(group: ProcessGroup, config: Pick<EpConfig, 'rank' | 'ranksPerNode'>, prefix: string): ProcessGroup {
  const P = config.ranksPerNode;
  const node = Math.floor(config.rank / P);
  const local = config.rank % P;
  return {
    rank: local,
    worldSize: P,
    localRank: local,
    localWorldSize: P,
    nodeRank: 0,
    nnodes: 1,
    store: new NodeStore(group.store, `${prefix}/node${node}`, P),
    device: group.device,
    close: async () => {},
  };
}
