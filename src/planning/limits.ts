/**
 * Upper bounds on the sizes the planner and EPLB accept. Their tables live in
 * memory several times over (typed arrays, per-layer rows, the JSON the CLI
 * prints), so a size past these bounds is refused before anything is
 * allocated, with an `ERR_INVALID_ARG` that names the value and the bound.
 */
import { WideepError } from '../errors.js';

/** Routed experts per MoE layer: DeepSeek-V3 has 256, Kimi-K2 384; this leaves ample headroom. */
export const MAX_ROUTED_EXPERTS = 65_536;

/** GPUs in one deployment: the world size and every group size or count of GPUs. */
export const MAX_GPUS = 65_536;

/**
 * Physical expert slots per layer: every routed expert once and as many
 * redundant ones. EPLB's packing sorts and places every slot of every layer.
 */
export const MAX_PHYSICAL_EXPERTS = 2 * MAX_ROUTED_EXPERTS;

/**
 * Entries of the widest placement table, `log2phy`: layers × logical experts ×
 * replica columns (physical − logical + 1). 2^22 int32 entries are 16 MiB as a
 * typed array, and several times that as per-layer rows and JSON; DeepSeek-V3
 * with 256 redundant experts needs 3.8 million.
 */
export const MAX_PLACEMENT_ENTRIES = 2 ** 22;

/**
 * The largest total load of one layer. EPLB sums loads in float32 (largest
 * finite value 3.4e38); the margin keeps rounded partial sums finite.
 */
export const MAX_LAYER_LOAD = 1e38;

export interface PlacementSize {
  numLayers: number;
  numLogical: number;
  numPhysical: number;
}

/**
 * Refuses a placement whose `log2phy` table would exceed
 * `MAX_PLACEMENT_ENTRIES`. `what` names the value that made it large
 * (`--replicas 100000000`), `fix` says what to lower.
 */
export function checkPlacementSize(s: PlacementSize, what: string, fix: string): void {
  const columns = s.numPhysical - s.numLogical + 1;
  const entries = s.numLayers * s.numLogical * columns;
  if (entries > MAX_PLACEMENT_ENTRIES) {
    throw new WideepError(
      'ERR_INVALID_ARG',
      `${what}: the placement table would hold ${s.numLayers} layers × ${s.numLogical} experts × ${columns} replica columns = ` +
        `${entries.toExponential(2)} entries, more than the limit of ${MAX_PLACEMENT_ENTRIES.toLocaleString('en-US')}; ${fix}`,
    );
  }
}
