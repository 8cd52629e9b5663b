/**
 * The DeepEP V1 figures `wideep bench ep` compares against, by rank count:
 * at 4 ranks those measured on the same 4×H200 machine type (docs/performance.md,
 * 2026-11-28) with the EP issues' goals; at 8 ranks DeepEP's published EP8
 * figures (H800, FP8 dispatch and BF16 combine at its default 24 SMs), which
 * come from another machine and carry no goal. Other rank counts have none.
 */

/** The shape DeepEP's figures were measured at: a run of any other shape gets no comparison. */
export interface AnchorShape {
  tokens: number;
  hidden: number;
  topk: number;
  experts: number;
}

export const ANCHOR_SHAPES: Record<'normal' | 'low-latency', AnchorShape> = {
  normal: { tokens: 4096, hidden: 7168, topk: 8, experts: 256 },
  'low-latency': { tokens: 128, hidden: 7168, topk: 8, experts: 256 },
};

export interface NormalAnchor {
  dispatchFp8?: number;
  dispatchBf16?: number;
  combineBf16?: number;
}

export interface DeepEpAnchors {
  /** Where the figures come from, printed with the table. */
  source: string;
  /** Normal mode, 4096 tokens, hidden 7168, top-8 of 256, GB/s by SM budget. */
  normal: Record<number, NormalAnchor>;
  /** Low-latency mode, 128 tokens, FP8 dispatch, BF16 combine, µs. */
  lowLatency: { dispatchUs: number; combineUs: number };
  /** The goals as ratios to DeepEP, where an issue sets them. */
  goals?: {
    normalAt24Sms: { dispatch: number; combine: number };
    normalBest: number;
    lowLatency: number;
  };
}

const ANCHORS: Record<number, DeepEpAnchors> = {
  4: {
    source: 'DeepEP V1 on the same 4xH200 machine type (docs/performance.md)',
    normal: {
      24: { dispatchFp8: 255, dispatchBf16: 261, combineBf16: 355 },
      48: { dispatchFp8: 371, dispatchBf16: 385, combineBf16: 391 },
      80: { dispatchFp8: 383, dispatchBf16: 397, combineBf16: 399 },
    },
    lowLatency: { dispatchUs: 33, combineUs: 57 },
    goals: { normalAt24Sms: { dispatch: 1.4, combine: 1.2 }, normalBest: 1.15, lowLatency: 0.7 },
  },
  8: {
    source: "DeepEP V1's published EP8 figures (H800, another machine)",
    normal: { 24: { dispatchFp8: 153, combineBf16: 158 } },
    lowLatency: { dispatchUs: 77, combineUs: 114 },
  },
};

export function deepEpAnchors(worldSize: number): DeepEpAnchors | undefined {
  return ANCHORS[worldSize];
}
