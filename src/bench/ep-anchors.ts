/**
 * DeepEP V1 and NCCL figures measured on the same 4×H200 machine type
 * (shared/anchors.md, 2026-11-28): what `wideep bench ep` compares against.
 */

/** Normal mode, 4096 tokens, hidden 7168, top-8 of 256, uniform routing, GB/s by SM budget. */
export const DEEPEP_NORMAL: Record<number, { dispatchFp8: number; dispatchBf16: number; combineBf16: number }> = {
  24: { dispatchFp8: 255, dispatchBf16: 261, combineBf16: 355 },
  48: { dispatchFp8: 371, dispatchBf16: 385, combineBf16: 391 },
  80: { dispatchFp8: 383, dispatchBf16: 397, combineBf16: 399 },
};

/** Low-latency mode, 128 tokens, FP8 dispatch, BF16 combine, µs. */
export const DEEPEP_LOW_LATENCY = { dispatchUs: 33, combineUs: 57 };

/** The goals of the EP issues, as ratios to DeepEP. */
export const GOALS = {
  normalAt24Sms: { dispatch: 1.4, combine: 1.2 },
  normalBest: 1.15,
  lowLatency: 0.7,
};
