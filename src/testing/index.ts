/**
 * `wideep/testing`: what our own test suites use, exported for users'
 * integration tests: seeded random routings (uniform or Zipf-skewed) and the
 * generator behind them, and running a worker on N ranks through the
 * launcher with the placement (own GPUs, shared GPU 0, or a visible skip).
 */
export { randomRouting, SeededRandom, type RandomRoutingOptions, type Routing } from '../ep/random-routing.js';
export { parseRankReport, placement, runOnRanks, type Placement, type RankReport, type RanksResult, type RunOnRanksOptions } from './ranks.js';
