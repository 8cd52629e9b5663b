export { WideepError, isWideepError, type ErrorCode } from './errors.js';
export * from './tensor/index.js';
export { Stream, defaultStream } from './cuda/stream.js';
export { Event } from './cuda/event.js';
export { deviceCount, memGetInfo, trimMemoryPool } from './cuda/device.js';
export { Graph } from './cuda/graph.js';
export type { GraphShape } from './native/index.js';
export { Timeline, type TimelineSpan } from './cuda/timeline.js';
export { capabilities, type Capabilities, type GpuInfo, type NcclInfo } from './capabilities.js';
export type { KeyValueStore, ProcessGroup, StoreValue } from './runtime/types.js';
export {
  TcpStoreServer,
  TcpStoreClient,
  openStore,
  MAX_KEY_BYTES,
  MAX_VALUE_BYTES,
  DEFAULT_STORE_TIMEOUT_MS,
  DEFAULT_STORE_LIMITS,
  newToken,
  type StoreServerOptions,
  type StoreServerLimits,
  type StoreClientOptions,
  type OpenStoreOptions,
} from './runtime/store/index.js';
export { detectDistEnv, type DistEnv, type DistEnvOptions, type DistEnvSource } from './runtime/env.js';
export { initProcessGroup, type InitProcessGroupOptions } from './runtime/process-group.js';
export { launch, type LaunchOptions, type LaunchResult, type RankExit, type LaunchFailure, type OutputSink } from './runtime/launcher.js';
export { Communicator, type CommunicatorOptions, type ReduceOp, type P2POp } from './comm/communicator.js';
export { loadNccl } from './comm/nccl-library.js';
export * from './ep/index.js';
export { linear, groupedLinear, type GroupedGemmStrategy, type LinearOptions, type GroupedLinearOptions } from './blas/gemm.js';
export { loadCublasLt, type LoadedCublasLt } from './blas/library.js';
export * from './moe/index.js';
export { fillValue, fillRandom, randomTensor, type RandomDistribution } from './tensor/fill.js';
