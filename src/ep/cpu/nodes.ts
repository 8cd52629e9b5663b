/** Where ranks sit when an EP buffer spans nodes: nodes are runs of ranksPerNode consecutive ranks. */
import type { EpConfig } from '../types.js';

type Nodes = Pick<EpConfig, 'rank' | 'worldSize' | 'ranksPerNode'>;

export function nodeOf(rank: number, config: Nodes): number {
  return Math.floor(rank / config.ranksPerNode);
}

/** The ranks of this rank's local index, one per node in node order: its network-leg peers. */
export function sameIndexRanks(config: Nodes): number[] {
  const local = config.rank % config.ranksPerNode;
  return Array.from({ length: config.worldSize / config.ranksPerNode }, (_, node) => node * config.ranksPerNode + local);
}

/** The ranks of this rank's node, in order: its NVLink-leg peers. */
export function sameNodeRanks(config: Nodes): number[] {
  const first = nodeOf(config.rank, config) * config.ranksPerNode;
  return Array.from({ length: config.ranksPerNode }, (_, j) => first + j);
}
