import { describe, expect, it } from 'vitest';

import { DECODE_STAGES, PREFILL_STAGES, interleaveStages, splitIndexByHalfSum, splitTwoBatch, tboStageSchedule } from '../../../src/planning/tbo.js';

describe('splitTwoBatch: decode', () => {
  it('splits at half the sequences', () => {
    const s = splitTwoBatch({ forwardMode: 'decode', seqLens: [1, 1, 1, 1, 1] });
    expect(s.splitSeqIndex).toBe(2);
    expect(s.children.map((c) => c.numTokens)).toEqual([2, 3]);
    expect(s.children[1]).toMatchObject({ seqStart: 2, seqEnd: 5, tokenStart: 2, tokenEnd: 5, firstSeqOffset: 0 });
    expect(s.canRun).toBe(true);
    expect(s.twoChunk).toBe(false);
  });

  it('cannot overlap a single sequence', () => {
    const s = splitTwoBatch({ forwardMode: 'decode', seqLens: [1] });
    expect(s.children.map((c) => c.numTokens)).toEqual([0, 1]);
    expect(s.canRun).toBe(false);
  });

  it('counts tokens per sequence for speculative decode', () => {
    const s = splitTwoBatch({ forwardMode: 'decode', seqLens: [4, 4, 4, 4] });
    expect(s.splitTokenIndex).toBe(8);
  });
});

describe('splitTwoBatch: prefill', () => {
  it('splits at the boundary that best balances tokens', () => {
    const s = splitTwoBatch({ forwardMode: 'extend', seqLens: [100, 200, 100, 200] });
    expect(s.splitSeqIndex).toBe(2);
    expect(s.children.map((c) => c.numTokens)).toEqual([300, 300]);
    expect(s.children[0].seqLens).toEqual([100, 200]);
    expect(s.twoChunk).toBe(false);
  });

  it('keeps a boundary split whose smaller side reaches the threshold, and cuts one that does not', () => {
    // 290 >= 0.48 × 600 = 288: keep the boundary.
    const kept = splitTwoBatch({ forwardMode: 'extend', seqLens: [290, 310] });
    expect(kept.twoChunk).toBe(false);
    expect(kept.splitTokenIndex).toBe(290);
    // 280 < 288: cut sequence 1 at token 300.
    const cut = splitTwoBatch({ forwardMode: 'extend', seqLens: [280, 320] });
    expect(cut.twoChunk).toBe(true);
    expect(cut.splitTokenIndex).toBe(300);
    expect(cut.children.map((c) => c.seqLens)).toEqual([[280, 20], [300]]);
  });

  it('cuts one sequence in two at total/2 when the best boundary is too uneven', () => {
    // Best boundary: 1000 | 20, and 1000 > 0.52 × 1020. Cut sequence 0 at token 510.
    const s = splitTwoBatch({ forwardMode: 'extend', seqLens: [1000, 10, 10] });
    expect(s.twoChunk).toBe(true);
    expect(s.splitSeqIndex).toBe(0);
    expect(s.splitTokenIndex).toBe(510);
    expect(s.children[0]).toEqual({ seqStart: 0, seqEnd: 1, tokenStart: 0, tokenEnd: 510, numTokens: 510, seqLens: [510], firstSeqOffset: 0 });
    expect(s.children[1]).toEqual({ seqStart: 0, seqEnd: 3, tokenStart: 510, tokenEnd: 1020, numTokens: 510, seqLens: [490, 10, 10], firstSeqOffset: 510 });
    expect(s.canRun).toBe(true);
  });

  it('cuts a single long prompt in half', () => {
    const s = splitTwoBatch({ forwardMode: 'extend', seqLens: [4097] });
    expect(s.twoChunk).toBe(true);
    expect(s.children.map((c) => c.numTokens)).toEqual([2048, 2049]);
    expect(s.children[1].firstSeqOffset).toBe(2048);
  });

  it('cuts the sequence that spans the midpoint, not the first one', () => {
    // Best boundary 10 | 1010 → cut at 510, inside sequence 1 (tokens 10..1009).
    const s = splitTwoBatch({ forwardMode: 'extend', seqLens: [10, 1000, 10] });
    expect(s.splitSeqIndex).toBe(1);
    expect(s.children[0].seqLens).toEqual([10, 500]);
    expect(s.children[1].seqLens).toEqual([500, 10]);
  });

  it('never cuts with threshold 0, and uses the boundary when total/2 falls on one', () => {
    expect(splitTwoBatch({ forwardMode: 'extend', seqLens: [1000, 10, 10], threshold: 0 }).twoChunk).toBe(false);
    // Best boundary (ties go right): 3 | 2, above 0.5 × 5; total/2 = 2 is the boundary after sequence 0.
    const s = splitTwoBatch({ forwardMode: 'extend', seqLens: [2, 1, 2], threshold: 0.5 });
    expect(s.twoChunk).toBe(false);
    expect(s.splitSeqIndex).toBe(1);
    expect(s.children.map((c) => c.numTokens)).toEqual([2, 3]);
  });

  it('checks its input', () => {
    expect(() => splitTwoBatch({ forwardMode: 'extend', seqLens: [3, 0] })).toThrow(/seqLens\[1\] is 0/);
    expect(() => splitTwoBatch({ forwardMode: 'extend', seqLens: [3], threshold: 0.7 })).toThrow(/--tbo-token-distribution-threshold 0.7: must be in \[0, 0.5\]/);
    expect(() => splitTwoBatch({ forwardMode: 'idle' as never, seqLens: [] })).toThrow(/forwardMode idle/);
  });
});

