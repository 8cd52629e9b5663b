/**
 * Byte layout of the cuda backend's registered buffer, identical on every
 * rank. Pure arithmetic, so a buffer's size is known without a GPU. The native
 * side reads these offsets through the config baton (native/ep/baton.h).
 */
import { FP8_BLOCK } from '../fp8-quant.js';
import type { EpConfig } from '../types.js';

/** native/ep/ep_params.h kControlBytes: flags, counters and sequence numbers. */
export const CONTROL_BYTES = 64 * 1024;
const ALIGN = 256;

/** native/ep/ep_params.h NotifyScratch: barrier words, per-block row counts, then per-expert counts. */
function notifyScratchBytes(numExperts: number): number {
  const maxNotifyBlocks = 32;
  const maxRanks = 8;
  return 8 + maxNotifyBlocks * maxRanks * 4 + numExperts * 4;
}

export type SizingConfig = Pick<
  EpConfig,
  'worldSize' | 'hidden' | 'numExperts' | 'maxTokensPerRank' | 'maxTopk' | 'numRecvSlots' | 'lowLatency'
>;

export interface CudaLayout {
  totalBytes: number;
  /** Normal-mode bytes (slots + combine area). */
  normalBytes: number;
  /** Low-latency bytes (both halves). */
  lowLatencyBytes: number;
  /** Values of every config baton field (native/ep/baton.h WIDEEP_CONFIG_FIELDS), except timeoutMs. */
  fields: Record<string, number>;
}

function align(n: number): number {
  return Math.ceil(n / ALIGN) * ALIGN;
}

/** Lays out consecutive regions and returns their offsets. */
function regions(sizes: Record<string, number>): { offsets: Record<string, number>; total: number } {
  const offsets: Record<string, number> = {};
  let at = 0;
  for (const [name, bytes] of Object.entries(sizes)) {
    offsets[name] = at;
    at += align(bytes);
  }
  return { offsets, total: at };
}

export function computeCudaLayout(c: SizingConfig): CudaLayout {
  const R = c.worldSize;
  const H = c.hidden;
  const K = c.maxTopk;
  const L = c.numExperts / R;
  const scaleCols = Math.ceil(H / FP8_BLOCK);
  const maxRecv = R * c.maxTokensPerRank;

  const slab = regions({
    slabX: maxRecv * H * 2,
    slabScales: maxRecv * scaleCols * 4,
    slabTopkIdx: maxRecv * K * 8,
    slabTopkWeights: maxRecv * K * 4,
    slabSrcIdx: maxRecv * 4,
  });
  const slab0 = CONTROL_BYTES;
  const slabsEnd = slab0 + c.numRecvSlots * slab.total;
  const combine = regions({
    combineX: R * c.maxTokensPerRank * H * 2,
    combineWeights: R * c.maxTokensPerRank * K * 4,
    combineFlags: R * c.maxTokensPerRank * 4,
    notifyScratch: notifyScratchBytes(c.numExperts),
  });
  const normalEnd = slabsEnd + combine.total;

  const M = c.lowLatency?.maxTokensPerRank ?? 0;
  const stagingStride = Math.ceil(Math.max(H * 2, H + scaleCols * 4) / 16) * 16;
  const half = regions(
    M === 0
      ? {}
      : {
          llStaging: R * M * stagingStride,
          llSrcTopk: R * M * K * 4,
          llSrcRank: R * M * K * 4,
          llSrcCount: R * L * 4,
          llRecvX: L * R * M * H * 2,
          llRecvScales: L * R * M * scaleCols * 4,
          llSrcInfo: L * R * M * 4,
          llLayoutRange: L * R * 2 * 4,
          llRecvCount: L * 4,
          llCombineIn: R * M * K * 8,
          llSlotOf: R * M * K * 4,
          llCombineRecv: M * K * H * 2,
        },
  );
  const llHalf0 = normalEnd;
  const total = llHalf0 + 2 * half.total;

  const fields: Record<string, number> = {
    maxTokens: c.maxTokensPerRank,
    llMaxTokens: M,
    maxTopk: K,
    numExperts: c.numExperts,
    numLocalExperts: L,
    slab0,
    slabStride: slab.total,
    ...slab.offsets,
    combineX: slabsEnd + combine.offsets.combineX!,
    combineWeights: slabsEnd + combine.offsets.combineWeights!,
    combineFlags: slabsEnd + combine.offsets.combineFlags!,
    notifyScratch: slabsEnd + combine.offsets.notifyScratch!,
    llHalf0,
    llHalfStride: half.total,
    llStagingStride: stagingStride,
    llStaging: half.offsets.llStaging ?? 0,
    llSrcTopk: half.offsets.llSrcTopk ?? 0,
    llSrcRank: half.offsets.llSrcRank ?? 0,
    llSrcCount: half.offsets.llSrcCount ?? 0,
    llRecvX: half.offsets.llRecvX ?? 0,
    llRecvScales: half.offsets.llRecvScales ?? 0,
    llSrcInfo: half.offsets.llSrcInfo ?? 0,
    llLayoutRange: half.offsets.llLayoutRange ?? 0,
    llRecvCount: half.offsets.llRecvCount ?? 0,
    llCombineIn: half.offsets.llCombineIn ?? 0,
    llSlotOf: half.offsets.llSlotOf ?? 0,
    llCombineRecv: half.offsets.llCombineRecv ?? 0,
  };
  return {
    totalBytes: total,
    normalBytes: normalEnd - CONTROL_BYTES,
    lowLatencyBytes: 2 * half.total,
    fields,
  };
}
