/**
 * The MoE router on the GPU: the gate GEMM (bf16 [T, H] x [E, H]ᵀ, float32
 * logits) and one fused top-k kernel that scores, selects within groups,
 * renormalises, scales and maps logical experts to physical replicas. Its
 * outputs are what EpBuffer.dispatch takes: topkIdx i32 [T, k] and
 * topkWeights f32 [T, k].
 *
 * Selection matches the cpu pipeline's gate (src/simulation/gate.ts) id for id
 * on the same logits: scores are computed in double, ties go to the lower index.
 */
import { linear } from '../blas/gemm.js';
import { callNative } from '../cuda/call.js';
import type { Stream } from '../cuda/stream.js';
import { WideepError, assertInteger } from '../errors.js';
import { requireCuda } from '../native/index.js';
import type { MoeLayerConfig } from '../simulation/config.js';
import { deviceTensor, expectDType, expectFinite, expectShape, streamFor } from '../tensor/checks.js';
import { f32Bits } from '../tensor/convert.js';
import { Tensor } from '../tensor/tensor.js';
import { batonFor, moeFields } from './fields.js';

/** The gate's part of a layer config (the same fields the cpu pipeline reads). */
export type RoutingConfig = Pick<
  MoeLayerConfig,
  'numRoutedExperts' | 'topK' | 'numExpertGroups' | 'topkGroup' | 'routedScalingFactor' | 'scoringFunc' | 'normTopkProb'
>;

/** Where a chosen logical expert is sent: one replica per rank (static) or a random replica per token (dynamic). */
export type ReplicaMap =
  /** i32 [E]: the physical slot this rank sends each logical expert to (ExpertLocationMap.staticDispatchTable). */
  | { kind: 'static'; table: Tensor }
  /** i32 [E, maxReplicas] and i32 [E]; entry i of topkIdx picks replica floor(u(seed, i) * logcnt[e]). */
  | { kind: 'dynamic'; log2phy: Tensor; logcnt: Tensor; seed: number };

export interface TopkOptions {
  /** f32 [T, E] router logits. */
  logits: Tensor;
  config: RoutingConfig;
  /** f32 [E]: added to the scores for selection only (DeepSeek-V3's e_score_correction_bias). */
  bias?: Tensor;
  replicas?: ReplicaMap;
  /** i32 [numPhysical or E]: incremented once per chosen id (EPLB's load statistics). */
  counts?: Tensor;
  /** Outputs to write in place (i32 [T, k], f32 [T, k]); allocated when absent. */
  topkIdx?: Tensor;
  topkWeights?: Tensor;
  stream?: Stream;
}

export interface TopkResult {
  topkIdx: Tensor;
  topkWeights: Tensor;
}

function checkRouting(where: string, c: RoutingConfig): void {
  if (typeof c !== 'object' || c === null) throw new WideepError('ERR_INVALID_ARG', `${where}: config: expected a routing config object`);
  const f = moeFields();
  const E = assertInteger(`${where}: config.numRoutedExperts`, c.numRoutedExperts, 1, f.maxTopkExperts);
  const G = assertInteger(`${where}: config.numExpertGroups`, c.numExpertGroups, 1, f.maxTopkGroups);
  if (E % G !== 0) throw new WideepError('ERR_INVALID_ARG', `${where}: config: ${E} experts do not split into ${G} equal groups`);
  assertInteger(`${where}: config.topkGroup`, c.topkGroup, 1, G);
  const most = Math.min(f.maxTopk, c.topkGroup * (E / G));
  assertInteger(`${where}: config.topK (at most topkGroup x experts per group, and ${f.maxTopk})`, c.topK, 1, most);
  expectFinite(where, 'config.routedScalingFactor', c.routedScalingFactor);
  if (c.scoringFunc !== 'sigmoid' && c.scoringFunc !== 'softmax') {
    throw new WideepError('ERR_INVALID_ARG', `${where}: config.scoringFunc: expected 'sigmoid' or 'softmax', got ${String(c.scoringFunc)}`);
  }
}

function output(where: string, name: string, given: Tensor | undefined, dtype: 'i32' | 'f32', shape: number[], device: number, stream: Stream): Tensor {
  if (given === undefined) return Tensor.empty(shape, dtype, { device: `cuda:${device}`, stream });
  const t = deviceTensor(where, name, given, device);
  expectDType(where, name, t, [dtype]);
  expectShape(where, name, t, ['T', 'k'], shape);
  return t;
}

