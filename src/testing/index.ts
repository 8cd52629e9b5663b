/**
 * `wideep/testing`: what our own test suites use to make inputs, exported for
 * users' integration tests: seeded random routings (uniform or Zipf-skewed)
 * and the seeded generator behind them.
 */
export { randomRouting, SeededRandom, type RandomRoutingOptions, type Routing } from '../ep/random-routing.js';
