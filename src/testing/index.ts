/**
 * `wideep/testing`: what our own test suites use, exported for users'
 * integration tests under any runner (nothing here imports a test framework):
 * seeded random routings (uniform or Zipf-skewed) and the generator behind
 * them; running a worker on N ranks through the launcher with the placement
 * (own GPUs, shared GPU 0, or a visible skip); poisoning outputs before a
 * run; closeness checks that report the worst element; and the MoE layer on
 * the host, the reference for a GPU layer built from the same weights.
 */
export { randomRouting, SeededRandom, type RandomRoutingOptions, type Routing } from '../ep/random-routing.js';
export {
  parseRankReport,
  placement,
  runOnRanks,
  type Placement,
  type RankReport,
  type RanksResult,
  type RunOnRanksOptions,
} from './ranks.js';
export { POISON_BYTE, poison } from './poison.js';
export { compareClose, describeClose, type CloseMismatch, type CloseOptions, type CloseReport } from './compare.js';
export { TIE_MARGIN, moeLayerReference, type MoeReference, type MoeReferenceOptions } from './moe-reference.js';
