import { describe, expect, it } from 'vitest';

import { DECODE_STAGES, PREFILL_STAGES, tboStageSchedule } from '../../../src/planning/tbo.js';
import {
  DECODE_STAGE_OPS,
  PREFILL_STAGE_OPS,
  SMALL_MOE_CONFIG,
  attentionInput,
  causalAttention,
  generateMoeLayerWeights,
  generateWorkload,
  layerSchedule,
  numTokens,
  stageOps,
} from '../../../src/simulation/index.js';
import { concatF32 } from '../../../src/simulation/math.js';
import { expectWideepError } from '../../helpers/expect-error.js';

const weights = generateMoeLayerWeights(SMALL_MOE_CONFIG, 5);
const H = SMALL_MOE_CONFIG.hidden;

describe('attention stand-in', () => {
  it('gives the same bits when a sequence is cut and its first part becomes cached prefix', () => {
    const attention = causalAttention(weights.attention);
    const [batch] = generateWorkload({ numRanks: 2, hidden: H, steps: ['extend'], seed: 9 })[0]!;
    const x = attentionInput(weights, batch!.x);
    const whole = attention({ hidden: H, x, seqLens: batch!.seqLens, prefixes: batch!.prefixes });
    // Cut the first sequence after 1 token: the rest sees that token as prefix.
    const [len0] = batch!.seqLens;
    const first = attention({ hidden: H, x: x.subarray(0, H), seqLens: [1], prefixes: [batch!.prefixes[0]!] });
    const rest = attention({
      hidden: H,
      x: x.subarray(H),
      seqLens: [len0! - 1, ...batch!.seqLens.slice(1)],
      prefixes: [concatF32([batch!.prefixes[0]!, x.subarray(0, H)]), ...batch!.prefixes.slice(1)],
    });
    expect(concatF32([first, rest])).toEqual(whole);
  });

  it('checks its batch', async () => {
    const attention = causalAttention(weights.attention);
    await expectWideepError(() => attention({ hidden: H, x: new Float32Array(H), seqLens: [2], prefixes: [new Float32Array(0)] }), 'ERR_SHAPE', 'expected 2 tokens');
    await expectWideepError(() => attention({ hidden: H, x: new Float32Array(H), seqLens: [1], prefixes: [] }), 'ERR_SHAPE', '0 prefixes for 1 sequences');
  });
});

describe('workload', () => {
  it('is seeded, with varied per-rank counts and idle ranks', () => {
    const a = generateWorkload({ numRanks: 4, hidden: H, steps: ['extend', 'decode', 'mixed'], seed: 1 });
    const b = generateWorkload({ numRanks: 4, hidden: H, steps: ['extend', 'decode', 'mixed'], seed: 1 });
    expect(a[0]![0]!.x).toEqual(b[0]![0]!.x);
    expect(a.map((ranks) => ranks.map((r) => r.forwardMode))).toEqual([
      ['extend', 'extend', 'extend', 'idle'],
      ['decode', 'decode', 'decode', 'idle'],
      ['extend', 'decode', 'decode', 'idle'],
    ]);
    expect(new Set(a[0]!.map(numTokens)).size).toBeGreaterThan(1);
    expect(a[1]!.every((r) => r.seqLens.every((n) => n === 1))).toBe(true);
  });

  it('refuses an all-idle workload', async () => {
    await expectWideepError(() => generateWorkload({ numRanks: 2, hidden: H, steps: ['decode'], idleRanks: [0, 1], seed: 1 }), 'ERR_INVALID_ARG', 'every rank is idle');
  });
});

describe('stages', () => {
  it('maps every decode and prefill stage to operations, sends last and receives where the stage finishes a communication', () => {
    for (const [mode, stages, table] of [
      ['decode', DECODE_STAGES, DECODE_STAGE_OPS],
      ['extend', PREFILL_STAGES, PREFILL_STAGE_OPS],
    ] as const) {
      expect(Object.keys(table).sort()).toEqual(stages.map((s) => s.id).sort());
      const all: string[] = [];
      for (const stage of stages) {
        const ops = stageOps(mode, stage);
        all.push(...ops);
        if (stage.starts) expect(ops[ops.length - 1]).toBe(`${stage.starts}Send`);
        if (stage.finishes) expect(ops).toContain(`${stage.finishes}Recv`);
        expect(ops.filter((o) => o.endsWith('Send')).map((o) => o.slice(0, -4))).toEqual(stage.starts ? [stage.starts] : []);
        expect(ops.filter((o) => o.endsWith('Recv')).map((o) => o.slice(0, -4))).toEqual(stage.finishes ? [stage.finishes] : []);
      }
      // Each operation once, in a dependency-respecting order.
      expect(all.sort()).toEqual(['attnCore', 'attnPrep', 'combineRecv', 'combineSend', 'dispatchRecv', 'dispatchSend', 'experts', 'gate', 'output', 'sharedExpert']);
    }
  });

  it('follows tboStageSchedule with TBO and runs the stages in turn without', () => {
    const tbo = layerSchedule('decode', true).map((s) => `${'ab'[s.microBatch]}:${s.stage.id}`);
    expect(tbo).toEqual(tboStageSchedule({ forwardMode: 'decode' }).steps.map((s) => `${s.microBatch}:${s.stage.id}`));
    expect(layerSchedule('extend', false).map((s) => s.stage.id)).toEqual(PREFILL_STAGES.map((s) => s.id));
    expect(layerSchedule('extend', false).every((s) => s.microBatch === 0)).toBe(true);
  });
});