/** The fused top-k over router logits. */
export function routerTopk(o: TopkOptions): TopkResult {
  const where = 'routerTopk';
  if (typeof o !== 'object' || o === null) throw new WideepError('ERR_INVALID_ARG', `${where}: expected an options object`);
  const logits = deviceTensor(where, 'logits', o.logits);
  const device = logits.deviceIndex;
  checkRouting(where, o.config);
  const c = o.config;
  const E = c.numRoutedExperts;
  expectDType(where, 'logits', logits, ['f32']);
  expectShape(where, 'logits', logits, ['T', 'E'], [null, E]);
  const T = logits.shape[0]!;
  const stream = streamFor(where, device, o.stream);
  const f = moeFields().topk;
  const b = batonFor('topk');
  if (o.bias !== undefined) {
    const bias = deviceTensor(where, 'bias', o.bias, device);
    expectDType(where, 'bias', bias, ['f32']);
    expectShape(where, 'bias', bias, ['E'], [E]);
    b[f.bias!] = bias.ptr;
  }
  let numPhysical = E;
  if (o.replicas !== undefined) numPhysical = replicaArgs(where, o.replicas, E, device, b);
  if (o.counts !== undefined) {
    const counts = deviceTensor(where, 'counts', o.counts, device);
    expectDType(where, 'counts', counts, ['i32']);
    expectShape(where, 'counts', counts, ['experts'], [null]);
    if (counts.numel < numPhysical && o.replicas?.kind !== 'dynamic') {
      throw new WideepError('ERR_SHAPE', `${where}: counts: expected at least ${numPhysical} entries (one per id it can see), got ${counts.numel}`);
    }
    b[f.counts!] = counts.ptr;
    b[f.numCounted!] = BigInt(counts.numel);
  }
  const k = c.topK;
  const topkIdx = output(where, 'topkIdx', o.topkIdx, 'i32', [T, k], device, stream);
  const topkWeights = output(where, 'topkWeights', o.topkWeights, 'f32', [T, k], device, stream);
  b[f.logits!] = logits.ptr;
  b[f.topkIdx!] = topkIdx.ptr;
  b[f.topkWeights!] = topkWeights.ptr;
  b[f.numTokens!] = BigInt(T);
  b[f.numExperts!] = BigInt(E);
  b[f.topk!] = BigInt(k);
  b[f.numGroups!] = BigInt(c.numExpertGroups);
  b[f.topkGroup!] = BigInt(c.topkGroup);
  b[f.scoring!] = c.scoringFunc === 'sigmoid' ? 0n : 1n;
  b[f.renormalize!] = c.normTopkProb ? 1n : 0n;
  b[f.scaleBits!] = BigInt(f32Bits(c.routedScalingFactor));
  const cuda = requireCuda(where);
  callNative(() => cuda.routerTopk(b, stream.native));
  return { topkIdx, topkWeights };
}

function replicaArgs(where: string, r: ReplicaMap, E: number, device: number, b: BigInt64Array): number {
  const f = moeFields().topk;
  if (r?.kind === 'static') {
    const table = deviceTensor(where, 'replicas.table', r.table, device);
    expectDType(where, 'replicas.table', table, ['i32']);
    expectShape(where, 'replicas.table', table, ['E'], [E]);
    b[f.staticTable!] = table.ptr;
    return E;
  }
  if (r?.kind === 'dynamic') {
    const log2phy = deviceTensor(where, 'replicas.log2phy', r.log2phy, device);
    const logcnt = deviceTensor(where, 'replicas.logcnt', r.logcnt, device);
    expectDType(where, 'replicas.log2phy', log2phy, ['i32']);
    expectDType(where, 'replicas.logcnt', logcnt, ['i32']);
    expectShape(where, 'replicas.log2phy', log2phy, ['E', 'maxReplicas'], [E, null]);
    expectShape(where, 'replicas.logcnt', logcnt, ['E'], [E]);
    assertInteger(`${where}: replicas.seed`, r.seed, 0, 0xffffffff);
    b[f.log2phy!] = log2phy.ptr;
    b[f.logcnt!] = logcnt.ptr;
    b[f.maxReplicas!] = BigInt(log2phy.shape[1]!);
    b[f.seed!] = BigInt(r.seed);
    return E;
  }
  throw new WideepError('ERR_INVALID_ARG', `${where}: replicas: expected { kind: 'static' | 'dynamic', ... }, got ${JSON.stringify(r)}`);
}

export interface RouteOptions extends Omit<TopkOptions, 'logits'> {
  /** bf16 [T, H]: the MoE input. */
  x: Tensor;
  /** bf16 [E, H]: the gate weight. */
  gateWeight: Tensor;
  /** f32 [T, E] to write the logits into; allocated when absent. */
  logits?: Tensor;
}

/** Gate GEMM then top-k: the whole router. */
export function route(o: RouteOptions): TopkResult & { logits: Tensor } {
  const where = 'route';
  if (typeof o !== 'object' || o === null) throw new WideepError('ERR_INVALID_ARG', `${where}: expected an options object`);
  const x = deviceTensor(where, 'x', o.x);
  const stream = streamFor(where, x.deviceIndex, o.stream);
  const logits = linear(x, o.gateWeight, { out: o.logits, outDType: 'f32', stream });
  return { logits, ...routerTopk({ ...o, logits, stream }) };
}
