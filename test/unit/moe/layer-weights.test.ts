/**
 * The weights manifest is checked whole before anything is uploaded: its
 * format, every tensor's presence, dtype and shape against the layer, and
 * each file's size, with errors that name the manifest and the tensor; fp8
 * experts also need their block scales, and widths of whole 128x128 blocks.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, it } from 'vitest';

import { EpBuffer } from '../../../src/ep/buffer.js';
import { createSimulatedRanks } from '../../../src/ep/transport.js';
import { loadLayerWeights } from '../../../src/moe/layer-weights.js';
import { moeLayerConfig } from '../../../src/simulation/config.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const [H, I, E] = [16, 8, 4];
const config = moeLayerConfig({ hidden: H, moeIntermediate: I, numRoutedExperts: E, numSharedExperts: 0, topK: 2, numExpertGroups: 1, topkGroup: 1 });
const dir = mkdtempSync(join(tmpdir(), 'wideep-weights-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tensors = {
  gate: { file: 'gate.bin', dtype: 'bf16', shape: [E, H] },
  gateBias: { file: 'bias.bin', dtype: 'f32', shape: [E] },
  'experts.w13': { file: 'w13.bin', dtype: 'bf16', shape: [E, 2 * I, H] },
  'experts.w2': { file: 'w2.bin', dtype: 'bf16', shape: [E, H, I] },
};
writeFileSync(join(dir, 'gate.bin'), Buffer.alloc(E * H * 2));
writeFileSync(join(dir, 'bias.bin'), Buffer.alloc(E * 4));
writeFileSync(join(dir, 'w13.bin'), Buffer.alloc(E * 2 * I * H * 2));
writeFileSync(join(dir, 'w2.bin'), Buffer.alloc(E * H * I * 2 - 2)); // one element short

function manifest(name: string, body: unknown): string {
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify(body));
  return path;
}

describe('layer weights manifest', () => {
  it('refuses a bad manifest before any upload, naming what is wrong', async () => {
    const [t] = createSimulatedRanks(1);
    const ep = await EpBuffer.create(t!, { hidden: H, numExperts: E, maxTokensPerRank: 8, backend: 'cpu' });
    const load = (path: string) => loadLayerWeights(ep, config, path, { device: 0 });
    try {
      await expectWideepError(() => load(join(dir, 'absent.json')), 'ERR_INVALID_ARG', 'cannot read the file');
      await expectWideepError(() => load(manifest('format', { tensors })), 'ERR_INVALID_ARG', 'wideep-moe-layer/1');
      const { gateBias: _, ...noBias } = tensors;
      await expectWideepError(() => load(manifest('missing', { format: 'wideep-moe-layer/1', tensors: noBias })), 'ERR_INVALID_ARG', 'tensors.gateBias', '{ file, dtype, shape }');
      const wrongShape = { ...tensors, 'experts.w2': { ...tensors['experts.w2'], shape: [E, I, H] } };
      await expectWideepError(() => load(manifest('shape', { format: 'wideep-moe-layer/1', tensors: wrongShape })), 'ERR_INVALID_ARG', 'tensors.experts.w2', `expected [${E}, ${H}, ${I}]`);
      const wrongDtype = { ...tensors, gate: { ...tensors.gate, dtype: 'f32' } };
      await expectWideepError(() => load(manifest('dtype', { format: 'wideep-moe-layer/1', tensors: wrongDtype })), 'ERR_INVALID_ARG', 'tensors.gate', 'expected bf16');
      await expectWideepError(() => load(manifest('short', { format: 'wideep-moe-layer/1', tensors })), 'ERR_INVALID_ARG', 'w2.bin', `${E * H * I * 2 - 2} bytes`, `expected ${E * H * I * 2}`);
    } finally {
      await ep.close();
    }
  });

  it('fp8 experts need their block scales and widths the block-scaled GEMMs take', async () => {
    const [t] = createSimulatedRanks(1);
    const ep = await EpBuffer.create(t!, { hidden: 512, numExperts: E, maxTokensPerRank: 8, backend: 'cpu' });
    const wide = moeLayerConfig({ ...config, hidden: 512, moeIntermediate: 512 });
    const fp8 = {
      gate: { file: 'gate.bin', dtype: 'bf16', shape: [E, 512] },
      gateBias: tensors.gateBias,
      'experts.w13': { file: 'w13.bin', dtype: 'fp8e4m3', shape: [E, 1024, 512] },
      'experts.w2': { file: 'w2.bin', dtype: 'fp8e4m3', shape: [E, 512, 512] },
      'experts.w13Scales': { file: 's13.bin', dtype: 'f32', shape: [E, 8, 4] },
    };
    try {
      const { 'experts.w13Scales': _, ...noScales } = fp8;
      await expectWideepError(() => loadLayerWeights(ep, wide, manifest('fp8-none', { format: 'wideep-moe-layer/1', tensors: noScales }), { device: 0 }), 'ERR_INVALID_ARG', 'tensors.experts.w13Scales');
      const badScales = { ...fp8, 'experts.w13Scales': { ...fp8['experts.w13Scales'], shape: [E, 4, 8] } };
      await expectWideepError(() => loadLayerWeights(ep, wide, manifest('fp8-shape', { format: 'wideep-moe-layer/1', tensors: badScales }), { device: 0 }), 'ERR_INVALID_ARG', 'tensors.experts.w13Scales', `expected [${E}, 8, 4]`);
      const narrow = moeLayerConfig({ ...config, hidden: 640, moeIntermediate: 512 });
      await expectWideepError(() => loadLayerWeights(ep, narrow, manifest('fp8-narrow', { format: 'wideep-moe-layer/1', tensors: fp8 }), { device: 0 }), 'ERR_SHAPE', 'multiples of 512', '640 and 512');
    } finally {
      await ep.close();
    }
  });
});
