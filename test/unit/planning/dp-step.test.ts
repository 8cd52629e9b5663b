import { describe, expect, it } from 'vitest';

import { ParallelConfig } from '../../../src/planning/config.js';
import {
  STEP_METADATA_INTS,
  decodeStepMetadata,
  encodeStepMetadata,
  padTokenCount,
  padTopkIds,
  planDpStep,
  resolveDeepepMode,
  stepSettingsOf,
  type DpStepSettings,
  type StepMetadata,
} from '../../../src/planning/dp-step.js';

const decode = (n: number, extra: Partial<StepMetadata> = {}): StepMetadata => ({
  numTokens: n,
  canCudaGraph: true,
  forwardMode: n === 0 ? 'idle' : 'decode',
  canTbo: n >= 2,
  tboMaxMicroBatchTokens: n >= 2 ? Math.ceil(n / 2) : 0,
  ...extra,
});
const extend = (n: number): StepMetadata => ({ numTokens: n, canCudaGraph: false, forwardMode: 'extend', canTbo: true, tboMaxMicroBatchTokens: Math.ceil(n / 2) });

const settings: DpStepSettings = {
  attnTpSize: 1,
  moeA2aBackend: 'deepep',
  deepepMode: 'auto',
  enableTwoBatchOverlap: false,
  numMaxDispatchTokensPerRank: 128,
};

describe('resolveDeepepMode', () => {
  it('auto picks normal when any rank prefills, low_latency otherwise', () => {
    expect(resolveDeepepMode('auto', true)).toBe('normal');
    expect(resolveDeepepMode('auto', false)).toBe('low_latency');
    expect(resolveDeepepMode('auto', [decode(3), extend(100), decode(0)])).toBe('normal');
    expect(resolveDeepepMode('auto', [decode(3), decode(0)])).toBe('low_latency');
  });

  it('leaves explicit modes alone', () => {
    expect(resolveDeepepMode('normal', false)).toBe('normal');
    expect(resolveDeepepMode('low_latency', true)).toBe('low_latency');
  });
});

describe('planDpStep', () => {
  it('runs idle ranks and gives every rank the same mode', () => {
    const plan = planDpStep([decode(5), decode(0), extend(300), decode(0)], settings);
    expect(plan.idleRanks).toEqual([1, 3]);
    expect(plan.anyExtend).toBe(true);
    expect(plan.deepepMode).toBe('normal');
    expect(plan.useCudaGraph).toBe(false);
    expect(plan.totalTokens).toBe(305);
  });

  it('pads token counts to a multiple of attn_tp', () => {
    const plan = planDpStep([decode(5), decode(0), decode(8)], { ...settings, attnTpSize: 4 });
    expect(plan.paddedNumTokens).toEqual([8, 0, 8]);
    expect(plan.maxPaddedTokens).toBe(8);
    expect(padTokenCount(9, 4)).toBe(12);
  });

  it('replays CUDA graphs only when every rank can and the mode is capturable', () => {
    expect(planDpStep([decode(4), decode(0)], settings).useCudaGraph).toBe(true);
    expect(planDpStep([decode(4), decode(2, { canCudaGraph: false })], settings).useCudaGraph).toBe(false);
    expect(planDpStep([decode(4)], { ...settings, deepepMode: 'normal' }).useCudaGraph).toBe(false);
    expect(planDpStep([decode(4)], { ...settings, moeA2aBackend: 'none' })).toMatchObject({ deepepMode: null, useCudaGraph: true });
  });

  it('runs TBO only when enabled, every busy rank can split, and modes agree', () => {
    const tbo = { ...settings, enableTwoBatchOverlap: true };
    expect(planDpStep([decode(4), decode(0)], tbo).useTbo).toBe(true);
    expect(planDpStep([decode(4), decode(1)], tbo).useTbo).toBe(false);
    expect(planDpStep([decode(4), extend(8)], tbo).useTbo).toBe(false);
    expect(planDpStep([decode(4)], settings).useTbo).toBe(false);
    expect(planDpStep([decode(0), decode(0)], tbo).useTbo).toBe(false);
  });

  it('refuses a low-latency dispatch larger than the receive slots, per micro-batch with TBO', () => {
    expect(() => planDpStep([decode(200), decode(3)], settings)).toThrow(/DP rank 0: 200 tokens exceeds --num-max-dispatch-tokens-per-rank 128 in low_latency mode/);
    const plan = planDpStep([decode(200), decode(3)], { ...settings, enableTwoBatchOverlap: true });
    expect(plan.useTbo).toBe(true);
    expect(() => planDpStep([decode(300)], { ...settings, enableTwoBatchOverlap: true })).toThrow(/a micro-batch of 150 tokens/);
    // normal mode has no such limit.
    expect(planDpStep([decode(2000)], { ...settings, deepepMode: 'normal' }).deepepMode).toBe('normal');
  });

  it('checks the gathered metadata', () => {
    expect(() => planDpStep([], settings)).toThrow(/no DP ranks/);
    expect(() => planDpStep([decode(0, { forwardMode: 'decode' })], settings)).toThrow(/DP rank 0: forwardMode decode with 0 tokens/);
    expect(() => planDpStep([decode(4, { tboMaxMicroBatchTokens: 5 })], settings)).toThrow(/tboMaxMicroBatchTokens 5 must be in \[0, numTokens 4\]/);
    expect(() => planDpStep([decode(-1)], settings)).toThrow(/numTokens -1/);
  });

  it('takes its settings from a ParallelConfig', () => {
    const c = ParallelConfig.fromOptions({ tp: 8, dpSize: 4, enableDpAttention: true, moeA2aBackend: 'deepep', enableTwoBatchOverlap: true });
    expect(stepSettingsOf(c)).toEqual({
      attnTpSize: 2,
      moeA2aBackend: 'deepep',
      deepepMode: 'auto',
      enableTwoBatchOverlap: true,
      numMaxDispatchTokensPerRank: 128,
    });
  });
});

describe('step metadata all-gather encoding', () => {
  it('round-trips through the gathered Int32Array', () => {
    const rows = [decode(5), decode(0), extend(300)];
    const gathered = new Int32Array(rows.length * STEP_METADATA_INTS);
    rows.forEach((m, r) => gathered.set(encodeStepMetadata(m), r * STEP_METADATA_INTS));
    expect(decodeStepMetadata(gathered)).toEqual(rows);
    expect(() => decodeStepMetadata(new Int32Array(7))).toThrow(/7 integers is not a multiple of 5/);
  });
});

describe('padTopkIds', () => {
  it('fills padded tokens with -1 so they are never sent', () => {
    expect(Array.from(padTopkIds(Int32Array.of(3, 1, 0, 2), 2, 3))).toEqual([3, 1, 0, 2, -1, -1]);
    expect(() => padTopkIds(Int32Array.of(1, 2, 3), 2, 4)).toThrow(/not whole rows of 2/);
  });
});
