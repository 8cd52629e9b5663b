/**
 * A MoE layer's weights on the device for one EP rank, made without a host
 * copy of the whole model: random (seeded per logical expert, so that the
 * replicas of an expert are identical wherever they live), or read from raw
 * little-endian files named by a JSON manifest, only this rank's slots. The
 * routed experts are bf16, or fp8 e4m3 with one f32 scale per 128x128 block.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

import type { Stream } from '../cuda/stream.js';
import type { EpBuffer } from '../ep/buffer.js';
import { WideepError, assertInteger } from '../errors.js';
import { readJsonFile } from '../planning/json-file.js';
import type { MoeLayerConfig } from '../simulation/config.js';
import { counterHash } from '../tensor/counter-hash.js';
import type { DType } from '../tensor/dtype.js';
import { itemSize } from '../tensor/dtype.js';
import { fillRandom } from '../tensor/fill.js';
import { Tensor } from '../tensor/tensor.js';
import { checkFp8ExpertShape, expertWeightShapes } from './expert-weight-checks.js';
import type { ExpertDType, MoeLayerDeviceWeights } from './layer.js';
import type { DevicePlacement } from './placement.js';

export interface LayerWeightsOptions {
  device: number;
  stream?: Stream;
  /** Which expert each of this rank's slots holds; slot p holds expert p without one. */
  placement?: DevicePlacement;
}

export interface RandomLayerWeightsOptions extends LayerWeightsOptions {
  seed: number;
  /** The routed experts' dtype (default bf16). */
  expertDType?: ExpertDType;
}

/** The logical expert of each of this rank's L slots: slot p holds expert p, or the placement's. */
export function slotExperts(ep: EpBuffer, config: MoeLayerConfig, placement: DevicePlacement | undefined): number[] {
  const L = ep.config.numLocalExperts;
  const first = ep.config.rank * L;
  const phy2log = placement?.map.layerPhy2Log(placement.layer);
  if (!phy2log && ep.config.numExperts !== config.numRoutedExperts) {
    throw new WideepError('ERR_INVALID_ARG', `layer weights: ${ep.config.numExperts} slots for ${config.numRoutedExperts} experts need a placement`);
  }
  if (placement && placement.numLogical !== config.numRoutedExperts) {
    throw new WideepError('ERR_INVALID_ARG', `layer weights: the placement places ${placement.numLogical} experts, the layer has ${config.numRoutedExperts}`);
  }
  return Array.from({ length: L }, (_, l) => (phy2log ? phy2log[first + l]! : first + l));
}

function shapes(ep: EpBuffer, c: MoeLayerConfig) {
  const [H, I, E, L] = [c.hidden, c.moeIntermediate, c.numRoutedExperts, ep.config.numLocalExperts];
  const Is = c.numSharedExperts * I;
  return { H, I, E, L, Is, ...expertWeightShapes(L, H, I), s13: [2 * Is, H], s2: [H, Is] };
}

/**
 * Normal weights with std 1/sqrt(fan-in) (activations stay near unit size),
 * the gate bias with config.routerBiasStd. Each tensor, and each logical
 * expert's part, has its own seed derived from `seed`. fp8 experts hold
 * normal values of std 1 with block scales drawn from [0.5, 1.5)/sqrt(fan-in).
 */
