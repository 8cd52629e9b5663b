/**
 * The network leg: rank (a, i) exchanges with rank (b, i) of every node b
 * through NCCL grouped send/receive on a communicator of the ranks of one
 * local index (one per node). Stream ordered; behind this interface so that
 * the intranode forward can be tested with blocks a test built.
 */
import { Communicator } from '../../../comm/communicator.js';
import type { Stream } from '../../../cuda/stream.js';
import type { ProcessGroup } from '../../../runtime/types.js';
import type { Tensor } from '../../../tensor/tensor.js';
import type { EpConfig } from '../../types.js';

export interface NetworkLeg {
  /** Nodes, and this rank's node (its rank on the leg). */
  readonly nodes: number;
  readonly node: number;
  /**
   * Sends send[b] to node b and receives recv[a] from node a, as one group
   * (no ordering deadlocks); undefined or empty entries move nothing. Every
   * tensor has one dtype.
   */
  exchange(send: readonly (Tensor | undefined)[], recv: readonly (Tensor | undefined)[], stream: Stream): void;
  /** Resolves once the work on `stream` is done; rejects with the leg's error (ERR_TIMEOUT for a dead peer). */
  wait(stream: Stream): Promise<void>;
  /** The error that ended the leg, if any, without waiting. */
  readonly error: Error | undefined;
  close(): void;
}

export class NcclNetworkLeg implements NetworkLeg {
  readonly nodes: number;
  readonly node: number;
  readonly #comm: Communicator;

  private constructor(comm: Communicator) {
    this.#comm = comm;
    this.nodes = comm.size;
    this.node = comm.rank;
  }

  /**
   * The communicator of this rank's local index, initialised through the
   * job's store (`name` keeps the buffers' communicators apart), its every
   * operation bounded by the buffer's timeoutMs.
   */
  static async create(group: ProcessGroup, config: EpConfig, name: string): Promise<NcclNetworkLeg> {
    const P = config.ranksPerNode;
    const local = config.rank % P;
    const rail: ProcessGroup = {
      rank: Math.floor(config.rank / P),
      worldSize: config.worldSize / P,
      localRank: 0,
      localWorldSize: 1,
      nodeRank: Math.floor(config.rank / P),
      nnodes: config.worldSize / P,
      store: group.store,
      device: config.device,
      close: async () => {},
    };
    return new NcclNetworkLeg(await Communicator.create(rail, { name: `${name}/rail${local}`, timeoutMs: config.timeoutMs }));
  }

  exchange(send: readonly (Tensor | undefined)[], recv: readonly (Tensor | undefined)[], stream: Stream): void {
    const ops = [
      ...send.flatMap((tensor, peer) => (tensor && tensor.numel > 0 ? [{ kind: 'send' as const, peer, tensor }] : [])),
      ...recv.flatMap((tensor, peer) => (tensor && tensor.numel > 0 ? [{ kind: 'recv' as const, peer, tensor }] : [])),
    ];
    this.#comm.sendRecv(ops, { stream });
  }

  wait(stream: Stream): Promise<void> {
    return this.#comm.wait({ stream });
  }

  get error(): Error | undefined {
    return this.#comm.error;
  }

  close(): void {
    this.#comm.close();
  }
}
