/**
 * The checks a MoE layer makes of its routed experts' weights before any
 * kernel runs: bf16, or fp8 with the 128x128 block scales and the widths
 * cuBLASLt's block-scaled GEMMs need.
 */
import type { EpBuffer } from '../ep/buffer.js';
import { WideepError } from '../errors.js';
import { deviceTensor, expectDType, expectShape } from '../tensor/checks.js';
import type { ExpertWeightsOnDevice } from './experts.js';
import type { ExpertDType } from './layer.js';

/** cuBLASLt reads block scales four at a time along K: K (H for gate/up, I for down) in whole 512s. */
const FP8_K_ALIGN = 512;

/** The shapes of L expert slots of width H and intermediate I: the weights, and fp8's block scales (one per 128x128). */
export function expertWeightShapes(L: number, H: number, I: number): Record<'w13' | 'w2' | 'w13Scales' | 'w2Scales', number[]> {
  return { w13: [L, 2 * I, H], w2: [L, H, I], w13Scales: [L, (2 * I) / 128, H / 128], w2Scales: [L, H / 128, I / 128] };
}

/** Checks this rank's L expert slots of width H and intermediate I on `device`; returns their dtype. */
export function checkExpertWeights(where: string, w: ExpertWeightsOnDevice, o: { L: number; H: number; I: number; device: number; ep: EpBuffer }): ExpertDType {
  const { L, H, I, device } = o;
  const name = (part: string) => `weights.experts.${part}`;
  if (typeof w !== 'object' || w === null) throw new WideepError('ERR_INVALID_ARG', `${where}: weights.experts: expected { w13, w2 }`);
  const w13 = deviceTensor(where, name('w13'), w.w13, device);
  expectDType(where, name('w13'), w13, ['bf16', 'fp8e4m3']);
  const dtype = w13.dtype as ExpertDType;
  const shapes = expertWeightShapes(L, H, I);
  expectShape(where, name('w13'), w13, ['L', '2I', 'H'], shapes.w13);
  expectDType(where, name('w2'), deviceTensor(where, name('w2'), w.w2, device), [dtype]);
  expectShape(where, name('w2'), w.w2, ['L', 'H', 'I'], shapes.w2);
  if (dtype === 'bf16') {
    if (w.w13Scales !== undefined || w.w2Scales !== undefined) throw new WideepError('ERR_INVALID_ARG', `${where}: ${name('w13Scales')}/w2Scales belong to fp8 experts; these are bf16`);
    return dtype;
  }
  checkFp8ExpertShape(where, H, I, o.ep);
  for (const part of ['w13Scales', 'w2Scales'] as const) {
    const shape = shapes[part];
    const t = w[part];
    if (t === undefined) throw new WideepError('ERR_INVALID_ARG', `${where}: fp8 experts need ${name(part)} (f32 [${shape.join(', ')}], one scale per 128x128 block)`);
    expectDType(where, name(part), deviceTensor(where, name(part), t, device), ['f32']);
    expectShape(where, name(part), t, ['L', 'N/128', 'K/128'], shape);
  }
  return dtype;
}

/**
 * What fp8 experts of width H and intermediate I need of their shape and EP
 * buffer, checked before any weights are made: K in whole 512s for the
 * block-scaled GEMMs, and a low-latency dispatch's R*M rows per expert in
 * groups of 4.
 */
export function checkFp8ExpertShape(where: string, H: number, I: number, ep: EpBuffer): void {
  if (H % FP8_K_ALIGN !== 0 || I % FP8_K_ALIGN !== 0) {
    throw new WideepError('ERR_SHAPE', `${where}: fp8 experts need hidden and moe intermediate multiples of ${FP8_K_ALIGN} (cuBLASLt's block-scaled GEMMs), got ${H} and ${I}`);
  }
  const ll = ep.config.lowLatency;
  const rows = ep.config.worldSize * (ll?.maxTokensPerRank ?? 0);
  if (rows % 4 !== 0) {
    throw new WideepError('ERR_INVALID_ARG', `${where}: fp8 experts need the low-latency rows per expert (${ep.config.worldSize} ranks x ${ll?.maxTokensPerRank} tokens) to be a multiple of 4`);
  }
}
