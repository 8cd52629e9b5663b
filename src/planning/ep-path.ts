/**
 * Which EpBuffer path a phase of a deepep deployment takes. Normal mode over
 * EP ranks on several nodes is hierarchical: each token crosses the network
 * once per destination node, to the GPU of its own local index there, which
 * forwards it over NVLink (DeepEP's internode kernels; both of wideep's
 * backends run it, cuda with NCCL between nodes). Low-latency mode reaches every
 * rank directly, so it stays flat, as does anything within one node.
 */
import type { ResolvedDeepepMode } from './options.js';

export type EpPath = 'flat' | 'hierarchical';

/** The EP calls of one phase and the path they take. */
export interface EpCalls {
  dispatch: 'dispatch' | 'lowLatencyDispatch';
  combine: 'combine' | 'lowLatencyCombine';
  path: EpPath;
  /** Nodes the EP group spans. */
  nodes: number;
}

export function epCallsOf(mode: ResolvedDeepepMode, epRanks: number, ranksPerNode: number): EpCalls {
  const nodes = Math.ceil(epRanks / ranksPerNode);
  const normal = mode === 'normal';
  return {
    dispatch: normal ? 'dispatch' : 'lowLatencyDispatch',
    combine: normal ? 'combine' : 'lowLatencyCombine',
    path: normal && nodes > 1 ? 'hierarchical' : 'flat',
    nodes,
  };
}
