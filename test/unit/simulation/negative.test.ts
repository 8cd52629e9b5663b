/** The tolerance is tight enough to catch real faults: each fault here must fail the comparison by a wide margin. */
import { describe, expect, it } from 'vitest';

import {
  DEFAULT_STEPS,
  DEFAULT_TOLERANCE,
  DEMO_MOE_CONFIG,
  causalAttention,
  compareWithReference,
  denseReference,
  generateMoeLayerWeights,
  generateWorkload,
  runMoePipeline,
  withZeroedExpert,
  type MoeLayerWeights,
  type ReferenceOutput,
} from '../../../src/simulation/index.js';

const R = 4;
const weights = generateMoeLayerWeights(DEMO_MOE_CONFIG, 1);
const workload = generateWorkload({ numRanks: R, hidden: DEMO_MOE_CONFIG.hidden, steps: DEFAULT_STEPS, seed: 2 });
const reference: ReferenceOutput[][] = denseReference(weights, causalAttention(weights.attention), workload);

/** Logical experts by how many tokens chose them, most first. */
function expertsByUse(): number[] {
  const uses = new Array<number>(DEMO_MOE_CONFIG.numRoutedExperts).fill(0);
  for (const ranks of reference) for (const r of ranks) for (const e of r.topkIdx) uses[e]!++;
  return uses.map((_, e) => e).sort((a, b) => uses[b]! - uses[a]! || a - b);
}

async function check(pipelineWeights: MoeLayerWeights, tbo: boolean, eplb: boolean) {
  const p = await runMoePipeline({ weights: pipelineWeights, workload, numRanks: R, tbo, eplb });
  return compareWithReference(p.outputs, reference, DEMO_MOE_CONFIG.hidden);
}

describe('the comparison catches faults', () => {
  it('passes with the right weights (the baseline of the faults below)', async () => {
    const c = await check(weights, true, true);
    expect(c.pass).toBe(true);
    expect(c.maxRelError).toBeLessThan(DEFAULT_TOLERANCE / 2);
  });

  it('fails when one expert (the most used, or a rarely used one) outputs zeros', async () => {
    const order = expertsByUse();
    for (const expert of [order[0]!, order[40]!]) {
      for (const [tbo, eplb] of [[false, false], [true, true]] as const) {
        const c = await check(withZeroedExpert(weights, expert), tbo, eplb);
        expect(c.pass, `expert ${expert}`).toBe(false);
        expect(c.maxRelError).toBeGreaterThan(5 * DEFAULT_TOLERANCE);
      }
    }
  });

  it('fails when two experts have swapped weights (a slot holding the wrong expert)', async () => {
    const [a, b] = expertsByUse();
    const experts = [...weights.experts];
    [experts[a!], experts[b!]] = [experts[b!]!, experts[a!]!];
    const c = await check({ ...weights, experts }, true, true);
    expect(c.pass).toBe(false);
    expect(c.maxRelError).toBeGreaterThan(5 * DEFAULT_TOLERANCE);
  });

  it('fails on a shape mismatch or NaN, saying so', () => {
    const outputs = reference.map((ranks) => ranks.map((r) => r.out.slice()));
    outputs[1]![0]![5] = Number.NaN;
    const nan = compareWithReference(outputs, reference, DEMO_MOE_CONFIG.hidden);
    expect(nan.pass).toBe(false);
    expect(nan.problem).toMatch(/step 1 rank 0 token 0: NaN in the output/);
    const short = compareWithReference(outputs.slice(1), reference, DEMO_MOE_CONFIG.hidden);
    expect(short.problem).toMatch(/4 steps of output, 5 in the reference/);
  });
});
