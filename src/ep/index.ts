export { EpBuffer } from './buffer.js';
export { DispatchHandle, LowLatencyHandle } from './leases.js';
export { createSimulatedRanks, StoreTransport, isCpuTransport, type CpuTransport, type CollectiveOptions } from './transport.js';
export { randomRouting, SeededRandom, type RandomRoutingOptions, type Routing } from './routing.js';
export {
  FP8_BLOCK,
  FP8_AMAX_FLOOR,
  fp8BlockScale,
  quantizeRowFp8,
  quantizeBf16RowsFp8,
  dequantizeFp8,
  roundUpToPowerOfTwo,
} from './fp8-quant.js';
export type {
  EpBackend,
  CreateCudaBackend,
  DispatchRouting,
  LowLatencyRouting,
  BackendDispatchArgs,
  BackendDispatchResult,
  BackendCombineArgs,
  BackendCombineResult,
  BackendLowLatencyDispatchArgs,
  BackendLowLatencyDispatchResult,
  BackendLowLatencyCombineArgs,
  BackendLowLatencyCombineResult,
} from './backend.js';
export type * from './types.js';
