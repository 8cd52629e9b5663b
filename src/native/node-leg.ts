/**
 * The network-leg kernels of the hierarchical normal mode (native/ep/node_leg_binding.cc):
 * each launch takes one baton whose slots nodeLegFields() names.
 */
import type { NativeFieldMap } from './ep.js';
import type { NativeStream } from './index.js';

export interface NativeNodeLegFields {
  layout: NativeFieldMap;
  pack: NativeFieldMap;
  unpack: NativeFieldMap;
  reduce: NativeFieldMap;
}

export interface NodeLegBinding {
  nodeLegFields(): NativeNodeLegFields;
  /** Per token its ranks, nodes and experts; per node its ascending token list and each token's place in it. */
  nodeLayout(baton: BigInt64Array, stream: NativeStream): void;
  /** Listed tokens' rows, scales, ids and weights into records. */
  nodePack(baton: BigInt64Array, stream: NativeStream): void;
  /** Records back into rows, scales, and this node's local expert ids. */
  nodeUnpack(baton: BigInt64Array, stream: NativeStream): void;
  /** The origin's sum over nodes of each token's partials, biases added, rounded once to bf16. */
  nodeReduce(baton: BigInt64Array, stream: NativeStream): void;
}
