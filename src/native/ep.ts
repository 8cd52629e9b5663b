/**
 * The EP half of the binding's shape (native/ep/ep_buffer.cc and the
 * baselines in native/ep/baseline_binding.cc are the other half).
 */
import type { NativeEvent, NativeStream } from './index.js';

export interface NativeEpStatus {
  code: number;
  phase: number;
  peer: number;
  value: number;
}

export type NativeFieldMap = Record<string, number> & { length: number };

export interface NativeEpBatonLayout {
  config: NativeFieldMap;
  notify: NativeFieldMap;
  dispatch: NativeFieldMap;
  combine: NativeFieldMap;
  lowLatency: NativeFieldMap;
  controlBytes: number;
  maxRanks: number;
  maxLocalExperts: number;
  maxTopk: number;
  routingMetaBytes: number;
}

/** native/ep/ep_buffer.cc: the registered buffer, its peers and the EP launches. */
export interface NativeEpBuffer {
  readonly base: bigint;
  readonly closed: boolean;
  ipcHandle(): Uint8Array;
  openPeers(handles: Uint8Array[]): void;
  configure(baton: BigInt64Array): void;
  notify(baton: BigInt64Array, stream: NativeStream): void;
  dispatch(baton: BigInt64Array, stream: NativeStream): void;
  combine(baton: BigInt64Array, stream: NativeStream): void;
  /**
   * The low-latency launches. Each records `event` behind its launch unless the
   * stream is being captured, and returns whether it did. lowLatencyDispatch
   * and lowLatencyCombine send and receive in one launch.
   */
  lowLatencyDispatch(baton: BigInt64Array, stream: NativeStream, event?: NativeEvent): boolean;
  lowLatencyDispatchSend(baton: BigInt64Array, stream: NativeStream, event?: NativeEvent): boolean;
  lowLatencyDispatchRecv(baton: BigInt64Array, stream: NativeStream, event?: NativeEvent): boolean;
  lowLatencyCombine(baton: BigInt64Array, stream: NativeStream, event?: NativeEvent): boolean;
  lowLatencyCombineSend(baton: BigInt64Array, stream: NativeStream, event?: NativeEvent): boolean;
  lowLatencyCombineRecv(baton: BigInt64Array, stream: NativeStream, event?: NativeEvent): boolean;
  cleanLowLatency(stream: NativeStream): void;
  readStatus(): NativeEpStatus | null;
  /** The verdict of the last call of `kind` (0 dispatch, 1 combine: per slot; 2, 3 their low-latency twins: per half). */
  readCallStatus(kind: number, index: number): NativeEpStatus | null;
  readCounts(slot: number, numLocalExperts: number): { numRecv: number; perExpert: Int32Array };
  close(): Promise<void>;
}

export interface EpBinding {
  /** Benchmark baseline: dst[i] = src[idx[i]] for rows of rowBytes. */
  gatherRows(dst: bigint, src: bigint, idx: bigint, n: number, rowBytes: number, numSms: number, stream: NativeStream): void;
  /** Benchmark baseline: out[idx[i]] += src[i] for bf16 rows (atomic). */
  scatterAddBf16(out: bigint, src: bigint, idx: bigint, n: number, hidden: number, numSms: number, stream: NativeStream): void;
  EpBuffer: {
    new (device: number, bytes: number, numSlots: number, rank: number, numRanks: number): NativeEpBuffer;
    batonLayout(): NativeEpBatonLayout;
  };
}
