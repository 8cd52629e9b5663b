export { WideepError, isWideepError, type ErrorCode } from './errors.js';
export * from './tensor/index.js';
export { Stream, defaultStream } from './cuda/stream.js';
export { Event } from './cuda/event.js';
export { deviceCount, memGetInfo, trimMemoryPool } from './cuda/device.js';
