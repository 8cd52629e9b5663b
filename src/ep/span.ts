/**
 * Whether the cuda backend can serve a buffer's ranks. Its kernels write
 * straight into peers' buffers mapped with CUDA IPC, so every rank must be a
 * CUDA-IPC peer of every other: one node, one host. Its network leg between
 * nodes (NCCL) is not built, so a buffer that spans nodes is refused on every
 * rank, from what the ranks exchanged at create, before any kernel runs.
 */
import { WideepError } from '../errors.js';
import type { EpConfig } from './types.js';

/** Where one rank runs, as it told its peers at EpBuffer.create. */
export interface Placement {
  host: string;
  /** Nodes of its process group (1 for a CpuTransport). */
  nnodes: number;
}

/** Why the ranks are not all CUDA-IPC peers of one node; undefined when they are. */
export function acrossNodes(config: Pick<EpConfig, 'worldSize' | 'ranksPerNode'>, placements: readonly Placement[]): string | undefined {
  const { worldSize, ranksPerNode } = config;
  if (ranksPerNode < worldSize) return `ranksPerNode ${ranksPerNode} makes ${worldSize / ranksPerNode} nodes of the ${worldSize} ranks`;
  const nnodes = Math.max(...placements.map((p) => p.nnodes));
  if (nnodes > 1) return `the process group spans ${nnodes} nodes`;
  const hosts = [...new Set(placements.map((p) => p.host))];
  if (hosts.length > 1) return `the ranks run on ${hosts.length} hosts (${hosts.slice(0, 4).join(', ')}${hosts.length > 4 ? ', ...' : ''}), which CUDA IPC cannot join`;
  return undefined;
}

/** ERR_UNSUPPORTED naming what is missing when the cuda backend cannot serve these ranks. */
export function refuseCudaAcrossNodes(config: Pick<EpConfig, 'worldSize' | 'ranksPerNode' | 'lowLatency'>, placements: readonly Placement[]): void {
  const why = acrossNodes(config, placements);
  if (why === undefined) return;
  throw new WideepError(
    'ERR_UNSUPPORTED',
    `EpBuffer.create (cuda): ${why}. The cuda backend moves rows only between CUDA-IPC peers of one node: its network leg ` +
      '(NCCL grouped send/receive to the same-index GPU of each node, then the NVLink forward) is not built yet' +
      (config.lowLatency ? ", nor low-latency mode across nodes (NCCL's device API)" : '') +
      ". Keep the EP group within one node, or use backend: 'cpu', which runs the hierarchical path",
  );
}
