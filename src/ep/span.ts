/**
 * Which cuda path serves a buffer's ranks. Within a node the kernels write
 * straight into peers' buffers mapped with CUDA IPC, so every rank of a node
 * must be a CUDA-IPC peer of the others (one host). A buffer of several
 * nodes takes the hierarchical path (src/ep/cuda/node/backend.ts): NCCL
 * between nodes, then the NVLink kernels within each. What cannot be served
 * is refused on every rank, from what the ranks exchanged at create, before
 * any kernel runs.
 */
import { WideepError } from '../errors.js';
import type { EpConfig } from './types.js';

/** Where one rank runs, as it told its peers at EpBuffer.create. */
export interface Placement {
  host: string;
  /** Nodes of its process group (1 for a CpuTransport). */
  nnodes: number;
}

export type CudaPath = 'one node' | 'across nodes';

/** Why these ranks cannot be served by the cuda backend; undefined when they can. */
export function cudaRefusal(config: Pick<EpConfig, 'worldSize' | 'ranksPerNode' | 'lowLatency'>, placements: readonly Placement[]): string | undefined {
  const { worldSize: R, ranksPerNode: P } = config;
  for (let first = 0; first < R; first += P) {
    const hosts = [...new Set(placements.slice(first, first + P).map((p) => p.host))];
    if (hosts.length > 1) {
      const which = P === R ? 'the ranks' : `node ${first / P}'s ranks (${first}..${first + P - 1})`;
      return `${which} run on ${hosts.length} hosts (${hosts.slice(0, 4).join(', ')}${hosts.length > 4 ? ', ...' : ''}), which CUDA IPC cannot join; set ranksPerNode to the ranks of one host`;
    }
  }
  const nnodes = Math.max(...placements.map((p) => p.nnodes));
  if (P === R && nnodes > 1) return `the process group spans ${nnodes} nodes, but ranksPerNode ${P} makes one node of all ${R} ranks; set ranksPerNode to the ranks of one node`;
  if (P < R && config.lowLatency) {
    return (
      `ranksPerNode ${P} makes ${R / P} nodes of the ${R} ranks, and low-latency mode across nodes needs NCCL's device API ` +
      '(GIN, GPU-initiated networking, NCCL 2.28.7 or newer), which this build does not use: it is not built. ' +
      'Normal mode across nodes is: create the buffer without lowLatency'
    );
  }
  return undefined;
}

/** The path for these ranks, or ERR_UNSUPPORTED naming what is missing. */
export function cudaPath(config: Pick<EpConfig, 'worldSize' | 'ranksPerNode' | 'lowLatency'>, placements: readonly Placement[]): CudaPath {
  const why = cudaRefusal(config, placements);
  if (why !== undefined) throw new WideepError('ERR_UNSUPPORTED', `EpBuffer.create (cuda): ${why}. Or use backend: 'cpu', which runs every path`);
  return config.ranksPerNode < config.worldSize ? 'across nodes' : 'one node';
}
