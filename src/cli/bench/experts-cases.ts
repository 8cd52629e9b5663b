/**
 * What `wideep bench experts` measures, and the arithmetic of its metrics:
 * DeepSeek-V3's expert shapes (hidden 7168, intermediate 2048, gate+up fused
 * to 4096), prefill (many rows per expert: compute-bound) and decode (few
 * rows: memory-bound), the router at 4096 tokens x 256 experts, and the goals
 * each figure is held to. Pure: unit tests cover it without a GPU.
 */

export const DEEPSEEK_HIDDEN = 7168;
export const DEEPSEEK_INTER = 2048;

export type Phase = 'prefill' | 'decode';
export type Projection = 'gate_up' | 'down';

export interface GroupedCase {
  id: string;
  phase: Phase;
  projection: Projection;
  /** Local experts. */
  E: number;
  /** Rows per expert. */
  M: number;
  /** Output width and reduction width of y = x · wᵀ. */
  N: number;
  K: number;
}

/** The shapes: prefill 32 and 64 experts at 512 and 1024 rows; decode 32 experts at 16 and 32 rows, 256 at 128. */
export function groupedCases(): GroupedCase[] {
  const shapes: [Phase, number, number][] = [
    ['prefill', 32, 512],
    ['prefill', 64, 512],
    ['prefill', 32, 1024],
    ['prefill', 64, 1024],
    ['decode', 32, 16],
    ['decode', 32, 32],
    ['decode', 256, 128],
  ];
  const out: GroupedCase[] = [];
  for (const [phase, E, M] of shapes) {
    out.push({ id: `${phase} E${E} M${M} gate_up`, phase, projection: 'gate_up', E, M, N: 2 * DEEPSEEK_INTER, K: DEEPSEEK_HIDDEN });
    out.push({ id: `${phase} E${E} M${M} down`, phase, projection: 'down', E, M, N: DEEPSEEK_HIDDEN, K: DEEPSEEK_INTER });
  }
  return out;
}

/** A decode step's tokens per rank and top-k: a decode case's experts get about tokens x k / E rows each. */
export const DECODE_STEP = { tokens: 128, topk: 8 } as const;

/** The rows each expert receives in a decode step spread evenly over the case's experts, at most M. */
export function decodeRowsPerExpert(c: Pick<GroupedCase, 'E' | 'M'>): number {
  return Math.min(c.M, Math.ceil((DECODE_STEP.tokens * DECODE_STEP.topk) / c.E));
}

export const ROUTER_CASE = { tokens: 4096, experts: 256, groups: 8, topkGroup: 4, topk: 8, hidden: DEEPSEEK_HIDDEN } as const;

export function gemmFlops(c: Pick<GroupedCase, 'E' | 'M' | 'N' | 'K'>): number {
  return 2 * c.E * c.M * c.N * c.K;
}

export function tflops(flops: number, us: number): number {
  return us > 0 ? flops / us / 1e6 : NaN;
}

/** Weight bytes one pass reads (bf16: 2 per element; fp8: 1 plus the 128x128 scales). */
export function weightBytes(c: Pick<GroupedCase, 'E' | 'N' | 'K'>, fp8: boolean): number {
  const elems = c.E * c.N * c.K;
  return fp8 ? elems + (elems / (128 * 128)) * 4 : 2 * elems;
}

/** Published HBM bandwidth of the SXM parts (GB/s); measured figures are reported beside it. */
export function hbmPeakGBps(deviceName: string): number | undefined {
  if (/H200/.test(deviceName)) return 4800;
  if (/H100|H800/.test(deviceName)) return 3350;
  return undefined;
}

/** The goals: ratios a run must reach, each checked where its inputs were measured. */
export const GOALS = {
  prefillBf16VsTorch: 1.0,
  prefillBf16VsDense: 0.7,
  prefillFp8VsBf16: 1.6,
  decodeBf16VsTorch: 1.0,
  decodeHbmFraction: 0.7,
  routerTopkUs: 10,
  routerVsTorch: 2,
  hostUsPerOp: 5,
} as const;