export function randomLayerWeights(ep: EpBuffer, config: MoeLayerConfig, o: RandomLayerWeightsOptions): MoeLayerDeviceWeights {
  assertInteger('randomLayerWeights: seed', o.seed, 0, 0xffffffff);
  const s = shapes(ep, config);
  const experts = slotExperts(ep, config, o.placement);
  const at = `cuda:${o.device}` as const;
  const { stream } = o;
  const seedOf = (what: number, expert = 0) => counterHash(o.seed, what * 65536 + expert);
  const normal = (t: Tensor, seed: number, fanIn: number) => fillRandom(t, seed, { kind: 'normal', std: 1 / Math.sqrt(fanIn) }, stream);
  const empty = (shape: number[], dtype: DType = 'bf16') => Tensor.empty(shape, dtype, { device: at, stream });
  const fp8 = o.expertDType === 'fp8e4m3';
  if (fp8) checkFp8ExpertShape('randomLayerWeights', config.hidden, config.moeIntermediate, ep);
  const w13 = empty(s.w13, fp8 ? 'fp8e4m3' : 'bf16');
  const w2 = empty(s.w2, fp8 ? 'fp8e4m3' : 'bf16');
  const w13Scales = fp8 ? empty(s.w13Scales, 'f32') : undefined;
  const w2Scales = fp8 ? empty(s.w2Scales, 'f32') : undefined;
  const scales = (t: Tensor, seed: number, fanIn: number) => fillRandom(t, seed, { kind: 'uniform', low: 0.5 / Math.sqrt(fanIn), high: 1.5 / Math.sqrt(fanIn) }, stream);
  experts.forEach((e, l) => {
    normal(w13.narrow(l, 1), seedOf(1, e), fp8 ? 1 : s.H);
    normal(w2.narrow(l, 1), seedOf(2, e), fp8 ? 1 : s.I);
    if (w13Scales) scales(w13Scales.narrow(l, 1), seedOf(6, e), s.H);
    if (w2Scales) scales(w2Scales.narrow(l, 1), seedOf(7, e), s.I);
  });
  const weights: MoeLayerDeviceWeights = {
    gate: normal(empty([s.E, s.H]), seedOf(0), s.H),
    gateBias: fillRandom(empty([s.E], 'f32'), seedOf(3), { kind: 'normal', std: config.routerBiasStd }, stream),
    experts: { w13, w2, ...(fp8 ? { w13Scales, w2Scales } : {}) },
  };
  if (s.Is > 0) weights.shared = { w13: normal(empty(s.s13), seedOf(4), s.H), w2: normal(empty(s.s2), seedOf(5), s.Is) };
  return weights;
}

/** One tensor of a weights manifest: a raw little-endian file (relative to the manifest) holding the whole tensor. */
interface ManifestEntry {
  file: string;
  dtype: DType;
  shape: number[];
}

const MANIFEST_FORMAT = 'wideep-moe-layer/1';

function manifestEntry(path: string, tensors: Record<string, unknown>, name: string, dtype: DType, shape: number[]): ManifestEntry {
  const bad = (msg: string) => new WideepError('ERR_INVALID_ARG', `weights manifest ${path}: tensors.${name}: ${msg}`);
  const e = tensors[name] as Partial<ManifestEntry> | undefined;
  if (typeof e !== 'object' || e === null || typeof e.file !== 'string') throw bad('expected { file, dtype, shape }');
  if (e.dtype !== dtype) throw bad(`dtype ${String(e.dtype)}, expected ${dtype}`);
  if (!Array.isArray(e.shape) || e.shape.length !== shape.length || e.shape.some((d, i) => d !== shape[i])) {
    throw bad(`shape [${String(e.shape)}], expected [${shape.join(', ')}]`);
  }
  return { file: resolve(dirname(path), e.file), dtype, shape };
}

/**
 * Reads a layer from a manifest `{ "format": "wideep-moe-layer/1", "tensors":
 * { gate, gateBias, "experts.w13", "experts.w2", "shared.w13", "shared.w2" } }`
 * whose entries are `{ file, dtype, shape }` with the whole model's shapes:
 * gate bf16 [E, H], gateBias f32 [E], experts.w13 bf16 [E, 2I, H] (gate rows,
 * then up rows), experts.w2 bf16 [E, H, I], and the shared expert (when the
 * config has one) as bf16 [2Is, H] and [H, Is]. fp8 experts: experts.w13 and
 * experts.w2 fp8e4m3, with "experts.w13Scales" f32 [E, 2I/128, H/128] and
 * "experts.w2Scales" f32 [E, H/128, I/128] (weight = value * scale, as
 * DeepSeek-V3's weight_scale_inv). Every shape and file size is checked
 * before anything is uploaded.
 */
