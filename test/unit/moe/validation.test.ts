/**
 * The expert-compute ops check their arguments in TypeScript before anything
 * reaches the addon: host tensors, wrong dtypes and shapes, configs the
 * kernels cannot serve and non-finite scalars give typed errors naming the
 * argument. (Device tensors are checked the same way; test/gpu covers them.)
 */
import { describe, it } from 'vitest';

import { groupedLinear, linear } from '../../../src/blas/gemm.js';
import { swiglu } from '../../../src/moe/activation.js';
import { expertsForward } from '../../../src/moe/experts.js';
import { permuteToExperts, unpermuteFromExperts } from '../../../src/moe/permute.js';
import { route, routerTopk } from '../../../src/moe/router.js';
import { fillRandom, fillValue, randomTensor } from '../../../src/tensor/fill.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const host = (shape: number[], dtype: Tensor['dtype'] = 'bf16') => Tensor.empty(shape, dtype);
const config = { numRoutedExperts: 256, topK: 8, numExpertGroups: 8, topkGroup: 4, routedScalingFactor: 2.5, scoringFunc: 'sigmoid' as const, normTopkProb: true };

describe('expert compute: argument checks before launch', () => {
  it('refuses host tensors where the GPU reads, naming the argument and the fix', async () => {
    await expectWideepError(() => linear(host([4, 8]), host([8, 8])), 'ERR_INVALID_ARG', 'linear: x', 'host tensor', ".to('cuda:N')");
    await expectWideepError(() => groupedLinear({ x: host([2, 4, 8]), weight: host([2, 8, 8]) }), 'ERR_INVALID_ARG', 'groupedLinear: x');
    await expectWideepError(() => routerTopk({ logits: host([4, 256], 'f32'), config }), 'ERR_INVALID_ARG', 'routerTopk: logits');
    await expectWideepError(() => route({ x: host([4, 64]), gateWeight: host([256, 64]), config }), 'ERR_INVALID_ARG', 'route: x');
    await expectWideepError(() => swiglu({ x: host([4, 256]) }), 'ERR_INVALID_ARG', 'swiglu: x');
    await expectWideepError(() => permuteToExperts({ x: host([4, 64]), topkIdx: host([4, 2], 'i32'), numExperts: 2, cap: 4 }), 'ERR_INVALID_ARG', 'permuteToExperts: x');
    await expectWideepError(
      () => unpermuteFromExperts({ y: host([2, 4, 64]), slotOf: host([4, 2], 'i32'), topkIdx: host([4, 2], 'i32'), weights: host([4, 2], 'f32') }),
      'ERR_INVALID_ARG',
      'unpermuteFromExperts: y',
    );
    await expectWideepError(() => expertsForward({ x: host([2, 4, 64]), weights: { w13: host([2, 128, 64]), w2: host([2, 64, 64]) } }), 'ERR_INVALID_ARG', 'expertsForward: x');
    await expectWideepError(() => fillValue(host([3], 'f32'), 1), 'ERR_INVALID_ARG', 'fillValue: tensor');
    await expectWideepError(() => fillRandom(host([3], 'f32'), 1), 'ERR_INVALID_ARG', 'fillRandom: tensor');
  });

  it('refuses options that are not objects', async () => {
    for (const fn of [groupedLinear, routerTopk, route, swiglu, permuteToExperts, unpermuteFromExperts, expertsForward] as ((o: unknown) => unknown)[]) {
      await expectWideepError(() => fn(null), 'ERR_INVALID_ARG', 'expected an options object');
    }
  });

  it('host random tensors: bad dtypes, seeds and distributions are refused', async () => {
    await expectWideepError(() => randomTensor([4], 'i64', { seed: 1 }), 'ERR_DTYPE', 'cannot fill a i64 tensor');
    await expectWideepError(() => randomTensor([4], 'f32', { seed: -1 }), 'ERR_INVALID_ARG', 'seed');
    await expectWideepError(() => randomTensor([4], 'f32', { seed: 1, distribution: { kind: 'uniform', low: NaN } }), 'ERR_INVALID_ARG', 'low', 'finite');
    await expectWideepError(() => randomTensor([4], 'f32', { seed: 1, distribution: { kind: 'poisson' } as never }), 'ERR_INVALID_ARG', 'distribution');
  });
});
