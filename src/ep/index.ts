export { EpBuffer } from './buffer.js';
export { DispatchHandle, LowLatencyHandle } from './leases.js';
export { createSimulatedRanks, StoreTransport, isCpuTransport, type CpuTransport, type CollectiveOptions } from './transport.js';
export type { Routing } from './random-routing.js';
export {
  FP8_BLOCK,
  FP8_AMAX_FLOOR,
  fp8BlockScale,
  quantizeRowFp8,
  quantizeBf16RowsFp8,
  dequantizeFp8,
  roundUpToPowerOfTwo,
} from './fp8-quant.js';
export type * from './types.js';