export async function loadLayerWeights(ep: EpBuffer, config: MoeLayerConfig, path: string, o: LayerWeightsOptions): Promise<MoeLayerDeviceWeights> {
  const m = readJsonFile(path, 'weights manifest') as { format?: unknown; tensors?: Record<string, unknown> };
  if (m?.format !== MANIFEST_FORMAT || typeof m.tensors !== 'object' || m.tensors === null) {
    throw new WideepError('ERR_INVALID_ARG', `weights manifest ${path}: expected { "format": "${MANIFEST_FORMAT}", "tensors": { ... } }`);
  }
  const s = shapes(ep, config);
  const entry = (name: string, dtype: DType, shape: number[]) => manifestEntry(path, m.tensors!, name, dtype, shape);
  const expertDType: ExpertDType = (m.tensors['experts.w13'] as { dtype?: unknown } | undefined)?.dtype === 'fp8e4m3' ? 'fp8e4m3' : 'bf16';
  if (expertDType === 'fp8e4m3') checkFp8ExpertShape(`weights manifest ${path}`, config.hidden, config.moeIntermediate, ep);
  const allExperts = (shape: number[]) => [s.E, ...shape.slice(1)];
  const plan = {
    gate: entry('gate', 'bf16', [s.E, s.H]),
    gateBias: entry('gateBias', 'f32', [s.E]),
    w13: entry('experts.w13', expertDType, allExperts(s.w13)),
    w2: entry('experts.w2', expertDType, allExperts(s.w2)),
    ...(expertDType === 'fp8e4m3' ? { w13Scales: entry('experts.w13Scales', 'f32', allExperts(s.w13Scales)), w2Scales: entry('experts.w2Scales', 'f32', allExperts(s.w2Scales)) } : {}),
    ...(s.Is > 0 ? { s13: entry('shared.w13', 'bf16', s.s13), s2: entry('shared.w2', 'bf16', s.s2) } : {}),
  };
  for (const e of Object.values(plan)) await checkFileSize(path, e);
  const experts = slotExperts(ep, config, o.placement);
  const at = `cuda:${o.device}` as const;
  const whole = (e: ManifestEntry) =>
    withFile(e.file, async (f) => {
      const host = Tensor.empty(e.shape, e.dtype);
      await readAt(f, e.file, host, 0);
      return host.to(at, { stream: o.stream });
    });
  // Only this rank's slots: one row of the file per slot, uploaded into its place.
  const slots = (e: ManifestEntry) =>
    withFile(e.file, async (f) => {
      const t = Tensor.empty([experts.length, ...e.shape.slice(1)], e.dtype, { device: at, stream: o.stream });
      const row = Tensor.empty([1, ...e.shape.slice(1)], e.dtype);
      for (let i = 0; i < experts.length; i++) {
        await readAt(f, e.file, row, experts[i]! * row.byteLength);
        await t.narrow(i, 1).copyFrom(row, { stream: o.stream });
      }
      return t;
    });
  const weights: MoeLayerDeviceWeights = {
    gate: await whole(plan.gate),
    gateBias: await whole(plan.gateBias),
    experts: {
      w13: await slots(plan.w13),
      w2: await slots(plan.w2),
      ...(plan.w13Scales && plan.w2Scales ? { w13Scales: await slots(plan.w13Scales), w2Scales: await slots(plan.w2Scales) } : {}),
    },
  };
  if (plan.s13 && plan.s2) weights.shared = { w13: await whole(plan.s13), w2: await whole(plan.s2) };
  return weights;
}

/** Runs `use` on `file` opened for reading, and closes it. */
async function withFile<T>(file: string, use: (f: FileHandle) => Promise<T>): Promise<T> {
  const f = await open(file, 'r');
  try {
    return await use(f);
  } finally {
    await f.close();
  }
}

/** Fills host tensor `t` from open file `f` (named `file` in errors) at byte `position`. */
async function readAt(f: FileHandle, file: string, t: Tensor, position: number): Promise<void> {
  const d = t.data;
  const bytes = new Uint8Array(d.buffer, d.byteOffset, t.byteLength);
  for (let done = 0; done < bytes.length; ) {
    const { bytesRead } = await f.read(bytes, done, bytes.length - done, position + done);
    if (bytesRead === 0) throw new WideepError('ERR_INVALID_ARG', `${file}: ended at byte ${position + done}, expected ${bytes.length - done} more`);
    done += bytesRead;
  }
}

async function checkFileSize(path: string, e: ManifestEntry): Promise<void> {
  const want = e.shape.reduce((a, b) => a * b, 1) * itemSize(e.dtype);
  let size: number;
  try {
    const f = await open(e.file, 'r');
    size = (await f.stat()).size;
    await f.close();
  } catch (err) {
    throw new WideepError('ERR_INVALID_ARG', `weights manifest ${path}: cannot read ${e.file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  if (size !== want) throw new WideepError('ERR_INVALID_ARG', `weights manifest ${path}: ${e.file} has ${size} bytes, expected ${want} for ${e.dtype} [${e.shape.join(', ')}]`);
}
