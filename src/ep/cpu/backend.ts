/**
 * The cpu backend: the reference implementation and test oracle of the EP
 * semantics, over any CpuTransport. Results are ordinary host tensors; the
 * receive slot the facade chose does not matter here. A buffer over several
 * nodes runs normal mode hierarchically (node-dispatch.ts, node-combine.ts);
 * low-latency mode stays flat, its results being the same either way.
 */
import { Tensor } from '../../tensor/tensor.js';
import type {
  BackendCombineArgs,
  BackendCombineResult,
  BackendDispatchArgs,
  BackendDispatchResult,
  BackendLowLatencyCombineArgs,
  BackendLowLatencyCombineResult,
  BackendLowLatencyDispatchArgs,
  BackendLowLatencyDispatchResult,
  EpBackend,
} from '../backend.js';
import type { DataCallKind, EpCall } from '../calls.js';
import { computeDispatchLayout, readTopkIdx } from '../dispatch-layout.js';
import { agreeNoLowLatencyResults, type CpuTransport } from '../transport.js';
import type { DispatchLayout, EpConfig } from '../types.js';
import { cpuCombine } from './combine.js';
import { cpuDispatch, type CpuRouting } from './dispatch.js';
import { cpuLowLatencyCombine } from './ll-combine.js';
import { cpuNodeCombine } from './node-combine.js';
import { cpuNodeDispatch } from './node-dispatch.js';
import { cpuLowLatencyDispatch, type CpuLowLatencyRouting } from './ll-dispatch.js';
import { sendLocalFailure } from './wire.js';

export class CpuBackend implements EpBackend<CpuRouting, CpuLowLatencyRouting> {
  readonly kind = 'cpu';
  readonly device = 'cpu';
  readonly #transport: CpuTransport;
  readonly #config: EpConfig;

  constructor(transport: CpuTransport, config: EpConfig) {
    this.#transport = transport;
    this.#config = config;
  }

  getDispatchLayout(topkIdx: Tensor): Required<Omit<DispatchLayout, 'event'>> {
    const [T, k] = topkIdx.shape as [number, number];
    const { numExperts: E, worldSize: R, ranksPerNode } = this.#config;
    const layout = computeDispatchLayout(readTopkIdx(topkIdx), T, k, E, R, ranksPerNode);
    return {
      numTokensPerRank: Tensor.from(layout.numTokensPerRank, { shape: [R], dtype: 'i32' }),
      numTokensPerNode: Tensor.from(layout.numTokensPerNode, { shape: [R / ranksPerNode], dtype: 'i32' }),
      numTokensPerExpert: Tensor.from(layout.numTokensPerExpert, { shape: [E], dtype: 'i32' }),
      isTokenInRank: Tensor.from(layout.isTokenInRank, { shape: [T, R], dtype: 'u8' }),
    };
  }

  /** Across nodes (ranksPerNode below the world size), normal mode takes the hierarchical path. */
  dispatch(args: BackendDispatchArgs<CpuRouting>, _slot: number, call: EpCall): Promise<BackendDispatchResult<CpuRouting>> {
    const path = this.#config.ranksPerNode < this.#config.worldSize ? cpuNodeDispatch : cpuDispatch;
    return path(this.#transport, this.#config, args, call);
  }

  combine(args: BackendCombineArgs<CpuRouting>, _slot: number, call: EpCall): Promise<BackendCombineResult> {
    const path = args.routing.nodes ? cpuNodeCombine : cpuCombine;
    return path(this.#transport, this.#config, args, call);
  }

  lowLatencyDispatch(args: BackendLowLatencyDispatchArgs, _half: number, call: EpCall): Promise<BackendLowLatencyDispatchResult<CpuLowLatencyRouting>> {
    return cpuLowLatencyDispatch(this.#transport, this.#config, args, call);
  }

  lowLatencyCombine(args: BackendLowLatencyCombineArgs<CpuLowLatencyRouting>, _half: number, call: EpCall): Promise<BackendLowLatencyCombineResult> {
    return cpuLowLatencyCombine(this.#transport, this.#config, args, call);
  }

  /** Only the ranks' verdict: every cpu call writes fresh outputs, so nothing needs a reset. */
  cleanLowLatencyBuffer(live: number, call: EpCall): Promise<void> {
    return agreeNoLowLatencyResults(this.#transport, live, this.#config.timeoutMs, call);
  }

  takePart(call: EpCall & { kind: DataCallKind }, failure: number): void {
    sendLocalFailure(call.kind, call.kind, this.#transport, this.#config.timeoutMs, call, failure);
  }

  /** The transport belongs to whoever made it (EpBuffer.create closes the ones it made). */
  async close(): Promise<void> {}
}
