/**
 * forwardDecoderLayer refuses what it cannot run before any attention or
 * collective starts: an attention that is not a function, tokens that are not
 * the layer's bf16 [T, H] device rows, and a sequence split for two-batch
 * overlap when an attention-TP group hands the MoE a share of the tokens.
 * moeTokenCount gives the MoE's tokens of such a share. Device tensors are
 * views of fake device storage (nothing touches a GPU); the GPU suites
 * (moe-layer, moe-none) run the step.
 */
import { describe, expect, it } from 'vitest';

import type { Communicator } from '../../../src/comm/communicator.js';
import type { DeviceStorage } from '../../../src/cuda/memory.js';
import { forwardDecoderLayer, moeTokenCount } from '../../../src/moe/decoder-step.js';
import type { MoeLayer } from '../../../src/moe/layer.js';
import type { DpStepPlan } from '../../../src/planning/dp-step.js';
import { Tensor } from '../../../src/tensor/tensor.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const storage: DeviceStorage = { device: 0, ptr: 0x10000n, byteLength: 1 << 20, closed: false, close: () => {} };
const dev = (shape: number[], dtype: Tensor['dtype']) => Tensor.fromDeviceStorage(storage, dtype, shape, 0, false);
const H = 256;
const layer = { device: 0, config: { hidden: H } } as MoeLayer;
const plan = { deepepMode: 'normal', useTbo: false } as DpStepPlan;
const attention = ({ x }: { x: Tensor }) => x;

describe('forwardDecoderLayer', () => {
  it("gives the MoE each attention-TP member's share of the tokens, padded to the group", () => {
    expect([moeTokenCount(10, 4), moeTokenCount(8, 4), moeTokenCount(1, 4), moeTokenCount(0, 4), moeTokenCount(7, 1)]).toEqual([3, 2, 1, 0, 7]);
  });

  it('refuses a missing attention, tokens that are not the layer\'s device rows, and seqLens with an attention-TP group', async () => {
    const x = dev([5, H], 'bf16');
    await expectWideepError(() => forwardDecoderLayer(layer, x, { plan } as never), 'ERR_INVALID_ARG', 'attention', 'a function');
    await expectWideepError(() => forwardDecoderLayer(layer, Tensor.empty([5, H], 'bf16'), { attention, plan }), 'ERR_INVALID_ARG', 'x', 'host tensor');
    await expectWideepError(() => forwardDecoderLayer(layer, dev([5, H], 'f32'), { attention, plan }), 'ERR_DTYPE', 'x', 'bf16');
    await expectWideepError(() => forwardDecoderLayer(layer, dev([5, 128], 'bf16'), { attention, plan }), 'ERR_SHAPE', 'x');
    const attnTp = { size: 2 } as Communicator;
    await expectWideepError(() => forwardDecoderLayer(layer, x, { attention, plan, attnTp, seqLens: [5] }), 'ERR_INVALID_ARG', 'seqLens', 'attention-TP');
  });
});
