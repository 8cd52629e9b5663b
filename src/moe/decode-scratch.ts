/**
 * Every intermediate of one low-latency MoE step, allocated once so that a
 * CUDA graph captured with them has kernels only: a graph that allocates
 * inside (memory nodes) cost 46 µs of host time per launch on an H100.
 */
import type { Stream } from '../cuda/stream.js';
import type { EpConfig } from '../ep/types.js';
import { WideepError } from '../errors.js';
import type { MoeLayerConfig } from '../simulation/config.js';
import { Tensor } from '../tensor/tensor.js';
import type { ExpertsScratch } from './experts.js';

export interface DecodeScratch {
  router: { logits: Tensor; topkIdx: Tensor; topkWeights: Tensor };
  /** The shared expert's gate/up output and activation; absent without one or without tokens. */
  shared: { h: Tensor; a: Tensor } | undefined;
  experts: ExpertsScratch;
  y: Tensor;
  /** Every tensor above, to free with the graph. */
  all: Tensor[];
}

/**
 * The scratch of a step of T tokens on `device`, shaped by the EP buffer's
 * low-latency slots; `fp8`: for fp8 experts; `masked`: their GEMMs run on the
 * masked kernel, which reads the dispatch's row scales where they are.
 */
export function decodeScratch(ep: EpConfig, c: MoeLayerConfig, o: { T: number; hasShared: boolean; fp8: boolean; masked: boolean; device: number; stream: Stream }): DecodeScratch {
  const ll = ep.lowLatency;
  if (!ll) throw new WideepError('ERR_INVALID_ARG', 'MoeLayer.captureDecode: the EP buffer was created without lowLatency');
  const [I, H, L, T] = [c.moeIntermediate, c.hidden, ep.numLocalExperts, o.T];
  const M = ep.worldSize * ll.maxTokensPerRank; // rows per expert of a low-latency dispatch
  const Is = c.numSharedExperts * I;
  const all: Tensor[] = [];
  const alloc = (shape: number[], dtype: 'bf16' | 'fp8e4m3' | 'f32' | 'i32') => (all.push(Tensor.empty(shape, dtype, { device: `cuda:${o.device}`, stream: o.stream })), all.at(-1)!);
  return {
    router: { logits: alloc([T, c.numRoutedExperts], 'f32'), topkIdx: alloc([T, c.topK], 'i32'), topkWeights: alloc([T, c.topK], 'f32') },
    shared: o.hasShared && T > 0 ? { h: alloc([T, 2 * Is], 'bf16'), a: alloc([T, Is], 'bf16') } : undefined,
    experts: {
      h: alloc([L, M, 2 * I], 'bf16'),
      a: alloc([L, M, I], o.fp8 ? 'fp8e4m3' : 'bf16'),
      ...(o.fp8 ? { aScales: alloc([L, I / 128, M], 'f32') } : {}),
      // The low-latency dispatch's token scales come as rows; cuBLASLt's first GEMM re-lays them out here.
      ...(o.fp8 && !o.masked ? { xScales: alloc([L, H / 128, M], 'f32') } : {}),
    },
    y: alloc([L, M, H], 'bf16'),
    all,
  };
}