describe('splitIndexByHalfSum', () => {
  it('takes the later boundary on ties and stops once the difference grows', () => {
    expect(splitIndexByHalfSum([1, 1])).toBe(1);
    expect(splitIndexByHalfSum([2, 1, 2])).toBe(2);
    expect(splitIndexByHalfSum([5])).toBe(0);
    expect(splitIndexByHalfSum([1, 1, 1, 1, 100])).toBe(4);
  });
});

describe('tboStageSchedule', () => {
  const order = (s: ReturnType<typeof tboStageSchedule>): string[] => s.steps.map((x) => `${x.microBatch}${x.layer}:${x.stage.id}`);

  it('starts B two stages behind A in decode', () => {
    const s = tboStageSchedule({ forwardMode: 'decode' });
    expect(s.delay).toBe(2);
    expect(s.stagesPerLayer).toBe(DECODE_STAGES);
    expect(order(s)).toEqual([
      'a0:attn-prep', 'a0:attn-core',
      'a0:dispatch-send', 'b0:attn-prep',
      'a0:dispatch-recv', 'b0:attn-core',
      'a0:experts', 'b0:dispatch-send',
      'a0:combine-recv', 'b0:dispatch-recv',
      'a0:output', 'b0:experts',
      'b0:combine-recv', 'b0:output',
    ]);
  });

  it('names the seven decode stages of the notes', () => {
    expect(DECODE_STAGES.map((s) => s.label)).toEqual([
      'attention prep',
      'attention core + gate + top-k',
      'dispatch send',
      'shared expert + dispatch receive',
      'experts + combine send',
      'combine receive',
      'output',
    ]);
  });

  it('overlaps every communication A starts with a B stage', () => {
    for (const forwardMode of ['decode', 'extend'] as const) {
      const { steps } = tboStageSchedule({ forwardMode, numLayers: 3 });
      steps.forEach((step, i) => {
        if (step.microBatch === 'a' && step.stage.starts) expect(steps[i + 1]!.microBatch).toBe('b');
      });
      // Each micro-batch runs every stage of every layer once, in order.
      const stages = forwardMode === 'decode' ? DECODE_STAGES : PREFILL_STAGES;
      const full = [0, 1, 2].flatMap((layer) => stages.map((st) => `${layer}:${st.id}`));
      for (const mb of ['a', 'b']) {
        expect(steps.filter((x) => x.microBatch === mb).map((x) => `${x.layer}:${x.stage.id}`)).toEqual(full);
      }
    }
  });

  it('chains layers, so B finishes layer 0 while A is in layer 1', () => {
    const s = order(tboStageSchedule({ forwardMode: 'decode', numLayers: 2 }));
    expect(s).toHaveLength(28);
    expect(s.indexOf('a1:attn-prep')).toBeLessThan(s.indexOf('b0:output'));
  });

  it('alternates prefill stages with no delay', () => {
    const s = tboStageSchedule({ forwardMode: 'extend' });
    expect(s.stagesPerLayer).toBe(PREFILL_STAGES);
    expect(order(s)).toEqual([
      'a0:attn-dispatch-send', 'b0:attn-dispatch-send',
      'a0:experts', 'b0:experts',
      'a0:output', 'b0:output',
    ]);
  });

  it('interleaves any stage count', () => {
    expect(interleaveStages(3, 1).map((x) => `${x.microBatch}${x.stage}`)).toEqual(['a0', 'a1', 'b0', 'a2', 'b1', 'b2']);
    expect(() => interleaveStages(2, 3)).toThrow(/delay 3/);
    expect(() => tboStageSchedule({ forwardMode: 'decode', numLayers: 0 })).toThrow(/numLayers 0/);
  });
});
