/**
 * A MoE layer's weights built on the host (src/simulation's, bf16 values)
 * uploaded for one EP rank: the gate, its bias and the shared expert whole,
 * and the experts of this rank's slots, in bf16 or cast to fp8 with 128x128
 * block scales on the host.
 */
import type { Stream } from '../cuda/stream.js';
import type { EpBuffer } from '../ep/buffer.js';
import type { MoeLayerWeights } from '../simulation/weights.js';
import { f32ToBf16Bits } from '../tensor/convert.js';
import { Tensor } from '../tensor/tensor.js';
import type { ExpertWeightsOnDevice } from './experts.js';
import { expertWeightShapes } from './expert-weight-checks.js';
import { quantizeExpertFp8 } from './fp8-weights.js';
import type { ExpertDType, MoeLayerDeviceWeights } from './layer.js';
import { slotExperts } from './layer-weights.js';
import type { DevicePlacement } from './placement.js';

export interface HostUploadOptions {
  stream?: Stream;
  placement?: DevicePlacement;
  /** The routed experts' dtype on the device (default bf16). */
  expertDType?: ExpertDType;
}

export async function uploadLayerWeights(ep: EpBuffer, weights: MoeLayerWeights, device: number, o: HostUploadOptions = {}): Promise<MoeLayerDeviceWeights> {
  const c = weights.config;
  const [H, E] = [c.hidden, c.numRoutedExperts];
  const at = `cuda:${device}` as const;
  const { stream } = o;
  const bf16 = (values: Float32Array, shape: number[]) => Tensor.from(Uint16Array.from(values, f32ToBf16Bits), { dtype: 'bf16', shape }).to(at, { stream });
  const slots = slotExperts(ep, c, o.placement).map((e) => weights.experts[e]!);
  const dev: MoeLayerDeviceWeights = {
    gate: await bf16(weights.gate, [E, H]),
    gateBias: await Tensor.from(Float32Array.from(weights.gateBias)).to(at, { stream }),
    experts: o.expertDType === 'fp8e4m3' ? await fp8Experts(slots, H, c.moeIntermediate, at, stream) : await bf16Experts(slots, H, c.moeIntermediate, bf16),
  };
  if (weights.shared) {
    const s = weights.shared;
    // gate and up are adjacent in `packed`: the fused [2Is, H] gate+up weight.
    dev.shared = { w13: await bf16(s.packed.subarray(0, 2 * s.intermediate * H), [2 * s.intermediate, H]), w2: await bf16(s.down, [H, s.intermediate]) };
  }
  return dev;
}

type Slot = MoeLayerWeights['experts'][number];

async function bf16Experts(slots: Slot[], H: number, I: number, bf16: (v: Float32Array, shape: number[]) => Promise<Tensor>): Promise<ExpertWeightsOnDevice> {
  const L = slots.length;
  const w13 = new Float32Array(L * 2 * I * H);
  const w2 = new Float32Array(L * H * I);
  slots.forEach((x, l) => {
    w13.set(x.packed.subarray(0, 2 * I * H), l * 2 * I * H);
    w2.set(x.down, l * H * I);
  });
  const shapes = expertWeightShapes(L, H, I);
  return { w13: await bf16(w13, shapes.w13), w2: await bf16(w2, shapes.w2) };
}

async function fp8Experts(slots: Slot[], H: number, I: number, at: `cuda:${number}`, stream: Stream | undefined): Promise<ExpertWeightsOnDevice> {
  const q = slots.map(quantizeExpertFp8);
  const shapes = expertWeightShapes(q.length, H, I);
  // The slots' arrays back to back in one host tensor, then one upload.
  const upload = (parts: (Uint8Array | Float32Array)[], shape: number[], dtype: 'fp8e4m3' | 'f32') => {
    const host = Tensor.empty(shape, dtype);
    const bytes = new Uint8Array(host.data.buffer, host.data.byteOffset, host.byteLength);
    parts.reduce((offset, p) => (bytes.set(new Uint8Array(p.buffer, p.byteOffset, p.byteLength), offset), offset + p.byteLength), 0);
    return host.to(at, { stream });
  };
  return {
    w13: await upload(q.map((s) => s.w13.q), shapes.w13, 'fp8e4m3'),
    w13Scales: await upload(q.map((s) => s.w13.scales), shapes.w13Scales, 'f32'),
    w2: await upload(q.map((s) => s.w2.q), shapes.w2, 'fp8e4m3'),
    w2Scales: await upload(q.map((s) => s.w2.scales), shapes.w2Scales, 'f32'),
  };
}
